"""One input partition's batch -> its records written to Kafka, and what the window shards learn.

Runs inside the source partition (``dataflow.source``), in partition order, once
per batch, in one loop over the records: parse and validate each record,
dead-letter what fails (including an event stamped more than
``MAX_FUTURE_SECONDS`` ahead of the job's clock: ``future_timestamp``), drop
excluded locales, enrich and encode the rest and hand each to the worker's
producer for OUTPUT_TOPIC, decide lateness against the partition's clock
(``dataflow.watermarks``) and reduce the events that are on time to partial
counts per (window, field, value). The batch's dead letters and late counts are
produced after the loop. The partition's ``snapshot()`` has Kafka confirm all
of it before it saves the offset (``dataflow.kafka_sink``): a failed write stops
the job before the partition's offset can move past it. The partial counts go to
the window shards, keyed by a hash of (field, value), together with the
partition's watermark; a change of the watermark's window or of the partition's
state (idle, finished) is announced to every shard.

Keeping this in the source partition is what makes it exact: the partition's
clock is saved in the same snapshot as its offset, and Kafka messages never leave
the worker that read them. Producing from the loop, while the record is at hand,
saves building an output tuple per record and a second loop in a sink.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Protocol

from dataflow import metrics
from dataflow.deadletters import HEADER_FROM_OFFSET, HEADER_FROM_PARTITION, HEADER_FROM_TOPIC
from dataflow.parsing import parse
from dataflow.schemas import ENCODER, KafkaRecord, OutRecord, ProcessedLogin, Rejected
from dataflow.settings import Settings
from dataflow.transforms import (
    DeadLetterer,
    LateWriter,
    enrich,
    iso_utc,
    source_timestamp_ms,
    version_parts,
)
from dataflow.watermarks import (
    ACTIVE,
    FINISHED,
    IDLE,
    SHARD_KEYS,
    ClockState,
    Partial,
    PartitionClock,
    ShardUpdate,
    WindowKey,
    shard_key,
)

UNKNOWN = "unknown"
Clock = Callable[[], float]

# How each countable field's value is read from the processed login ``p`` (device_type
# is lower case and locale upper case there already).
FIELD_EXPRESSIONS: dict[str, str] = {
    "device_type": "(p.device_type if p.device_type is not None else UNKNOWN)",
    "locale": "p.locale",
    "app_version": "p.app_version",
    "ip_version": "IP_VERSIONS[p.ip_version]",
    "user_id": "p.user_id",
    "device_id": "p.device_id",
}
IP_VERSIONS = {4: "4", 6: "6"}


def values_getter(fields: tuple[str, ...]) -> Callable[[ProcessedLogin], tuple[str, ...]]:
    """One function returning the values of ``fields`` as a tuple: a single call per record
    instead of one per field. Built from FIELD_EXPRESSIONS only (field names are checked
    against them: nothing from outside becomes code)."""
    body = ", ".join(FIELD_EXPRESSIONS[name] for name in fields)
    scope = {"UNKNOWN": UNKNOWN, "IP_VERSIONS": IP_VERSIONS}
    exec(f"def values(p):\n    return ({body},)\n", scope)  # fixed expressions
    return scope["values"]  # type: ignore[return-value]


class Writer(Protocol):
    """What the batch step needs of the worker's producer (``dataflow.kafka_sink.KafkaWriter``;
    tests give a list-backed one)."""

    produce: Callable[..., None]  # confluent_kafka.Producer.produce, called positionally

    def produce_record(self, record: OutRecord) -> None: ...
    def after_batch(self, written: list[OutRecord], rebuild: Callable[[], list[OutRecord]],
                    produced: int, topic: str) -> None: ...


def future_rejection(record: KafkaRecord, ts: int, now: float, limit: int) -> Rejected:
    ahead = ts - now
    stamp = datetime.fromtimestamp(ts, UTC).isoformat()
    return Rejected(record, "future_timestamp",
                    f"timestamp {ts} ({stamp}) is {ahead:.0f} s ahead of the job's clock, more "
                    f"than MAX_FUTURE_SECONDS={limit} - at `$.timestamp`")


class PartitionProcessor:
    """The per-batch work and the event-time state of one input partition."""

    def __init__(self, settings: Settings, partition: int, partitions: int, writer: Writer,
                 saved: ClockState | None = None, now: Clock = time.time) -> None:
        self.clock = PartitionClock.restore(settings.allowed_lateness_seconds, saved)
        self._partition = partition
        self._partitions = partitions
        self._topic = settings.output_topic
        self._writer = writer
        # A batch comes from one partition: its two constant headers are built once.
        self._from = ((HEADER_FROM_TOPIC, settings.input_topic.encode()),
                      (HEADER_FROM_PARTITION, b"%d" % partition))
        self._dead_letters = DeadLetterer(settings)
        self._late = LateWriter(settings)
        self._window = settings.window_seconds
        self._fields = settings.count_fields
        self._values = values_getter(settings.count_fields)
        self._excluded = settings.excluded_locales
        self._max_future = settings.max_future_seconds
        self._now = now
        self._announced: tuple[int | None, str] | None = None

    def process(self, records: list[KafkaRecord]) -> list[tuple[str, ShardUpdate]]:
        """A batch in partition order, handed to the writer -> [(shard, ShardUpdate), ...].
        ``dataflow.transforms.enrich`` is inlined in the loop: the call alone cost 0.7 us per
        record (dataflow.bench.hotpath); a unit test checks that both agree."""
        clock, length, values, excluded = self.clock, self._window, self._values, self._excluded
        if clock.state == IDLE:
            clock.state = ACTIVE  # an idle partition takes part again from its next record
        now = self._now()
        stamp = datetime.fromtimestamp(now, UTC)
        processed_at = stamp.isoformat(timespec="milliseconds")
        future_limit = int(now) + self._max_future
        newest = clock.newest
        horizon = newest - clock.lateness
        writer = self._writer
        produce, topic = writer.produce, self._topic
        encode, processed = ENCODER.encode, ProcessedLogin
        from_topic, from_partition = self._from
        rejected: list[Rejected] = []
        counts: dict[tuple[int, tuple[str, ...]], int] = {}
        late: dict[tuple[int, tuple[str, ...]], int] = {}
        filtered = produced = 0
        for record in records:
            result = parse(record)
            if type(result) is Rejected:
                rejected.append(result)
                continue
            ts = result.timestamp  # type: ignore[union-attr]  # Accepted
            if ts > future_limit:
                rejected.append(future_rejection(record, ts, now, self._max_future))
                continue
            login = result.login  # type: ignore[union-attr]
            locale = login.locale.upper()
            if locale in excluded:
                filtered += 1
                continue
            major, minor, patch = version_parts(login.app_version)
            device_type = login.device_type
            p = processed(login.user_id, login.app_version, major, minor, patch,
                          device_type.lower() if device_type is not None else None,
                          login.device_id, login.ip, result.ip_version,  # type: ignore[union-attr]
                          locale, ts, iso_utc(ts), processed_at)
            kind, written = record.timestamp()
            key, value = login.user_id.encode(), encode(p)
            headers = [from_topic, from_partition,
                       (HEADER_FROM_OFFSET, b"%d" % record.offset())]  # type: ignore[str-format]
            written = written if kind and written >= 0 else 0
            try:
                produce(topic, value, key, -1, None, None, written, headers)
            except Exception:  # BufferError or a refusal: handled off the hot path
                writer.produce_record((topic, key, value, headers, written or None))
            produced += 1
            tally = counts
            if ts < horizon:
                tally = late
            elif ts > newest:
                newest = ts
                horizon = ts - clock.lateness
            window_key = (ts - ts % length, values(p))
            tally[window_key] = tally.get(window_key, 0) + 1
        clock.newest = newest
        extra: list[OutRecord] = []
        if rejected:
            extra += self._dead_letters.records(rejected, stamp)
        if late:
            extra += self._late.records(self._by_field(late))
        for one in extra:
            writer.produce_record(one)
        writer.after_batch(extra, lambda: self._rebuild(records, processed_at), produced, topic)
        if produced:
            metrics.PROCESSED.inc(produced)
        if filtered:
            metrics.FILTERED.labels("excluded_locale").inc(filtered)
        return self._updates(self._by_field(counts))

    def _rebuild(self, records: list[KafkaRecord], processed_at: str) -> list[OutRecord]:
        """The OUTPUT_TOPIC records a batch gave (and a few it did not): only to name the
        source record of a failed write, since delivery reports carry no headers."""
        out: list[OutRecord] = []
        from_topic, from_partition = self._from
        for record in records:
            result = parse(record)
            if type(result) is Rejected:
                continue
            p = enrich(result, processed_at)  # type: ignore[arg-type]  # Accepted
            out.append((self._topic, p.user_id.encode(), ENCODER.encode(p),
                        [from_topic, from_partition,
                         (HEADER_FROM_OFFSET, b"%d" % record.offset())],  # type: ignore[str-format]
                        source_timestamp_ms(record)))
        return out

    def _by_field(self, tally: dict[tuple[int, tuple[str, ...]], int]) -> dict[WindowKey, int]:
        """Counts per (window, values of all fields) -> per (window, field, value)."""
        out: dict[WindowKey, int] = {}
        for (start, values), n in tally.items():
            for name, value in zip(self._fields, values, strict=True):
                key = (start, name, value)
                out[key] = out.get(key, 0) + n
        return out

    def set_idle(self) -> list[tuple[str, ShardUpdate]]:
        """The partition is caught up and quiet: stop holding windows back."""
        self.clock.state = IDLE
        return self._updates({})

    def set_finished(self) -> list[tuple[str, ShardUpdate]]:
        """A STOP_AT_END run has read the partition to its end."""
        self.clock.state = FINISHED
        return self._updates({})

    def announce(self) -> list[tuple[str, ShardUpdate]]:
        """Tell every shard about this partition (at start, so they wait for it)."""
        self._announced = None
        return self._updates({})

    def snapshot(self) -> ClockState:
        return self.clock.snapshot()

    def _updates(self, counts: dict[WindowKey, int]) -> list[tuple[str, ShardUpdate]]:
        """Partial counts to their shards; every shard hears of a new watermark window or state."""
        by_shard: dict[str, list[Partial]] = {}
        for (start, name, value), n in counts.items():
            by_shard.setdefault(shard_key(name, value), []).append((start, name, value, n))
        watermark, state = self.clock.watermark, self.clock.state
        mark = (None if watermark is None else watermark // self._window, state)
        if mark != self._announced:
            self._announced = mark
            shards: Iterable[str] = SHARD_KEYS
        else:
            shards = by_shard
        return [(shard, ShardUpdate(self._partition, self._partitions, watermark, state,
                                    tuple(by_shard.get(shard, ()))))
                for shard in shards]
