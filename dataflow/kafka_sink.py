"""The job's Kafka writes: one producer per worker, nothing lost in silence.

Bytewax 0.21.1's ``KafkaSink`` has no delivery callback and can crash with
``BufferError`` under load. Here each worker thread has one idempotent producer
(``WorkerWriters``), a ``KafkaWriter``: a delivery callback that records
failures, ``BufferError`` handled by polling, and ``confirm()``, which waits
until Kafka acknowledged everything handed to it. Two callers share it:

- the source partitions (``dataflow.batches``) produce each batch's records
  from inside their batch loop. Their ``snapshot()`` confirms everything
  handed over before it returns the partition's offset, so a saved offset never
  covers an unconfirmed write; a writer also confirms once ``CONFIRM_EVERY``
  records wait, and serves delivery reports after every batch;
- ``ConfirmedKafkaSink``, the flow's sink for the window shards' count records,
  confirms at the end of every ``write_batch``.

librdkafka retries a failed send until ``DELIVERY_TIMEOUT_MS``; a write that
still fails raises ``DeliveryError`` naming the topic and the source record,
which stops the job (at the first batch, idle poll or confirmation after the
failure is reported).

A dead letter too large for a Kafka record (refused by ``produce()`` or by the
broker) is written again cut to fit, by the scheme of ``dataflow.oversize``:
one huge bad record must not stop the job. Any other record refused as too
large, and any other exception of ``produce()``, is a ``DeliveryError``.
"""

from __future__ import annotations

import threading
from collections import Counter as Tally
from collections.abc import Callable
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
# Records a worker's writer holds unconfirmed at most before it waits for Kafka, between
# the snapshots that confirm them: it bounds memory (librdkafka's queue, the batches kept
# to name a failed write's source). Measured on 1,000,000 records: peak RSS 128-132 MB
# against 209 MB with no bound, and no slower; 10,000 and 20,000 were no faster.
CONFIRM_EVERY = 30_000
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


