"""Start-up guards on the real broker: recovery state written with other settings is refused,
and so is a second job on a CONSUMER_GROUP or recovery directory that a running job uses.

Each test uses a uuid CONSUMER_GROUP of its own, as it uses uuid topics: the instances
group ``<CONSUMER_GROUP>.instances`` lives on the shared session broker, where another
test's job (or the zombie of a job killed a moment ago) would otherwise count as a
running instance. Everything else is the shipped default.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewPartitions

from tests.integration.jobs import (
    ROOT,
    Job,
    children,
    free_ports,
    job_env,
    job_topics,
    run_job,
    stop_leftovers,
    wait_for,
)
from tests.integration.outcomes import BASE, summed
from tests.kafka_io import consume_all, produce_all
from tests.records import login_bytes

HOST = socket.gethostname()
REFUSED_WITHIN_S = 15.0


@pytest.fixture(autouse=True)
def _no_leftover_jobs() -> Iterator[None]:
    yield
    stop_leftovers()


def _logins(n: int, partition: int = 0, first: int = 0) -> list[tuple[bytes, bytes, int]]:
    return [(f"u{i}".encode(), login_bytes(user_id=f"u{i}", timestamp=BASE + i), partition)
            for i in range(first, first + n)]


def members(bootstrap: str, group: str) -> list[str]:
    """client.id of each member of a consumer group (none when it does not exist)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    description = admin.describe_consumer_groups([group], request_timeout=10)[group].result()
    return sorted(m.client_id for m in description.members)


def pids_of(client_ids: list[str]) -> set[int]:
    """The pids named by instance client ids (login-dataflow/<cluster>/<index>/<pid>@<host>)."""
    return {int(c.rsplit("/", 1)[1].split("@")[0]) for c in client_ids}


def refused(env: dict[str, str], recovery: Path | None = None,
            timeout: float = 40.0) -> tuple[int, str, float]:
    """Run `python -m dataflow run` that should stop at start-up: exit code, stderr, seconds.
    One that keeps running past ``timeout`` is killed with its processes, and the test fails."""
    cmd = [sys.executable, "-m", "dataflow", "run", "--base-port", str(free_ports(1))]
    if recovery is not None:
        cmd += ["-r", str(recovery), "-s", "1", "-b", "0"]
    began = time.monotonic()
    process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for pid in children(process.pid):
            with contextlib.suppress(ProcessLookupError):  # it ended already
                os.kill(pid, signal.SIGKILL)
        process.kill()
        process.communicate()
        msg = f"the second job was not refused: still running after {timeout:.0f} s"
        raise AssertionError(msg) from None
    return process.returncode, stderr, time.monotonic() - began


def test_recovery_state_written_with_another_window_length_is_refused(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path,
) -> None:
    """A run with recovery, then WINDOW_SECONDS=300 on its directory: exit 2 and one line
    naming the setting, the saved 60 and the new 300, and what to do."""
    topics = job_topics(make_topic, make_topic(partitions=2))
    produce_all(kafka_bootstrap, topics["input"], _logins(20))
    group = f"g-{uuid.uuid4().hex}"
    rec = tmp_path / "rec"
    run_job(kafka_bootstrap, topics, 1, tmp_path / "s1", recovery=rec, CONSUMER_GROUP=group)
    env = job_env(kafka_bootstrap, topics, tmp_path / "s2", CONSUMER_GROUP=group,
                  WINDOW_SECONDS="300")
    code, stderr, _ = refused(env, recovery=rec)
    assert (code, stderr) == (2, (
        f"login-dataflow: error: WINDOW_SECONDS: the recovery state in {rec} was written with "
        "WINDOW_SECONDS=60, this job has WINDOW_SECONDS=300, and the saved state is only valid "
        "with the values it was written with; start with a new recovery directory (-r or "
        "BYTEWAX_RECOVERY_DIRECTORY; the job then starts from STARTING_OFFSET), or set "
        "WINDOW_SECONDS=60 again\n"))


def test_a_grown_input_topic_is_accepted_and_its_new_partition_named(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path,
) -> None:
    """A partition added between two runs with recovery: the second run resumes the old
    partitions, reads the new one, and logs it as new since the state was written."""
    topics = job_topics(make_topic, make_topic(partitions=2))
    produce_all(kafka_bootstrap, topics["input"], _logins(20))
    group = f"g-{uuid.uuid4().hex}"
    rec = tmp_path / "rec"
    run_job(kafka_bootstrap, topics, 1, tmp_path / "s1", recovery=rec, CONSUMER_GROUP=group)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_partitions([NewPartitions(topics["input"], 3)])[topics["input"]].result(30)
    wait_for(lambda: len(admin.list_topics(topics["input"], timeout=5)
                         .topics[topics["input"]].partitions) == 3, 30, "the third partition")
    produce_all(kafka_bootstrap, topics["input"],
                [*_logins(1, partition=0, first=20), *_logins(1, partition=2, first=21)])
    job = Job.start(job_env(kafka_bootstrap, topics, tmp_path / "s2", CONSUMER_GROUP=group),
                    tmp_path / "job.log", recovery=rec)
    assert job.wait(120) == 0, job.tail()
    assert summed(tmp_path / "s2")["consumed"] == 2
    logged = [json.loads(line) for line in job.text().splitlines()
              if '"input_partitions_new_since_state"' in line]
    assert [entry["partitions"] for entry in logged] == [[2]]


