"""A dead letter as read back from DLQ_TOPIC, and the filters that select them.

``DeadLetter`` keeps everything Kafka gave: key, value and header values as
raw bytes (or None), so an export or a replay loses nothing. The ``dlq.*``
context is read from the headers on demand. A record whose headers cannot be
read (a header name that is not UTF-8) keeps its key and value, and the
``dlq.headers.unreadable`` marker stands for its headers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from dataflow.deadletters import HEADER_FAILED_AT, HEADER_REPLAY_COUNT, original_headers
from dataflow.dlq.schemes import Origin, is_context, read_origin
from dataflow.errors import PipelineError

# librdkafka's TIMESTAMP_NOT_AVAILABLE
_NO_TIMESTAMP = 0

RecordHeaders = list[tuple[str, bytes | None]]


class DlqError(PipelineError):
    """The dead-letter review tool cannot do what it was asked."""


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", "replace")


def _int(raw: bytes | None) -> int | None:
    """A header's whole number: an optional '-' and 1 to 18 ASCII digits (it fits 64 bits,
    and the next one too); anything else is None."""
    if raw is None:
        return None
    digits = raw.removeprefix(b"-")
    if not 0 < len(digits) <= 18 or not digits.isdigit():  # bytes.isdigit(): ASCII only
        return None
    return int(raw)


def parse_time(raw: str, option: str = "time") -> datetime:
    """An ISO-8601 time, timezone-aware; a naive time is taken as UTC."""
    try:
        parsed = datetime.fromisoformat(raw.strip())
    except ValueError:
        msg = f"{option}: {raw!r} is not an ISO-8601 time (e.g. 2024-09-12T08:30:00Z)"
        raise DlqError(msg) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


class DeadLetter(msgspec.Struct, frozen=True):
    """One record of the dead-letter topic, bytes untouched."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: RecordHeaders = []

    @classmethod
    def from_message(cls, msg: Any) -> DeadLetter:
        """From a confluent_kafka.Message; its ``headers()`` is called once (see
        ``dataflow.deadletters.original_headers``)."""
        kind, stamp = msg.timestamp()
        headers: RecordHeaders = list(original_headers(msg))
        return cls(msg.topic(), msg.partition(), msg.offset(),
                   None if kind == _NO_TIMESTAMP else stamp,
                   msg.key(), msg.value(), headers)

    def header(self, name: str) -> bytes | None:
        """The last value of a header, or None."""
        found = None
        for key, value in self.headers:
            if key == name:
                found = value
        return found

    @property
    def origin(self) -> Origin:
        """Source place and error, from whichever header scheme the record carries."""
        return read_origin(self.headers)

    @property
    def scheme(self) -> str:
        """Header scheme the context was read from (dlq, kafka-streams, ...), or "(none)"."""
        return self.origin.scheme or "(none)"

    @property
    def reason(self) -> str:
        """The error: our reason code or the exception class, "(none)" when absent."""
        return self.origin.error or "(none)"

    @property
    def detail(self) -> str:
        """What the parser (or the exception message) said, or an empty string."""
        return self.origin.detail or ""

    @property
    def source_topic(self) -> str | None:
        """Topic the record was read from when it failed."""
        return self.origin.topic

    @property
    def source_partition(self) -> int | None:
        """Partition of the source topic."""
        return self.origin.partition

    @property
    def source_offset(self) -> int | None:
        """Offset in the source partition."""
        return self.origin.offset

    @property
    def source_key(self) -> tuple[str, int, int] | None:
        """(topic, partition, offset) of the original record, None unless all are known."""
        origin = self.origin
        if origin.topic is None or origin.partition is None or origin.offset is None:
            return None
        return (origin.topic, origin.partition, origin.offset)

    @property
    def failed_at(self) -> datetime | None:
        """When it failed: dlq.failed_at, else (other schemes) the dead letter's timestamp;
        None when absent or not a time (also one outside datetime's years 1 to 9999)."""
        raw = _text(self.header(HEADER_FAILED_AT))
        try:
            if raw is None:  # other schemes: when the dead letter was written
                if self.scheme in ("(none)", "dlq") or self.timestamp_ms is None:
                    return None
                return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)
            return parse_time(raw).astimezone(UTC)
        except (DlqError, ValueError, OverflowError, OSError):
            # OverflowError: e.g. 0001-01-01T00:00+01:00 is before year 1 in UTC;
            # ValueError, OSError: a Kafka timestamp beyond datetime's range
            return None

    @property
    def replay_count(self) -> int:
        """How many times it was replayed already (replay.count, 0 when absent)."""
        return max(_int(self.header(HEADER_REPLAY_COUNT)) or 0, 0)

    def replay_headers(self) -> RecordHeaders:
        """Original headers minus failure context and replay.count, plus replay.count + 1."""
        kept = [(k, v) for k, v in self.headers
                if not is_context(k) and k != HEADER_REPLAY_COUNT]
        return [*kept, (HEADER_REPLAY_COUNT, str(self.replay_count + 1).encode())]


@dataclass(frozen=True, slots=True)
class Filters:
    """Which dead letters a command works on; every bound is inclusive."""

    reasons: frozenset[str] = frozenset()
    since: datetime | None = None
    until: datetime | None = None
    source_partition: int | None = None
    offset_from: int | None = None
    offset_to: int | None = None

    def __post_init__(self) -> None:
        if self.since and self.until and self.since > self.until:
            msg = "--since is after --until: nothing can match"
            raise DlqError(msg)
        if self.offset_from is not None and self.offset_to is not None \
                and self.offset_from > self.offset_to:
            msg = "--offset-from is after --offset-to: nothing can match"
            raise DlqError(msg)

    def _time_ok(self, record: DeadLetter) -> bool:
        if self.since is None and self.until is None:
            return True
        failed_at = record.failed_at
        if failed_at is None:
            return False
        return not ((self.since and failed_at < self.since)
                    or (self.until and failed_at > self.until))

    def _offset_ok(self, record: DeadLetter) -> bool:
        if self.offset_from is None and self.offset_to is None:
            return True
        offset = record.source_offset
        if offset is None:
            return False
        return not ((self.offset_from is not None and offset < self.offset_from)
                    or (self.offset_to is not None and offset > self.offset_to))

    def matches(self, record: DeadLetter) -> bool:
        """Whether the record passes every filter that is set."""
        if self.reasons and record.reason not in self.reasons:
            return False
        if self.source_partition is not None \
                and record.source_partition != self.source_partition:
            return False
        return self._time_ok(record) and self._offset_ok(record)