class KafkaWriter:
    """One worker thread's producer: records handed to librdkafka, then confirmed.

    ``produce`` is the producer's own ``produce()``, for the batch loop's records:
    ``produce(topic, value, key, -1, None, None, timestamp_ms or 0, headers)``,
    positionally (1.27 against 1.67 us per call with keywords). A record it refuses
    goes to ``produce_record``, which waits out a full queue and cuts a dead letter
    too large.
    """

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
        # What was handed over since the last confirm(): records produced as tuples, the
        # batches' rebuilds, counts produced straight from batch loops, by topic.
        self._written: list[OutRecord] = []
        self._rebuilds: list[Callable[[], list[OutRecord]]] = []
        self._produced: dict[str, int] = {}
        # Only failures call back into Python; flush() returning 0 with no failure
        # recorded means every write handed over was acknowledged.
        self._producer = Producer({**config, "on_delivery": self._on_delivery,
                                   "delivery.report.only.error": True})
        self.produce = self._producer.produce

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

    def produce_record(self, record: OutRecord) -> None:
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
                self.produce_record(self._cut(original, limit))
            self._producer.flush(self._flush_timeout_s)
        for key, value in self._oversized:
            self._failed += 1
            if len(self._failures) < _MAX_REPORTED:
                self._failures.append((self._dlq_topic, key, value,
                                       f"Broker: Message size too large, even cut to {limit} "
                                       "bytes"))

    def write(self, records: list[OutRecord]) -> None:
        """Produce ``records`` and confirm them (with anything else not yet confirmed)."""
        produce = self.produce
        for record in records:
            topic, key, value, headers, timestamp = record
            try:
                produce(topic, value, key, -1, None, None,
                        timestamp or 0, headers)  # type: ignore[arg-type]
            except Exception:  # BufferError or a refusal: handled off the hot path
                self.produce_record(record)
        self._written += records
        self.confirm()

    def after_batch(self, written: list[OutRecord], rebuild: Callable[[], list[OutRecord]],
                    produced: int, topic: str) -> None:
        """A source batch was handed over: ``produced`` records to ``topic`` straight from its
        loop (``rebuild`` gives them back as tuples, only to name the source of a failed one)
        and ``written``, produced as tuples. Confirmed by the next ``confirm()`` (the
        partition's snapshot), or at once when CONFIRM_EVERY records are waiting for it."""
        self._written += written
        self._rebuilds.append(rebuild)
        self._produced[topic] = self._produced.get(topic, 0) + produced
        if len(self._written) + sum(self._produced.values()) >= CONFIRM_EVERY:
            self.confirm()
        else:
            self.check()

    def check(self) -> None:
        """Serve delivery reports; a failed write stops the job now, not at the next confirm."""
        self._producer.poll(0)
        if self._failed or self._oversized:
            self.confirm()

    def confirm(self) -> None:
        """Wait until Kafka acknowledged everything produced so far; raise ``DeliveryError``
        naming what failed otherwise."""
        self._producer.poll(0)
        remaining = self._producer.flush(self._flush_timeout_s)
        written = self._written
        if self._oversized:
            self._retry_oversized(written)
            remaining = self._producer.flush(self._flush_timeout_s)
        if self._failed or remaining:
            items = written + [record for rebuild in self._rebuilds for record in rebuild()]
            # Cut dead letters are found by what was written, with their original's headers.
            cut = [(o[0], k, v, o[3], o[4]) for (k, v), o in self._cut_from.items()]
            total = len(written) + sum(self._produced.values())
            msg = (f"{self._failed + remaining} of {total} writes failed, stopping so nothing "
                   f"is lost: {describe_failures(self._failures, items + cut)}")
            if remaining:
                msg += f"; {remaining} not confirmed within {self._flush_timeout_s:.0f} s"
            raise DeliveryError(msg)
        self._cut_from.clear()
        tally = Tally(record[0] for record in written)
        tally.update(self._produced)
        for topic, n in tally.items():
            metrics.PRODUCED.labels(topic).inc(n)
        self._written, self._rebuilds, self._produced = [], [], {}

    def close(self) -> None:
        """Confirm what is left when the job stops. A failure is logged, not raised: no
        snapshot covers those records, so a restart writes them again."""
        if self._failed:  # the job is stopping for it already
            return
        try:
            self.confirm()
        except DeliveryError as exc:
            log.error("writes_unconfirmed_at_stop", error=str(exc))


class WorkerWriters:
    """One ``KafkaWriter`` per worker thread, shared by its source partitions and its sink
    partition (Bytewax builds and runs a worker's partitions on the worker's thread)."""

    def __init__(self, settings: Settings) -> None:
        self._config = producer_config(settings)
        self._flush_timeout_s = settings.delivery_timeout_ms / 1000 + 10
        self._dlq_topic = settings.dlq_topic
        self._local = threading.local()

    def get(self) -> KafkaWriter:
        writer: KafkaWriter | None = getattr(self._local, "writer", None)
        if writer is None:
            writer = KafkaWriter(self._config, self._flush_timeout_s, self._dlq_topic)
            self._local.writer = writer
        return writer


class _SinkPartition(StatelessSinkPartition[SinkBatch]):
    def __init__(self, writer: KafkaWriter) -> None:
        self._writer = writer

    def write_batch(self, batches: list[SinkBatch]) -> None:
        self._writer.write([record for _key, records in batches for record in records])

    def close(self) -> None:
        self._writer.close()


class ConfirmedKafkaSink(DynamicSink[SinkBatch]):
    """Writes ``(key, [(topic, key, value, headers, timestamp), ...])`` items (the window
    shards' count records), confirmed after every batch, with the worker's writer."""

    def __init__(self, settings: Settings, writers: WorkerWriters | None = None) -> None:
        self._writers = writers or WorkerWriters(settings)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _SinkPartition:
        return _SinkPartition(self._writers.get())
