"""One input partition's batch -> what the job writes, and what the window shards learn.

Runs inside the source partition (``dataflow.source``), in partition order, once
per batch: parse and validate each record, dead-letter what fails (including an
event stamped more than ``MAX_FUTURE_SECONDS`` ahead of the job's clock:
``future_timestamp``), drop excluded locales, decide lateness against the
partition's clock (``dataflow.watermarks``) and reduce the events that are on
time to partial counts per (window, field, value). The partial counts go to the
window shards, keyed by a hash of (field, value), together with the partition's
watermark; a change of the watermark's window or of the partition's state (idle,
finished) is announced to every shard.

Keeping this in the source partition is what makes it exact: the partition's
clock is saved in the same snapshot as its offset, and Kafka messages never leave
the worker that read them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from dataflow import metrics
from dataflow.parsing import parse
from dataflow.schemas import Accepted, KafkaRecord, Rejected
from dataflow.settings import Settings
from dataflow.watermarks import (
    ACTIVE,
    FINISHED,
    IDLE,
    SHARD_KEYS,
    ClockState,
    Partial,
    PartitionClock,
    ShardUpdate,
    shard_key,
)

UNKNOWN = "unknown"
Clock = Callable[[], float]
WindowKey = tuple[int, str, str]  # (window_start, field, value)

# How each countable field's value is read from an Accepted login ``a``.
FIELD_EXPRESSIONS: dict[str, str] = {
    "device_type": "(a.login.device_type.lower() if a.login.device_type is not None "
                   "else UNKNOWN)",
    "locale": "a.login.locale.upper()",
    "app_version": "a.login.app_version",
    "ip_version": "IP_VERSIONS[a.ip_version]",
    "user_id": "a.login.user_id",
    "device_id": "a.login.device_id",
}
IP_VERSIONS = {4: "4", 6: "6"}


def values_getter(fields: tuple[str, ...]) -> Callable[[Accepted], tuple[str, ...]]:
    """One function returning the values of ``fields`` as a tuple: a single call per record
    instead of one per field. Built from FIELD_EXPRESSIONS only (field names are checked
    against them: nothing from outside becomes code)."""
    body = ", ".join(FIELD_EXPRESSIONS[name] for name in fields)
    scope = {"UNKNOWN": UNKNOWN, "IP_VERSIONS": IP_VERSIONS}
    exec(f"def values(a):\n    return ({body},)\n", scope)  # fixed expressions
    return scope["values"]  # type: ignore[return-value]


class SourceBatch:
    """What one batch of one partition gives the write path (never leaves its worker)."""

    __slots__ = ("accepted", "late", "partition", "rejected")

    def __init__(self, partition: str, accepted: list[Accepted], rejected: list[Rejected],
                 late: dict[WindowKey, int]) -> None:
        self.partition = partition  # the input partition's name: the sink partition to use
        self.accepted = accepted  # valid and not excluded, late or not: all are processed
        self.rejected = rejected  # to the dead-letter topic
        self.late = late  # late events per (window_start, field, value)


def is_source_batch(item: Any) -> bool:
    """Branch predicate: a SourceBatch, not a (shard, ShardUpdate) pair."""
    return type(item) is SourceBatch


def future_rejection(record: KafkaRecord, ts: int, now: float, limit: int) -> Rejected:
    ahead = ts - now
    stamp = datetime.fromtimestamp(ts, UTC).isoformat()
    return Rejected(record, "future_timestamp",
                    f"timestamp {ts} ({stamp}) is {ahead:.0f} s ahead of the job's clock, more "
                    f"than MAX_FUTURE_SECONDS={limit} - at `$.timestamp`")


class PartitionProcessor:
    """The per-batch work and the event-time state of one input partition."""

    def __init__(self, settings: Settings, partition: int, partitions: int,
                 saved: ClockState | None = None, now: Clock = time.time) -> None:
        self.clock = PartitionClock.restore(settings.allowed_lateness_seconds, saved)
        self._partition = partition
        self._name = str(partition)
        self._partitions = partitions
        self._window = settings.window_seconds
        self._fields = settings.count_fields
        self._values = values_getter(settings.count_fields)
        self._excluded = settings.excluded_locales
        self._max_future = settings.max_future_seconds
        self._now = now
        self._announced: tuple[int | None, str] | None = None

    def process(self, records: Iterable[KafkaRecord]) -> list[Any]:
        """A batch in partition order -> [SourceBatch, (shard, ShardUpdate), ...]."""
        clock, length, values, excluded = self.clock, self._window, self._values, self._excluded
        if clock.state == IDLE:
            clock.state = ACTIVE  # an idle partition takes part again from its next record
        now = self._now()
        future_limit = int(now) + self._max_future
        newest = clock.newest
        horizon = newest - clock.lateness
        accepted: list[Accepted] = []
        rejected: list[Rejected] = []
        counts: dict[tuple[int, tuple[str, ...]], int] = {}
        late: dict[tuple[int, tuple[str, ...]], int] = {}
        filtered = 0
        for record in records:
            result = parse(record)
            if type(result) is Rejected:
                rejected.append(result)
                continue
            ts = result.timestamp  # type: ignore[union-attr]  # Accepted
            if ts > future_limit:
                rejected.append(future_rejection(record, ts, now, self._max_future))
                continue
            if excluded and result.login.locale.upper() in excluded:  # type: ignore[union-attr]
                filtered += 1
                continue
            accepted.append(result)  # type: ignore[arg-type]
            tally = counts
            if ts < horizon:
                tally = late
            elif ts > newest:
                newest = ts
                horizon = ts - clock.lateness
            key = (ts - ts % length, values(result))  # type: ignore[arg-type]
            tally[key] = tally.get(key, 0) + 1
        clock.newest = newest
        if filtered:
            metrics.FILTERED.labels("excluded_locale").inc(filtered)
        return [SourceBatch(self._name, accepted, rejected, self._by_field(late)),
                *self._updates(self._by_field(counts))]

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
