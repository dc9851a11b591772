"""Event-time tumbling windows, counted in shards: when a window is written, what is late.

Windows are ``[start, start + WINDOW_SECONDS)``, aligned to the epoch. The source
decides lateness for each input partition's events (``dataflow.event_time``); the
``partial_counts`` step sends the counts of the events on time, with the
partition's watermark, to the shard of each (field, value) (``dataflow.steps``,
``dataflow.shards``). Each shard then applies:

- **The job's watermark** is the minimum of the watermarks of the partitions that
  hold windows back: every partition that is neither finished (``STOP_AT_END``
  read it to its end) nor idle (caught up and quiet for ``IDLE_PARTITION_SECONDS``).
  A partition that has read no event yet holds everything back. When no
  partition holds, it is the highest watermark any partition has reached.
- **A window is written once the job's watermark reaches its end**, with
  ``"final": true``, and its state is dropped. The point up to which windows are
  written only moves forward.
- **Late**: an event older than its own partition's watermark is late (decided
  in the partition, so it is deterministic). It is not counted, it goes to
  ``LATE_TOPIC``, and it is still processed. The one other way to be late: a
  partition that was idle or finished comes back with events for a window that
  was already written meanwhile; those go to ``LATE_TOPIC`` too. This depends on
  when the partition went idle, so it is the one case where the counts depend on
  timing, not only on the topic's contents.
- **End of a finite run**: every window still open is written with
  ``"final": false`` and stays in the recovery state; a later run that completes
  it writes the complete count with ``"final": true``. A run stopped before the
  end of its input (Ctrl-C, SIGTERM, new input partitions: ``dataflow.lifecycle``)
  writes nothing provisional: its windows stay open in the recovery state.

So, for a given input topic, the final counts and late counts are a deterministic
function of its contents, the same on 1 or N processes, with any batch size and
across restarts with recovery (barring the idle case above). Count records are
keyed ``field:value@window_start``: a later record for a window supersedes an
earlier one, also in a compacted topic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
from bytewax.operators import StatefulBatchLogic

from dataflow import changelog, lifecycle, metrics
from dataflow.batches import STATE, OutBatch
from dataflow.event_time import ACTIVE
from dataflow.schemas import ENCODER, WindowCount
from dataflow.settings import Settings
from dataflow.shards import ShardChange, ShardState, ShardUpdate
from dataflow.transforms import count_key, iso_utc, late_count_record


class WindowTotal(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A window's count for one field value, as a shard writes it."""

    start: int
    field: str
    value: str
    count: int
    final: bool


