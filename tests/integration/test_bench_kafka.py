"""The benchmark on the real broker: the hand-written loop's outputs, and the bench command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dataflow.transforms import iso_utc
from tests.integration.jobs import ROOT, job_env
from tests.integration.outcomes import BAD, header
from tests.kafka_io import consume_all, produce_all
from tests.records import login_bytes

BASE = 1_694_479_500  # a minute boundary
HEADERS = [("trace-id", b"\x00\x01abc")]


def _input() -> tuple[list[tuple[bytes, bytes | None, int]], dict[str, Any]]:
    """40 good records over two windows, 4 of an excluded locale, the BAD ones; expectations."""
    records: list[tuple[bytes, bytes | None, int]] = []
    expect: dict[str, Any] = {"good": set(), "bad": {}, "counts": Counter()}
    offsets = Counter[int]()

    def add(key: bytes, value: bytes | None) -> tuple[int, int]:
        partition = len(records) % 3
        records.append((key, value, partition))
        offsets[partition] += 1
        return partition, offsets[partition] - 1

    for i in range(40):
        ts, device, locale = BASE + (i * 7) % 120, ("android", "iOS", None)[i % 3], \
            ("US", "de")[i % 2]
        expect["good"].add(add(f"user-{i}".encode(), login_bytes(
            user_id=f"user-{i}", timestamp=ts, device_type=device, locale=locale)))
        start = iso_utc(ts - ts % 60)
        expect["counts"][(start, "device_type", (device or "unknown").lower())] += 1
        expect["counts"][(start, "locale", locale.upper())] += 1
    for i in range(4):
        add(b"by", login_bytes(user_id=f"by-{i}", locale="BY"))
    for n, (value, reason) in enumerate(BAD):
        expect["bad"][add(f"bad-{n}".encode(), value)] = (f"bad-{n}".encode(), value, reason)
    return records, expect


def test_hand_loop_writes_every_record_where_the_job_writes_it(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path,
) -> None:
    """Processed once each with source headers, dead letters byte-exact, exact window counts."""
    records, expect = _input()
    topics = {"input": make_topic(partitions=3), "output": make_topic(partitions=3),
              "dlq": make_topic(), "counts": make_topic(), "late": make_topic()}
    produce_all(kafka_bootstrap, topics["input"], records, headers=HEADERS)
    done = subprocess.run([sys.executable, "-m", "dataflow.bench.handloop"], cwd=ROOT,
                          env=job_env(kafka_bootstrap, topics, tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)

    processed = consume_all(kafka_bootstrap, topics["output"])
    assert sorted((int(header(m, "source.partition")), int(header(m, "source.offset")))
                  for m in processed) == sorted(expect["good"])
    assert all(header(m, "source.topic") == topics["input"].encode() for m in processed)
    assert all(m.key() == json.loads(m.value())["user_id"].encode() for m in processed)
    dead = {(int(header(m, "dlq.source.partition")), int(header(m, "dlq.source.offset"))): m
            for m in consume_all(kafka_bootstrap, topics["dlq"])}
    assert set(dead) == set(expect["bad"])
    for where, (key, value, reason) in expect["bad"].items():
        assert (dead[where].key(), dead[where].value()) == (key, value)
        assert dead[where].headers()[0] == HEADERS[0]
        assert header(dead[where], "dlq.reason") == reason.encode()
    counts = [json.loads(m.value()) for m in consume_all(kafka_bootstrap, topics["counts"])]
    assert Counter({(c["window_start"], c["field"], c["value"]): c["count"]
                    for c in counts}) == expect["counts"]
    assert len(counts) == len(expect["counts"])

    assert out["consumed"] == len(records)
    assert (out["processed"], out["filtered"]) == (40, {"excluded_locale": 4})
    assert out["dead_lettered"] == Counter(reason for _, reason in BAD)
    assert out["written"] == {"out": 40, "dlq": len(BAD), "counts": len(expect["counts"])}
    assert out["failed"] == 0


@pytest.mark.slow
def test_bench_command_reports_both_references_and_the_baseline(
    kafka_bootstrap: str, tmp_path: Path,
) -> None:
    """A small bench run: every case accounted for, hand loop and job write the same records;
    the job paired with its baseline, each latency case run as often as asked."""
    result = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "dataflow", "bench", "--records", "3000", "--partitions", "2",
         "--repeat", "1", "--latency-rate", "200", "--latency-seconds", "1",
         "--latency-repeat", "2", "--baseline", str(ROOT), "--json", str(result)],
        cwd=ROOT, env={**{k: v for k, v in os.environ.items()
                          if not k.startswith(("KAFKA_CONFIG_", "BYTEWAX_"))},
                       "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap},
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| ratio to ceiling | ratio to hand loop |" in done.stdout
    doc = json.loads(result.read_text())
    assert list(doc["summary"]) == [
        "ceiling: plain consume -> produce loop",
        "hand-written loop: the same pipeline, no Bytewax", "dataflow, 1 process",
        "dataflow, 1 process (baseline)", "dataflow, 2 processes",
        "dataflow, 1 process, exactly-once",
        "latency at 200 events/s, 1 process", "latency at 200 events/s, 1 process (baseline)",
        "latency at 200 events/s, 1 process, exactly-once"]
    paired = doc["summary"]["dataflow, 1 process"]["paired_to_baseline"]
    assert paired["rounds"] == 1 and paired["cpu_ratio"] > 0
    for name, latency in doc["summary"].items():  # two runs each, every record received
        if name.startswith("latency"):
            assert latency["runs"] == 2 and len(doc["cases"][name]) == 2
            assert all(run["received"] == run["sent"] for run in doc["cases"][name])
    [hand] = doc["cases"]["hand-written loop: the same pipeline, no Bytewax"]
    assert hand["records"] == 3000 and hand["accounting"] is True
    for name in ("dataflow, 1 process", "dataflow, 1 process (baseline)",
                 "dataflow, 2 processes", "dataflow, 1 process, exactly-once"):
        [job] = doc["cases"][name]
        assert job["records"] == 3000 and job["accounting"] is True
        assert (job["written"]["out"], job["written"]["dlq"]) == (hand["written"]["out"],
                                                                  hand["written"]["dlq"])
        assert doc["summary"][name]["cpu_us_per_record"] > 0
    for name in ("hand-written loop: the same pipeline, no Bytewax", "dataflow, 1 process",
                 "dataflow, 2 processes"):  # start-up and the rate from the first read on
        row = doc["summary"][name]
        assert 0 < row["first_read_seconds"] < 60 and row["records_per_s_after_first_read"] > 0
