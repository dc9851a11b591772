"""Benchmark cases: preload, ceiling, hand-written loop, the dataflow on N processes."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from dataflow.generator.events import Shares
from dataflow.generator.producing import GeneratorOptions, run_generator
from dataflow.kafka_config import admin_config
from dataflow.metrics import accounting_holds
from dataflow.runner import child_environment
from dataflow.settings import Settings
from dataflow.topics import ensure_topics

# About 5% bad records and some filtered locales, like real traffic on a bad day.
MIX = Shares(missing_field=0.02, wrong_type=0.015, malformed=0.015, excluded_locale=0.03)
EXCLUDED = "RU"


@dataclass
class Run:
    """One measured run of one case."""

    records: int
    seconds: float
    cpu_seconds: float
    peak_rss_mb: list[float]
    accounting: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0

    @property
    def rate_after_first_read(self) -> float | None:
        """Records per second from the first record read to the exit: start-up left out."""
        reading = self.extra.get("reading_seconds")
        return self.records / reading if reading else None


class Topics:
    """uuid-named topics for one benchmark, deleted at the end."""

    def __init__(self, settings: Settings) -> None:
        self._config = admin_config(settings)
        self._admin = AdminClient(self._config)
        self.made: list[str] = []

    def make(self, kind: str, partitions: int) -> str:
        name = f"bench-{kind}-{uuid.uuid4().hex[:10]}"
        ensure_topics(self._config, [name], partitions)
        self.made.append(name)
        return name

    def delete_from(self, first: int) -> None:
        """Delete the topics made since there were ``first`` (a finished case's outputs: up
        to half a gigabyte each, so a run of every case needs no more disk than one)."""
        names, self.made = self.made[first:], self.made[:first]
        if names:
            for future in self._admin.delete_topics(names).values():
                future.result(30)

    def delete_all(self) -> None:
        self.delete_from(0)


def preload(settings: Settings, topic: str, records: int, partitions: int) -> None:
    """Fill ``topic`` with the benchmark mix at full speed (the project's generator)."""
    options = GeneratorOptions(rate=0, count=records, seed=7, partitions=partitions,
                               shares=MIX, topic=topic, progress_seconds=3600)
    summary = run_generator(settings, options)
    if summary.failed:
        msg = f"preload failed: {summary.first_error}"
        raise RuntimeError(msg)


def run_ceiling(settings: Settings, topics: Topics, source: str, partitions: int) -> Run:
    target = topics.make("ceiling", partitions)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "dataflow.bench.ceiling", source, target],
                          env=_env(settings), capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - started
    out = json.loads(done.stdout)
    return Run(out["records"], seconds, out["cpu_seconds"], [out["peak_rss_mb"]],
               accounting=out["failed"] == 0, extra={"loop_seconds": out["seconds"]})


def run_handloop(settings: Settings, topics: Topics, source: str, partitions: int) -> Run:
    """The job's pipeline as one plain loop (dataflow.bench.handloop), with the job's settings."""
    env = job_env(settings, topics, source, partitions, None, stop_at_end=True)
    launched, started = time.time(), time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "dataflow.bench.handloop"],
                          env=env, capture_output=True, text=True, check=True)
    seconds, ended = time.perf_counter() - started, time.time()
    out = json.loads(done.stdout)
    return Run(out["records"], seconds, out["cpu_seconds"], [out["peak_rss_mb"]],
               accounting=accounting_holds(out) and out["failed"] == 0,
               extra={"loop_seconds": out["seconds"], "written": out["written"],
                      **start_up([out], launched, ended)})


def job_env(settings: Settings, topics: Topics, source: str, partitions: int,
            summaries: Path | None, stop_at_end: bool) -> dict[str, str]:
    """The job's environment on fresh output topics; run summaries into ``summaries``."""
    names = {kind: topics.make(kind, partitions if kind == "out" else 1)
             for kind in ("out", "dlq", "counts", "late")}
    env = {**_env(settings), "INPUT_TOPIC": source, "OUTPUT_TOPIC": names["out"],
           "DLQ_TOPIC": names["dlq"], "COUNTS_TOPIC": names["counts"],
           "LATE_TOPIC": names["late"], "EXCLUDED_LOCALES": EXCLUDED,
           "STOP_AT_END": "true" if stop_at_end else "false", "LOG_LEVEL": "warning"}
    if summaries is not None:
        env["RUN_SUMMARY_DIR"] = str(summaries)
    return env


