"""Kafka plumbing of the source: one consumer per input partition, assigned directly.

``PartitionReader`` reads one partition from a concrete offset and knows where
it is: its position (always a real offset, so a snapshot never saves "end"),
the end offset of a ``STOP_AT_END`` run, whether it is caught up with the log
end, and its lag (from the consumer's cached log end: no broker round trip).
It resumes from a saved offset, or without one from ``STARTING_OFFSET``
(earliest, latest, or the consumer group's committed offset). An offset that
retention has removed resumes at the oldest record still there, with a warning
and ``login_records_expired_total``. ``commit`` stores a fully written position
in ``CONSUMER_GROUP`` for lag tools and ``STARTING_OFFSET=committed``.
"""

from __future__ import annotations

from collections.abc import Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient

from dataflow import metrics
from dataflow.errors import MissingTopicError, SourceError
from dataflow.kafka_config import admin_config, consumer_config
from dataflow.logs import get_logger
from dataflow.schemas import KafkaRecord
from dataflow.settings import Settings

log = get_logger(__name__)
_FATAL_CODES = frozenset({KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_PARTITION,
                          KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError._AUTHENTICATION})
METADATA_TIMEOUT_S = 10.0


def list_partitions(settings: Settings, topic: str,
                    admin: AdminClient | None = None) -> list[int]:
    """Partition ids of a topic; MissingTopicError when it does not exist, SourceError when
    it cannot be read (Kafka unreachable, not authorised). Pass ``admin`` to reuse a client."""
    admin = admin or AdminClient(admin_config(settings))
    try:
        metadata = admin.list_topics(topic, timeout=METADATA_TIMEOUT_S)
    except Exception as exc:  # KafkaException: transport, timeout
        msg = f"cannot read metadata of topic {topic!r} from {settings.bootstrap_servers}: {exc}"
        raise SourceError(msg) from exc
    info = metadata.topics.get(topic)
    if info is None or (info.error is not None
                        and info.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
        msg = f"topic {topic!r} does not exist on {settings.bootstrap_servers}"
        raise MissingTopicError(msg)
    if info.error is not None or not info.partitions:
        reason = info.error.str() if info.error is not None else "it has no partitions"
        msg = f"topic {topic!r} on {settings.bootstrap_servers} cannot be read: {reason}"
        raise SourceError(msg)
    return sorted(info.partitions)


def describe_partitions(settings: Settings,
                        topics: Sequence[str]) -> tuple[dict[str, list[int]], list[str]]:
    """Partition ids of each topic and the topics that do not exist, from one metadata
    request; SourceError when one cannot be read (Kafka unreachable, not authorised).

    One ``describe_topics`` instead of a ``list_topics`` per topic: after its first
    request librdkafka swaps the bootstrap connection for the broker's own, and each
    later ``list_topics`` may wait 50 ms for it (reconnect.backoff.ms / 2; measured).
    """
    wanted = list(dict.fromkeys(topics))
    where = settings.bootstrap_servers
    admin = AdminClient(admin_config(settings))
    try:
        futures = admin.describe_topics(TopicCollection(wanted),
                                        request_timeout=METADATA_TIMEOUT_S)
    except Exception as exc:  # KafkaException, ValueError: a request that cannot be made
        msg = f"cannot read metadata of topic {wanted[0]!r} from {where}: {exc}"
        raise SourceError(msg) from exc
    found: dict[str, list[int]] = {}
    missing: list[str] = []
    for topic in wanted:
        try:
            found[topic] = sorted(p.id for p in futures[topic].result().partitions)
        except KafkaException as exc:
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if error is None or error.code() < 0:  # local: transport, timeout, authentication
                msg = f"cannot read metadata of topic {topic!r} from {where}: {exc}"
                raise SourceError(msg) from exc
            if error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:  # e.g. not authorised
                msg = f"topic {topic!r} on {where} cannot be read: {error.str()}"
                raise SourceError(msg) from exc
            missing.append(topic)
        else:
            if not found[topic]:
                msg = f"topic {topic!r} on {where} cannot be read: it has no partitions"
                raise SourceError(msg)
    return found, missing


class PartitionReader:
    """Reads one partition of INPUT_TOPIC in batches."""

    def __init__(self, settings: Settings, partition: int, resume: int | None) -> None:
        self._topic = settings.input_topic
        self._partition = partition
        self._tp = TopicPartition(self._topic, partition)
        self._batch_size = settings.source_batch_size
        self._label = metrics.LAG.labels(str(partition))
        self._consumer = Consumer(consumer_config(settings))
        low, high = self._watermarks()
        self.position = self._start(settings.starting_offset, resume, low, high)
        self.end = high if settings.stop_at_end else None
        self.done = self.end is not None and self.position >= self.end
        self._log_end = -1
        self._consumer.assign([TopicPartition(self._topic, partition, self.position)])

    def _watermarks(self) -> tuple[int, int]:
        try:
            low, high = self._consumer.get_watermark_offsets(self._tp, timeout=METADATA_TIMEOUT_S)
        except KafkaException as exc:
            msg = (f"cannot read the offsets of topic {self._topic!r} partition "
                   f"{self._partition}: {exc}")
            raise SourceError(msg) from exc
        return int(low), int(high)

    def _start(self, starting: str, resume: int | None, low: int, high: int) -> int:
        """A concrete offset to read from: saved, committed, earliest or latest."""
        if resume is None and starting == "committed":
            committed = self._consumer.committed([self._tp], timeout=METADATA_TIMEOUT_S)[0]
            resume = committed.offset if committed.offset >= 0 else None
        if resume is None:
            return high if starting == "latest" else low
        if resume < low:
            lost = low - resume
            log.warning("offset_expired", topic=self._topic, partition=self._partition,
                        resume_offset=resume, log_start=low, records_lost=lost,
                        hint="retention deleted these records before the job read them")
            metrics.EXPIRED.inc(lost)
            return low
        return resume

    def read(self) -> list[KafkaRecord]:
        """The next records (possibly none); marks ``done`` at the end of a finite run."""
        batch = self._consumer.consume(self._batch_size, 0)
        good: list[KafkaRecord] = [m for m in batch if m.error() is None]
        if len(good) != len(batch):
            self._handle_errors([m for m in batch if m.error() is not None])
        if good:
            self.position = good[-1].offset() + 1  # type: ignore[operator]  # set when consumed
            metrics.CONSUMED.inc(len(good))
            metrics.mark_first_read()
        elif self.end is not None:
            # Transaction markers and compacted gaps are never returned as messages, but
            # the consumer's position moves past them: without this, such a partition
            # would never reach its end offset.
            position = self._consumer.position([self._tp])[0].offset
            self.position = max(self.position, position)
        if self.end is not None and self.position >= self.end:
            self.done = True
        # The log end as of the consumer's last fetch: no broker round trip.
        self._log_end = int(self._consumer.get_watermark_offsets(self._tp, cached=True)[1])
        if self._log_end >= 0:
            self._label.set(max(0, self._log_end - self.position))
        return good

    def caught_up(self) -> bool:
        """Whether the position has reached the log end the consumer last saw."""
        return 0 <= self._log_end <= self.position

    def commit(self, offset: int, asynchronous: bool = True) -> None:
        """Store a fully written position in CONSUMER_GROUP (best effort: it is for lag
        tools and STARTING_OFFSET=committed; recovery snapshots are the truth)."""
        offsets = [TopicPartition(self._topic, self._partition, offset)]
        try:
            if asynchronous:
                self._consumer.commit(offsets=offsets, asynchronous=True)
            else:
                self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            log.warning("commit_failed", topic=self._topic, partition=self._partition,
                        offset=offset, error=str(exc))

    def _handle_errors(self, failed: list[KafkaRecord]) -> None:
        for message in failed:
            error = message.error()  # type: ignore[attr-defined]
            where = f"topic {self._topic!r} partition {self._partition} offset {self.position}"
            if error.fatal() or error.code() in _FATAL_CODES:
                msg = f"cannot consume {where}: {error.str()}"
                raise SourceError(msg)
            log.warning("consumer_error", topic=self._topic, partition=self._partition,
                        error=error.str())

    def close(self) -> None:
        self._consumer.close()
