"""A worker killed mid-stream: with recovery the job resumes from its last snapshot, none lost.

Bytewax snapshots the source offsets and the window state together every
``-s`` seconds; after ``kill -9`` the restarted job resumes from the last
snapshot every worker committed, so what was written after it is written
again (at-least-once). Each output record says which input record it came
from (``source.*`` / ``dlq.source.*`` headers), which is how the tests find
the duplicates and check they come only from the replayed interval.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.jobs import (
    Feeder,
    Job,
    Watcher,
    create_topics,
    delete_topics,
    job_env,
    job_topics,
    stop_leftovers,
    wait_for,
)
from tests.integration.outcomes import (
    PARTITIONS,
    Outputs,
    check_nothing_lost,
    final_counts,
    read_outputs,
    summed,
)

pytestmark = pytest.mark.slow

RECORDS = 60_000
RATE = 4_000  # input records written a second while the job runs: 15 s of input
KILLS = (0.2, 0.6)  # kill a worker when the output holds this share of the expected records
SNAPSHOT_S = 1
# The bound on duplicates: a restart resumes from the last snapshot every worker
# committed, at most a few snapshot intervals before the kill, so it writes again
# at most what the job wrote in the REPLAY_BOUND_S before the kill plus what it
# wrote between the kill and its stop.
REPLAY_BOUND_S = 3 * SNAPSHOT_S


@pytest.fixture
def fed_input(kafka_bootstrap: str) -> Iterator[Feeder]:
    """An input topic being written while the test runs."""
    topic = create_topics(kafka_bootstrap, partitions=PARTITIONS)[0]
    feeder = Feeder(kafka_bootstrap, topic, RECORDS, RATE)
    yield feeder
    feeder.finish()
    delete_topics(kafka_bootstrap, [topic])


@pytest.fixture(autouse=True)
def _no_leftover_jobs() -> Iterator[None]:
    yield
    stop_leftovers()


def replayed(out: Outputs, run: int) -> dict[int, tuple[int, int, int]]:
    """Per input partition: (first offset ``run`` wrote, records it wrote again, of them)."""
    before = {src for src, k in out.sources() if k < run}
    mine = [src for src, k in out.sources() if k == run]
    result = {}
    for p in range(PARTITIONS):
        offsets = [o for q, o in mine if q == p]
        again = [o for o in offsets if (p, o) in before]
        result[p] = (min(offsets, default=-1), len(again), len(offsets))
    return result


def check_replays(out: Outputs, runs: int) -> list[int]:
    """Duplicates only from each replayed interval; returns the duplicates of each restart.

    After crash k, run k+1 starts each input partition at its resume offset R
    (the last snapshot) and writes every record from R on exactly once. So: no
    run writes a record twice; every record an earlier run wrote at or after R
    is written again (the replayed interval); none before R is; and nothing
    before R was left unwritten. A run that is itself killed may stop before it
    has caught up with the earlier run on a partition: for it, the replayed
    interval ends at the highest offset it wrote there.
    """
    per_run = Counter(out.sources())
    assert max(per_run.values()) == 1, "a run wrote the same input record twice"
    duplicates = []
    for run in range(1, runs):
        before = {src for src, k in out.sources() if k < run}
        mine = {src for src, k in out.sources() if k == run}
        dup = 0
        for p, (resume, again, _) in replayed(out, run).items():
            top = max((o for q, o in mine if q == p), default=-1) if run < runs - 1 else None
            earlier = {o for q, o in before if q == p and (top is None or o <= top)}
            assert {o for o in earlier if o >= resume} == {
                o for q, o in mine if q == p and (q, o) in before}
            assert again == len({o for o in earlier if o >= resume})
            dup += again
        duplicates.append(dup)
        assert mine, f"run {run} wrote nothing"
    return duplicates


Series = list[tuple[float, int]]  # (monotonic time, records in output + DLQ)


def count_at(series: Series, moment: float) -> int:
    """Records written by ``moment``: the last sample taken at or before it (0 before any)."""
    return max((count for when, count in series if when <= moment), default=0)


def kill_worker_at(job: Job, watcher: Watcher, target: int, victim: int,
                   series: Series) -> float:
    """SIGKILL worker process ``victim`` once output + DLQ hold ``target`` records."""
    def reached() -> bool:
        assert job.process.poll() is None, f"the job ended before the kill:\n{job.tail()}"
        series.append((time.monotonic(), watcher.count()))
        return series[-1][1] >= target and len(job.workers()) == 2

    wait_for(reached, 120, f"{target} records in the output", every=0.02)
    os.kill(job.worker(victim), signal.SIGKILL)
    return time.monotonic()


def test_worker_killed_twice_mid_stream_resumes_with_nothing_lost(
    kafka_bootstrap: str, make_topic: Callable[..., str], fed_input: Feeder, tmp_path: Path,
) -> None:
    """kill -9 of a worker at ~20% and ~60%, restarts with recovery: none lost, dups bounded."""
    input_topic, expect = fed_input.topic, fed_input.expect
    topics = job_topics(make_topic, input_topic)
    env = job_env(kafka_bootstrap, topics, tmp_path / "summaries")
    live = {**env, "STOP_AT_END": "false"}
    watcher = Watcher(kafka_bootstrap, topics)
    series: Series = []
    bounds = []
    try:
        for n, share in enumerate(KILLS):
            job = Job.start(live, tmp_path / "job.log", processes=2, recovery=tmp_path / "rec",
                            snapshot_s=SNAPSHOT_S)
            killed_at = kill_worker_at(job, watcher, int(share * expect.written), victim=n % 2,
                                       series=series)
            assert job.wait(60) != 0, job.tail()
            stopped = watcher.mark()
            series.append((time.monotonic(), stopped))
            bounds.append(stopped - count_at(series, killed_at - REPLAY_BOUND_S))
        fed_input.finish()
        job = Job.start(env, tmp_path / "job.log", processes=2, recovery=tmp_path / "rec",
                        snapshot_s=SNAPSHOT_S)
        assert job.wait(120) == 0, job.tail()
        watcher.mark()
    finally:
        watcher.close()

    out = read_outputs(kafka_bootstrap, topics, watcher.marks)
    check_nothing_lost(out, expect, input_topic)
    duplicates = check_replays(out, runs=len(KILLS) + 1)
    assert len(out.sources()) == expect.written + sum(duplicates)
    for dup, bound in zip(duplicates, bounds, strict=True):
        assert dup <= bound, (duplicates, bounds)
    assert final_counts(kafka_bootstrap, topics["counts"]) == expect.counts


def test_restart_without_recovery_reprocesses_everything_and_loses_nothing(
    kafka_bootstrap: str, make_topic: Callable[..., str], fed_input: Feeder, tmp_path: Path,
) -> None:
    """Without -r a restart reads from STARTING_OFFSET=earliest: all again, none lost."""
    input_topic, expect = fed_input.topic, fed_input.expect
    topics = job_topics(make_topic, input_topic)
    watcher = Watcher(kafka_bootstrap, topics)
    try:
        env = job_env(kafka_bootstrap, topics, tmp_path / "run1", STOP_AT_END="false")
        job = Job.start(env, tmp_path / "job.log", processes=2)
        kill_worker_at(job, watcher, int(0.3 * expect.written), victim=0, series=[])
        assert job.wait(60) != 0, job.tail()
        watcher.mark()
        fed_input.finish()
        env = job_env(kafka_bootstrap, topics, tmp_path / "run2", STARTING_OFFSET="earliest")
        job = Job.start(env, tmp_path / "job.log", processes=2)
        assert job.wait(120) == 0, job.tail()
        watcher.mark()
    finally:
        watcher.close()

    out = read_outputs(kafka_bootstrap, topics, watcher.marks)
    check_nothing_lost(out, expect, input_topic)
    first = [src for src, run in out.sources() if run == 0]
    second = [src for src, run in out.sources() if run == 1]
    assert sorted(second) == sorted(expect.good | set(expect.bad))  # all of it, once
    assert 0 < len(first) < expect.written  # the killed run had written part of it
    assert summed(tmp_path / "run2") == {
        "consumed": RECORDS, "processed": len(expect.good),
        "filtered": len(expect.filtered), "dead_lettered": len(expect.bad)}
    assert final_counts(kafka_bootstrap, topics["counts"]) == expect.counts
