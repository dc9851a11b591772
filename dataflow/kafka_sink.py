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
- ``KafkaSink(..., partitions=SHARD_KEYS)``: the window shards' count records,
  confirmed the same way at the end of every epoch in which a shard wrote.

A writer also confirms once ``CONFIRM_EVERY`` records wait, and serves delivery
reports after every ``write_batch``: a write that failed for good
(``dataflow.kafka_writer``) stops the job with a ``DeliveryError`` naming the topic
and the source record.
"""

from __future__ import annotations

from collections.abc import Callable

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from dataflow.batches import OutBatch
from dataflow.kafka_writer import KafkaWriter, WorkerWriters
from dataflow.offsets import OffsetCommitter


class _SinkPartition(StatefulSinkPartition[OutBatch, None]):
    """Writes the batches of one input partition (or one window shard)."""

    def __init__(self, writer: KafkaWriter, partition: int | None,
                 committer: OffsetCommitter | None) -> None:
        self._writer = writer
        self._partition = partition
        self._committer = committer
        self._through = -1

    def write_batch(self, items: list[OutBatch]) -> None:
        writer, through = self._writer, self._through
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


class KafkaSink(FixedPartitionedSink[OutBatch, None]):
    """``(partition name, OutBatch)`` items, written by the sink partition of that name.

    ``names`` gives the partition names, the same list on every worker: with the input
    partitions' names (those of ``dataflow.source.LoginSource``) each sink partition
    runs on the worker reading that input partition, and ``committer`` commits its
    offsets; with the window shards' keys, it writes their count records.
    """

    def __init__(self, names: Callable[[], list[str]], writers: WorkerWriters,
                 committer: OffsetCommitter | None = None) -> None:
        self._names = names
        self._writers = writers
        self._committer = committer
        self._index: dict[str, int] | None = None

    def list_parts(self) -> list[str]:
        return self._names()

    def part_fn(self, item_key: str) -> int:
        """A key's own partition: Bytewax indexes the names sorted as text ("10" < "2")."""
        if self._index is None:
            self._index = {name: i for i, name in enumerate(sorted(self._names()))}
        return self._index[item_key]

    def build_part(self, step_id: str, for_part: str,
                   resume_state: None) -> _SinkPartition:
        partition = int(for_part) if self._committer is not None else None
        return _SinkPartition(self._writers.get(), partition, self._committer)
