"""Routing partial window counts to the window shards; what a shard is told and keeps.

Window counts are spread over ``SHARDS`` shards by a stable hash of (field,
value), so the counting of one value always happens in one place, on whichever
worker Bytewax routes the shard's key to. After each batch an input partition
sends each shard that has counts from it one ``ShardUpdate``: its partial counts
with its watermark and state; a change of its watermark's window or of its state
(idle, finished) goes to every shard (``dataflow.counting``).
"""

from __future__ import annotations

import zlib

import msgspec

from dataflow.event_time import NO_TIME

# It is part of the recovery state's layout: changing it orphans saved windows.
SHARDS = 16
SHARD_KEYS = tuple(f"shard-{n:02d}" for n in range(SHARDS))
# The counts sink's partitions, each writing the count records of a fixed group of shards
# (shard n in group n % 4): in exactly-once mode each is one transactional producer, so 4
# rather than 16.
SHARD_SINK_NAMES = tuple(f"shards-{n}" for n in range(4))

# A partial count: (window_start, field, value, count).
Partial = tuple[int, str, str, int]
WindowKey = tuple[int, str, str]  # (window_start, field, value)


def shard_key(field: str, value: str) -> str:
    """The shard that counts one field value (stable across processes and restarts)."""
    return SHARD_KEYS[zlib.crc32(f"{field}\0{value}".encode()) % SHARDS]


class ShardUpdate(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """What one input partition tells one window shard after a batch.

    ``watermark`` is None while the partition has read no event; ``partitions`` is
    the input topic's partition count, so a shard knows whom to wait for. ``shard``,
    ``through`` (the input offset after the batch) and ``newest`` (the partition's
    clock after it) let a shard in exactly-once mode apply each batch once
    (``dataflow.windows``).
    """

    partition: int
    partitions: int
    watermark: int | None
    state: str
    counts: tuple[Partial, ...] = ()
    shard: str = ""
    through: int = -1
    newest: int = NO_TIME


class ShardState(msgspec.Struct, gc=False):
    """Everything one shard keeps: the partitions' marks and its open windows; in
    exactly-once mode also, per partition, (through, newest, state) of the last batch
    it applied."""

    partitions: int = 0
    marks: dict[int, tuple[int | None, str]] = msgspec.field(default_factory=dict)
    written_through: int | None = None
    windows: dict[int, dict[tuple[str, str], int]] = msgspec.field(default_factory=dict)
    applied: dict[int, tuple[int, int, str]] = msgspec.field(default_factory=dict)


class ShardChange(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """What changed in one shard's state in an ``on_batch`` (exactly-once): its marks and
    bookkeeping, and each window count changed (None: the window was written)."""

    shard: str
    state: ShardState  # everything but the windows
    counts: tuple[tuple[int, str, str, int | None], ...]