class ShardLate(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """Events of a returning idle or finished partition for a window already written."""

    start: int
    field: str
    value: str
    count: int



ShardOut = WindowTotal | ShardLate | ShardChange


def job_watermark(partitions: int, marks: dict[int, tuple[int | None, str]]) -> int | None:
    """Minimum over the partitions that hold windows back; see the module docstring."""
    holding = [marks.get(p, (None, ACTIVE)) for p in range(partitions)]
    holding_marks = [wm for wm, state in holding if state == ACTIVE]
    if holding_marks:
        return None if None in holding_marks else min(holding_marks)  # type: ignore[type-var]
    known = [wm for wm, _ in marks.values() if wm is not None]
    return max(known) if known else None


class ShardWindows:
    """The open windows of one shard (pure logic, tested without Bytewax).

    In exactly-once mode each partition's batches are applied once, whatever is read
    again after a restart: a batch whose ``through`` is not past the last one applied
    from its partition adds no counts (its marks still count when it is the same
    batch's idle or finished news), and what changed is kept for ``change()``.
    """

    def __init__(self, length: int, state: ShardState | None = None,
                 exactly_once: bool = False) -> None:
        self.length = length
        self.state = state or ShardState()
        self.exactly_once = exactly_once
        self._changed: set[tuple[int, str, str]] = set()

    def apply(self, updates: Iterable[ShardUpdate]) -> list[ShardOut]:
        """Add partial counts, record watermarks, write the windows the watermark passed."""
        s, length = self.state, self.length
        late: list[ShardOut] = []
        for update in updates:
            counts = update.counts
            if self.exactly_once:
                seen = s.applied.get(update.partition)
                if seen is not None and update.through <= seen[0]:
                    if update.through < seen[0]:
                        continue  # applied before a restart: read again, applied once
                    counts = ()
                s.applied[update.partition] = (update.through, update.newest, update.state)
            through = s.written_through
            for start, field, value, n in counts:
                if through is not None and start + length <= through:
                    late.append(ShardLate(start, field, value, n))
                    continue
                window = s.windows.setdefault(start, {})
                key = (field, value)
                window[key] = window.get(key, 0) + n
                if self.exactly_once:
                    self._changed.add((start, field, value))
            s.marks[update.partition] = (update.watermark, update.state)
            s.partitions = max(s.partitions, update.partitions)
        mark = job_watermark(s.partitions, s.marks)
        if mark is not None and (s.written_through is None or mark > s.written_through):
            s.written_through = mark
        return [*late, *self._write(final=True)]

    def provisional(self) -> list[ShardOut]:
        """Every open window, written as not final (end of a finite run); all are kept."""
        return self._write(final=False)

    def _write(self, final: bool) -> list[ShardOut]:
        s, length = self.state, self.length
        out: list[ShardOut] = []
        for start in sorted(s.windows):
            if final and (s.written_through is None or start + length > s.written_through):
                break
            window = s.windows.pop(start) if final else s.windows[start]
            out.extend(WindowTotal(start, field, value, n, final)
                       for (field, value), n in sorted(window.items()))
            if final and self.exactly_once:
                self._changed.update((start, field, value) for field, value in window)
        return out

    def change(self, shard: str) -> ShardChange:
        """What changed since the last call: the bookkeeping, and each changed count
        (None for a window written and dropped)."""
        s = self.state
        counts = tuple((start, field, value, s.windows.get(start, {}).get((field, value)))
                       for start, field, value in sorted(self._changed))
        self._changed = set()
        return ShardChange(shard, ShardState(s.partitions, dict(s.marks), s.written_through,
                                             {}, dict(s.applied)), counts)

    def snapshot(self) -> ShardState:
        s = self.state
        return ShardState(s.partitions, dict(s.marks), s.written_through,
                          {start: dict(counts) for start, counts in s.windows.items()},
                          dict(s.applied))


class ShardLogic(StatefulBatchLogic[ShardUpdate, ShardOut, ShardState]):
    """Bytewax glue: one shard's windows; no timers (updates drive everything).

    In exactly-once mode (``restored`` given) the shard's state is the one its last
    committed transaction left in STATE_TOPIC, not Bytewax's snapshot: it is taken
    with the first batch (which names the shard), and every batch ends with the
    shard's ``ShardChange`` for the counts sink to write in the same transaction.
    """

    def __init__(self, length: int, resume: ShardState | None,
                 restored: Mapping[str, ShardState] | None = None) -> None:
        self._restored = restored
        self._shard: str | None = None
        self.windows = ShardWindows(length, None if restored is not None else resume,
                                    exactly_once=restored is not None)
        metrics.track_open_windows(self.windows)  # the oldest open window (dataflow.progress)

    def on_batch(self, values: list[ShardUpdate]) -> tuple[Iterable[ShardOut], bool]:
        if self._restored is None:
            return self.windows.apply(values), StatefulBatchLogic.RETAIN
        if self._shard is None:
            self._shard = values[0].shard
            self.windows.state = self._restored.get(self._shard) or ShardState()
        out = self.windows.apply(values)
        out.append(self.windows.change(self._shard))
        return out, StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[ShardOut], bool]:
        if lifecycle.stop_requested():  # stopped before the end: the windows stay open
            return [], StatefulBatchLogic.RETAIN
        return self.windows.provisional(), StatefulBatchLogic.RETAIN

    def snapshot(self) -> ShardState:
        return self.windows.snapshot()


class CountRecords:
    """Shard output -> a record for COUNTS_TOPIC (or LATE_TOPIC for returning partitions),
    keyed by its shard for the counts sink.

    Their Kafka timestamp is the time of writing (None): event times can be far in the
    past (retention would delete them at once) or ahead (brokers refuse > 1 h).
    """

    def __init__(self, settings: Settings) -> None:
        self._counts = settings.counts_topic
        self._late = settings.late_topic
        self._length = settings.window_seconds
        self._state_topic = settings.window_state_topic

    def __call__(self, item: tuple[str, ShardOut]) -> tuple[str, OutBatch]:
        shard, out = item
        if type(out) is ShardChange:
            return shard, OutBatch(changelog.records(self._state_topic, out), kind=STATE)
        if type(out) is WindowTotal:
            metrics.WINDOWS_WRITTEN.labels("true" if out.final else "false").inc()
            record = WindowCount(iso_utc(out.start), iso_utc(out.start + self._length),
                                 out.field, out.value, out.count, out.final)
            return shard, OutBatch([(self._counts, count_key(out.field, out.value, out.start),
                                     ENCODER.encode(record), None, None)])
        assert type(out) is ShardLate
        metrics.LATE.labels(out.field).inc(out.count)
        return shard, OutBatch([late_count_record(self._late, out.start, self._length,
                                                  out.field, out.value, out.count)])


def shard_logic(settings: Settings, restored: Mapping[str, ShardState] | None = None) -> Any:
    """The builder ``op.stateful_batch`` calls with each shard's saved state; in
    exactly-once mode ``restored`` holds the states read from STATE_TOPIC."""
    length = settings.window_seconds
    return lambda resume: ShardLogic(length, resume, restored)