def test_a_second_job_on_the_same_consumer_group_is_refused_and_the_first_runs_on(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path,
) -> None:
    """A live job runs; a second `python -m dataflow run` with the same CONSUMER_GROUP and
    topics exits 2 within 15 s with one line naming the first; the first keeps running and
    leaves the group as soon as it stops."""
    topics = job_topics(make_topic, make_topic(partitions=2))
    group = f"g-{uuid.uuid4().hex}"
    env = job_env(kafka_bootstrap, topics, tmp_path / "s1", CONSUMER_GROUP=group,
                  STOP_AT_END="false")
    first = Job.start(env, tmp_path / "first.log")
    wait_for(lambda: members(kafka_bootstrap, f"{group}.instances"), 30, "the first job")
    worker = first.worker(0)
    code, stderr, took = refused(env)
    line = stderr.splitlines()[-1]
    assert code == 2 and took < REFUSED_WITHIN_S, (code, took, stderr)
    assert re.fullmatch(
        re.escape(f"login-dataflow: error: CONSUMER_GROUP '{group}' is in use by a running job "
                  "(process 0 of cluster ") + "[0-9a-f]{8}" + re.escape(
            f", pid {worker} on host {HOST}, member of group '{group}.instances'); stop it, "
            "or give this job its own CONSUMER_GROUP"), line), stderr
    assert stderr.count("login-dataflow: error:") == 1
    assert first.process.poll() is None, first.tail()
    assert pids_of(members(kafka_bootstrap, f"{group}.instances")) == {worker}
    first.process.send_signal(signal.SIGTERM)
    assert first.wait(60) == 143
    assert members(kafka_bootstrap, f"{group}.instances") == []


def test_of_two_jobs_started_at_the_same_moment_exactly_one_stops(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path,
) -> None:
    """Two live jobs with one CONSUMER_GROUP started together: exactly one exits 2 with a
    line naming the other (after its join, or before it), and the other runs on alone."""
    topics = job_topics(make_topic, make_topic(partitions=2))
    group = f"g-{uuid.uuid4().hex}"
    env = job_env(kafka_bootstrap, topics, tmp_path / "s1", CONSUMER_GROUP=group,
                  STOP_AT_END="false")
    jobs = [Job.start(env, tmp_path / "a.log"), Job.start(env, tmp_path / "b.log")]
    wait_for(lambda: any(job.process.poll() is not None for job in jobs), 30, "one to stop")
    time.sleep(2)  # the other one would have stopped by now as well
    stopped = [job for job in jobs if job.process.poll() is not None]
    assert len(stopped) == 1, [job.tail() for job in jobs]
    running = next(job for job in jobs if job is not stopped[0])
    assert stopped[0].process.returncode == 2
    line = stopped[0].text().splitlines()[-1]
    assert line.startswith(f"login-dataflow: error: CONSUMER_GROUP '{group}' is in use by "), line
    assert f", pid {running.worker(0)} on host {HOST}, member of group '{group}.instances')" \
        in line
    assert pids_of(members(kafka_bootstrap, f"{group}.instances")) == {running.worker(0)}


def test_a_job_killed_with_sigkill_restarts_at_once_once_its_zombies_leave(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path,
) -> None:
    """kill -9 of a 2-process job and an immediate restart: the new processes wait for the
    dead members to leave the instances group, then run."""
    topics = job_topics(make_topic, make_topic(partitions=2))
    group = f"g-{uuid.uuid4().hex}"
    env = job_env(kafka_bootstrap, topics, tmp_path / "s1", CONSUMER_GROUP=group,
                  STOP_AT_END="false")
    first = Job.start(env, tmp_path / "first.log", processes=2)
    wait_for(lambda: len(members(kafka_bootstrap, f"{group}.instances")) == 2, 30,
             "both processes of the first job")
    first.kill_all()
    second = Job.start(env, tmp_path / "second.log", processes=2)
    wait_for(lambda: len(second.workers()) == 2, 30, "both processes of the second job")
    wanted = set(second.workers())
    wait_for(lambda: pids_of(members(kafka_bootstrap, f"{group}.instances")) == wanted, 30,
             "the second job's processes, and only them, in the instances group")
    assert second.process.poll() is None, second.tail()
    assert "instances_waiting" in second.text() and "instances_gone" in second.text()
    produce_all(kafka_bootstrap, topics["input"], _logins(5))
    wait_for(lambda: len(consume_all(kafka_bootstrap, topics["output"])) == 5, 30,
             "the second job to process what came after the restart")
    second.process.send_signal(signal.SIGTERM)
    assert second.wait(60) == 143


