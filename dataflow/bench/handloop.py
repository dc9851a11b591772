"""The hand-written loop: the job's pipeline as one plain confluent-kafka loop, no Bytewax.

Run as ``python -m dataflow.bench.handloop`` with the job's environment (topics,
EXCLUDED_LOCALES, COUNT_FIELDS, WINDOW_SECONDS, SOURCE_BATCH_SIZE); prints one
JSON line. It is the reference a data engineer would write without a framework,
as fast as we can make it while producing what the job produces:

- consume the input in batches (``consume(SOURCE_BATCH_SIZE, 0.1)``) with the
  job's consumer settings, from the start to the end offsets seen at start-up;
- ``dataflow.parsing.parse`` (the typed msgspec decoder and the same reason
  codes); a rejected record goes to DLQ_TOPIC with its key, value and headers
  and the same ``dlq.*`` headers (``dead_letter_headers``);
- drop excluded locales; enrich with ``dataflow.transforms.enrich`` and encode with msgspec;
  write to OUTPUT_TOPIC keyed by user_id with the ``source.*`` headers (the
  topic and partition headers built once, not per record);
- count logins per (window, field, value) for COUNT_FIELDS in a dict, and write
  one record per window to COUNTS_TOPIC at the end (the job's key and JSON shape);
- the job's producer settings, error-only delivery reports, one flush at the end.

It applies the job's garbage-collector tuning, so the two differ by their
pipelines, not by the collector. It keeps no lateness: it reads a finite topic
and counts all of it, so it writes nothing to LATE_TOPIC.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from dataflow import metrics
from dataflow.deadletters import (
    HEADER_FROM_OFFSET,
    HEADER_FROM_PARTITION,
    HEADER_FROM_TOPIC,
    dead_letter_headers,
)
from dataflow.errors import PipelineError
from dataflow.kafka_config import consumer_config, producer_config
from dataflow.parsing import parse
from dataflow.schemas import ENCODER, ProcessedLogin, Rejected
from dataflow.settings import Settings
from dataflow.transforms import enrich, iso_utc

GC_THRESHOLDS = (500_000, 20, 100)  # the job's: dataflow.entrypoint.tune_garbage_collector
UNKNOWN = "unknown"  # the job's count value for a login without device_type
Message = Any  # confluent_kafka.Message


def count_key(fields: Sequence[str]) -> Callable[[ProcessedLogin], tuple[Any, ...]]:
    """One C call per record: (timestamp, *COUNT_FIELDS values) of a processed login.

    The loop counts these keys, one dict update per record; ``windows`` turns
    them into per-field window counts once, at the end. The processed login
    already has device_type lower-cased and locale upper-cased, which is what
    the job counts; None and ip_version's int become text when written.
    """
    return attrgetter("timestamp", *fields)


def windows(counted: dict[tuple[Any, ...], int],
            length: int) -> dict[tuple[int, int, Any], int]:
    """Counts per (window start, field index, value) from counts per (timestamp, *values)."""
    out: dict[tuple[int, int, Any], int] = {}
    for (timestamp, *values), n in counted.items():
        start = timestamp - timestamp % length
        for index, value in enumerate(values):
            slot = (start, index, value)
            out[slot] = out.get(slot, 0) + n
    return out


def count_text(value: Any) -> str:
    """A counted value as the job writes it: None is "unknown", numbers become text."""
    return UNKNOWN if value is None else str(value)


def window_records(windows: dict[tuple[int, int, Any], int], fields: Sequence[str],
                   length: int) -> list[tuple[bytes, bytes, int]]:
    """(key, JSON value, timestamp ms) of every counted window, in the job's COUNTS_TOPIC shape."""
    out = []
    for (start, index, raw), count in windows.items():
        field, value, window_start = fields[index], count_text(raw), iso_utc(start)
        doc = {"window_start": window_start, "window_end": iso_utc(start + length),
               "field": field, "value": value, "count": count, "final": True}
        out.append((f"{field}:{value}@{window_start}".encode(), ENCODER.encode(doc),
                    (start + length) * 1000))
    return out


class Writer:
    """The job's producer: error-only delivery reports, BufferError waited out, counts per topic."""

    def __init__(self, settings: Settings) -> None:
        self.failed: Counter[str] = Counter()
        self._producer = Producer({**producer_config(settings),
                                   "delivery.report.only.error": True,
                                   "on_delivery": self._on_delivery})
        # Typed loosely: the stubs refuse a list of (str, bytes) headers, which is what we pass.
        self.produce: Callable[..., None] = self._producer.produce

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self.failed[message.topic()] += 1

    def produce_waiting(self, *args: Any, **kwargs: Any) -> None:
        """Produce once the local queue has room (BufferError: it is full)."""
        while True:
            self._producer.poll(0.001)  # error-only reports: poll() waits its whole timeout
            try:
                self.produce(*args, **kwargs)
                return
            except BufferError:
                continue

    def poll(self) -> None:
        self._producer.poll(0)

    def flush(self, timeout_s: float) -> int:
        return int(self._producer.flush(timeout_s))