def exactly_once_env(topics: Topics) -> dict[str, str]:
    """PROCESSING_GUARANTEE=exactly-once with a group and state topic of the run's own (the
    group's committed offsets are where such a job resumes: a second run would read nothing)."""
    return {"PROCESSING_GUARANTEE": "exactly-once",
            "CONSUMER_GROUP": f"bench-eos-{uuid.uuid4().hex[:10]}",
            "STATE_TOPIC": topics.make("state", 1)}


def run_pipeline(settings: Settings, topics: Topics, source: str, partitions: int,
                 processes: int, checkout: Path | None = None,
                 more: dict[str, str] | None = None) -> Run:
    """The job through ``python -m dataflow run``; from another checkout when given; ``more``
    settings (exactly-once) when given."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**job_env(settings, topics, source, partitions, Path(tmp), stop_at_end=True),
               **(more or {})}
        if checkout is not None:  # that checkout's code only: cwd and PYTHONPATH point there
            env["PYTHONPATH"] = str(checkout)
        launched, started = time.time(), time.perf_counter()
        subprocess.run([sys.executable, "-m", "dataflow", "run", "--processes", str(processes),
                        "--base-port", str(free_ports(processes))], env=env, check=True,
                       cwd=checkout)
        seconds, ended = time.perf_counter() - started, time.time()
        summaries = [json.loads(p.read_text()) for p in Path(tmp).glob("*.json")]
    total = sum_summaries(summaries)
    return Run(total["consumed"], seconds, sum(s["cpu_seconds"] for s in summaries),
               [s["peak_rss_mb"] for s in summaries], accounting=accounting_holds(total),
               extra={"written": written_by_kind(total["produced"], env),
                      **start_up(summaries, launched, ended)})


def written_by_kind(produced: dict[str, int], env: dict[str, str]) -> dict[str, int]:
    """Records written per topic, named by kind (out, dlq, counts, late) instead of uuid names."""
    kinds = {env["OUTPUT_TOPIC"]: "out", env["DLQ_TOPIC"]: "dlq", env["COUNTS_TOPIC"]: "counts",
             env["LATE_TOPIC"]: "late"}
    return {kinds.get(topic, topic): n for topic, n in produced.items()}


def start_up(summaries: list[dict[str, Any]], launched: float, ended: float) -> dict[str, float]:
    """From the processes' wall-clock first reads (``first_read_at``) and the command's launch
    and exit: ``first_read_seconds``, launch to the last process's first read (the runner's own
    start included), and ``reading_seconds``, the first read of any process to the exit. Empty
    if a process did not report one (an older checkout)."""
    reads = [float(s["first_read_at"]) for s in summaries if s.get("first_read_at") is not None]
    if not reads or len(reads) != len(summaries):
        return {}
    return {"first_read_seconds": round(max(reads) - launched, 3),
            "reading_seconds": round(ended - min(reads), 3)}


def sum_summaries(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {"consumed": 0, "processed": 0, "filtered": {}, "dead_lettered": {},
                             "produced": {}}
    for s in summaries:
        total["consumed"] += s["consumed"]
        total["processed"] += s["processed"]
        for key in ("filtered", "dead_lettered", "produced"):
            for reason, n in s.get(key, {}).items():
                total[key][reason] = total[key].get(reason, 0) + n
    return total


def _env(settings: Settings) -> dict[str, str]:
    return {**child_environment(), "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers}


def free_ports(count: int) -> int:
    """First of ``count`` consecutive loopback ports that can all be bound now.

    Drawn from 10000-19999: below Linux's ephemeral range (32768-60999), where any
    outgoing connection (a Kafka client's, say) can take a port before the job binds it,
    and below 20000-32000, where the bench's and the tests' brokers listen: a client of a
    stopped broker keeps knocking on its port, and a job process listening there would
    take its bytes for a peer's handshake (Bytewax: "received incorrect timely handshake").
    """
    for _ in range(100):
        first = random.randrange(10_000, 20_000 - count)
        if all(is_free(port) for port in range(first, first + count)):
            return first
    msg = f"no {count} consecutive free ports found"
    raise RuntimeError(msg)


def is_free(port: int) -> bool:
    """Whether this loopback port can be bound now (nothing listens on it)."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
