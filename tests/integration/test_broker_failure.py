"""A broker fails mid-run and comes back: the job keeps going (or waits), nothing is lost.

Each test starts brokers of its own (they stop them), never the session's.
The job's producer is idempotent with acks=all, so a broker failing over
makes it retry, not write twice: the tests expect every record exactly once.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from dataflow.localkafka import LocalKafka
from tests.integration.jobs import (
    Job,
    Watcher,
    create_topics,
    job_env,
    job_topics,
    own_kafka,
    stop_leftovers,
    wait_for,
)
from tests.integration.outcomes import (
    Expected,
    check_nothing_lost,
    final_counts,
    login_stream,
    read_outputs,
)
from tests.kafka_io import produce_all

pytestmark = pytest.mark.slow

RECORDS = 120_000
# Source batch sizes that keep each run going long enough on 2 cores for a broker to stop
# (a clean stop takes seconds) and come back while the job still runs: the sink waits
# for Kafka once per epoch, so the per-batch work sets the pace.
BATCH_3 = "5"
BATCH_1 = "5"
REPLICATED = {"min.insync.replicas": "2"}
DOWN_S = 4  # far below DELIVERY_TIMEOUT_MS (120 s by default)


@pytest.fixture(autouse=True)
def _no_leftover_jobs() -> Iterator[None]:
    yield
    stop_leftovers()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A three-node KRaft cluster of this module's own."""
    with own_kafka(tmp_path_factory.mktemp("kafka-3"), brokers=3) as kafka:
        yield kafka


@pytest.fixture(scope="module")
def lone_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A single broker of this module's own."""
    with own_kafka(tmp_path_factory.mktemp("kafka-1")) as kafka:
        yield kafka


def loaded(bootstrap: str, replication: int, count: int,
           config: dict[str, str] | None = None) -> tuple[dict[str, str], Expected]:
    """An input topic holding ``count`` records and fresh output topics, all on ``bootstrap``."""
    records, expect = login_stream(count)

    def make(partitions: int = 1, config: dict[str, str] | None = config) -> str:
        return create_topics(bootstrap, partitions=partitions, replication=replication,
                             config=config)[0]

    input_topic = make(partitions=3)
    produce_all(bootstrap, input_topic, records)
    return job_topics(make, input_topic), expect


def check_exactly_once(bootstrap: str, topics: dict[str, str], watcher: Watcher,
                       expect: Expected) -> None:
    """Every record where it belongs, none twice, window counts exact."""
    out = read_outputs(bootstrap, topics, watcher.marks)
    check_nothing_lost(out, expect, topics["input"])
    assert Counter(src for src, _ in out.sources()).most_common(1)[0][1] == 1
    assert final_counts(bootstrap, topics["counts"]) == expect.counts


def start_under_way(env: dict[str, str], log: Path, watcher: Watcher, target: int) -> Job:
    """Start the job (2 processes) and return once output + DLQ hold ``target`` records."""
    job = Job.start(env, log, processes=2)

    def under_way() -> bool:
        assert job.process.poll() is None, f"the job ended early:\n{job.tail()}"
        return watcher.count() >= target

    wait_for(under_way, 120, f"{target} records written", every=0.02)
    return job


def test_one_of_three_brokers_stops_and_returns_mid_run_job_finishes_exactly_once(
    cluster: LocalKafka, tmp_path: Path,
) -> None:
    """RF 3, min.insync 2: a broker stopped at ~3% and restarted; exit 0, every record once."""
    bootstrap = cluster.bootstrap
    topics, expect = loaded(bootstrap, replication=3, count=RECORDS, config=REPLICATED)
    env = job_env(bootstrap, topics, tmp_path / "summaries", SOURCE_BATCH_SIZE=BATCH_3)
    watcher = Watcher(bootstrap, topics)
    try:
        job = start_under_way(env, tmp_path / "job.log", watcher, int(0.03 * expect.written))
        assert cluster.stop_node(1)
        down_at = watcher.count()
        assert down_at < expect.written - 2000, "the job got too far before the broker stopped"
        wait_for(lambda: watcher.count() > down_at + 1000, 60,
                 "writes to go on with a broker down")
        assert cluster.start_node(1)
        assert job.wait(120) == 0, job.tail()
        watcher.mark()
    finally:
        watcher.close()
    check_exactly_once(bootstrap, topics, watcher, expect)


def test_single_broker_down_for_seconds_job_waits_and_resumes_exactly_once(
    lone_kafka: LocalKafka, tmp_path: Path,
) -> None:
    """The only broker stopped for a few seconds mid-run (at ~3%): the job waits, then
    finishes, exit 0."""
    bootstrap = lone_kafka.bootstrap
    topics, expect = loaded(bootstrap, replication=1, count=RECORDS)
    env = job_env(bootstrap, topics, tmp_path / "summaries", SOURCE_BATCH_SIZE=BATCH_1)
    watcher = Watcher(bootstrap, topics)
    try:
        job = start_under_way(env, tmp_path / "job.log", watcher, int(0.03 * expect.written))
        lone_kafka.stop()
        assert watcher.count() < expect.written - 2000, "the job got too far before the stop"
        time.sleep(DOWN_S)  # the scenario itself: the broker stays down this long
        assert job.process.poll() is None, job.tail()  # it waits for the broker
        lone_kafka.start()
        assert job.wait(120) == 0, job.tail()
        watcher.mark()
    finally:
        watcher.close()
    check_exactly_once(bootstrap, topics, watcher, expect)
