"""A Kafka sink that never loses a write in silence.

Bytewax 0.21.1's ``KafkaSink`` has no delivery callback and can crash with
``BufferError`` under load. This one: one idempotent producer per worker, a
delivery callback that records failures, ``BufferError`` handled by polling,
and a flush at the end of every batch, so Bytewax snapshots an epoch only
after Kafka confirmed everything written in it. librdkafka retries a failed
send until ``DELIVERY_TIMEOUT_MS``; a write that still fails raises
``DeliveryError`` naming the topic and the source record, which stops the job.
"""

from __future__ import annotations

from collections import Counter as Tally
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaError, Producer

from dataflow import metrics
from dataflow.deadletters import (
    HEADER_FROM_OFFSET,
    HEADER_FROM_PARTITION,
    HEADER_FROM_TOPIC,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
)
from dataflow.errors import DeliveryError
from dataflow.kafka_config import producer_config
from dataflow.schemas import Headers, OutRecord
from dataflow.settings import Settings

_MAX_REPORTED = 5
_SOURCE_HEADER_SETS = (
    (HEADER_FROM_TOPIC, HEADER_FROM_PARTITION, HEADER_FROM_OFFSET),
    (HEADER_SOURCE_TOPIC, HEADER_SOURCE_PARTITION, HEADER_SOURCE_OFFSET),
)
_SOURCE_HEADERS = frozenset(name for names in _SOURCE_HEADER_SETS for name in names)


def _source_of(headers: Headers | None) -> str:
    found = {name: value.decode(errors="replace") for name, value in headers or ()
             if name in _SOURCE_HEADERS}
    for topic, partition, offset in _SOURCE_HEADER_SETS:
        if offset in found:
            return (f" (source {found.get(topic, '?')} partition {found.get(partition, '?')} "
                    f"offset {found[offset]})")
    return ""


def describe_failures(failures: list[tuple[str, Any, Any, str]], batch: list[OutRecord]) -> str:
    """One clause per failed write: topic, error, and the source record it came from.

    Delivery reports carry no headers, so the failed record is looked up in the
    batch by topic, key and value (only on failure: nothing on the hot path).
    """
    headers_of = {(t, k, v): h for t, k, v, h, _ in batch}
    return "; ".join(
        f"write to topic {topic!r}{_source_of(headers_of.get((topic, key, value)))} "
        f"failed: {error}"
        for topic, key, value, error in failures)


class _ProducerPartition(StatelessSinkPartition[OutRecord]):
    def __init__(self, config: dict[str, Any], flush_timeout_s: float) -> None:
        self._failures: list[tuple[str, Any, Any, str]] = []
        self._failed = 0
        self._flush_timeout_s = flush_timeout_s
        # Only failures call back into Python; flush() returning 0 with no failure
        # recorded means every write of the batch was acknowledged.
        self._producer = Producer({**config, "on_delivery": self._on_delivery,
                                   "delivery.report.only.error": True})

    def _on_delivery(self, error: KafkaError | None, message: Any) -> None:
        if error is not None:
            self._failed += 1
            if len(self._failures) < _MAX_REPORTED:
                self._failures.append((message.topic(), message.key(), message.value(),
                                       error.str()))

    def _produce_waiting(self, record: OutRecord) -> None:
        """Produce once the local queue has room (BufferError means it is full)."""
        topic, key, value, headers, timestamp = record
        while True:
            # Serve deliveries so the queue drains. Successful deliveries raise no event
            # (delivery.report.only.error), so poll() sleeps its whole timeout: keep it short.
            self._producer.poll(0.001)
            try:
                self._producer.produce(topic, value, key, headers=headers,  # type: ignore[arg-type]
                                       timestamp=timestamp or 0)
                return
            except BufferError:
                continue

    def write_batch(self, items: list[OutRecord]) -> None:
        produce = self._producer.produce
        for record in items:
            topic, key, value, headers, timestamp = record
            try:
                produce(topic, value, key, headers=headers,  # type: ignore[arg-type]
                        timestamp=timestamp or 0)
            except BufferError:
                self._produce_waiting(record)
        self._producer.poll(0)
        remaining = self._producer.flush(self._flush_timeout_s)
        if self._failed or remaining:
            msg = (f"{self._failed + remaining} of {len(items)} writes failed, stopping so "
                   f"nothing is lost: {describe_failures(self._failures, items)}")
            if remaining:
                msg += f"; {remaining} not confirmed within {self._flush_timeout_s:.0f} s"
            raise DeliveryError(msg)
        for topic, n in Tally(record[0] for record in items).items():
            metrics.PRODUCED.labels(topic).inc(n)

    def close(self) -> None:
        self._producer.flush(self._flush_timeout_s)


class ConfirmedKafkaSink(DynamicSink[OutRecord]):
    """Writes (topic, key, value, headers, timestamp) records; each worker its own producer."""

    def __init__(self, settings: Settings) -> None:
        self._config = producer_config(settings)
        self._flush_timeout_s = settings.delivery_timeout_ms / 1000 + 10

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ProducerPartition:
        return _ProducerPartition(self._config, self._flush_timeout_s)
