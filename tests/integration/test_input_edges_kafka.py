"""Edges of the input on the real broker: a partition written by a transactional producer
(committed, aborted, still open) is caught up and goes idle with lag 0; records that
retention deletes while a live job is behind are counted and reported; a position past the
log end goes on at the log start."""

from __future__ import annotations

import json
import logging
import os
import signal
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog.testing
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client import REGISTRY

from dataflow.kafka_source import PartitionReader
from dataflow.settings import Settings
from dataflow.transforms import iso_utc
from tests.integration.jobs import Job, free_ports, job_env, job_topics, stop_leftovers, wait_for
from tests.integration.outcomes import processed_sources
from tests.kafka_io import consume_all, produce_all
from tests.records import login_bytes

_QUIET = logging.getLogger("tests.input_edges.librdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False  # "Coordinator load in progress" while the first transaction starts


@pytest.fixture(autouse=True)
def _no_leftover_jobs() -> Iterator[None]:
    yield
    stop_leftovers()


def transactional(bootstrap: str) -> Producer:
    """A producer that writes in transactions, like Kafka Streams, Flink or a CDC tool."""
    producer = Producer({"bootstrap.servers": bootstrap, "logger": _QUIET,
                         "transactional.id": f"test-{uuid.uuid4().hex}"})
    producer.init_transactions(30)
    return producer


def scrape(port: int) -> dict[str, float]:
    """The samples a job's METRICS_ADDRESS serves, by name and labels; empty until it is up."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as page:
            text = page.read().decode()
    except OSError:
        return {}
    samples = (line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    return {name: float(value) for name, value in samples}


def windows(bootstrap: str, topic: str) -> dict[tuple[str, str, str], tuple[int, bool]]:
    """(window_start, field, value) -> (count, final) of the last record of each window."""
    last = {}
    for msg in sorted(consume_all(bootstrap, topic), key=lambda m: (m.partition(), m.offset())):
        doc = json.loads(msg.value())
        last[(doc["window_start"], doc["field"], doc["value"])] = (doc["count"], doc["final"])
    return last


def log_events(job: Job, event: str) -> list[dict[str, Any]]:
    """The job's JSON log lines of one event."""
    lines = (json.loads(line) for line in job.text().splitlines() if line.startswith("{"))
    return [doc for doc in lines if doc.get("event") == event]


@pytest.mark.slow
@pytest.mark.parametrize("commit", [True, False], ids=["committed", "aborted"])
def test_partition_written_once_in_a_transaction_goes_idle_and_windows_close(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path, commit: bool,
) -> None:
    """A partition written once in a transaction (committed or aborted), then quiet, is
    caught up past the transaction marker and goes idle: while another partition is live,
    windows are written final, and its lag gauge reaches 0."""
    input_topic = make_topic(partitions=2)
    topics = job_topics(make_topic, input_topic)
    old = int(time.time()) - 70  # its window ends at least 10 s (the lateness) before now
    producer = transactional(kafka_bootstrap)
    producer.begin_transaction()
    producer.produce(input_topic, login_bytes(timestamp=old), b"k", partition=1)
    assert producer.flush(30) == 0  # in the log (offset 0) before the marker (offset 1)
    if commit:
        producer.commit_transaction(30)
    else:
        producer.abort_transaction(30)
    produce_all(kafka_bootstrap, input_topic, [(b"k", login_bytes(timestamp=old), 0)])
    port = free_ports(1)
    env = job_env(kafka_bootstrap, topics, tmp_path, STOP_AT_END="false",
                  METRICS_ADDRESS=f"127.0.0.1:{port}")
    job = Job.start(env, tmp_path / "job.log")
    live = Producer({"bootstrap.servers": kafka_bootstrap})
    key = (iso_utc(old // 60 * 60), "device_type", "android")
    started = time.monotonic()

    def closed_and_caught_up() -> bool:
        """Live events on partition 0 meanwhile, four a second, stamped now."""
        assert job.process.poll() is None, job.tail()
        for _ in range(4):
            live.produce(input_topic, login_bytes(timestamp=int(time.time())), b"k", partition=0)
            live.poll(0.25)
        return (windows(kafka_bootstrap, topics["counts"]).get(key, (0, False))[1]
                and scrape(port).get('login_consumer_lag{partition="1"}') == 0)

    wait_for(closed_and_caught_up, 30, "a final window and partition 1's lag at 0", every=0)
    waited = time.monotonic() - started
    assert live.flush(10) == 0
    job.process.send_signal(signal.SIGTERM)
    job.wait(60)
    # Both events of that minute when the transaction committed, only partition 0's when not.
    assert windows(kafka_bootstrap, topics["counts"])[key] == (2 if commit else 1, True)
    assert waited < 15 + 10  # IDLE_PARTITION_SECONDS, then about a second (plus start-up)


def test_reader_at_an_open_transaction_is_caught_up_and_reads_it_once_committed(
    kafka_bootstrap: str, make_topic: Callable[..., str],
) -> None:
    """The records of a transaction still open cannot be read yet: a reader that read all
    before them (up to the last stable offset) is caught up with lag 0; once the transaction
    commits it reads them and is caught up past the marker."""
    topic = make_topic(partitions=1)
    producer = transactional(kafka_bootstrap)
    producer.begin_transaction()
    producer.produce(topic, b"committed", partition=0)  # offset 0, its marker 1
    producer.commit_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, b"open", partition=0)  # offsets 2 and 3, left open
    producer.produce(topic, b"open", partition=0)
    assert producer.flush(30) == 0
    reader = PartitionReader(Settings(bootstrap_servers=kafka_bootstrap, input_topic=topic),
                             0, None)
    read: list[Any] = []
    try:
        wait_for(lambda: read.extend(reader.read()) or reader.caught_up(), 10,
                 "the reader to be caught up at the open transaction", every=0.05)
        assert (reader.position, [m.value() for m in read]) == (2, [b"committed"])
        assert REGISTRY.get_sample_value("login_consumer_lag", {"partition": "0"}) == 0
        producer.commit_transaction(30)
        wait_for(lambda: read.extend(reader.read()) or reader.position == 5, 10,
                 "the committed transaction to be read", every=0.05)
        assert [m.offset() for m in read] == [0, 2, 3]
        wait_for(lambda: reader.read() == [] and reader.caught_up(), 10, "caught up again",
                 every=0.05)
        assert REGISTRY.get_sample_value("login_consumer_lag", {"partition": "0"}) == 0
    finally:
        reader.close()


def test_records_deleted_while_a_live_job_is_behind_are_counted_and_reported(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path,
) -> None:
    """Retention deleting records past a live job's position while it is behind: the job
    goes on at the log start, warns offset_expired with the number of records skipped, and
    counts them in login_records_expired_total."""
    input_topic = make_topic(partitions=1)
    topics = job_topics(make_topic, input_topic)
    port = free_ports(1)
    env = job_env(kafka_bootstrap, topics, tmp_path, STOP_AT_END="false",
                  METRICS_ADDRESS=f"127.0.0.1:{port}")
    job = Job.start(env, tmp_path / "job.log")
    logins = [(f"u{i}".encode(), login_bytes(user_id=f"u{i}"), 0) for i in range(120)]
    produce_all(kafka_bootstrap, input_topic, logins[:20])
    wait_for(lambda: scrape(port).get("login_records_consumed_total") == 20, 30,
             "the job to read the first 20 records")
    worker = job.worker(0)
    os.kill(worker, signal.SIGSTOP)  # the job falls behind
    try:
        time.sleep(1)  # the fetch it had waiting (fetch.wait.max.ms 500) is answered empty
        produce_all(kafka_bootstrap, input_topic, logins[20:])
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        for future in admin.delete_records([TopicPartition(input_topic, 0, 80)]).values():
            future.result(timeout=30)
    finally:
        os.kill(worker, signal.SIGCONT)
    wait_for(lambda: scrape(port).get("login_records_consumed_total") == 60, 30,
             "the job to read the 40 records left")
    assert scrape(port).get("login_records_expired_total") == 60
    job.process.send_signal(signal.SIGTERM)
    job.wait(60)
    [warning] = log_events(job, "offset_expired")
    assert {k: warning[k] for k in ("topic", "partition", "from_offset", "to_offset",
                                    "records_lost")} \
        == {"topic": input_topic, "partition": 0, "from_offset": 20, "to_offset": 80,
            "records_lost": 60}
    offsets = sorted(o for _, o in processed_sources(consume_all(kafka_bootstrap,
                                                                 topics["output"])))
    assert offsets == [*range(20), *range(80, 120)]


def test_reader_past_the_log_end_reads_the_partition_from_its_start(
    kafka_bootstrap: str, make_topic: Callable[..., str],
) -> None:
    """A saved position past the log end (the topic was re-created) is refused by the broker:
    the reader goes on at the log start, with an offset_out_of_range warning and nothing
    counted as expired (never at the end, which would skip what is there)."""
    topic = make_topic(partitions=1)
    produce_all(kafka_bootstrap, topic, [(b"k", login_bytes(), 0)] * 5)
    expired = REGISTRY.get_sample_value("login_records_expired_total") or 0.0
    read: list[Any] = []
    with structlog.testing.capture_logs() as logs:
        reader = PartitionReader(Settings(bootstrap_servers=kafka_bootstrap, input_topic=topic),
                                 0, 100)
        try:
            wait_for(lambda: read.extend(reader.read()) or len(read) == 5, 10,
                     "the partition read from its start", every=0.05)
        finally:
            reader.close()
    assert [m.offset() for m in read] == [0, 1, 2, 3, 4]
    assert [(e["event"], e["from_offset"], e["to_offset"], e["log_end"])
            for e in logs if e["log_level"] == "warning"] == [("offset_out_of_range", 100, 0, 5)]
    assert REGISTRY.get_sample_value("login_records_expired_total") == expired
