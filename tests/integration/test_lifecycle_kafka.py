"""`python -m bytewax.run dataflow.flow`, the command users know, on the real broker: Ctrl-C
and SIGTERM stop it cleanly, a finite run commits its end offsets, new input partitions
are read from their start, and a device clock running fast makes no other event late."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewPartitions

from tests.integration.jobs import ROOT, job_env, job_topics, wait_for
from tests.integration.outcomes import BASE, processed_sources
from tests.integration.test_offsets_kafka import GROUP, committed
from tests.kafka_io import consume_all, produce_all
from tests.records import login_bytes

_STARTED: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def _no_leftover_jobs() -> Iterator[None]:
    yield
    while _STARTED:
        process = _STARTED.pop()
        if process.poll() is None:
            process.kill()
            process.wait()


def _bytewax_run(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    """The job as the README starts it: python -m bytewax.run dataflow.flow."""
    with log.open("ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "bytewax.run", "dataflow.flow", *args],
                                   cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    _STARTED.append(process)
    return process


def _logins(n: int, partition: int, first: int = 0, ts: int = BASE) -> list[Any]:
    return [(f"u{i}".encode(), login_bytes(user_id=f"u{i}", timestamp=ts + i), partition)
            for i in range(first, first + n)]


def _processed(bootstrap: str, topic: str) -> list[tuple[int, int]]:
    return processed_sources(consume_all(bootstrap, topic))


def _events(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_and_sigterm_stop_cleanly_with_everything_written_and_committed(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path, sig: int, code: int,
) -> None:
    """A live job stopped by SIGINT or SIGTERM writes what it read, commits its offsets and
    exits 130 or 143, without a panic or a traceback."""
    input_topic = make_topic(partitions=2)
    topics = job_topics(make_topic, input_topic)
    env = job_env(kafka_bootstrap, topics, tmp_path, STOP_AT_END="false")
    log = tmp_path / "job.log"
    job = _bytewax_run(env, log)
    produce_all(kafka_bootstrap, input_topic, _logins(300, 0) + _logins(200, 1, first=300))
    wait_for(lambda: len(_processed(kafka_bootstrap, topics["output"])) == 500, 60,
             "the 500 records to be processed")
    job.send_signal(sig)
    assert job.wait(30) == code
    text = log.read_text()
    assert "panicked" not in text and "Traceback" not in text, text[-3000:]
    assert committed(kafka_bootstrap, GROUP, input_topic, 2) == [300, 200]
    assert sorted(_processed(kafka_bootstrap, topics["output"])) == sorted(
        [(0, o) for o in range(300)] + [(1, o) for o in range(200)])


def test_a_finite_run_under_bytewax_run_commits_its_end_offsets(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path,
) -> None:
    """STOP_AT_END under plain bytewax.run: exit 0, and the group's offsets are the end."""
    input_topic = make_topic(partitions=2)
    topics = job_topics(make_topic, input_topic)
    produce_all(kafka_bootstrap, input_topic, _logins(40, 0) + _logins(25, 1, first=40))
    job = _bytewax_run(job_env(kafka_bootstrap, topics, tmp_path), tmp_path / "job.log")
    assert job.wait(60) == 0, (tmp_path / "job.log").read_text()[-3000:]
    assert committed(kafka_bootstrap, GROUP, input_topic, 2) == [40, 25]


def test_a_partition_added_while_the_job_runs_is_read_from_its_start(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path,
) -> None:
    """2 -> 3 partitions under a live job: within 30 s it stops cleanly, starts itself again
    and reads the new partition from its start; what it had read is not read again."""
    input_topic = make_topic(partitions=2)
    topics = job_topics(make_topic, input_topic)
    env = job_env(kafka_bootstrap, topics, tmp_path, STOP_AT_END="false")
    log = tmp_path / "job.log"
    job = _bytewax_run(env, log)
    produce_all(kafka_bootstrap, input_topic, _logins(30, 0) + _logins(30, 1, first=30))
    wait_for(lambda: len(_processed(kafka_bootstrap, topics["output"])) == 60, 60,
             "the first 60 records to be processed")
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_partitions([NewPartitions(input_topic, 3)])[input_topic].result(timeout=30)
    added = time.monotonic()
    produce_all(kafka_bootstrap, input_topic, _logins(20, 2, first=60))
    wait_for(lambda: sum(p == 2 for p, _ in _processed(kafka_bootstrap, topics["output"])) == 20,
             45, "the new partition's 20 records")
    assert time.monotonic() - added < 40
    assert job.poll() is None, log.read_text()[-3000:]  # the same process, started again
    names = [e["event"] for e in _events(log)]
    assert "restarting" in names and names.count("starting") == 2
    assert sorted(_processed(kafka_bootstrap, topics["output"])) == sorted(
        [(0, o) for o in range(30)] + [(1, o) for o in range(30)] + [(2, o) for o in range(20)])
    job.send_signal(signal.SIGTERM)
    assert job.wait(30) == 143


def test_one_event_from_a_fast_device_clock_makes_no_later_event_late(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path,
) -> None:
    """Live events, one stamped 200 s ahead in the middle: none of the 49 after it is late
    (10 s windows, 5 s of lateness)."""
    input_topic = make_topic(partitions=1)
    topics = job_topics(make_topic, input_topic)
    env = job_env(kafka_bootstrap, topics, tmp_path, STOP_AT_END="false", WINDOW_SECONDS="10",
                  ALLOWED_LATENESS_SECONDS="5", COUNT_FIELDS="user_id")
    log = tmp_path / "job.log"
    job = _bytewax_run(env, log)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 0})
    for i in range(100):  # 10 events a second, each stamped when it is written
        ts = int(time.time()) + (200 if i == 50 else 0)
        producer.produce(input_topic, login_bytes(user_id=f"u{i}", timestamp=ts), b"k",
                         partition=0)
        producer.poll(0)
        time.sleep(0.1)
    assert producer.flush(10) == 0
    wait_for(lambda: len(_processed(kafka_bootstrap, topics["output"])) == 100, 60,
             "the 100 events to be processed")
    job.send_signal(signal.SIGTERM)  # everything read is written and confirmed first
    assert job.wait(30) == 143
    assert consume_all(kafka_bootstrap, topics["late"]) == []
    summaries = [json.loads(p.read_text()) for p in tmp_path.glob("summary-*.json")]
    assert [s["late"] for s in summaries] == [{}]
