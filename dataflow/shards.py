"""Routing partial window counts to the window shards, and what a shard is told.

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

# It is part of the recovery state's layout: changing it orphans saved windows.
SHARDS = 16
SHARD_KEYS = tuple(f"shard-{n:02d}" for n in range(SHARDS))

# A partial count: (window_start, field, value, count).
Partial = tuple[int, str, str, int]
WindowKey = tuple[int, str, str]  # (window_start, field, value)


def shard_key(field: str, value: str) -> str:
    """The shard that counts one field value (stable across processes and restarts)."""
    return SHARD_KEYS[zlib.crc32(f"{field}\0{value}".encode()) % SHARDS]


class ShardUpdate(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """What one input partition tells one window shard after a batch.

    ``watermark`` is None while the partition has read no event; ``partitions`` is
    the input topic's partition count, so a shard knows whom to wait for.
    """

    partition: int
    partitions: int
    watermark: int | None
    state: str
    counts: tuple[Partial, ...] = ()
