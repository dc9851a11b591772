"""PROCESSING_GUARANTEE=exactly-once on the real broker: whatever is killed when, a consumer
reading committed data sees every input record's outputs once and exact window counts.

Each test compares a read_committed read of every output topic with the input: every
valid record processed once, every bad one dead-lettered once (byte-exact), the last
count record of each window exact, the late counts exact. Each uses a CONSUMER_GROUP of
its own, like its uuid topics: in this mode the group's committed offsets are the job's
position.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition

from dataflow.localkafka import LocalKafka
from tests.integration.jobs import (
    Feeder,
    Job,
    create_topics,
    job_env,
    job_topics,
    own_kafka,
    stop_leftovers,
    wait_for,
)
from tests.integration.outcomes import PARTITIONS, Expected, dead_sources, processed_sources
from tests.kafka_io import consume_committed

pytestmark = pytest.mark.slow
KILLS = 10
# 40 s of live input: long enough that most of the runs killed have input to work on.
RECORDS, RATE = 80_000, 2_000


@pytest.fixture(autouse=True)
def _no_leftover_jobs() -> Iterator[None]:
    yield
    stop_leftovers()


def check_exactly_once(bootstrap: str, topics: dict[str, str], expect: Expected) -> None:
    """Read committed: every output once, nothing missing, window and late counts exact."""
    processed = Counter(processed_sources(consume_committed(bootstrap, topics["output"])))
    assert set(processed) == expect.good
    assert processed.most_common(1)[0][1] == 1, processed.most_common(3)
    dead_messages = consume_committed(bootstrap, topics["dlq"])
    dead = Counter(dead_sources(dead_messages))
    assert set(dead) == set(expect.bad) and dead.most_common(1)[0][1] == 1
    for msg, source in zip(dead_messages, dead_sources(dead_messages), strict=True):
        assert (msg.key(), msg.value()) == expect.bad[source][:2]
    counts: dict[tuple[str, str, str], int] = {}
    for msg in sorted(consume_committed(bootstrap, topics["counts"]),
                      key=lambda m: (m.partition(), m.offset())):
        doc = json.loads(msg.value())
        counts[(doc["window_start"], doc["field"], doc["value"])] = doc["count"]
    assert counts == expect.counts
    late: Counter[tuple[str, str, str]] = Counter()
    for msg in consume_committed(bootstrap, topics["late"]):
        doc = json.loads(msg.value())
        late[(doc["window_start"], doc["field"], doc["value"])] += doc["count"]
    assert late == expect.late


def _env(bootstrap: str, topics: dict[str, str], tmp_path: Path, **more: str) -> dict[str, str]:
    return job_env(bootstrap, topics, tmp_path / "summaries",
                   PROCESSING_GUARANTEE="exactly-once",
                   CONSUMER_GROUP=f"eos-{uuid.uuid4().hex}", **more)


def _moved(bootstrap: str, env: dict[str, str], topic: str) -> int:
    """The input offsets committed to the job's group, summed (its progress); not waiting
    for the offsets of a transaction still open (a killed one stays open for a while);
    -1 while the broker cannot tell (its group coordinator is still loading)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": env["CONSUMER_GROUP"],
                         "isolation.level": "read_uncommitted"})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], 10)
    except KafkaException:
        return -1
    finally:
        consumer.close()
    return sum(max(0, tp.offset) for tp in found)


def _kill_after_progress(job: Job, bootstrap: str, env: dict[str, str], feeder: Feeder,
                         rnd: random.Random, processes: int) -> None:
    """Once this run committed something (or has nothing left to do), SIGKILL one of its
    processes at a random moment."""
    before = wait_for(lambda: _moved(bootstrap, env, feeder.topic) + 1, 30,
                      "the committed offsets") - 1

    def moved() -> bool:
        assert job.process.poll() is None, job.tail()
        now = _moved(bootstrap, env, feeder.topic)
        done = feeder.done and now == feeder.expect.consumed
        return (now > before or done) and len(job.workers()) == processes

    wait_for(moved, 90, "the run to commit a transaction", every=0.05)
    time.sleep(rnd.uniform(0.0, 1.5))
    os.kill(job.worker(rnd.randrange(processes)), signal.SIGKILL)
    assert job.wait(60) != 0, job.tail()


@pytest.mark.parametrize("processes", [1, 2])
def test_outputs_are_exact_after_sigkill_at_random_moments_and_in_a_commit(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path, processes: int,
) -> None:
    """10 kill -9s at seeded random moments of a live run (with and without the recovery
    directory), one in the middle of a transaction commit, then a run to the end: every
    output exactly once for read_committed consumers, counts exact."""
    feeder = Feeder(kafka_bootstrap, make_topic(partitions=PARTITIONS), RECORDS, RATE)
    topics = job_topics(make_topic, feeder.topic)
    env = _env(kafka_bootstrap, topics, tmp_path)
    live = {**env, "STOP_AT_END": "false"}
    rnd = random.Random(20_261_206 + processes)
    log = tmp_path / "job.log"
    for run in range(KILLS):
        recovery = tmp_path / "rec" if run % 2 else None
        job = Job.start(live, log, processes=processes, recovery=recovery)
        _kill_after_progress(job, kafka_bootstrap, env, feeder, rnd, processes)
    pausing = {**live, "DATAFLOW_FAULT_PAUSE_IN_COMMIT_S": "5"}
    seen = log.read_text().count("fault_pause_in_commit")
    job = Job.start(pausing, log, processes=processes)
    wait_for(lambda: log.read_text().count("fault_pause_in_commit") > seen, 90,
             "a transaction commit to begin")
    os.kill(job.worker(0), signal.SIGKILL)
    assert job.wait(60) != 0, job.tail()
    feeder.finish()
    job = Job.start(env, log, processes=processes)
    assert job.wait(180) == 0, job.tail()
    check_exactly_once(kafka_bootstrap, topics, feeder.expect)


@pytest.fixture(scope="module")
def lone_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A broker of this module's own, which its test stops."""
    with own_kafka(tmp_path_factory.mktemp("kafka-eos")) as kafka:
        yield kafka


def test_outputs_are_exact_when_the_broker_stops_and_starts_mid_run(
    lone_kafka: LocalKafka, tmp_path: Path,
) -> None:
    """The only broker stopped for 5 s while a live job writes, then started; the job is
    started again if it stopped: every output once, counts exact."""
    bootstrap = lone_kafka.bootstrap
    feeder = Feeder(bootstrap, create_topics(bootstrap, partitions=PARTITIONS)[0], 20_000,
                    RATE)
    topics = job_topics(lambda **kw: create_topics(bootstrap, **kw)[0], feeder.topic)
    env = _env(bootstrap, topics, tmp_path)
    log = tmp_path / "job.log"
    job = Job.start({**env, "STOP_AT_END": "false"}, log)
    wait_for(lambda: _moved(bootstrap, env, feeder.topic) > 0, 90, "a first commit")
    lone_kafka.stop()
    time.sleep(5)  # the scenario itself: the broker stays down this long
    lone_kafka.start()
    feeder.finish()
    if job.process.poll() is None:
        job.process.send_signal(signal.SIGTERM)
    job.wait(120)
    job = Job.start(env, log)
    assert job.wait(180) == 0, job.tail()
    check_exactly_once(bootstrap, topics, feeder.expect)
