"""The steps of the flow, each a plain function over one input partition's batch.

``dataflow.flow`` wires them as named Bytewax operators; each is built once from
the settings and does its per-record work in one loop. None of them needs Kafka
or Bytewax to run (``tests/unit/test_steps.py``):

- ``ParseBatches``: records -> the batch's valid logins and its invalid records
  (``dataflow.parsing``); a record the source found too far ahead is invalid
  (``future_timestamp``), a late one is marked ``late``;
- ``drop_excluded_locales``: EXCLUDED_LOCALES dropped on purpose (``filtered``);
- ``Enrich``: valid logins -> OUTPUT_TOPIC records (``dataflow.transforms``);
- ``DeadLetters``: invalid records -> DLQ_TOPIC records (``dataflow.deadletters``);
- ``LateRecords``: late logins -> LATE_TOPIC records, one per (window, field, value);
- ``PartialCounts``: logins on time -> partial counts for the window shards
  (``dataflow.shards``), with the partition's watermark.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

from dataflow import metrics
from dataflow.batches import (
    InvalidBatch,
    Keyed,
    OutBatch,
    SourceBatch,
    ValidBatch,
    with_logins,
)
from dataflow.deadletters import (
    HEADER_FROM_OFFSET,
    HEADER_FROM_PARTITION,
    HEADER_FROM_TOPIC,
    dead_letter_headers,
)
from dataflow.parsing import future_rejection, parse, parse_all
from dataflow.schemas import ENCODER, Accepted, OutRecord, Rejected
from dataflow.settings import Settings
from dataflow.shards import SHARD_KEYS, Partial, ShardUpdate, WindowKey, shard_key
from dataflow.transforms import late_count_record, processed_logins

UNKNOWN = "unknown"
IP_VERSIONS = {4: "4", 6: "6"}
# Where each countable field is read from an accepted login, and how its value is
# written (device_type lower case or "unknown", locale upper case, ip_version as text).
FIELD_PATHS: dict[str, str] = {
    "device_type": "login.device_type", "locale": "login.locale",
    "app_version": "login.app_version", "ip_version": "ip_version",
    "user_id": "login.user_id", "device_id": "login.device_id",
}
FIELD_VALUES: dict[str, Callable[[Any], str]] = {
    "device_type": lambda value: value.lower() if value is not None else UNKNOWN,
    "locale": str.upper,
    "ip_version": IP_VERSIONS.__getitem__,
}


def _same(value: Any) -> str:
    return str(value)


class ParseBatches:
    """A source batch -> its ValidBatch and its InvalidBatch (``op.flat_map`` then
    ``op.branch``), each record in one of the two."""

    def __init__(self, settings: Settings) -> None:
        self._max_future = settings.max_future_seconds

    def __call__(self, batch: SourceBatch) -> list[ValidBatch | InvalidBatch]:
        accepted: list[Accepted] = []
        rejected: list[Rejected] = []
        late, future = batch.stamps.late, batch.stamps.future
        if not late and not future:
            parse_all(batch.records, accepted, rejected)
        else:
            for index, record in enumerate(batch.records):
                result = parse(record)
                if type(result) is Rejected:
                    rejected.append(result)
                elif index in future:
                    rejected.append(future_rejection(record, result.timestamp,  # type: ignore[union-attr]
                                                     batch.read_at, self._max_future))
                elif index in late:
                    accepted.append(Accepted(result.login, result.timestamp,  # type: ignore[union-attr]
                                             result.ip_version, record, True))  # type: ignore[union-attr]
                else:
                    accepted.append(result)  # type: ignore[arg-type]
        return [ValidBatch(batch.partition, batch.partitions, accepted, batch.mark,
                           batch.through, batch.read_at, bool(late), batch.replay),
                InvalidBatch(batch.partition, rejected, batch.through, batch.read_at,
                             batch.replay)]


def drop_excluded_locales(settings: Settings) -> Callable[[ValidBatch], ValidBatch]:
    """The EXCLUDED_LOCALES filter (``excluded_locale``): ``filter_logins`` with the rule
    written as one comprehension over the batch (no call per login); a step that passes
    batches on when no locale is excluded."""
    excluded = settings.excluded_locales
    if not excluded:
        return lambda batch: batch
    dropped = metrics.FILTERED.labels("excluded_locale")

    def keep(batch: ValidBatch) -> ValidBatch:
        return with_logins(
            batch, [a for a in batch.logins if a.login.locale.upper() not in excluded], dropped)

    return keep


class Enrich:
    """Valid logins -> OUTPUT_TOPIC records keyed by user_id, with ``source.*`` headers and
    their input record's Kafka timestamp."""

    def __init__(self, settings: Settings) -> None:
        self._topic = settings.output_topic
        self._from_topic = (HEADER_FROM_TOPIC, settings.input_topic.encode())

    def __call__(self, batch: ValidBatch) -> Keyed:
        if batch.replay:  # written before a restart (exactly-once): nothing to do again
            return str(batch.partition), OutBatch([], batch.through, True, batch.mark)
        processed_at = datetime.fromtimestamp(batch.read_at, UTC).isoformat(timespec="milliseconds")
        topic, encode = self._topic, ENCODER.encode
        from_topic = self._from_topic
        from_partition = (HEADER_FROM_PARTITION, b"%d" % batch.partition)
        out: list[OutRecord] = []
        append = out.append
        logins = batch.logins
        values = list(map(encode, processed_logins(logins, processed_at)))  # encoded in C
        for login, value in zip(logins, values, strict=True):
            record = login.source
            kind, written = record.timestamp()
            append((topic, login.login.user_id.encode(), value,
                    [from_topic, from_partition, (HEADER_FROM_OFFSET, b"%d" % record.offset())],
                    written if kind and written >= 0 else None))
        if out:
            metrics.PROCESSED.inc(len(out))
        return str(batch.partition), OutBatch(out, batch.through, False, batch.mark)


