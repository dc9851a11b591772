"""A Kafka sink that never loses a write in silence.

Bytewax 0.21.1's ``KafkaSink`` has no delivery callback and can crash with
``BufferError`` under load. This one: one idempotent producer per worker, a
delivery callback that records failures, ``BufferError`` handled by polling,
and a flush at the end of every ``write_batch``, so Bytewax snapshots an epoch
only after Kafka confirmed everything written in it. Items are
``(partition, records)``: one list per source batch (or per count record).
librdkafka retries a failed send until ``DELIVERY_TIMEOUT_MS``; a write that
still fails raises ``DeliveryError`` naming the topic and the source record,
which stops the job.

A dead letter too large for a Kafka record (refused by ``produce()`` or by the
broker) is written again cut to fit, by the scheme of ``dataflow.oversize``:
one huge bad record must not stop the job. Any other record refused as too
large, and any other exception of ``produce()``, is a ``DeliveryError``.
"""

from __future__ import annotations

from collections import Counter as Tally
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaError, KafkaException, Producer

from dataflow import logs, metrics
from dataflow.deadletters import (
    HEADER_FROM_OFFSET,
    HEADER_FROM_PARTITION,
    HEADER_FROM_TOPIC,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
)
from dataflow.errors import DeliveryError, kafka_reason
from dataflow.kafka_config import producer_config
from dataflow.oversize import DEFAULT_MESSAGE_MAX_BYTES, truncate_dead_letter
from dataflow.schemas import Headers, OutRecord, SinkBatch
from dataflow.settings import Settings

log = logs.get_logger(__name__)

_MAX_REPORTED = 5
# A dead letter the broker refuses as too large is cut to half the size of the last
# try, at most this many times (1 MB -> 16 KB), before the job stops.
_MAX_HALVINGS = 6
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


def _too_large(exc: KafkaException) -> bool:
    error = exc.args[0] if exc.args else None
    return isinstance(error, KafkaError) and error.code() == KafkaError.MSG_SIZE_TOO_LARGE


def _refused(record: OutRecord, reason: str) -> str:
    topic, _, _, headers, _ = record
    return f"write to topic {topic!r}{_source_of(headers)} failed: {reason}"


