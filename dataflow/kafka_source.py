"""A Kafka source that emits confluent-kafka messages as they are.

Bytewax's stock ``KafkaSource`` wraps every record in a frozen dataclass; this
one passes the C-level ``Message`` objects through (the flow reads key, value,
headers, topic, partition, offset from them) and adds ``STOP_AT_END``: each
partition stops at the end offset it saw when it started. One consumer per
partition, assigned directly: no consumer group, nothing committed; the
position lives in Bytewax's recovery snapshots.
"""

from __future__ import annotations

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, TopicPartition
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


def list_partitions(settings: Settings, topic: str) -> list[int]:
    """Partition ids of a topic; MissingTopicError when it does not exist, SourceError when
    it cannot be read (Kafka unreachable, not authorised)."""
    admin = AdminClient(admin_config(settings))
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


class _Partition(StatefulSourcePartition[KafkaRecord, int]):
    def __init__(self, settings: Settings, partition: int, resume: int | None) -> None:
        self._topic = settings.input_topic
        self._partition = partition
        self._batch_size = settings.source_batch_size
        default = OFFSET_BEGINNING if settings.starting_offset == "earliest" else OFFSET_END
        self._next = default if resume is None else resume
        self._consumer = Consumer(consumer_config(settings))
        self._end: int | None = None
        if settings.stop_at_end:
            tp = TopicPartition(self._topic, partition)
            low, high = self._consumer.get_watermark_offsets(tp, timeout=METADATA_TIMEOUT_S)
            self._end = high
            if self._next < 0:  # a logical offset: make it concrete to compare with the end
                self._next = low if self._next == OFFSET_BEGINNING else high
        self._done = self._end is not None and self._next >= self._end
        self._consumer.assign([TopicPartition(self._topic, partition, self._next)])

    def next_batch(self) -> list[KafkaRecord]:
        if self._done:
            raise StopIteration
        batch = self._consumer.consume(self._batch_size, 0)
        good: list[KafkaRecord] = [m for m in batch if m.error() is None]
        if len(good) != len(batch):
            self._handle_errors([m for m in batch if m.error() is not None])
        if good:
            self._next = good[-1].offset() + 1  # type: ignore[operator]  # set on consumed records
            metrics.CONSUMED.inc(len(good))
        elif self._end is not None:
            # Transaction markers and compacted gaps are never returned as messages, but
            # the consumer's position moves past them: without this, such a partition
            # would never reach its end offset.
            position = self._consumer.position([TopicPartition(self._topic, self._partition)])
            self._next = max(self._next, position[0].offset)
        if self._end is not None and self._next >= self._end:
            self._done = True
        return good

    def _handle_errors(self, failed: list[KafkaRecord]) -> None:
        for message in failed:
            error = message.error()  # type: ignore[attr-defined]
            where = f"topic {self._topic!r} partition {self._partition} offset {self._next}"
            if error.fatal() or error.code() in _FATAL_CODES:
                msg = f"cannot consume {where}: {error.str()}"
                raise SourceError(msg)
            log.warning("consumer_error", topic=self._topic, partition=self._partition,
                        error=error.str())

    def snapshot(self) -> int:
        return self._next

    def close(self) -> None:
        self._consumer.close()


class LoginSource(FixedPartitionedSource[KafkaRecord, int]):
    """Every partition of INPUT_TOPIC; the unit of parallelism is one partition."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def list_parts(self) -> list[str]:
        return [str(p) for p in list_partitions(self._settings, self._settings.input_topic)]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _Partition:
        return _Partition(self._settings, int(for_part), resume_state)
