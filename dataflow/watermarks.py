"""Event time per input partition: newest event, watermark, lateness, idle and finished.

This is the job's notion of time, in the spirit of Flink's per-partition watermarks:

- A partition's **watermark** is the newest event time read from it (valid, not
  excluded, not dead-lettered events) minus ``ALLOWED_LATENESS_SECONDS``. It only
  moves forward, it is part of the recovery state, and it never moves with the
  wall clock: a job that is down, or a partition with no traffic, keeps its time.
- An event is **late** when it is older than its own partition's watermark, i.e.
  more than ``ALLOWED_LATENESS_SECONDS`` older than the newest event already read
  from that partition. The decision is made in partition order, so it is the same
  on 1 or N processes, with any ``SOURCE_BATCH_SIZE``, and across restarts.
- A partition is **finished** when a ``STOP_AT_END`` run has read it to its end,
  and **idle** when it is caught up with its log end and nothing new has come for
  ``IDLE_PARTITION_SECONDS``. Either way it stops holding windows back (see
  ``dataflow.windows``); an idle partition takes part again from its next record.

Partitions tell the window shards about their watermark and state with
``ShardUpdate`` messages, which also carry their partial counts.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import msgspec

ACTIVE = "active"
IDLE = "idle"
FINISHED = "finished"
# Window counts are spread over this many shards by a stable hash of (field, value).
# It is part of the recovery state's layout: changing it orphans saved windows.
SHARDS = 16
SHARD_KEYS = tuple(f"shard-{n:02d}" for n in range(SHARDS))
NO_TIME = -(2**62)  # "no event yet": every event is newer


def shard_key(field: str, value: str) -> str:
    """The shard that counts one field value (stable across processes and restarts)."""
    return SHARD_KEYS[zlib.crc32(f"{field}\0{value}".encode()) % SHARDS]


# A partial count: (window_start, field, value, count).
Partial = tuple[int, str, str, int]
WindowKey = tuple[int, str, str]  # (window_start, field, value)


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


@dataclass(slots=True)
class ClockState:
    """A partition's event-time state, as saved in the recovery snapshot."""

    newest: int = NO_TIME
    state: str = ACTIVE


@dataclass(slots=True)
class PartitionClock:
    """Newest event time of one partition and what follows from it."""

    lateness: int
    newest: int = NO_TIME
    state: str = ACTIVE

    @property
    def watermark(self) -> int | None:
        return None if self.newest == NO_TIME else self.newest - self.lateness

    def snapshot(self) -> ClockState:
        return ClockState(self.newest, self.state)

    @classmethod
    def restore(cls, lateness: int, saved: ClockState | None) -> PartitionClock:
        """A clock from its snapshot, holding windows back again: after a restart a
        partition is idle or finished only once it is seen to be so again (records may
        have arrived while the job was down)."""
        if saved is None:
            return cls(lateness)
        return cls(lateness, saved.newest, ACTIVE)