class _ProducerPartition(StatelessSinkPartition[SinkBatch]):
    """One worker's producer: each batch handed to librdkafka, then confirmed."""

    def __init__(self, config: dict[str, Any], flush_timeout_s: float, dlq_topic: str) -> None:
        self._failures: list[tuple[str, Any, Any, str]] = []
        self._failed = 0
        self._flush_timeout_s = flush_timeout_s
        self._dlq_topic = dlq_topic
        self._max_bytes = int(config.get("message.max.bytes", DEFAULT_MESSAGE_MAX_BYTES))
        # Dead letters the broker refused as too large, as (key, value), and the
        # original of each dead letter written cut, by its (key, value) as written.
        self._oversized: list[tuple[Any, Any]] = []
        self._cut_from: dict[tuple[Any, Any], OutRecord] = {}
        # Only failures call back into Python; flush() returning 0 with no failure
        # recorded means every write of the batch was acknowledged.
        self._producer = Producer({**config, "on_delivery": self._on_delivery,
                                   "delivery.report.only.error": True})

    def _on_delivery(self, error: KafkaError | None, message: Any) -> None:
        if error is None:
            return
        if error.code() == KafkaError.MSG_SIZE_TOO_LARGE and message.topic() == self._dlq_topic:
            self._oversized.append((message.key(), message.value()))
            return
        self._failed += 1
        if len(self._failures) < _MAX_REPORTED:
            self._failures.append((message.topic(), message.key(), message.value(), error.str()))

    def _cut(self, original: OutRecord, limit: int) -> OutRecord:
        """The dead letter cut to ``limit`` bytes (dataflow.oversize), remembered for retries."""
        topic, key, value, headers, timestamp = original
        try:
            cut_key, cut_value, cut_headers = truncate_dead_letter(key, value, headers, limit)
        except ValueError as exc:
            raise DeliveryError(_refused(original, str(exc))) from exc
        self._cut_from[(cut_key, cut_value)] = original
        log.warning("dead_letter_truncated", topic=topic, limit_bytes=limit,
                    original_bytes=len(value or b""), source=_source_of(headers).strip(" ()"))
        return topic, cut_key, cut_value, cut_headers, timestamp

    def _produce(self, record: OutRecord) -> None:
        """produce() once the local queue has room; a dead letter too large is cut to fit."""
        while True:
            topic, key, value, headers, timestamp = record
            try:
                self._producer.produce(topic, value, key, headers=headers,  # type: ignore[arg-type]
                                       timestamp=timestamp or 0)
                return
            except BufferError:
                # Serve deliveries so the queue drains. Successful deliveries raise no event
                # (delivery.report.only.error), so poll() sleeps its whole timeout: keep it short.
                self._producer.poll(0.001)
            except KafkaException as exc:
                if (topic != self._dlq_topic or not _too_large(exc)
                        or (key, value) in self._cut_from):  # not a dead letter, or cut already
                    raise DeliveryError(_refused(record, kafka_reason(exc))) from exc
                record = self._cut(record, self._max_bytes)
            except Exception as exc:  # any other refusal: one line, not a traceback
                reason = f"{type(exc).__name__}: {exc}"
                raise DeliveryError(_refused(record, reason)) from exc

    def _retry_oversized(self, items: list[OutRecord]) -> None:
        """Write again, each time cut to half the size, the dead letters the broker refused."""
        limit = self._max_bytes
        for _ in range(_MAX_HALVINGS):
            if not self._oversized:
                return
            limit //= 2
            refused, self._oversized = self._oversized, []
            written = {(r[1], r[2]): r for r in items if r[0] == self._dlq_topic}
            for key_value in refused:
                original = self._cut_from.get(key_value) or written[key_value]
                self._produce(self._cut(original, limit))
            self._producer.flush(self._flush_timeout_s)
        for key, value in self._oversized:
            self._failed += 1
            if len(self._failures) < _MAX_REPORTED:
                self._failures.append((self._dlq_topic, key, value,
                                       f"Broker: Message size too large, even cut to {limit} "
                                       "bytes"))

    def write_batch(self, batches: list[SinkBatch]) -> None:
        """Hand every record to librdkafka, then wait until Kafka acknowledged all of them;
        raise ``DeliveryError`` naming what failed otherwise."""
        produce = self._producer.produce
        items: list[OutRecord] = []
        for _partition, records in batches:
            for record in records:
                topic, key, value, headers, timestamp = record
                # produce(topic, value, key, partition, callback, on_delivery, timestamp,
                # headers), positionally: 1.27 against 1.67 us per call with keywords.
                try:
                    produce(topic, value, key, -1, None, None,
                            timestamp or 0, headers)  # type: ignore[arg-type]
                except Exception:  # BufferError or a refusal: handled off the hot path
                    self._produce(record)
            items += records
        self._producer.poll(0)
        remaining = self._producer.flush(self._flush_timeout_s)
        if self._oversized:
            self._retry_oversized(items)
            remaining = self._producer.flush(self._flush_timeout_s)
        if self._failed or remaining:
            # Cut dead letters are found by what was written, with their original's headers.
            cut = [(o[0], k, v, o[3], o[4]) for (k, v), o in self._cut_from.items()]
            msg = (f"{self._failed + remaining} of {len(items)} writes failed, stopping so "
                   f"nothing is lost: {describe_failures(self._failures, items + cut)}")
            if remaining:
                msg += f"; {remaining} not confirmed within {self._flush_timeout_s:.0f} s"
            raise DeliveryError(msg)
        self._cut_from.clear()
        for topic, n in Tally(record[0] for record in items).items():
            metrics.PRODUCED.labels(topic).inc(n)

    def close(self) -> None:
        self._producer.flush(self._flush_timeout_s)


class ConfirmedKafkaSink(DynamicSink[SinkBatch]):
    """Writes ``(partition, [(topic, key, value, headers, timestamp), ...])`` items, one
    list per batch; each worker its own producer."""

    def __init__(self, settings: Settings) -> None:
        self._config = producer_config(settings)
        self._flush_timeout_s = settings.delivery_timeout_ms / 1000 + 10
        self._dlq_topic = settings.dlq_topic

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ProducerPartition:
        return _ProducerPartition(self._config, self._flush_timeout_s, self._dlq_topic)
