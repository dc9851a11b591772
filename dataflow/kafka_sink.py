"""The job's Kafka sinks: every write confirmed before an offset can pass it.

Bytewax 0.21.1's ``KafkaSink`` has no delivery callback and can crash with
``BufferError`` under load. Here each worker thread has one idempotent producer
(``dataflow.kafka_writer.KafkaWriter``), shared by the two sinks of the flow:

- ``KafkaSink(..., partitions=input partitions)``: the processed records, dead
  letters and late records of each input partition, written by a sink partition
  of the same name. Bytewax places it on the worker that reads that input
  partition (same names, same placement; ``part_fn`` maps a name to itself), so no
  record crosses processes. At the end of every epoch its ``snapshot()`` confirms
  everything written and only then commits the input offset the writes cover to
  ``CONSUMER_GROUP`` (``dataflow.offsets``). Bytewax records an epoch as
  recoverable only after every snapshot of it, so neither a saved nor a committed
  offset ever passes an unconfirmed write.
- ``counts_sink``: the window shards' count records, written by one of
  ``SHARD_SINKS`` sink partitions (each takes a fixed group of shards), confirmed
  the same way at the end of every epoch in which a shard wrote.

In exactly-once mode (``PROCESSING_GUARANTEE=exactly-once``) the same two sinks
write in Kafka transactions instead (``dataflow.transactions``), one per epoch and
sink partition: an input partition's records and its offset (with its clock, in
the offset's metadata) in one transaction of the partition's own
``transactional.id``; a group of shards' count records and their state
(STATE_TOPIC, ``dataflow.changelog``) in one of the group's. Replayed batches
(``OutBatch.replay``) are not written again (``dataflow.exactly_once``).

A writer also confirms before a ``write_batch`` once ``CONFIRM_EVERY`` records wait,
and serves delivery reports after every ``write_batch``: a write that failed for good
(``dataflow.kafka_writer``) stops the job with a ``DeliveryError`` naming the topic
and the source record.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from confluent_kafka import TopicPartition

from dataflow.batches import STATE, Mark, OutBatch
from dataflow.event_time import ACTIVE
from dataflow.exactly_once import Plan, metadata
from dataflow.kafka_writer import KafkaWriter, WorkerWriters
from dataflow.offsets import OffsetCommitter
from dataflow.schemas import OutRecord
from dataflow.settings import Settings
from dataflow.shards import SHARD_KEYS, SHARD_SINK_NAMES
from dataflow.transactions import TransactionalWriter, writer

_SINK_OF_SHARD = {key: SHARD_SINK_NAMES[n % len(SHARD_SINK_NAMES)]
                  for n, key in enumerate(SHARD_KEYS)}


class _SinkPartition(StatefulSinkPartition[OutBatch, None]):
    """Writes the batches of one input partition (or one group of window shards)."""

    def __init__(self, writer: KafkaWriter, partition: int | None,
                 committer: OffsetCommitter | None) -> None:
        self._writer = writer
        self._partition = partition
        self._committer = committer
        self._through = -1
        if committer is not None:
            committer.hold()

    def write_batch(self, items: list[OutBatch]) -> None:
        writer, through = self._writer, self._through
        writer.make_room()
        for batch in items:
            if batch.records:
                writer.write(batch.records)
            if batch.through > through:
                through = batch.through
        self._through = through
        writer.check()

    def snapshot(self) -> None:
        """End of an epoch: every write confirmed, then the input offset they cover committed."""
        self._writer.confirm()
        if self._committer is not None and self._partition is not None and self._through >= 0:
            self._committer.commit(self._partition, self._through)

    def close(self) -> None:
        self._writer.close()
        if self._committer is not None:
            self._committer.release()


class _TransactionalPartition(StatefulSinkPartition[OutBatch, None]):
    """One input partition's records and offset, one transaction per epoch."""

    def __init__(self, writer: TransactionalWriter, topic: str, partition: int, first: int,
                 group: Any) -> None:
        self._writer = writer
        self._topic = topic
        self._partition = partition
        self._first = first
        self._group = group
        self._through = -1
        self._committed = -1
        self._clock: Mark | None = None

    def write_batch(self, items: list[OutBatch]) -> None:
        for batch in items:
            if batch.replay:
                continue  # committed before the restart
            self._writer.write(batch.records)
            if batch.through > self._through:
                self._through = batch.through
            if batch.clock is not None:
                self._clock = batch.clock

    def snapshot(self) -> None:
        """End of an epoch: the records and the offset after them, committed together."""
        if self._through <= self._committed and not self._writer.open:
            return
        clock = self._clock or Mark(None, ACTIVE)
        offset = TopicPartition(self._topic, self._partition, self._through,
                                metadata=metadata(self._first, clock.newest, clock.state))
        self._writer.commit([offset], self._group)
        self._committed = self._through

    def close(self) -> None:
        self._writer.close()


