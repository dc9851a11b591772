"""Committing the job's input positions to CONSUMER_GROUP, for lag tools and restarts.

The recovery snapshots are the job's own record of where it is; the consumer
group is what Kafka's tools read (``kafka-consumer-groups.sh``, Kafbat UI, Burrow,
lag exporters) and what ``STARTING_OFFSET=committed`` resumes from. The partition
sink (``dataflow.kafka_sink``) commits an input partition's offset once every
write it covers is confirmed, asynchronously; at exit the last offset of every
partition is committed once more, synchronously, so a finished run's end offsets
are in the group whichever entry point ran it. One consumer per process (no
subscription: it only commits), shared by the worker threads.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from dataflow.kafka_config import consumer_config
from dataflow.logs import get_logger
from dataflow.settings import Settings

log = get_logger(__name__)


class OffsetCommitter:
    """Commits input offsets to CONSUMER_GROUP; the last of each partition again at exit."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._topic = settings.input_topic
        self._lock = threading.Lock()
        self._consumer: Consumer | None = None
        self._latest: dict[int, int] = {}
        self._acknowledged: dict[int, int] = {}  # what the broker confirmed, by partition
        self._users = 0  # sink partitions of this process that commit through it

    def _client(self) -> Consumer:
        with self._lock:
            if self._consumer is None:
                self._consumer = Consumer({**consumer_config(self._settings),
                                           "on_commit": self._on_commit})
                atexit.register(self.close)
            return self._consumer

    def _on_commit(self, error: Any, offsets: list[TopicPartition]) -> None:
        if error is None:
            for tp in offsets:
                if tp.error is None and tp.offset > self._acknowledged.get(tp.partition, -1):
                    self._acknowledged[tp.partition] = tp.offset

    def commit(self, partition: int, offset: int) -> None:
        """Commit ``offset`` (every record below it is fully written), asynchronously."""
        if self._latest.get(partition, -1) >= offset:
            return
        self._latest[partition] = offset
        try:
            client = self._client()
            client.poll(0)  # serves the results of earlier commits (_on_commit)
            client.commit(offsets=[TopicPartition(self._topic, partition, offset)],
                          asynchronous=True)
        except KafkaException as exc:
            log.warning("commit_failed", topic=self._topic, partition=partition, offset=offset,
                        error=str(exc))

    def group_metadata(self) -> Any:
        """CONSUMER_GROUP's metadata for ``send_offsets_to_transaction`` (exactly-once)."""
        return self._client().consumer_group_metadata()

    def commit_now(self, partition: int, offset: int, metadata: str) -> None:
        """Commit ``offset`` with ``metadata`` synchronously (exactly-once: where a partition
        that never committed begins, before it writes anything)."""
        self._client().commit(
            offsets=[TopicPartition(self._topic, partition, offset, metadata=metadata)],
            asynchronous=False)

    def hold(self) -> None:
        """A sink partition commits through this committer until it calls ``release``."""
        with self._lock:
            self._users += 1

    def release(self) -> None:
        """A sink partition is done (the dataflow ended): the last one closes the client, so
        a dataflow run inside a longer-lived process (``bytewax.testing.run_main``) leaves
        no consumer behind. A commit after that opens a new one."""
        with self._lock:
            self._users -= 1
            last = self._users == 0
        if last:
            self.close()

    def close(self) -> None:
        """Commit synchronously each partition's last offset the broker has not confirmed
        yet, then close (at exit)."""
        with self._lock:
            consumer, self._consumer = self._consumer, None
        if consumer is None:
            return
        with contextlib.suppress(KafkaException):
            consumer.poll(0)
        offsets = [TopicPartition(self._topic, p, o) for p, o in sorted(self._latest.items())
                   if self._acknowledged.get(p, -1) < o]
        try:
            if offsets:
                consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            with contextlib.suppress(ValueError):  # stderr may be closed at exit
                log.warning("commit_failed", topic=self._topic, error=str(exc),
                            offsets={tp.partition: tp.offset for tp in offsets})
        finally:
            consumer.close()
