"""Running the job as a subprocess in failure tests: start, watch, kill, restart, read results.

``tests/integration/test_flow_kafka.py`` runs the job once and expects success;
the failure tests also need a job that fails, a job they kill, its worker
processes, the end offsets of a topic while the job runs, and the input each
output record came from.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from dataflow.bench.cases import free_ports, is_free
from dataflow.localkafka import LocalKafka
from dataflow.localkafka.layout import CONTROLLER_PORT_OFFSET
from tests.integration.outcomes import login_stream
from tests.kafka_io import produce_all

_QUIET = logging.getLogger("tests.watcher.librdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False
ROOT = Path(__file__).resolve().parents[2]


def wait_for(check: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(every)


def free_kafka_port(brokers: int) -> int:
    """A first client port whose client and controller ports (port + 100) are all free."""
    for _ in range(100):
        # Below the ephemeral range (32768-), apart from the jobs' ports (free_ports)
        port = random.randrange(20_000, 32_000)
        wanted = [*range(port, port + brokers),
                  *range(port + CONTROLLER_PORT_OFFSET, port + CONTROLLER_PORT_OFFSET + brokers)]
        if all(is_free(p) for p in wanted):
            return port
    msg = f"no free port range for {brokers} broker(s)"
    raise AssertionError(msg)


@contextlib.contextmanager
def own_kafka(state_dir: Path, brokers: int = 1) -> Iterator[LocalKafka]:
    """A broker (or 3-node cluster) of the test's own, which it may stop; stopped at the end."""
    kafka = LocalKafka(state_dir, port=free_kafka_port(brokers), brokers=brokers)
    kafka.start()
    try:
        yield kafka
    finally:
        kafka.stop()


def create_topics(bootstrap: str, count: int = 1, partitions: int = 1, replication: int = -1,
                  config: dict[str, str] | None = None) -> list[str]:
    """Fresh uuid-named topics on any cluster (make_topic only knows the session broker)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = [f"test-{uuid.uuid4().hex}" for _ in range(count)]
    futures = admin.create_topics([NewTopic(n, partitions, replication, config=config or {})
                                   for n in names], request_timeout=30)
    for future in futures.values():
        future.result(timeout=30)

    def ready() -> bool:
        topics = admin.list_topics(timeout=5).topics
        return all(n in topics and topics[n].error is None
                   and len(topics[n].partitions) == partitions
                   and all(p.leader >= 0 for p in topics[n].partitions.values())
                   for n in names)

    wait_for(ready, 30, f"topics {names} to have leaders")
    return names


def delete_topics(bootstrap: str, names: list[str]) -> None:
    """Delete topics made with create_topics."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.delete_topics(names, request_timeout=30).values():
        future.result(timeout=30)


def job_topics(make: Callable[..., str], input_topic: str, output_partitions: int = 3,
               output_config: dict[str, str] | None = None) -> dict[str, str]:
    """Fresh output, dead-letter, counts and late topics for a job reading ``input_topic``."""
    return {"input": input_topic,
            "output": make(partitions=output_partitions, config=output_config),
            "dlq": make(), "counts": make(), "late": make()}


def job_env(bootstrap: str, topics: dict[str, str], summaries: Path,
            **overrides: str) -> dict[str, str]:
    """The environment of a finite run (STOP_AT_END) reading and writing ``topics``."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("KAFKA_CONFIG_", "BYTEWAX_"))}
    env.update({
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "INPUT_TOPIC": topics["input"], "OUTPUT_TOPIC": topics["output"],
        "DLQ_TOPIC": topics["dlq"], "COUNTS_TOPIC": topics["counts"],
        "LATE_TOPIC": topics["late"],
        "STOP_AT_END": "true",
        "EXCLUDED_LOCALES": "BY", "RUN_SUMMARY_DIR": str(summaries), "LOG_FORMAT": "json",
    })
    env.update(overrides)
    return env


@dataclass
class Job:
    """One `python -m dataflow run` process; its output goes to a log file, not a pipe."""

    process: subprocess.Popen[bytes]
    log: Path
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def start(cls, env: dict[str, str], log: Path, processes: int = 1,
              recovery: Path | None = None, snapshot_s: int = 1) -> Job:
        cmd = [sys.executable, "-m", "dataflow", "run", "--processes", str(processes),
               "--base-port", str(free_ports(processes))]
        if recovery is not None:
            cmd += ["-r", str(recovery), "-s", str(snapshot_s), "-b", "0"]
        with open(log, "ab") as out:
            process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out,
                                       stderr=subprocess.STDOUT)
        job = cls(process, log)
        _STARTED.append(job)
        return job

    def wait(self, timeout: float) -> int:
        """The exit code; kill the whole job and fail if it runs past ``timeout`` s."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_all()
            msg = f"job still running after {timeout:.0f} s:\n{self.tail()}"
            raise AssertionError(msg) from None

    def workers(self) -> list[int]:
        """Pids of the worker processes the runner started (its children)."""
        return children(self.process.pid)

    def worker(self, index: int) -> int:
        """Pid of worker process ``index`` (BYTEWAX_PROCESS_ID or ``-i``; 0 when alone)."""
        for pid in self.workers():
            try:
                args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:  # it ended while we looked
                continue
            given = next((v[len(b"BYTEWAX_PROCESS_ID="):] for v in environ
                          if v.startswith(b"BYTEWAX_PROCESS_ID=")), None)
            if given is None:
                given = args[args.index(b"-i") + 1] if b"-i" in args else b"0"
            if int(given) == index:
                return pid
        msg = f"no worker process {index} among the runner's children"
        raise AssertionError(msg)

    def kill_all(self) -> None:
        """SIGKILL the runner's workers and the runner (cleanup after a failed test)."""
        for pid in self.workers():
            _kill(pid)
        self.process.kill()
        self.process.wait()

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, chars: int = 3000) -> str:
        return self.text()[-chars:]


