"""The recovery layout of deploy/kubernetes, run on one host against the real broker.

In the StatefulSet each pod has its own volume, and its recovery-init script puts
only that pod's partition (part-K of N) on it. This runs the same init script for
two "pods", then two processes of one cluster, each with its own recovery
directory, twice: the second run must resume from the snapshots spread over the
two directories (writing nothing again), not start over.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.integration.jobs import ROOT, free_ports, job_env, job_topics
from tests.integration.outcomes import (
    Expected,
    check_nothing_lost,
    login_stream,
    processed_sources,
    read_outputs,
)
from tests.kafka_io import consume_all, produce_all
from tests.unit.test_kubernetes import run_recovery_init

PROCESSES = 2


def run_cluster(env: dict[str, str], volumes: list[Path], log: Path) -> list[int]:
    """Two worker processes, process K with recovery directory ``volumes[K]``; exit codes."""
    first = free_ports(PROCESSES)
    addresses = ";".join(f"127.0.0.1:{first + k}" for k in range(PROCESSES))
    children = []
    with open(log, "ab") as out:
        for k, volume in enumerate(volumes):
            child_env = {**env, "BYTEWAX_PROCESS_ID": str(k), "BYTEWAX_ADDRESSES": addresses,
                         "BYTEWAX_RECOVERY_DIRECTORY": str(volume),
                         "BYTEWAX_SNAPSHOT_INTERVAL": "1",
                         "BYTEWAX_RECOVERY_BACKUP_INTERVAL": "0"}
            children.append(subprocess.Popen(
                [sys.executable, "-m", "dataflow.worker", "dataflow.flow"], cwd=ROOT,
                env=child_env, stdout=out, stderr=subprocess.STDOUT))
            time.sleep(1.0)  # as the runner does: process 0 listens first
        try:
            return [child.wait(120) for child in children]
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
                    child.wait()


def start_cluster(bootstrap: str, make_topic: Callable[..., str], tmp_path: Path,
                  ) -> tuple[dict[str, str], Expected, list[Path]]:
    """Input of 3,000 records on 3 partitions, fresh topics, and one init'ed volume per pod."""
    records, expect = login_stream(3_000)
    input_topic = make_topic(partitions=3)
    produce_all(bootstrap, input_topic, records)
    topics = job_topics(make_topic, input_topic)
    volumes = []
    for k in range(PROCESSES):
        volume = tmp_path / f"volume-{k}"
        volume.mkdir()
        assert run_recovery_init(volume, k, addresses="a:1;b:1").returncode == 0  # N = 2
        assert sorted(p.name for p in volume.iterdir()) == [f"part-{k}.sqlite3"]
        volumes.append(volume)
    return topics, expect, volumes


def test_per_pod_recovery_volumes_resume_as_one_cluster(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path,
) -> None:
    """Init script per pod, one partition per volume: run 1 writes all, run 2 resumes (none)."""
    topics, expect, volumes = start_cluster(kafka_bootstrap, make_topic, tmp_path)
    env = job_env(kafka_bootstrap, topics, tmp_path / "summaries")
    log = tmp_path / "cluster.log"

    assert run_cluster(env, volumes, log) == [0, 0], log.read_text()[-3000:]
    output = consume_all(kafka_bootstrap, topics["output"])
    assert sorted(processed_sources(output)) == sorted(expect.good)

    assert run_cluster(env, volumes, log) == [0, 0], log.read_text()[-3000:]
    assert len(consume_all(kafka_bootstrap, topics["output"])) == len(output)  # resumed
    marks = {role: [{p: 10**9 for p in range(3)}] for role in ("output", "dlq")}
    check_nothing_lost(read_outputs(kafka_bootstrap, topics, marks), expect, topics["input"])


def test_a_lost_volume_makes_the_cluster_start_over_and_lose_nothing(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path,
) -> None:
    """Pod 1's volume replaced by an empty one: init makes part-1 anew; all is read again."""
    topics, expect, volumes = start_cluster(kafka_bootstrap, make_topic, tmp_path)
    env = job_env(kafka_bootstrap, topics, tmp_path / "summaries")
    log = tmp_path / "cluster.log"
    assert run_cluster(env, volumes, log) == [0, 0], log.read_text()[-3000:]

    (volumes[1] / "part-1.sqlite3").unlink()  # a new, empty volume for pod 1
    assert run_recovery_init(volumes[1], 1, addresses="a:1;b:1").returncode == 0
    assert run_cluster(env, volumes, log) == [0, 0], log.read_text()[-3000:]
    sources = processed_sources(consume_all(kafka_bootstrap, topics["output"]))
    assert sorted(sources) == sorted([*expect.good, *expect.good])  # everything twice
