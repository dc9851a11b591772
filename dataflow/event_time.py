"""Event time per input partition: its clock, which events are late, how far the clock may move.

The source (``dataflow.source``) keeps one ``PartitionClock`` per input partition
and stamps each batch in offset order, before any other step sees it, as Flink's
sources assign timestamps and watermarks. The rules (``docs/windows.md``):

- **Event time** is a record's ``timestamp`` field, read by a timestamp-only
  msgspec decoder. A record has a *valid* event time when that field decodes
  (epoch seconds as an integer, or a string of digits) and lies within
  ``dataflow.parsing``'s range (2000-01-01 .. 2100-01-01). Every record with a
  valid event time may move the clock, whatever the later steps do with it
  (dead-letter it for another field, filter it): a filter added to the flow never
  changes which events are late.
- **Reference time** of a record: the time it was written to Kafka (its Kafka
  timestamp), or the time the job read it, whichever is earlier (the read time
  when it has no Kafka timestamp). For live traffic both are "now"; for a backlog
  or a replay after a crash it is the original write time, so decisions do not
  depend on when the job reads.
- **Too far ahead**: an event more than ``MAX_FUTURE_SECONDS`` ahead of its
  reference time is marked ``future``: it moves nothing and the parse step
  dead-letters it (``future_timestamp``).
- **The clock** is the newest event time read, but an event moves it at most to
  its reference time plus ``CLOCK_AHEAD_TOLERANCE_SECONDS``: a device whose clock
  runs fast cannot make the events after it late. The event itself keeps its own
  time (it is counted in its own window).
- **Late**: an event older than the clock minus ``ALLOWED_LATENESS_SECONDS`` (the
  partition's **watermark**) when it is read. Decided in offset order, so the same
  on 1 or N processes, with any batch size, and across restarts: the clock is saved
  with the partition's offset.
- A partition is **finished** when a ``STOP_AT_END`` run has read it to its end,
  and **idle** when it is caught up with its log end and has had nothing new for
  ``IDLE_PARTITION_SECONDS``; either way it stops holding windows back
  (``dataflow.windows``); an idle partition takes part again with its next record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from dataflow.parsing import MAX_TIMESTAMP, MIN_TIMESTAMP
from dataflow.schemas import EpochSeconds, EpochSecondsText, KafkaRecord

ACTIVE = "active"
IDLE = "idle"
FINISHED = "finished"
NO_TIME = -(2**62)  # "no event yet": every event is newer
# How far ahead of its reference time an event may move its partition's clock. Event
# times are whole seconds (truncation alone puts an event up to 1 s "ahead"), and
# NTP-synchronised hosts differ by milliseconds: 2 s covers both with room for a second
# of skew between a producer and the job, and is small next to the default 10 s of
# allowed lateness, so an event that is wrongly ahead can make at most 2 s of the
# events after it late.
CLOCK_AHEAD_TOLERANCE_SECONDS = 2


class _Stamp(msgspec.Struct, gc=False):
    """Only the event time of a login (every other field is skipped, not decoded)."""

    timestamp: EpochSeconds | EpochSecondsText


_STAMP_DECODER = msgspec.json.Decoder(_Stamp)


@dataclass(slots=True)
class ClockState:
    """A partition's event-time state, as saved in its recovery snapshot."""

    newest: int = NO_TIME
    state: str = ACTIVE


class Stamps(msgspec.Struct, frozen=True):
    """What the clock decided for one batch: indexes of its late and future records."""

    late: frozenset[int] = frozenset()
    future: frozenset[int] = frozenset()


NO_STAMPS = Stamps()


class PartitionClock(msgspec.Struct):
    """Newest event time of one partition and what follows from it."""

    lateness: int
    max_future: int
    newest: int = NO_TIME
    state: str = ACTIVE

    @property
    def watermark(self) -> int | None:
        return None if self.newest == NO_TIME else self.newest - self.lateness

    def snapshot(self) -> ClockState:
        return ClockState(self.newest, self.state)

    @classmethod
    def restore(cls, lateness: int, max_future: int, saved: ClockState | None) -> PartitionClock:
        """A clock from its snapshot, holding windows back again: after a restart a
        partition is idle or finished only once it is seen to be so again (records may
        have arrived while the job was down)."""
        if saved is None:
            return cls(lateness, max_future)
        return cls(lateness, max_future, saved.newest, ACTIVE)

    def stamp(self, records: Sequence[KafkaRecord], read_at: float) -> Stamps:
        """Move the clock over a batch in offset order; which records are late or future."""
        if self.state == IDLE and records:
            self.state = ACTIVE  # an idle partition takes part again from its next record
        decode, lateness, max_future = _STAMP_DECODER.decode, self.lateness, self.max_future
        read_s = int(read_at)
        newest = self.newest
        horizon = newest - lateness
        late: list[int] = []
        future: list[int] = []
        for index, record in enumerate(records):
            try:
                stamped = decode(record.value())  # type: ignore[arg-type]  # None: TypeError
            except Exception:  # malformed, None (TypeError), nested too deeply
                continue  # no valid event time: it moves nothing, the parse step rejects it
            raw = stamped.timestamp
            ts: int = int(raw) if type(raw) is str else raw  # type: ignore[assignment]
            if ts < MIN_TIMESTAMP or ts > MAX_TIMESTAMP:
                continue  # the parse step rejects it: it moves nothing
            if ts < horizon:
                late.append(index)
                continue
            kind, written_ms = record.timestamp()  # reference_time(), inlined: per record
            reference = read_s if not kind or written_ms < 0 or written_ms // 1000 > read_s \
                else written_ms // 1000
            if ts > reference + max_future:
                future.append(index)
                continue
            if ts > newest:
                moved = min(ts, reference + CLOCK_AHEAD_TOLERANCE_SECONDS)
                if moved > newest:
                    newest = moved
                    horizon = moved - lateness
        self.newest = newest
        if not late and not future:
            return NO_STAMPS
        return Stamps(frozenset(late), frozenset(future))
