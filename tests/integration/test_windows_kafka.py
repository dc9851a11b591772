"""Event-time windows on the real broker with the shipped defaults: skewed backlogs, lateness,
clocks that are wrong, idle partitions, and a stop with downtime before a restart."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dataflow.transforms import iso_utc
from tests.integration.jobs import (
    Job,
    Watcher,
    create_topics,
    delete_topics,
    job_env,
    job_topics,
    run_job,
    stop_leftovers,
    wait_for,
)
from tests.integration.outcomes import (
    BASE,
    final_counts,
    header,
    login_stream,
    reference_windows,
)
from tests.kafka_io import consume_all, produce_all
from tests.records import login_bytes

RATES = (1, 4, 16, 64)  # events/s of four partitions over the same ten minutes
SPAN_S = 600
Record = tuple[bytes, bytes | None, int]


def _event(i: int, ts: int) -> bytes:
    return login_bytes(user_id=f"user-{i % 500}", timestamp=ts,
                       device_type=("android", "iOS", None)[i % 3],
                       locale=("US", "de", "fr")[i % 3 - 1])


def skewed_backlog() -> list[Record]:
    """51,000 events: partition p holds RATES[p] events per second of the same ten minutes."""
    return [(f"user-{k}".encode(), _event(k, BASE + k // rate), p)
            for p, rate in enumerate(RATES) for k in range(SPAN_S * rate)]


def windows(bootstrap: str, topic: str) -> dict[tuple[str, str, str], tuple[int, bool]]:
    """(window_start, field, value) -> (count, final) of the last record of each window."""
    last = {}
    for msg in sorted(consume_all(bootstrap, topic), key=lambda m: (m.partition(), m.offset())):
        doc = json.loads(msg.value())
        last[(doc["window_start"], doc["field"], doc["value"])] = (doc["count"], doc["final"])
    return last


def late_totals(bootstrap: str, topic: str) -> Counter[tuple[str, str, str]]:
    """Late events per (window_start, field, value), added up over the late records."""
    total: Counter[tuple[str, str, str]] = Counter()
    for msg in consume_all(bootstrap, topic):
        doc = json.loads(msg.value())
        total[(doc["window_start"], doc["field"], doc["value"])] += doc["count"]
    return total


@pytest.fixture(autouse=True)
def _no_leftover_jobs() -> Iterator[None]:
    yield
    stop_leftovers()


@pytest.fixture(scope="module")
def skewed_topic(kafka_bootstrap: str) -> Iterator[tuple[str, list[Record]]]:
    records = skewed_backlog()
    topic = create_topics(kafka_bootstrap, partitions=len(RATES))[0]
    produce_all(kafka_bootstrap, topic, records)
    yield topic, records
    delete_topics(kafka_bootstrap, [topic])


@pytest.mark.parametrize(("processes", "batch"), [(1, "2000"), (1, "500"), (3, "2000"),
                                                  (3, "500")])
def test_skewed_backlog_gives_exact_counts_and_nothing_late(
    kafka_bootstrap: str, make_topic: Callable[..., str], skewed_topic: tuple[str, list[Record]],
    tmp_path: Path, processes: int, batch: str,
) -> None:
    """Partitions of 1 to 64 events/s over the same ten minutes: every window exact, none
    late; the windows the watermark passed are final, the last one provisional."""
    input_topic, records = skewed_topic
    topics = job_topics(make_topic, input_topic)
    overrides = {} if batch == "2000" else {"SOURCE_BATCH_SIZE": batch}
    run_job(kafka_bootstrap, topics, processes, tmp_path, **overrides)
    expected, late = reference_windows([(p, v, True) for _, v, p in records])
    assert late == Counter()
    watermark = BASE + SPAN_S - 1 - 10  # the highest: newest event minus the lateness
    final = {iso_utc(start): start + 60 <= watermark for start in range(BASE, BASE + SPAN_S, 60)}
    assert windows(kafka_bootstrap, topics["counts"]) == {
        key: (n, final[key[0]]) for key, n in expected.items()}
    assert consume_all(kafka_bootstrap, topics["late"]) == []


@pytest.mark.parametrize(("processes", "batch"), [(1, "2000"), (3, "7")])
def test_out_of_order_events_are_late_the_same_way_on_any_layout(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path, processes: int,
    batch: str,
) -> None:
    """Events out of order within ALLOWED_LATENESS_SECONDS are counted, older ones are late:
    the counts and late counts follow from the topic alone (any processes, any batch size)."""
    records, expect = login_stream(6000)
    input_topic = make_topic(partitions=3)
    produce_all(kafka_bootstrap, input_topic, records)
    topics = job_topics(make_topic, input_topic)
    overrides = {} if batch == "2000" else {"SOURCE_BATCH_SIZE": batch}
    run_job(kafka_bootstrap, topics, processes, tmp_path, **overrides)
    assert sum(expect.late.values()) > 0
    assert final_counts(kafka_bootstrap, topics["counts"]) == expect.counts
    assert late_totals(kafka_bootstrap, topics["late"]) == expect.late


def test_event_a_day_ahead_is_dead_lettered_and_the_other_counts_are_exact(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path,
) -> None:
    """One event stamped a day ahead: future_timestamp dead letter, exit 0, nothing late."""
    ahead = int(time.time()) + 86_400
    good = [(f"u{i}".encode(), _event(i, BASE + i), 0) for i in range(200)]
    records: list[Record] = [*good[:100], (b"clock", _event(0, ahead), 0), *good[100:]]
    input_topic = make_topic(partitions=1)
    produce_all(kafka_bootstrap, input_topic, records)
    topics = job_topics(make_topic, input_topic)
    run_job(kafka_bootstrap, topics, 1, tmp_path)
    [dead] = consume_all(kafka_bootstrap, topics["dlq"])
    assert (dead.key(), header(dead, "dlq.reason")) == (b"clock", b"future_timestamp")
    assert b"s ahead of the time the record was written to Kafka" in header(dead, "dlq.detail")
    expected, _ = reference_windows([(0, v, True) for _, v, _ in good])
    assert final_counts(kafka_bootstrap, topics["counts"]) == expected
    assert consume_all(kafka_bootstrap, topics["late"]) == []


def test_windows_close_in_a_live_run_where_three_of_four_partitions_are_empty(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path,
) -> None:
    """Only partition 0 receives events: the others go idle and windows are written final."""
    input_topic = make_topic(partitions=4)
    topics = job_topics(make_topic, input_topic)
    env = job_env(kafka_bootstrap, topics, tmp_path, STOP_AT_END="false")
    job = Job.start(env, tmp_path / "job.log")
    produce_all(kafka_bootstrap, input_topic,
                [(b"k", _event(i, BASE + i * 10), 0) for i in range(15)])  # BASE .. BASE+140
    started = time.monotonic()

    def two_final_windows() -> dict[Any, Any] | None:
        assert job.process.poll() is None, job.tail()
        found = {k: v for k, v in windows(kafka_bootstrap, topics["counts"]).items() if v[1]}
        return found if {k[0] for k in found} == {iso_utc(BASE), iso_utc(BASE + 60)} else None

    found = wait_for(two_final_windows, 60, "two final windows")
    waited = time.monotonic() - started
    job.process.send_signal(signal.SIGTERM)
    job.wait(60)
    assert sum(n for (start, field, _), (n, _) in found.items()
               if field == "locale" and start == iso_utc(BASE)) == 6
    assert waited < 15 + 10  # IDLE_PARTITION_SECONDS, then about a second (plus start-up)


def test_stop_downtime_and_restart_with_recovery_change_no_count(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path,
) -> None:
    """A live job stopped with SIGTERM, 20 s down while events arrive, restarted from its
    recovery directory: the last record of every window is exact."""
    records, expect = login_stream(9000)
    half = len(records) // 2
    input_topic = make_topic(partitions=3)
    topics = job_topics(make_topic, input_topic)
    produce_all(kafka_bootstrap, input_topic, records[:half])
    watcher = Watcher(kafka_bootstrap, topics)
    try:
        job = Job.start(job_env(kafka_bootstrap, topics, tmp_path / "s1", STOP_AT_END="false"),
                        tmp_path / "job.log", recovery=tmp_path / "rec")
        written_half = sum(1 for i in range(half)
                           if (i % 3, i // 3) in expect.good or (i % 3, i // 3) in expect.bad)
        wait_for(lambda: watcher.count() >= written_half, 90, "the first half processed")
        time.sleep(2)  # a snapshot or two more
        job.process.send_signal(signal.SIGTERM)
        job.wait(60)
    finally:
        watcher.close()
    produce_all(kafka_bootstrap, input_topic, records[half:])
    time.sleep(20)  # downtime: the wall clock moves, event time must not
    run_job(kafka_bootstrap, topics, 1, tmp_path / "s2", recovery=tmp_path / "rec")
    assert final_counts(kafka_bootstrap, topics["counts"]) == expect.counts
