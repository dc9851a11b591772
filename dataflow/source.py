"""The job's source: each input partition read, processed and timed in partition order.

A ``FixedPartitionedSource`` with one partition of the job per Kafka partition
(the unit of parallelism). Each one reads a batch (``PartitionReader``), runs it
through its ``PartitionProcessor`` (parse, dead letters, filter, enrich,
lateness, partial counts), which hands the batch's records to the worker's
producer, and emits ``(shard, ShardUpdate)`` pairs for the window shards. Its
recovery snapshot is the next offset together with the partition's event-time
clock, so both always agree. ``snapshot()`` first has Kafka confirm every record
handed over, so a saved offset never passes an unwritten record. It also:

- declares the partition idle once it is caught up with the log end and has had
  no record for ``IDLE_PARTITION_SECONDS``, and finished at the end of a
  ``STOP_AT_END`` run;
- opens its reader (a consumer, and the offsets from the broker) in the background
  as soon as it is built, so the first partition reads without waiting for every
  reader to open; an error opening it comes out of the first batch;
- polls an empty partition after 10 ms, then less often up to every 100 ms, instead
  of Bytewax's every 1 ms;
- commits the offset of the previous snapshot to ``CONSUMER_GROUP`` once the next
  batch is asked for: that snapshot had every write before it confirmed, so a
  committed offset never passes an unwritten record. The
  end of a finite run is committed by ``commit_finished`` once the run succeeded
  (``dataflow.worker`` calls it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import Consumer, KafkaException, TopicPartition

from dataflow.batches import PartitionProcessor, Writer
from dataflow.kafka_config import consumer_config
from dataflow.kafka_sink import WorkerWriters
from dataflow.kafka_source import PartitionReader, list_partitions
from dataflow.logs import get_logger
from dataflow.schemas import KafkaRecord
from dataflow.settings import Settings
from dataflow.watermarks import ACTIVE, ClockState

# An empty partition is polled again after 10 ms, then less often while it stays
# empty, up to every 100 ms: a quiet partition costs little CPU, and a new record
# waits at most that long (a busy partition is polled again at once).
FIRST_EMPTY_PAUSE = timedelta(milliseconds=10)
LONGEST_EMPTY_PAUSE = timedelta(milliseconds=100)
log = get_logger(__name__)
# Partitions that a finite run read to their end in this process: committed only
# once the whole run has succeeded (their last outputs are written by then).
_FINISHED: dict[int, tuple[Settings, int]] = {}
# What a partition saves: (next offset, event-time clock). Older snapshots saved the offset.
SavedPartition = tuple[int, ClockState]


class Reader(Protocol):
    """What a partition needs of its Kafka reader (tests give a list-backed one)."""

    position: int
    done: bool

    def read(self) -> list[KafkaRecord]: ...
    def caught_up(self) -> bool: ...
    def commit(self, offset: int) -> None: ...
    def close(self) -> None: ...


ReaderFactory = Callable[[Settings, int, "int | None"], Reader]


class PartitionWriter(Writer, Protocol):
    """The batch step's writer, plus what the partition itself calls on it."""

    def check(self) -> None: ...
    def confirm(self) -> None: ...
    def close(self) -> None: ...


class Writers(Protocol):
    """Gives the calling worker's producer (``dataflow.kafka_sink.WorkerWriters``)."""

    def get(self) -> PartitionWriter: ...