def test_a_second_job_on_the_same_recovery_directory_is_refused(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path,
) -> None:
    """A live job with recovery runs; a second one on its directory (another CONSUMER_GROUP)
    exits 2 at once with one line naming the directory and the pid that holds it."""
    topics = job_topics(make_topic, make_topic(partitions=2))
    group = f"g-{uuid.uuid4().hex}"
    rec = tmp_path / "rec"
    env = job_env(kafka_bootstrap, topics, tmp_path / "s1", CONSUMER_GROUP=group,
                  STOP_AT_END="false")
    first = Job.start(env, tmp_path / "first.log", recovery=rec)
    wait_for(lambda: members(kafka_bootstrap, f"{group}.instances"), 30, "the first job")
    other = {**env, "CONSUMER_GROUP": f"{group}-other"}
    code, stderr, took = refused(other, recovery=rec)
    assert (code, stderr) == (2, (
        f"login-dataflow: error: recovery directory {rec} is in use by a running job (pid "
        f"{first.worker(0)} on host {HOST} holds .lock-process-0); stop it, or give this job "
        "its own recovery directory\n"))
    assert took < REFUSED_WITHIN_S
    assert first.process.poll() is None, first.tail()


def _address_line(port: int, reason: str) -> str:
    """The one line of a process 0 whose cluster port ``port`` failed for ``reason`` (the
    rest of stderr is the JSON log)."""
    return (f"login-dataflow: error: ClusterAddressError: process 0 could not open the "
            f"cluster's connections on 127.0.0.1:{port} ({reason}): another process listens "
            "on or connects to that port; stop it, or give the job free ports (python -m "
            "dataflow run --base-port, or -a/BYTEWAX_ADDRESSES of bytewax.run)")


@pytest.mark.parametrize("entry", ["bytewax.run", "dataflow.worker"])
def test_a_cluster_port_held_by_another_process_is_one_line_and_exit_2(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path, entry: str,
) -> None:
    """Process 0's cluster port taken by another listener: one line naming the process, its
    address and what to do, exit 2; no Bytewax trace, under both entry points."""
    topics = job_topics(make_topic, make_topic(partitions=2))
    env = job_env(kafka_bootstrap, topics, tmp_path / "s", CONSUMER_GROUP=f"g-{uuid.uuid4().hex}")
    first = free_ports(2)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", first))
        holder.listen()
        done = subprocess.run(
            [sys.executable, "-m", entry, "dataflow.flow", "-i", "0",
             "-a", f"127.0.0.1:{first};127.0.0.1:{first + 1}"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            timeout=60, check=False)
    lines = done.stderr.splitlines()
    assert done.returncode == 2, done.stderr
    assert [line for line in lines if not line.startswith("{")] == [
        _address_line(first, "Address already in use (os error 98)")], done.stderr


def test_a_stray_connection_to_a_cluster_port_is_one_line_and_exit_2(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path,
) -> None:
    """Something not of the cluster connects to process 0's port (a Kafka client of a broker
    that listened there, say): one line naming the handshake and the port, exit 2."""
    topics = job_topics(make_topic, make_topic(partitions=2))
    env = job_env(kafka_bootstrap, topics, tmp_path / "s", CONSUMER_GROUP=f"g-{uuid.uuid4().hex}")
    first = free_ports(2)
    job = subprocess.Popen(
        [sys.executable, "-m", "bytewax.run", "dataflow.flow", "-i", "0",
         "-a", f"127.0.0.1:{first};127.0.0.1:{first + 1}"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    def connected() -> socket.socket | None:
        stray = socket.socket()
        if stray.connect_ex(("127.0.0.1", first)) == 0:
            return stray
        stray.close()
        return None

    stray = None
    try:
        stray = wait_for(connected, 60, "process 0 to listen", every=0.02)
        stray.sendall(bytes(range(64)))  # not a timely handshake (a Kafka request, say)
        _, stderr = job.communicate(timeout=60)
    finally:
        if stray is not None:
            stray.close()
        if job.poll() is None:
            job.kill()
            job.communicate()
    assert job.returncode == 2, stderr
    assert [line for line in stderr.splitlines() if not line.startswith("{")] == [
        _address_line(first, "received incorrect timely handshake")], stderr
