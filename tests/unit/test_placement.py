"""Each input partition's sink partition runs on the worker that reads the partition."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.jobs import free_ports

ROOT = Path(__file__).resolve().parents[2]


def _where(directory: Path) -> dict[tuple[str, str], tuple[str, str]]:
    """(kind, partition) -> (pid, thread) from the lines the flow's partitions wrote."""
    found: dict[tuple[str, str], tuple[str, str]] = {}
    for path in directory.glob("*.txt"):
        for line in path.read_text().splitlines():
            kind, partition, pid, thread = line.split()
            assert (kind, partition) not in found, f"{kind} {partition} built twice"
            found[(kind, partition)] = (pid, thread)
    return found


@pytest.mark.parametrize(("processes", "workers", "partitions"),
                         [(2, 2, 12), (3, 1, 5), (1, 3, 11)])
def test_sink_partitions_run_where_their_input_partitions_are_read(
    tmp_path: Path, processes: int, workers: int, partitions: int,
) -> None:
    """On several processes and workers, the sink partition of each input partition is built
    on the same process and worker thread as its source partition: no record crosses."""
    first = free_ports(processes)
    addresses = ";".join(f"127.0.0.1:{first + i}" for i in range(processes))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PLACEMENT_DIR": str(tmp_path),
           "PLACEMENT_PARTITIONS": str(partitions)}
    command = [sys.executable, "-m", "bytewax.run", "tests.placement_flow:flow",
               "-w", str(workers)]
    if processes > 1:
        command += ["-a", addresses]
    runs = [subprocess.Popen([*command, *(["-i", str(i)] if processes > 1 else [])], env=env,
                             cwd=ROOT, stderr=subprocess.PIPE, text=True)
            for i in range(processes)]
    for run in runs:
        _, err = run.communicate(timeout=120)
        assert run.returncode == 0, err[-2000:]
    where = _where(tmp_path)
    assert {p for kind, p in where if kind == "source"} == {str(p) for p in range(partitions)}
    for partition in range(partitions):
        assert where[("sink", str(partition))] == where[("source", str(partition))]
    assert len({pid for pid, _ in where.values()}) == processes
