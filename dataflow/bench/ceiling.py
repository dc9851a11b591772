"""The ceiling: a plain confluent-kafka loop, consume a topic and produce every record unchanged.

Run as ``python -m dataflow.bench.ceiling INPUT OUTPUT`` (its own process, so its
CPU time and peak memory are its own); prints one JSON line. The consumer
keeps librdkafka's defaults but for ``fetch.queue.backoff.ms``: by default a
partition whose prefetch queue passes ``queued.min.messages`` stops fetching
for a whole second, which made a plain loop 3-4 times slower than it can be
(146k against 520k-598k records/s, measured). The producer is the job's
(idempotent, acks=all) and is flushed once at the end.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from dataflow.kafka_config import producer_config
from dataflow.logs import kafka_logger
from dataflow.metrics import resources
from dataflow.settings import Settings


def copy_topic(settings: Settings, source: str, target: str) -> dict[str, Any]:
    """Copy every record of ``source`` present at start to ``target``; count and time it."""
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "bench",
                         "enable.auto.commit": False, "fetch.queue.backoff.ms": 10,
                         "logger": kafka_logger()})
    failures: list[KafkaError] = []
    producer = Producer({**producer_config(settings), "delivery.report.only.error": True,
                         "on_delivery": lambda err, _m: failures.append(err)})
    try:
        partitions = consumer.list_topics(source, timeout=10).topics[source].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(source, p), timeout=10)[1]
                for p in partitions}
        consumer.assign([TopicPartition(source, p, 0) for p in partitions])
        position = dict.fromkeys(partitions, 0)
        copied, started = 0, time.perf_counter()
        while any(position[p] < ends[p] for p in partitions):
            for msg in consumer.consume(2000, 0.1):
                if msg.error() is not None:
                    continue
                while True:
                    try:
                        producer.produce(target, msg.value(), msg.key())
                        break
                    except BufferError:  # queue full; with error-only reports poll() waits
                        producer.poll(0.001)  # its whole timeout, so keep it short
                position[msg.partition()] = msg.offset() + 1  # type: ignore[operator]
                copied += 1
            producer.poll(0)
        unconfirmed = producer.flush(60)
        elapsed = time.perf_counter() - started
    finally:
        consumer.close()
    return {"records": copied, "seconds": elapsed, "failed": len(failures) + unconfirmed,
            **resources()}


def main() -> int:
    source, target = sys.argv[1], sys.argv[2]
    print(json.dumps(copy_topic(Settings.from_env(os.environ), source, target)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