class _TransactionalShards(StatefulSinkPartition[OutBatch, None]):
    """A group of window shards' count records and state, one transaction per epoch; of the
    state records only the last of each key is written."""

    def __init__(self, writer: TransactionalWriter) -> None:
        self._writer = writer
        self._state: dict[bytes | None, OutRecord] = {}

    def write_batch(self, items: list[OutBatch]) -> None:
        for batch in items:
            if batch.kind == STATE:
                for record in batch.records:
                    self._state[record[1]] = record
            else:
                self._writer.write(batch.records)

    def snapshot(self) -> None:
        """End of an epoch: the count records and the state behind them, together."""
        if self._state:
            self._writer.write(list(self._state.values()))
            self._state = {}
        self._writer.commit()

    def close(self) -> None:
        self._writer.close()


class KafkaSink(FixedPartitionedSink[OutBatch, None]):
    """``(key, OutBatch)`` items, written by the sink partition ``route`` names for the key
    (the key itself by default); ``build`` makes the partition of a name.

    ``names`` gives the partition names, the same list on every worker: with the input
    partitions' names (those of ``dataflow.source.LoginSource``) each sink partition runs
    on the worker reading that input partition.
    """

    def __init__(self, names: Callable[[], list[str]],
                 build: Callable[[str], StatefulSinkPartition[OutBatch, None]],
                 route: Callable[[str], str] | None = None) -> None:
        self._names = names
        self._build = build
        self._route = route
        self._index: dict[str, int] | None = None

    def list_parts(self) -> list[str]:
        return self._names()

    def part_fn(self, item_key: str) -> int:
        """A key's partition: Bytewax indexes the names sorted as text ("10" < "2")."""
        if self._index is None:
            self._index = {name: i for i, name in enumerate(sorted(self._names()))}
        return self._index[item_key if self._route is None else self._route(item_key)]

    def build_part(self, step_id: str, for_part: str,
                   resume_state: None) -> StatefulSinkPartition[OutBatch, None]:
        return self._build(for_part)


def partition_sink(settings: Settings, names: Callable[[], list[str]], writers: WorkerWriters,
                   committer: OffsetCommitter, plan: Plan | None = None) -> KafkaSink:
    """The sink of what each input partition gives, on the worker that read it."""
    if plan is None:
        return KafkaSink(names, lambda name: _SinkPartition(writers.get(), int(name), committer))
    return KafkaSink(names, lambda name: _TransactionalPartition(
        writer(settings, f"p{name}"), settings.input_topic, int(name),
        plan.first(int(name)), committer.group_metadata()))


def counts_sink(settings: Settings, writers: WorkerWriters) -> KafkaSink:
    """The sink of the window shards' count records (and state, exactly-once)."""
    build: Callable[[str], StatefulSinkPartition[OutBatch, None]] = (
        (lambda name: _TransactionalShards(writer(settings, name))) if settings.exactly_once
        else (lambda _name: _SinkPartition(writers.get(), None, None)))
    return KafkaSink(lambda: list(SHARD_SINK_NAMES), build, _SINK_OF_SHARD.__getitem__)