class DeadLetters:
    """Invalid records -> DLQ_TOPIC records: original key, value and headers, ``dlq.*``
    and ``__streams.errors.*`` context (``dataflow.deadletters``)."""

    def __init__(self, settings: Settings) -> None:
        self._topic = settings.dlq_topic

    def __call__(self, batch: InvalidBatch) -> Keyed:
        out: list[OutRecord] = []
        if batch.rejected and not batch.replay:
            failed_at = datetime.fromtimestamp(batch.read_at, UTC)
            for one in batch.rejected:
                source = one.source
                kind, written = source.timestamp()
                out.append((self._topic, source.key(), source.value(),
                            dead_letter_headers(one, failed_at),
                            written if kind and written >= 0 else None))
            for reason, n in Tally(one.reason for one in batch.rejected).items():
                metrics.DEAD_LETTERED.labels(reason).inc(n)
        return str(batch.partition), OutBatch(out, batch.through, batch.replay)


class _Tallies:
    """Counting logins per (window, value of each count field), one C call per login."""

    def __init__(self, settings: Settings) -> None:
        self.fields = settings.count_fields
        self.length = settings.window_seconds
        self.key_of = attrgetter("timestamp", *(FIELD_PATHS[f] for f in self.fields))
        self.values = [FIELD_VALUES.get(f, _same) for f in self.fields]

    def by_field(self, tally: dict[tuple[Any, ...], int]) -> dict[WindowKey, int]:
        """Counts per (timestamp, raw values) -> per (window start, field, written value)."""
        out: dict[WindowKey, int] = {}
        length, fields, values = self.length, self.fields, self.values
        for (ts, *raw), n in tally.items():
            start = ts - ts % length
            for name, value_of, value in zip(fields, values, raw, strict=True):
                key = (start, name, value_of(value))
                out[key] = out.get(key, 0) + n
        return out


class LateRecords:
    """Late logins -> LATE_TOPIC records: how many of this batch's were late, per
    (window, field, value), keyed like the count records."""

    def __init__(self, settings: Settings) -> None:
        self._tallies = _Tallies(settings)
        self._topic = settings.late_topic

    def __call__(self, batch: ValidBatch) -> Keyed:
        out: list[OutRecord] = []
        if batch.any_late and not batch.replay:
            tally = Tally(map(self._tallies.key_of, [a for a in batch.logins if a.late]))
            length = self._tallies.length
            for (start, name, value), n in self._tallies.by_field(tally).items():
                metrics.LATE.labels(name).inc(n)
                out.append(late_count_record(self._topic, start, length, name, value, n))
        return str(batch.partition), OutBatch(out, batch.through, batch.replay)


class PartialCounts:
    """Logins on time -> (shard, ShardUpdate) pairs: this batch's counts per (window, field,
    value) for the shard of each value, with the partition's watermark and state; every
    shard hears of a change of them (``Mark.announce``)."""

    def __init__(self, settings: Settings) -> None:
        self._tallies = _Tallies(settings)
        # Exactly-once: every shard hears of every batch, so each knows how far it has
        # applied every partition (what a restart must read again, dataflow.exactly_once).
        self._every_shard = settings.exactly_once

    def __call__(self, batch: ValidBatch) -> list[tuple[str, ShardUpdate]]:
        logins = batch.logins
        if batch.any_late:
            logins = [a for a in logins if not a.late]
        tally = Tally(map(self._tallies.key_of, logins))  # counted in C
        by_shard: dict[str, list[Partial]] = {}
        for (start, name, value), n in self._tallies.by_field(tally).items():
            by_shard.setdefault(shard_key(name, value), []).append((start, name, value, n))
        mark = batch.mark
        shards: Iterable[str] = SHARD_KEYS if mark.announce or self._every_shard else by_shard
        return [(shard, ShardUpdate(batch.partition, batch.partitions, mark.watermark,
                                    mark.state, tuple(by_shard.get(shard, ())), shard,
                                    batch.through, mark.newest))
                for shard in shards]

