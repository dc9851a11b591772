"""Reading and writing real topics in integration tests."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

Message = Any  # confluent_kafka.Message


def produce_all(bootstrap: str, topic: str,
                records: Iterable[tuple[bytes | None, bytes | None, int | None]],
                headers: list[tuple[str, bytes]] | None = None,
                per_second: float | None = None) -> None:
    """Write (key, value, partition) records, at most ``per_second`` of them a second when
    given; fail the test if any delivery fails."""
    failures: list[KafkaError] = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                         "enable.idempotence": True, "linger.ms": 5})

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failures.append(err)

    started = time.monotonic()
    for n, (key, value, partition) in enumerate(records):
        if per_second is not None and n % 100 == 0:
            time.sleep(max(0.0, started + n / per_second - time.monotonic()))
        kwargs: dict[str, Any] = {"on_delivery": on_delivery}
        if partition is not None:
            kwargs["partition"] = partition
        if headers:
            kwargs["headers"] = headers
        while True:
            try:
                producer.produce(topic, value, key, **kwargs)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(30) == 0
    assert not failures, failures


def consume_all(bootstrap: str, topic: str, timeout_s: float = 30.0) -> list[Message]:
    """Every record of a topic, from the beginning to its end offsets at call time."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "tests",
                         "enable.auto.commit": False, "enable.partition.eof": False})
    try:
        ends = {}
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        out: list[Message] = []
        position = {p: 0 for p in ends}
        deadline = time.monotonic() + timeout_s
        while any(position[p] < ends[p] for p in ends):
            assert time.monotonic() < deadline, f"timed out reading {topic}"
            for msg in consumer.consume(1000, 0.5):
                assert msg.error() is None, msg.error()
                out.append(msg)
                position[msg.partition()] = msg.offset() + 1
        return out
    finally:
        consumer.close()


def consume_committed(bootstrap: str, topic: str, timeout_s: float = 30.0) -> list[Message]:
    """Every committed record of a topic (read_committed: aborted records and transaction
    markers skipped), from the beginning to the end of each partition."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "tests-committed",
                         "isolation.level": "read_committed", "enable.auto.commit": False,
                         "enable.partition.eof": True})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        out: list[Message] = []
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(at_end) < len(partitions):
            assert time.monotonic() < deadline, f"timed out reading {topic}"
            for msg in consumer.consume(1000, 0.5):
                if msg.error() is not None:
                    assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                    at_end.add(msg.partition())
                    continue
                out.append(msg)
        return out
    finally:
        consumer.close()
