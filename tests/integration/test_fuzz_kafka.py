"""End-to-end fuzz on the real broker: 100,000 hostile and valid records through the job.

Random bytes, valid events truncated or mutated at random, huge keys, many and large
headers, null and empty values, records near the size limit, events from the future:
the job ends with exit 0, the accounting identity is exact, every valid record is
processed once, and every dead letter is the original record byte for byte (or, when too
large for a Kafka record, cut by the documented scheme with the original's size and hash).
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Producer

from dataflow.parsing import parse
from dataflow.schemas import Accepted
from tests.integration.jobs import job_topics, run_job
from tests.integration.outcomes import BASE, header, summed
from tests.kafka_io import consume_all
from tests.records import FakeRecord, login_bytes

pytestmark = pytest.mark.slow

RECORDS = 100_000
PARTITIONS = 3
Headers = list[tuple[str, bytes]]
Record = tuple[bytes | None, bytes | None, int, Headers | None]


def _valid(rng: random.Random, i: int) -> bytes:
    return login_bytes(user_id=f"user-{rng.randrange(10_000)}",
                       timestamp=BASE + i // 50 - rng.randrange(30),
                       device_type=rng.choice(["android", "iOS", None, "web"]),
                       locale=rng.choice(["US", "de", "fr", "BY", "ru"]),
                       ip=rng.choice(["10.0.0.1", "2001:db8::1", "192.168.1.20"]))


def _mutated(rng: random.Random, raw: bytes) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randrange(1, 4)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


def _value(rng: random.Random, i: int) -> bytes | None:
    kind = rng.random()
    if kind < 0.55:
        return _valid(rng, i)
    if kind < 0.65:
        raw = _valid(rng, i)
        return raw[:rng.randrange(len(raw))]
    if kind < 0.80:
        return _mutated(rng, _valid(rng, i))
    if kind < 0.90:
        return rng.randbytes(rng.randrange(1, 300))
    if kind < 0.94:
        return None
    if kind < 0.97:
        return b""
    if kind < 0.985:
        return login_bytes(timestamp=int(time.time()) + 86_400 * rng.randrange(1, 400))
    return json.dumps(rng.choice([[1, 2], "text", 3.5, None, {"user_id": []}])).encode()


def _headers(rng: random.Random) -> Headers | None:
    kind = rng.random()
    if kind < 0.9:
        return None
    if kind < 0.997:
        return [(f"h{n}", rng.randbytes(rng.randrange(20))) for n in range(rng.randrange(1, 100))]
    return [("big", rng.randbytes(50_000)), ("trace-id", b"\x00\x01")]


def _key(rng: random.Random, i: int) -> bytes | None:
    kind = rng.random()
    if kind < 0.02:
        return None
    if kind < 0.022:
        return rng.randbytes(100_000)  # a huge key
    return f"k{i}".encode()


def hostile_records(n: int) -> list[Record]:
    """``n`` records, seeded, plus a few malformed ones near the 1 MB record size limit."""
    rng = random.Random(20261202)
    records: list[Record] = [(_key(rng, i), _value(rng, i), i % PARTITIONS, _headers(rng))
                             for i in range(n)]
    for p in range(PARTITIONS):  # their dead letters do not fit: cut by the oversize scheme
        records.append((b"huge", b'{"user_id": "' + b"x" * 999_580, p, [("h", b"v")]))
    return records


def _produce(bootstrap: str, topic: str, records: list[Record]) -> None:
    failures: list[object] = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 20,
                         "enable.idempotence": True})
    for key, value, partition, headers in records:
        while True:
            try:
                producer.produce(topic, value, key, partition=partition, headers=headers,
                                 on_delivery=lambda err, _m: err and failures.append(err))
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(60) == 0
    assert not failures, failures[:3]


def test_hundred_thousand_hostile_records_none_lost_none_stopping_the_job(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path,
) -> None:
    """Exit 0, accounting exact, each valid record processed once, each dead letter exact."""
    input_topic = make_topic(partitions=PARTITIONS)
    _produce(kafka_bootstrap, input_topic, hostile_records(RECORDS))
    sources = consume_all(kafka_bootstrap, input_topic, timeout_s=120)
    assert len(sources) == RECORDS + PARTITIONS
    topics = job_topics(make_topic, input_topic)
    run_job(kafka_bootstrap, topics, 2, tmp_path)

    expected_good: set[tuple[int, int]] = set()
    expected_bad: dict[tuple[int, int], object] = {}
    filtered = 0
    for msg in sources:
        where = (msg.partition(), msg.offset())
        result = parse(FakeRecord(msg.value()))
        if isinstance(result, Accepted):
            if result.timestamp > time.time() + 300:
                expected_bad[where] = msg
            elif result.login.locale.upper() == "BY":
                filtered += 1
            else:
                expected_good.add(where)
        else:
            expected_bad[where] = msg
    processed = consume_all(kafka_bootstrap, topics["output"], timeout_s=120)
    dead = consume_all(kafka_bootstrap, topics["dlq"], timeout_s=120)
    assert sorted((int(header(m, "source.partition")), int(header(m, "source.offset")))
                  for m in processed) == sorted(expected_good)
    by_source = {(int(header(m, "dlq.source.partition")), int(header(m, "dlq.source.offset"))): m
                 for m in dead}
    assert len(by_source) == len(dead) and set(by_source) == set(expected_bad)
    truncated = 0
    for where, original in expected_bad.items():
        letter = by_source[where]
        own = original.headers() or []
        if dict(letter.headers()).get("dlq.truncated") == b"true":
            truncated += 1
            assert header(letter, "dlq.original.size") == str(len(original.value())).encode()
            assert header(letter, "dlq.original.sha256") == \
                hashlib.sha256(original.value()).hexdigest().encode()
            assert original.value().startswith(letter.value())
            continue
        assert (letter.key(), letter.value()) == (original.key(), original.value())
        assert letter.headers()[:len(own)] == own
    assert truncated >= PARTITIONS
    assert summed(tmp_path) == {"consumed": RECORDS + PARTITIONS,
                                "processed": len(expected_good), "filtered": filtered,
                                "dead_lettered": len(expected_bad)}
