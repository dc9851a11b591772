"""The job's source: each input partition read in offset order and timed; nothing else.

A ``FixedPartitionedSource`` with one partition of the job per Kafka partition
(the unit of parallelism). Each one reads a batch (``PartitionReader``), moves the
partition's event-time clock over it (``dataflow.event_time``: which records are
late, which are too far ahead) and emits it as one ``SourceBatch``. It never
writes to Kafka: every write is the sink's (``dataflow.kafka_sink``). Its
recovery snapshot is the next offset together with the partition's clock, so both
always agree. It also:

- tells the window shards of a change of its watermark's window or of its state
  (``Mark.announce``), starting with an empty batch that announces it;
- declares the partition idle once it is caught up with the log end and has had
  no record for ``IDLE_PARTITION_SECONDS``, and finished at the end of a
  ``STOP_AT_END`` run;
- emits an empty batch when its position moved without records (past transaction
  markers, aborted records or compacted gaps), so the sink commits that position;
- takes turns with the other partitions of its worker (``dataflow.turns``): at
  most about one batch's worth of records passes the steps at a time;
- opens its reader (a consumer, and the offsets from the broker) in the background
  as soon as it is built, so the first partition reads without waiting for every
  reader to open; an error opening it comes out of the first batch;
- reads again at the next 5 ms tick of the clock (``TICK``) after a batch that was
  not full, so records gather into batches and all partitions of a worker read in
  one activation (the steps run once for all of them); polls an empty partition
  after 10 ms, then less often up to every 100 ms (on a tick too), instead of
  Bytewax's every 1 ms;
- stops reading when the job is asked to stop (``dataflow.lifecycle``: Ctrl-C,
  SIGTERM, new input partitions), ending its part of the dataflow cleanly.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Collection
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Protocol

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from dataflow import lifecycle
from dataflow.batches import Mark, SourceBatch
from dataflow.event_time import ACTIVE, FINISHED, IDLE, NO_STAMPS, ClockState, PartitionClock
from dataflow.exactly_once import Plan, Resume
from dataflow.kafka_source import PartitionReader, list_partitions
from dataflow.logs import get_logger
from dataflow.schemas import KafkaRecord
from dataflow.settings import Settings
from dataflow.turns import Turns

# An empty partition is polled again after 10 ms, then less often while it stays
# empty, up to every 100 ms: a quiet partition costs little CPU, and a new record
# waits at most that long (a busy partition is polled again at once).
FIRST_EMPTY_PAUSE = timedelta(milliseconds=10)
LONGEST_EMPTY_PAUSE = timedelta(milliseconds=100)
# A read that returned less than a full batch waits for the next tick of the wall clock
# (every TICK) before the next one; an empty partition's next poll, after its pause,
# falls on a tick too. Records gather for a tick (or for as long as the steps ran)
# instead of running the whole flow for a few at a time: a job that polled again at
# once spun on ever smaller batches when the broker fell behind (a 2-core box, two job
# processes; benchmarks/README.md). And the partitions of a worker
# read in the same activation, so the steps run once for all of them. At 5,000 events/s
# on 8 partitions, against a 5 ms pause per partition: 200 flow runs a second instead of
# 614, 26% less CPU per record, p95 latency 19.5 against 22.8 ms (benchmarks/README.md,
# 2026-12-07, fourth). It adds at most TICK to the latency of a live record.
TICK = 0.005  # seconds
_NO_PAUSE = timedelta(0)  # a partial batch: the next tick
log = get_logger(__name__)
# What a partition saves: (next offset, event-time clock).
SavedPartition = tuple[int, ClockState]


def on_tick(after: float) -> float:
    """The first tick of the wall clock (a multiple of TICK, in seconds) after ``after``."""
    return (math.floor(after / TICK) + 1) * TICK


class Reader(Protocol):
    """What a partition needs of its Kafka reader (tests give a list-backed one)."""

    position: int
    done: bool

    def read(self) -> list[KafkaRecord]: ...
    def caught_up(self) -> bool: ...
    def close(self) -> None: ...


ReaderFactory = Callable[[Settings, int, "int | None"], Reader]


class _LoginPartition(StatefulSourcePartition[SourceBatch, SavedPartition]):
    def __init__(self, settings: Settings, partition: int, partitions: int,
                 clock: ClockState | None, opening: Future[Reader], resume: Resume | None,
                 turns: Turns) -> None:
        self._partition = partition
        self._name = str(partition)
        self._turns = turns  # shared with the worker's other partitions
        turns.join(self._name)
        self._waiting = False  # refused its turn: to be called again at once
        self._partitions = partitions
        self._opening = opening
        self._clock = PartitionClock.restore(settings.allowed_lateness_seconds,
                                             settings.max_future_seconds, clock)
        self._window = settings.window_seconds
        self._idle_after = settings.idle_partition_seconds
        self._batch_size = settings.source_batch_size
        self._quiet_since = time.monotonic()
        self._announced: tuple[int | None, str] | None = None  # what the shards last heard
        self._through: int | None = None  # the position the last batch carried
        self._finished = False
        self._pause: timedelta | None = None  # None: read again at once
        self._awake: datetime | None = None  # when, after a pause
        # Exactly-once: batches up to ``committed`` are read again (outputs written
        # already), and none may straddle a point where a window shard stands.
        self._committed = -1 if resume is None else resume.committed
        self._cuts = deque(() if resume is None else resume.boundaries)

    @property
    def _reader(self) -> Reader:
        """The partition's reader, opened in the background since the partition was built
        (raises what opening it raised, e.g. ``SourceError``)."""
        return self._opening.result()

    def next_batch(self) -> list[SourceBatch]:
        if self._finished or lifecycle.stop_requested():
            self._turns.leave(self._name)
            raise StopIteration
        self._awake = None
        self._waiting = not self._turns.may_read(self._name)
        if self._waiting:
            return []
        reader, clock = self._reader, self._clock
        records = [] if reader.done else reader.read()
        read_at = time.time()
        if records:
            self._turns.read(self._name, len(records))
            self._pause = None if len(records) >= self._batch_size else _NO_PAUSE
            self._quiet_since = time.monotonic()
            stamps = NO_STAMPS if self._cuts else clock.stamp(records, read_at)
        else:
            self._pause = (FIRST_EMPTY_PAUSE if self._pause is None
                           else min(self._pause * 2, LONGEST_EMPTY_PAUSE))
            stamps = NO_STAMPS
            if (clock.state == ACTIVE and reader.caught_up()
                    and time.monotonic() - self._quiet_since >= self._idle_after):
                clock.state = IDLE  # caught up and quiet: stop holding windows back
        if self._cuts and records:
            return self._cut(records, reader.position, read_at, reader.done)
        if reader.done:
            clock.state = FINISHED
            self._finished = True
        mark = self._mark()
        if not records and not mark.announce and reader.position == self._through:
            return []
        self._through = reader.position
        return [SourceBatch(self._partition, self._partitions, records, stamps, mark,
                            reader.position, read_at, reader.position <= self._committed)]

    def _cut(self, records: list[KafkaRecord], position: int, read_at: float,
             done: bool) -> list[SourceBatch]:
        """Exactly-once replay: the records as batches that end where a shard stands (a
        finished partition says so with its last one)."""
        pieces: list[tuple[list[KafkaRecord], int]] = []
        cuts, rest = self._cuts, records
        while rest and cuts:
            cut = cuts[0]
            index = next((i for i, r in enumerate(rest)
                          if r.offset() >= cut), len(rest))  # type: ignore[operator]
            if index == len(rest) and cut > position:
                break  # the next cut is further on
            if index:
                pieces.append((rest[:index], cut))
            rest = rest[index:]
            cuts.popleft()
        if rest:
            pieces.append((rest, position))
        out = []
        for index, (piece, through) in enumerate(pieces):
            stamps = self._clock.stamp(piece, read_at)
            if done and index == len(pieces) - 1:
                self._clock.state = FINISHED
                self._finished = True
            out.append(SourceBatch(self._partition, self._partitions, piece, stamps,
                                   self._mark(), through, read_at, through <= self._committed))
        self._through = position
        return out

    def _mark(self) -> Mark:
        """The watermark and state, announced to every shard when its window or it changed."""
        watermark, state = self._clock.watermark, self._clock.state
        now = (None if watermark is None else watermark // self._window, state)
        announce = now != self._announced
        self._announced = now
        return Mark(watermark, state, announce, self._clock.newest)

    def next_awake(self) -> datetime | None:
        if self._waiting:
            return datetime.now(UTC)
        if self._pause is None:
            return None
        if self._awake is None:  # the first tick after the pause, fixed until the next read
            self._awake = datetime.fromtimestamp(
                on_tick(time.time() + self._pause.total_seconds()), UTC)
        return self._awake

    def snapshot(self) -> SavedPartition:
        return (self._reader.position, self._clock.snapshot())

    def close(self) -> None:
        if self._opening.exception() is None:  # waits for it; a failed one has nothing to close
            self._reader.close()


class LoginSource(FixedPartitionedSource[SourceBatch, SavedPartition]):
    """Every partition of INPUT_TOPIC, each read and timed on its own.

    ``new_partitions`` are partitions the topic gained since the recovery state was
    written: without saved state they start at their beginning, whatever
    STARTING_OFFSET says (their records arrived while the job ran, or was down).
    In exactly-once mode ``plan`` says where each partition resumes
    (``dataflow.exactly_once``), Bytewax's saved state is not used, and ``opened``
    is told where a partition that never committed begins (the offset it reads first).
    """

    def __init__(self, settings: Settings, make_reader: ReaderFactory = PartitionReader,
                 partitions: list[int] | None = None,
                 new_partitions: Collection[int] = (), plan: Plan | None = None,
                 opened: Callable[[int, int], None] | None = None) -> None:
        self._settings = settings
        self._make_reader = make_reader
        self._partitions = partitions
        self._new = frozenset(new_partitions)
        self._plan = plan
        self._opened = opened
        # Each partition's reader (a consumer, and its offsets from the broker: about 10 ms
        # each) is opened in the background as the partition is built, so the first
        # partition reads without waiting for all of them to open.
        self._opener = ThreadPoolExecutor(max_workers=8, thread_name_prefix="open-partition")
        # Bytewax builds and runs a worker's partitions on the worker's thread.
        self._worker = threading.local()

    def list_parts(self) -> list[str]:
        """The input partitions, read once: the sink lists the very same names."""
        if self._partitions is None:
            self._partitions = list_partitions(self._settings, self._settings.input_topic)
        return [str(p) for p in self._partitions]

    def build_part(self, step_id: str, for_part: str,
                   resume_state: SavedPartition | None) -> _LoginPartition:
        lifecycle.mark_running()
        partition = int(for_part)
        count = max(int(p) for p in self.list_parts()) + 1
        resume = None
        if self._plan is not None:  # exactly-once: where Kafka's transactions left it
            resume = self._plan.resumes.get(partition)
            resume_state = None if resume is None else (resume.start, resume.clock)
        offset, clock = (None, None) if resume_state is None else resume_state
        settings = self._settings
        if resume_state is None and partition in self._new:
            settings = dataclasses.replace(settings, starting_offset="earliest")
            log.info("new_partition_from_its_start", topic=settings.input_topic,
                     partition=partition)
        opening = self._opener.submit(self._open, settings, partition, offset,
                                      resume is None)
        turns = getattr(self._worker, "turns", None)
        if turns is None:
            turns = self._worker.turns = Turns(self._settings.source_batch_size)
        return _LoginPartition(self._settings, partition, count, clock, opening, resume, turns)

    def _open(self, settings: Settings, partition: int, offset: int | None,
              fresh: bool) -> Reader:
        reader = self._make_reader(settings, partition, offset)
        if self._plan is not None and fresh:
            self._plan.firsts[partition] = reader.position
            if self._opened is not None:
                self._opened(partition, reader.position)
        return reader