_STARTED: list[Job] = []


def stop_leftovers() -> None:
    """Kill every job a test started and left running (a failed assertion mid-run)."""
    while _STARTED:
        job = _STARTED.pop()
        if job.process.poll() is None:
            job.kill_all()


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it ended already
        os.kill(pid, signal.SIGKILL)


def children(pid: int) -> list[int]:
    """Pids whose parent is ``pid``, read from /proc/*/stat (no psutil)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended while we looked
            continue
        fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
        if int(fields[1]) == pid:  # fields: state, ppid, ...
            found.append(int(stat.parent.name))
    return sorted(found)


class Watcher:
    """Counts the records of a job's output and DLQ topics while it writes them.

    ``mark()`` after each run records the end offsets, so ``read_outputs`` can
    tell which run wrote each record.
    """

    def __init__(self, bootstrap: str, topics: dict[str, str]) -> None:
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "tests-watch",
                                   "logger": _QUIET})  # "connection refused" while it is down
        self._partitions = {
            role: [TopicPartition(topics[role], p) for p in self._consumer.list_topics(
                topics[role], timeout=10).topics[topics[role]].partitions]
            for role in ("output", "dlq")}
        self.marks: dict[str, list[dict[int, int]]] = {role: [] for role in self._partitions}

    def ends(self, role: str) -> dict[int, int] | None:
        """End offset of each partition of the output or DLQ topic; None if no broker answers."""
        try:
            return {tp.partition: self._consumer.get_watermark_offsets(tp, timeout=2)[1]
                    for tp in self._partitions[role]}
        except KafkaException:
            return None

    def count(self) -> int:
        """Records in the output and DLQ topics now (0 while no broker answers)."""
        ends = [self.ends(role) for role in self._partitions]
        return sum(sum(e.values()) for e in ends if e)

    def mark(self) -> int:
        """Record the end offsets after a run (waiting for a broker); the records so far."""
        for role, marks in self.marks.items():
            marks.append(wait_for(lambda r=role: self.ends(r), 60, f"end offsets of {role}"))
        return sum(sum(marks[-1].values()) for marks in self.marks.values())

    def close(self) -> None:
        self._consumer.close()


def run_job(bootstrap: str, topics: dict[str, str], processes: int, summaries: Path,
            recovery: Path | None = None, **overrides: str) -> None:
    """`python -m dataflow run --processes N` with STOP_AT_END, as a user runs it; must succeed."""
    cmd = [sys.executable, "-m", "dataflow", "run", "--processes", str(processes),
           "--base-port", str(free_ports(processes))]
    if recovery is not None:
        cmd += ["-r", str(recovery), "-s", "1", "-b", "0"]
    done = subprocess.run(cmd, cwd=ROOT, env=job_env(bootstrap, topics, summaries, **overrides),
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]


class Feeder:
    """``records`` records of ``login_stream`` written to a 3-partition input topic in the
    background, ``rate`` a second."""

    def __init__(self, bootstrap: str, topic: str, records: int, rate: int) -> None:
        self.topic = topic
        self._seconds = records / rate
        self._rate = rate
        stream, self.expect = login_stream(records)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._write, args=(bootstrap, stream),
                                        daemon=True)
        self._thread.start()

    def _write(self, bootstrap: str, records: list[tuple[bytes, bytes | None, int]]) -> None:
        try:
            produce_all(bootstrap, self.topic, records, per_second=self._rate)
        except BaseException as exc:  # reported by finish(), in the test's thread
            self._error = exc

    @property
    def done(self) -> bool:
        """Whether all of the input is written."""
        return not self._thread.is_alive()

    def finish(self) -> None:
        """Wait until all of the input is written; fail the test if it could not be."""
        self._thread.join(self._seconds + 60)
        assert not self._thread.is_alive(), "the input was not written within a minute"
        if self._error is not None:
            raise self._error
