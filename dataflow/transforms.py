"""What the job writes, record by record: processed logins, dead letters, late counts.

Plain functions and small objects built once from the settings. The batch step
(``dataflow.batches``) calls the dead-letter and late writers once per batch and
inlines ``enrich`` in its loop; ``enrich`` itself serves the one-record paths
(the hand-written reference loop, tests).
"""

from __future__ import annotations

from collections import Counter as Tally
from datetime import UTC, datetime
from functools import lru_cache

from dataflow import metrics
from dataflow.deadletters import dead_letter_headers
from dataflow.schemas import (
    ENCODER,
    Accepted,
    KafkaRecord,
    LateCount,
    OutRecord,
    ProcessedLogin,
    Rejected,
)
from dataflow.settings import Settings
from dataflow.watermarks import WindowKey


@lru_cache(maxsize=4096)
def iso_utc(epoch_seconds: int) -> str:
    """ISO-8601 UTC text of epoch seconds, e.g. 2023-09-12T00:45:51+00:00."""
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat()


@lru_cache(maxsize=1024)
def version_parts(version: str) -> tuple[int | None, int | None, int | None]:
    """Major, minor, patch of a dotted version; None where a part is absent or not a number.

    A part is a number only when it is 1 to 18 ASCII digits 0-9. Other Unicode digits are
    not numbers (``str.isdigit()`` accepts ``"²"``, ``"①"`` and the Arabic-Indic ``"\u0661"``;
    ``int()`` refuses the first two and reads the third as 1), and neither are signs, spaces
    or underscores. A longer run of ASCII digits is None too, never an error (``int()``
    refuses more than 4,300 digits): a number of at most 18 digits fits a signed 64-bit
    integer, so every JSON reader of the output (Java ``long``, Go ``int64``) takes it.
    """
    parts: list[int | None] = [
        int(p) if len(p) <= 18 and p.isascii() and p.isdigit() else None
        for p in version.split(".")[:3]
    ]
    parts += [None] * (3 - len(parts))
    return parts[0], parts[1], parts[2]


def source_timestamp_ms(record: KafkaRecord) -> int | None:
    """The Kafka timestamp of a source record (kept on what we write), or None."""
    kind, value = record.timestamp()
    return value if kind and value >= 0 else None


def enrich(accepted: Accepted, processed_at: str) -> ProcessedLogin:
    """An accepted login as the job writes it to OUTPUT_TOPIC (one record at a time; the
    batch step in ``dataflow.batches`` inlines this, and a unit test checks both agree)."""
    login = accepted.login
    major, minor, patch = version_parts(login.app_version)
    device_type = login.device_type
    # Positional: the field order of ProcessedLogin (cheaper than keywords per record).
    return ProcessedLogin(
        login.user_id, login.app_version, major, minor, patch,
        device_type.lower() if device_type is not None else None,
        login.device_id, login.ip, accepted.ip_version, login.locale.upper(),
        accepted.timestamp, iso_utc(accepted.timestamp), processed_at,
    )


class DeadLetterer:
    """Rejected record -> dead letter: original key, value and headers plus dlq.* context."""

    def __init__(self, settings: Settings) -> None:
        self._topic = settings.dlq_topic

    def records(self, rejected: list[Rejected], failed_at: datetime) -> list[OutRecord]:
        out: list[OutRecord] = []
        for one in rejected:
            source = one.source
            out.append((self._topic, source.key(), source.value(),
                        dead_letter_headers(one, failed_at), source_timestamp_ms(source)))
        for reason, n in Tally(r.reason for r in rejected).items():
            metrics.DEAD_LETTERED.labels(reason).inc(n)
        return out


def count_key(field: str, value: str, start: int) -> bytes:
    """Key of a count record: one key per (field, value, window), so later supersedes earlier."""
    return f"{field}:{value}@{iso_utc(start)}".encode()


class LateWriter:
    """Late events per (window, field, value) -> records for LATE_TOPIC."""

    def __init__(self, settings: Settings) -> None:
        self._topic = settings.late_topic
        self._length = settings.window_seconds

    def records(self, late: dict[WindowKey, int]) -> list[OutRecord]:
        return [self.record(key, n) for key, n in late.items()]

    def record(self, key: WindowKey, n: int) -> OutRecord:
        start, field, value = key
        metrics.LATE.labels(field).inc(n)
        late = LateCount(iso_utc(start), iso_utc(start + self._length), field, value, n)
        return (self._topic, count_key(field, value, start), ENCODER.encode(late), None, None)
