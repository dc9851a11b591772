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

from collections.abc import Iterable
from typing import Any

import msgspec
from bytewax.operators import StatefulBatchLogic

from dataflow import lifecycle, metrics
from dataflow.batches import OutBatch
from dataflow.event_time import ACTIVE
from dataflow.schemas import ENCODER, WindowCount
from dataflow.settings import Settings
from dataflow.shards import ShardUpdate
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


ShardOut = WindowTotal | ShardLate


class ShardState(msgspec.Struct, gc=False):
    """Everything one shard keeps: the partitions' marks and its open windows."""

    partitions: int = 0
    marks: dict[int, tuple[int | None, str]] = msgspec.field(default_factory=dict)
    written_through: int | None = None
    windows: dict[int, dict[tuple[str, str], int]] = msgspec.field(default_factory=dict)


def job_watermark(partitions: int, marks: dict[int, tuple[int | None, str]]) -> int | None:
    """Minimum over the partitions that hold windows back; see the module docstring."""
    holding = [marks.get(p, (None, ACTIVE)) for p in range(partitions)]
    holding_marks = [wm for wm, state in holding if state == ACTIVE]
    if holding_marks:
        return None if None in holding_marks else min(holding_marks)  # type: ignore[type-var]
    known = [wm for wm, _ in marks.values() if wm is not None]
    return max(known) if known else None


class ShardWindows:
    """The open windows of one shard (pure logic, tested without Bytewax)."""

    def __init__(self, length: int, state: ShardState | None = None) -> None:
        self.length = length
        self.state = state or ShardState()

    def apply(self, updates: Iterable[ShardUpdate]) -> list[ShardOut]:
        """Add partial counts, record watermarks, write the windows the watermark passed."""
        s, length = self.state, self.length
        late: list[ShardOut] = []
        for update in updates:
            through = s.written_through
            for start, field, value, n in update.counts:
                if through is not None and start + length <= through:
                    late.append(ShardLate(start, field, value, n))
                    continue
                window = s.windows.setdefault(start, {})
                key = (field, value)
                window[key] = window.get(key, 0) + n
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
        return out

    def snapshot(self) -> ShardState:
        s = self.state
        return ShardState(s.partitions, dict(s.marks), s.written_through,
                          {start: dict(counts) for start, counts in s.windows.items()})


class ShardLogic(StatefulBatchLogic[ShardUpdate, ShardOut, ShardState]):
    """Bytewax glue: one shard's windows; no timers (updates drive everything)."""

    def __init__(self, length: int, resume: ShardState | None) -> None:
        self.windows = ShardWindows(length, resume)
        metrics.track_open_windows(self.windows)  # the oldest open window (dataflow.progress)

    def on_batch(self, values: list[ShardUpdate]) -> tuple[Iterable[ShardOut], bool]:
        return self.windows.apply(values), StatefulBatchLogic.RETAIN

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

    def __call__(self, item: tuple[str, ShardOut]) -> tuple[str, OutBatch]:
        shard, out = item
        if type(out) is WindowTotal:
            metrics.WINDOWS_WRITTEN.labels("true" if out.final else "false").inc()
            record = WindowCount(iso_utc(out.start), iso_utc(out.start + self._length),
                                 out.field, out.value, out.count, out.final)
            return shard, OutBatch([(self._counts, count_key(out.field, out.value, out.start),
                                     ENCODER.encode(record), None, None)])
        metrics.LATE.labels(out.field).inc(out.count)
        return shard, OutBatch([late_count_record(self._late, out.start, self._length,
                                                  out.field, out.value, out.count)])


def shard_logic(settings: Settings) -> Any:
    """The builder ``op.stateful_batch`` calls with each shard's saved state."""
    length = settings.window_seconds
    return lambda resume: ShardLogic(length, resume)

