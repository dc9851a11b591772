"""Where the job starts and what it commits, on the real broker: expired resume offsets,
STARTING_OFFSET=latest and committed with recovery, consumer-group commits and lag."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from tests.integration.jobs import Job, job_env, job_topics, run_job, stop_leftovers, wait_for
from tests.integration.outcomes import BASE, processed_sources, summed
from tests.kafka_io import consume_all, produce_all
from tests.records import login_bytes

GROUP = "login-dataflow"  # the CONSUMER_GROUP default


def _logins(n: int, first: int = 0) -> list[tuple[bytes, bytes, int]]:
    return [(f"u{i}".encode(), login_bytes(user_id=f"u{i}", timestamp=BASE + i), 0)
            for i in range(first, first + n)]


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> list[int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], 10)
        return [tp.offset for tp in tps]
    finally:
        consumer.close()


@pytest.fixture(autouse=True)
def _no_leftover_jobs() -> Iterator[None]:
    yield
    stop_leftovers()


def test_resume_offset_removed_by_retention_resumes_at_the_log_start(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path,
) -> None:
    """A saved offset below the log start resumes at the oldest record left (never at the
    end), with a warning naming how many records retention removed."""
    input_topic = make_topic(partitions=1)
    topics = job_topics(make_topic, input_topic)
    produce_all(kafka_bootstrap, input_topic, _logins(50))
    run_job(kafka_bootstrap, topics, 1, tmp_path / "s1", recovery=tmp_path / "rec")
    produce_all(kafka_bootstrap, input_topic, _logins(100, first=50))
    # What retention does while the job is down: the log start moves past the saved offset.
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.delete_records([TopicPartition(input_topic, 0, 80)]).values():
        future.result(timeout=30)
    job = Job.start(job_env(kafka_bootstrap, topics, tmp_path / "s2"), tmp_path / "job.log",
                    recovery=tmp_path / "rec")
    assert job.wait(120) == 0, job.tail()
    offsets = [o for p, o in processed_sources(consume_all(kafka_bootstrap, topics["output"]))]
    assert sorted(offsets) == [*range(50), *range(80, 150)]
    assert '"records_lost": 30' in job.text() and "offset_expired" in job.text()
    assert summed(tmp_path / "s2")["consumed"] == 70


def test_latest_with_recovery_reads_what_arrived_while_the_job_was_down(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path,
) -> None:
    """STARTING_OFFSET=latest saves a real offset: records produced during a stop are read."""
    input_topic = make_topic(partitions=1)
    topics = job_topics(make_topic, input_topic)
    produce_all(kafka_bootstrap, input_topic, _logins(10))  # before the first start: skipped
    env = job_env(kafka_bootstrap, topics, tmp_path / "s1", STARTING_OFFSET="latest",
                  STOP_AT_END="false")
    job = Job.start(env, tmp_path / "job.log", recovery=tmp_path / "rec")
    time.sleep(6)  # running, a few snapshots taken, nothing read
    job.process.send_signal(signal.SIGTERM)
    job.wait(60)
    produce_all(kafka_bootstrap, input_topic, _logins(20, first=10))
    run_job(kafka_bootstrap, topics, 1, tmp_path / "s2", recovery=tmp_path / "rec",
            STARTING_OFFSET="latest")
    offsets = [o for p, o in processed_sources(consume_all(kafka_bootstrap, topics["output"]))]
    assert sorted(offsets) == list(range(10, 30))


def test_finite_run_commits_its_end_offsets_and_committed_resumes_there(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path,
) -> None:
    """After a STOP_AT_END run the group's offsets are the end offsets; a run without
    recovery and STARTING_OFFSET=committed reads only what came after."""
    input_topic = make_topic(partitions=2)
    topics = job_topics(make_topic, input_topic)
    group = f"g-{input_topic}"
    produce_all(kafka_bootstrap, input_topic,
                [(k, v, i % 2) for i, (k, v, _) in enumerate(_logins(40))])
    run_job(kafka_bootstrap, topics, 2, tmp_path / "s1", CONSUMER_GROUP=group)
    assert committed(kafka_bootstrap, group, input_topic, 2) == [20, 20]
    produce_all(kafka_bootstrap, input_topic, [(b"k", login_bytes(timestamp=BASE + 99), 1)])
    run_job(kafka_bootstrap, topics, 1, tmp_path / "s2", CONSUMER_GROUP=group,
            STARTING_OFFSET="committed")
    assert summed(tmp_path / "s2")["consumed"] == 1
    assert committed(kafka_bootstrap, group, input_topic, 2) == [20, 21]


def test_live_job_commits_written_positions_and_reports_lag(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path,
) -> None:
    """A live job's committed offsets reach the log end (lag tools see it), and its metrics
    endpoint serves login_consumer_lag per partition."""
    import urllib.request

    from tests.integration.jobs import free_ports

    input_topic = make_topic(partitions=2)
    topics = job_topics(make_topic, input_topic)
    group = f"g-{input_topic}"
    port = free_ports(1)
    env = job_env(kafka_bootstrap, topics, tmp_path, STOP_AT_END="false", CONSUMER_GROUP=group,
                  METRICS_ADDRESS=f"127.0.0.1:{port}")
    job = Job.start(env, tmp_path / "job.log")
    produce_all(kafka_bootstrap, input_topic,
                [(k, v, i % 2) for i, (k, v, _) in enumerate(_logins(30))])
    wait_for(lambda: committed(kafka_bootstrap, group, input_topic, 2) == [15, 15], 40,
             "the group's offsets to reach the log end")

    def lag_lines() -> list[str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as page:
            text = page.read().decode()
        return [line for line in text.splitlines() if line.startswith("login_consumer_lag{")]

    assert sorted(wait_for(lambda: len(lag_lines()) == 2 and lag_lines(), 20, "lag gauges")) \
        == ['login_consumer_lag{partition="0"} 0.0', 'login_consumer_lag{partition="1"} 0.0']
    job.process.send_signal(signal.SIGTERM)
    job.wait(60)
