"""The dataflow on the real broker: every record accounted for, on 1 and on 3 processes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dataflow.transforms import iso_utc
from tests.integration.jobs import ROOT, job_env, run_job
from tests.integration.outcomes import BAD, header, summed
from tests.kafka_io import consume_all, produce_all
from tests.records import login_bytes

BASE = 1_694_479_500  # a minute boundary: windows [BASE, BASE+60), [BASE+60, BASE+120)
HEADERS = [("trace-id", b"\x00\x01abc")]


def _good(i: int) -> bytes:
    device = ("android", "iOS", None)[i % 3]
    locale = ("US", "de")[i % 2]
    return login_bytes(user_id=f"user-{i}", timestamp=BASE + i * 4,  # in order: none late
                       device_type=device, locale=locale)


def build_input() -> tuple[list[tuple[bytes, bytes | None, int]], dict[str, Any]]:
    """30 good, 5 filtered and 8 bad records over 3 partitions, with what to expect of each."""
    records: list[tuple[bytes, bytes | None, int]] = []
    expect: dict[str, Any] = {"good": set(), "bad": {}, "filtered": 0, "counts": Counter()}
    offsets = Counter[int]()

    def add(key: bytes, value: bytes | None) -> tuple[int, int]:
        partition = len(records) % 3
        records.append((key, value, partition))
        offsets[partition] += 1
        return partition, offsets[partition] - 1

    for i in range(30):
        expect["good"].add(add(f"user-{i}".encode(), _good(i)))
        doc = json.loads(_good(i))
        start = BASE + ((doc["timestamp"] - BASE) // 60) * 60
        device = (doc.get("device_type") or "unknown").lower()
        expect["counts"][(start, "device_type", device)] += 1
        expect["counts"][(start, "locale", doc["locale"].upper())] += 1
    for i in range(5):
        add(b"by", login_bytes(user_id=f"by-{i}", locale="BY"))
        expect["filtered"] += 1
    for n, (value, reason) in enumerate(BAD):
        expect["bad"][add(f"bad-{n}".encode(), value)] = (f"bad-{n}".encode(), value, reason)
    return records, expect


def outcome(bootstrap: str, topics: dict[str, str]) -> dict[str, Any]:
    processed = consume_all(bootstrap, topics["output"])
    counts = [json.loads(m.value()) for m in consume_all(bootstrap, topics["counts"])]
    return {
        "processed": [(int(header(m, "source.partition")), int(header(m, "source.offset")))
                      for m in processed],
        "dead": consume_all(bootstrap, topics["dlq"]),
        "counts": Counter({(c["window_start"], c["field"], c["value"]): c["count"]
                           for c in counts}),
        "late": consume_all(bootstrap, topics["late"]) if topics.get("late") else [],
    }


@pytest.fixture
def job_topics(make_topic: Callable[..., str]) -> Callable[[str], dict[str, str]]:
    """Fresh output topics for one run against a shared input topic."""
    def make(input_topic: str) -> dict[str, str]:
        return {"input": input_topic, "output": make_topic(partitions=3), "dlq": make_topic(),
                "counts": make_topic(), "late": make_topic()}
    return make


def test_mixed_topic_every_record_accounted_for_and_same_on_1_and_3_processes(
    kafka_bootstrap: str, make_topic: Callable[..., str],
    job_topics: Callable[[str], dict[str, str]], tmp_path: Path,
) -> None:
    """Good records processed once, bad ones byte-exact in the DLQ, counts exact, 1 == 3 procs."""
    records, expect = build_input()
    input_topic = make_topic(partitions=3)
    produce_all(kafka_bootstrap, input_topic, records, headers=HEADERS)
    results = {}
    for processes in (1, 3):
        topics = job_topics(input_topic)
        run_job(kafka_bootstrap, topics, processes, tmp_path / f"p{processes}")
        result = outcome(kafka_bootstrap, topics)
        results[processes] = result

        assert sorted(result["processed"]) == sorted(expect["good"])  # each exactly once
        dead = {(int(header(m, "dlq.source.partition")), int(header(m, "dlq.source.offset"))): m
                for m in result["dead"]}
        assert len(dead) == len(result["dead"]) == len(BAD)
        assert set(dead) == set(expect["bad"])
        for where, (key, value, reason) in expect["bad"].items():
            msg = dead[where]
            assert (msg.key(), msg.value()) == (key, value)
            headers = msg.headers()
            assert headers[0] == HEADERS[0]
            assert header(msg, "dlq.reason") == reason.encode()
            assert header(msg, "dlq.source.topic") == input_topic.encode()
            assert header(msg, "dlq.failed_at").endswith(b"+00:00")
        expected_counts = Counter({
            (iso_utc(start), field, value): n
            for (start, field, value), n in expect["counts"].items()})
        assert result["counts"] == expected_counts
        assert result["late"] == []
        totals = summed(tmp_path / f"p{processes}")
        assert totals == {"consumed": len(records), "processed": len(expect["good"]),
                          "filtered": expect["filtered"], "dead_lettered": len(BAD)}
    assert sorted(results[1]["processed"]) == sorted(results[3]["processed"])
    assert results[1]["counts"] == results[3]["counts"]



def test_stop_at_end_finishes_on_a_topic_ending_in_a_transaction_marker(
    kafka_bootstrap: str, make_topic: Callable[..., str],
    job_topics: Callable[[str], dict[str, str]], tmp_path: Path,
) -> None:
    """STOP_AT_END ends even when the last offset is a commit marker, not a record."""
    from confluent_kafka import Producer

    input_topic = make_topic(partitions=1)
    producer = Producer({"bootstrap.servers": kafka_bootstrap,
                         "transactional.id": f"tx-{input_topic}"})
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(5):
        producer.produce(input_topic, _good(i), f"user-{i}".encode())
    producer.commit_transaction(30)
    topics = job_topics(input_topic)
    run_job(kafka_bootstrap, topics, 1, tmp_path)
    assert len(consume_all(kafka_bootstrap, topics["output"])) == 5
    assert summed(tmp_path)["consumed"] == 5


def test_missing_topics_stop_the_job_at_start_up_with_one_line(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path,
) -> None:
    """A job whose output topics do not exist exits 2 naming them, before reading anything."""
    topics = {"input": make_topic(), "output": "no-such-out", "dlq": "no-such-dlq",
              "counts": make_topic(), "late": make_topic()}
    done = subprocess.run([sys.executable, "-m", "dataflow.worker", "dataflow.flow"], cwd=ROOT,
                          env=job_env(kafka_bootstrap, topics, tmp_path), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"login-dataflow: error: missing topic(s) on {kafka_bootstrap}: no-such-out, "
        "no-such-dlq; create them (locally: python -m dataflow kafka create-topics)")