class HandLoop:
    """The per-batch work: parse, dead-letter, filter, enrich, write, count windows."""

    def __init__(self, settings: Settings, writer: Writer) -> None:
        self.settings, self.writer = settings, writer
        self.consumed = self.processed = self.filtered = 0
        self.dead_lettered: Counter[str] = Counter()
        self.counted: dict[tuple[Any, ...], int] = {}
        self._count_key = count_key(settings.count_fields)
        self._topic_header = (HEADER_FROM_TOPIC, settings.input_topic.encode())
        self._partition_headers: dict[int, tuple[str, bytes]] = {}

    def _partition_header(self, partition: int) -> tuple[str, bytes]:
        header = (HEADER_FROM_PARTITION, b"%d" % partition)
        self._partition_headers[partition] = header
        return header

    def dead_letter(self, rejected: Rejected, msg: Message, failed_at: datetime) -> None:
        kind, ts = msg.timestamp()
        topic, headers, ts = (self.settings.dlq_topic, dead_letter_headers(rejected, failed_at),
                              ts if kind and ts >= 0 else 0)
        try:
            self.writer.produce(topic, msg.value(), msg.key(), -1, None, None, ts, headers)
        except BufferError:
            self.writer.produce_waiting(topic, msg.value(), msg.key(), headers=headers,
                                        timestamp=ts)
        self.dead_lettered[rejected.reason] += 1

    def process(self, batch: list[Message], position: dict[int, int]) -> None:
        """Everything for one consumed batch; ``position`` gets each partition's next offset."""
        failed_at = datetime.now(UTC)
        processed_at = failed_at.isoformat(timespec="milliseconds")
        out_topic, excluded = self.settings.output_topic, self.settings.excluded_locales
        produce, encode = self.writer.produce, ENCODER.encode
        count_key = self._count_key
        topic_header, partition_headers = self._topic_header, self._partition_headers
        counted = self.counted
        consumed = processed = filtered = 0
        for msg in batch:
            if msg.error() is not None:
                continue
            consumed += 1
            partition, offset = msg.partition(), msg.offset()
            position[partition] = offset + 1
            result = parse(msg)
            if isinstance(result, Rejected):
                self.dead_letter(result, msg, failed_at)
                continue
            if excluded and result.login.locale.upper() in excluded:
                filtered += 1
                continue
            record = enrich(result, processed_at)
            headers = [topic_header,
                       partition_headers.get(partition) or self._partition_header(partition),
                       (HEADER_FROM_OFFSET, b"%d" % offset)]
            kind, ts = msg.timestamp()
            data, user, ts = encode(record), record.user_id.encode(), ts if kind and ts >= 0 else 0
            try:  # positional, as the job does: cheaper than keywords
                produce(out_topic, data, user, -1, None, None, ts, headers)
            except BufferError:
                self.writer.produce_waiting(out_topic, data, user, headers=headers, timestamp=ts)
            processed += 1
            slot = count_key(record)
            counted[slot] = counted.get(slot, 0) + 1
        self.consumed += consumed
        self.processed += processed
        self.filtered += filtered
        self.writer.poll()

    def windows(self) -> dict[tuple[int, int, Any], int]:
        """Logins per (window start, index in COUNT_FIELDS, value) so far."""
        return windows(self.counted, self.settings.window_seconds)

    def write_windows(self) -> int:
        """Write every window's count to COUNTS_TOPIC; how many records that was."""
        topic = self.settings.counts_topic
        records = window_records(self.windows(), self.settings.count_fields,
                                 self.settings.window_seconds)
        for key, value, timestamp in records:
            try:
                self.writer.produce(topic, value, key, timestamp=timestamp)
            except BufferError:
                self.writer.produce_waiting(topic, value, key, timestamp=timestamp)
        return len(records)


def end_offsets(consumer: Consumer, topic: str) -> dict[int, int]:
    """Each partition's end offset now: the loop stops once it has read up to these."""
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions}


def run(settings: Settings) -> dict[str, Any]:
    """Run the pipeline over the input topic as it is now; counts, times and resources."""
    consumer = Consumer(consumer_config(settings))
    writer = Writer(settings)
    loop = HandLoop(settings, writer)
    try:
        ends = end_offsets(consumer, settings.input_topic)
        consumer.assign([TopicPartition(settings.input_topic, p, 0) for p in ends])
        position = dict.fromkeys(ends, 0)
        started = time.perf_counter()
        while any(position[p] < ends[p] for p in ends):
            batch = consumer.consume(settings.source_batch_size, 0.1)
            if batch:
                metrics.mark_first_read()
            loop.process(batch, position)
        window_count = loop.write_windows()
        unconfirmed = writer.flush(settings.delivery_timeout_ms / 1000 + 10)
        elapsed = time.perf_counter() - started
    finally:
        consumer.close()
    sent = {"out": (settings.output_topic, loop.processed),
            "dlq": (settings.dlq_topic, sum(loop.dead_lettered.values())),
            "counts": (settings.counts_topic, window_count)}
    written = {kind: n - writer.failed[topic] for kind, (topic, n) in sent.items()}
    return {"records": loop.consumed, "seconds": elapsed, "consumed": loop.consumed,
            "processed": loop.processed, "filtered": {"excluded_locale": loop.filtered},
            "dead_lettered": dict(loop.dead_lettered), "written": written,
            "failed": sum(writer.failed.values()) + unconfirmed,
            "first_read_at": metrics.first_read_at(),
            **metrics.resources()}


def main() -> int:
    try:
        settings = Settings.from_env(os.environ)
    except PipelineError as exc:
        print(f"handloop: error: {exc}", file=sys.stderr)
        return 2
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    print(json.dumps(run(settings)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