class _LoginPartition(StatefulSourcePartition[Any, SavedPartition]):
    def __init__(self, settings: Settings, partition: int, partitions: int,
                 clock: ClockState | None, opening: Future[Reader],
                 writer: PartitionWriter) -> None:
        self._settings = settings
        self._partition = partition
        self._opening = opening
        self._writer = writer
        self._processor = PartitionProcessor(settings, partition, partitions, writer, clock)
        self._idle_after = settings.idle_partition_seconds
        self._quiet_since = time.monotonic()
        self._announced = False
        self._finished = False
        self._pause: timedelta | None = None
        self._to_commit: int | None = None

    @property
    def _reader(self) -> Reader:
        """The partition's reader, opened in the background since the partition was built
        (raises what opening it raised, e.g. ``SourceError``)."""
        return self._opening.result()

    def next_batch(self) -> list[Any]:
        if self._finished:
            raise StopIteration
        if self._to_commit is not None:
            self._reader.commit(self._to_commit)
            self._to_commit = None
        out: list[Any] = []
        if not self._announced:
            out += self._processor.announce()
            self._announced = True
        records = [] if self._reader.done else self._reader.read()
        if records:
            self._pause = None
        else:
            self._pause = (FIRST_EMPTY_PAUSE if self._pause is None
                           else min(self._pause * 2, LONGEST_EMPTY_PAUSE))
        if records:
            self._quiet_since = time.monotonic()
            out += self._processor.process(records)
        else:
            self._writer.check()  # a failed write stops the job while the input is quiet too
            if (self._processor.clock.state == ACTIVE and self._reader.caught_up()
                    and time.monotonic() - self._quiet_since >= self._idle_after):
                out += self._processor.set_idle()
        if self._reader.done:
            self._writer.confirm()
            out += self._processor.set_finished()
            self._finished = True
            _FINISHED[self._partition] = (self._settings, self._reader.position)
        return out

    def next_awake(self) -> datetime | None:
        return None if self._pause is None else datetime.now(UTC) + self._pause

    def snapshot(self) -> SavedPartition:
        self._writer.confirm()  # the offset saved covers only writes Kafka acknowledged
        self._to_commit = self._reader.position
        return (self._reader.position, self._processor.snapshot())

    def close(self) -> None:
        self._writer.close()
        if self._opening.exception() is None:  # waits for it; a failed one has nothing to close
            self._reader.close()


def commit_finished() -> int:
    """Commit the end offsets of the partitions this process finished; how many it did.

    Call only after the run succeeded: everything read is written by then. One consumer
    and one synchronous commit for all of them."""
    if not _FINISHED:
        return 0
    settings = next(iter(_FINISHED.values()))[0]
    offsets = [TopicPartition(settings.input_topic, partition, position)
               for partition, (_, position) in sorted(_FINISHED.items())]
    _FINISHED.clear()
    consumer = Consumer(consumer_config(settings))
    try:
        consumer.commit(offsets=offsets, asynchronous=False)
    except KafkaException as exc:
        log.warning("commit_failed", topic=settings.input_topic, error=str(exc))
        return 0
    finally:
        consumer.close()
    return len(offsets)


class LoginSource(FixedPartitionedSource[Any, SavedPartition]):
    """Every partition of INPUT_TOPIC, each read and timed on its own."""

    def __init__(self, settings: Settings, make_reader: ReaderFactory = PartitionReader,
                 partitions: list[int] | None = None, writers: Writers | None = None) -> None:
        self._settings = settings
        self._make_reader = make_reader
        self._partitions = partitions
        self._writers: Writers = writers or WorkerWriters(settings)
        # Each partition's reader (a consumer, and its offsets from the broker: about 10 ms
        # each) is opened in the background as the partition is built, so the first
        # partition reads without waiting for all of them to open.
        self._opener = ThreadPoolExecutor(max_workers=8, thread_name_prefix="open-partition")

    def list_parts(self) -> list[str]:
        if self._partitions is None:
            self._partitions = list_partitions(self._settings, self._settings.input_topic)
        return [str(p) for p in self._partitions]

    def build_part(self, step_id: str, for_part: str,
                   resume_state: SavedPartition | int | None) -> _LoginPartition:
        count = max(int(p) for p in self.list_parts()) + 1
        offset, clock = ((resume_state, None) if resume_state is None
                         or isinstance(resume_state, int) else resume_state)
        opening = self._opener.submit(self._make_reader, self._settings, int(for_part), offset)
        return _LoginPartition(self._settings, int(for_part), count, clock, opening,
                               self._writers.get())
