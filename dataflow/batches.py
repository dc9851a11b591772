"""The items that flow between the job's steps: one input partition's batch at a time.

Every step of the flow (``dataflow.flow``) takes and gives whole batches, so its
per-record work is one tight loop and Bytewax moves one item per batch, not one
per record. Each batch remembers the input partition it came from and how far the
source had read (``through``: the offset after its last record), so the sink
knows which offsets its writes cover. Every step gives exactly one item for each
batch it takes, even an empty one: the sink then always learns ``through``.

- ``SourceBatch``: records as read, with the source's event-time decisions
  (``dataflow.event_time``): which are late, which are too far ahead.
- ``ValidBatch`` / ``InvalidBatch``: what the parse step split them into.
- ``OutBatch``: records ready for Kafka, keyed by the input partition for the sink.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeGuard

import msgspec
from prometheus_client import Counter

from dataflow import metrics
from dataflow.event_time import NO_TIME, Stamps
from dataflow.schemas import Accepted, KafkaRecord, OutRecord, Rejected


class Mark(msgspec.Struct, frozen=True):
    """A partition's watermark and state after a batch, and whether the shards must hear
    of it (its window or state changed since they last did); ``newest`` is its clock."""

    watermark: int | None
    state: str
    announce: bool = False
    newest: int = NO_TIME


class SourceBatch(msgspec.Struct, frozen=True):
    """Records of one input partition in offset order, as the source read and timed them."""

    partition: int
    partitions: int
    records: list[KafkaRecord]
    stamps: Stamps
    mark: Mark
    through: int
    read_at: float
    replay: bool = False


class ValidBatch(msgspec.Struct, frozen=True):
    """The logins of a batch that parsed and validated, in offset order."""

    partition: int
    partitions: int
    logins: list[Accepted]
    mark: Mark
    through: int
    read_at: float
    any_late: bool = False
    replay: bool = False


class InvalidBatch(msgspec.Struct, frozen=True):
    """The records of a batch that did not: they become dead letters."""

    partition: int
    rejected: list[Rejected]
    through: int
    read_at: float
    replay: bool = False


class OutBatch(msgspec.Struct, frozen=True):
    """Records for Kafka from one batch; ``through`` is the input offset they cover.

    ``replay``: the batch was read again after a restart in exactly-once mode and its
    outputs are committed already (it carries no records); ``clock``: the partition's
    clock after the batch, which the exactly-once sink commits with the offset."""

    records: list[OutRecord] = msgspec.field(default_factory=list)
    through: int = -1
    replay: bool = False
    clock: Mark | None = None
    kind: str = ""


# The kind of an OutBatch of window state records (STATE_TOPIC, exactly-once): the counts
# sink keeps only the last record of each key until its transaction commits.
STATE = "state"
# What the partition sink is given: (input partition as text, OutBatch).
Keyed = tuple[str, OutBatch]


def is_valid(batch: ValidBatch | InvalidBatch) -> TypeGuard[ValidBatch]:
    """The branch of the parse step's output a batch belongs to."""
    return type(batch) is ValidBatch


def filter_logins(predicate: Callable[[Accepted], bool] | None,
                  reason: str) -> Callable[[ValidBatch], ValidBatch]:
    """A batch step keeping the logins ``predicate`` accepts (all of them when it is None);
    the others are dropped on purpose and counted in ``login_records_filtered_total{reason}``.

    ``op.map("drop_blocked_ips", valid, filter_logins(not_blocked, "blocked_ip"))``
    is the whole of a new filter in ``dataflow/flow.py``.
    """
    if predicate is None:
        return lambda batch: batch
    filtered = metrics.FILTERED.labels(reason)

    def keep(batch: ValidBatch) -> ValidBatch:
        return with_logins(batch, [login for login in batch.logins if predicate(login)],
                           filtered)

    return keep


def with_logins(batch: ValidBatch, kept: list[Accepted], filtered: Counter) -> ValidBatch:
    """``batch`` with only the ``kept`` logins (the batch itself when none was dropped); the
    dropped ones counted in ``filtered``."""
    dropped = len(batch.logins) - len(kept)
    if not dropped:
        return batch
    filtered.inc(dropped)
    return ValidBatch(batch.partition, batch.partitions, kept, batch.mark, batch.through,
                      batch.read_at, batch.any_late, batch.replay)
