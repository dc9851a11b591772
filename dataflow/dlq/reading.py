"""Read the dead-letter topic from its start to the end offsets taken at start.

The reader assigns every partition itself (no group membership, no
rebalance), stops by itself at the end offsets it saw when it started, and
never commits: no consumer group's offsets move. Only with ``commit_group``
does it start at that group's committed offsets and, when asked, commit the
position after the last record it handed out (the end offset when it read
everything).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any, TextIO

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from dataflow.dlq import handled
from dataflow.dlq.records import DeadLetter, DlqError
from dataflow.errors import kafka_reason
from dataflow.kafka_config import consumer_config
from dataflow.settings import Settings

REVIEW_GROUP = "dataflow-dlq-review"  # required by the client; never committed
METADATA_TIMEOUT_SECONDS = 15.0
STALL_SECONDS = 60.0
PROGRESS_SECONDS = 2.0
BATCH = 1000


def _reader_config(settings: Settings, commit_group: str | None) -> dict[str, Any]:
    return {
        **consumer_config(settings),
        "group.id": commit_group or REVIEW_GROUP,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
    }


class DlqReader:
    """Context manager over one read of a topic; iterate for DeadLetter records."""

    def __init__(self, settings: Settings, topic: str, commit_group: str | None = None,
                 progress_out: TextIO | None = None) -> None:
        self.topic = topic
        self._commit_group = commit_group
        self._progress_out = progress_out or sys.stderr
        self._consumer = Consumer(_reader_config(settings, commit_group))
        self._bounds: dict[int, tuple[int, int]] = {}
        self._positions: dict[int, int] = {}
        self._held: dict[int, list[int]] = {}
        self._earlier: dict[int, handled.Ranges] = {}
        self.read = 0
        self.already_handled = 0
        self.unrecorded = 0

    def __enter__(self) -> DlqReader:
        try:
            self._bounds = self._find_bounds()
        except BaseException:
            self._consumer.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._consumer.close()

    @property
    def total(self) -> int:
        """Records between the start and end offsets of every partition."""
        return sum(high - start for start, high in self._bounds.values())

    @property
    def partitions(self) -> int:
        """Partitions of the topic that hold something to read."""
        return len(self._bounds)

    def _partition_ids(self) -> list[int]:
        try:
            metadata = self._consumer.list_topics(timeout=METADATA_TIMEOUT_SECONDS)
        except KafkaException as exc:
            msg = f"cannot read the list of topics: {kafka_reason(exc)}"
            raise DlqError(msg) from exc
        if self.topic not in metadata.topics:
            msg = f"topic {self.topic!r} does not exist"
            raise DlqError(msg)
        return sorted(metadata.topics[self.topic].partitions)

    def _starts(self, ids: list[int]) -> dict[int, int]:
        if self._commit_group is None:
            return {}
        wanted = [TopicPartition(self.topic, p) for p in ids]
        committed = self._consumer.committed(wanted, timeout=METADATA_TIMEOUT_SECONDS)
        self._earlier = {tp.partition: handled.decode(tp.metadata) for tp in committed
                         if tp.offset >= 0}
        return {tp.partition: tp.offset for tp in committed if tp.offset >= 0}

    def _find_bounds(self) -> dict[int, tuple[int, int]]:
        ids = self._partition_ids()
        starts = self._starts(ids)
        bounds: dict[int, tuple[int, int]] = {}
        for p in ids:
            low, high = self._consumer.get_watermark_offsets(
                TopicPartition(self.topic, p), timeout=METADATA_TIMEOUT_SECONDS)
            start = max(low, starts.get(p, low))
            if high > start:
                bounds[p] = (start, high)
        self._consumer.assign([TopicPartition(self.topic, p, start)
                               for p, (start, _) in bounds.items()])
        self._positions = {p: start for p, (start, _) in bounds.items()}
        return bounds

    def __iter__(self) -> Iterator[DeadLetter]:
        pending = {p: high for p, (_, high) in self._bounds.items()}
        last_seen = last_report = time.monotonic()
        while pending:
            messages = self._consumer.consume(BATCH, timeout=0.5)
            now = time.monotonic()
            if messages:
                last_seen = now
            elif now - last_seen > STALL_SECONDS:
                msg = (f"no progress reading {self.topic!r} partitions {sorted(pending)} "
                       f"for {STALL_SECONDS:.0f}s")
                raise DlqError(msg)
            for message in messages:
                record = self._accept(message, pending)
                if record is not None:
                    self.read += 1
                    yield record
            if now - last_report >= PROGRESS_SECONDS:
                last_report = now
                self._report()

    def _accept(self, message: Any, pending: dict[int, int]) -> DeadLetter | None:
        partition = message.partition()
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                if pending.pop(partition, None) is not None:
                    self._positions[partition] = self._bounds[partition][1]
                return None
            msg = f"reading {self.topic!r} partition {partition}: {error}"
            raise DlqError(msg)
        end = pending.get(partition)
        if end is None or message.offset() >= end:
            return None  # written after the start, or a partition already finished
        if message.offset() >= end - 1:
            pending.pop(partition)
        self._positions[partition] = message.offset() + 1
        if handled.contains(self._earlier.get(partition, []), message.offset()):
            self.already_handled += 1  # the commit group handled it in an earlier run
            return None
        return DeadLetter.from_message(message)

    def _report(self) -> None:
        share = self.read / self.total if self.total else 1.0
        print(f"dlq: read {self.read:,} of {self.total:,} records from {self.topic} "
              f"({share:.0%})", file=self._progress_out, flush=True)

    def hold(self, record: DeadLetter) -> None:
        """Mark a record read but not handled: no commit moves past it."""
        self._held.setdefault(record.partition, []).append(record.offset)

    def commit(self) -> None:
        """Commit, per partition, the first record not handled, and the handled ones after it.

        Nothing happens without a commit group. See ``dataflow.dlq.handled``.
        """
        if self._commit_group is None:
            return
        offsets = []
        for p, position in self._positions.items():
            at, ranges = handled.commit_point(position, self._held.get(p, []),
                                              self._earlier.get(p, []))
            metadata, left_out = handled.encode(ranges)
            if left_out:
                self.unrecorded += left_out
            offsets.append(TopicPartition(self.topic, p, at, metadata=metadata))
        if offsets:
            self._consumer.commit(offsets=offsets, asynchronous=False)
