"""Counters of the job, served on Bytewax's own /metrics endpoint.

Steps increment them once per batch, not per record. For a finite run,
consumed == processed + filtered + dead_lettered, exactly; ``snapshot``
returns the numbers for tests, the benchmark and the end-of-run summary.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Gauge, start_http_server

CONSUMED = Counter("login_records_consumed", "Records read from the input topic.")
PROCESSED = Counter("login_records_processed", "Records enriched and sent to the output topic.")
FILTERED = Counter(
    "login_records_filtered", "Valid records dropped on purpose, by reason.", ["reason"]
)
DEAD_LETTERED = Counter(
    "login_records_dead_lettered", "Records sent to the dead-letter topic, by reason.", ["reason"]
)
LATE = Counter(
    "login_window_late_events",
    "Events that arrived after their window for a count field had closed (written to the "
    "late topic), by count field.",
    ["field"],
)
WINDOWS_WRITTEN = Counter(
    "login_windows_written",
    "Window count records written, by whether the window was complete (final) or "
    "provisional (the run ended first).",
    ["final"],
)
LAG = Gauge(
    "login_consumer_lag",
    "Records in the input partition not read yet (log end minus position), by partition.",
    ["partition"],
)
EXPIRED = Counter(
    "login_records_expired",
    "Records retention deleted before the job read them (resume offset below log start).",
)
PRODUCED = Counter(
    "login_records_produced", "Records Kafka confirmed as written, by topic.", ["topic"]
)


def _labelled(counter: Counter) -> dict[str, int]:
    values: dict[str, int] = {}
    for metric in counter.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                label = next(iter(sample.labels.values()), "")
                values[label] = int(sample.value)
    return values


def _plain(counter: Counter) -> int:
    return sum(_labelled(counter).values())


def snapshot() -> dict[str, Any]:
    """Current values of every counter in this process."""
    return {
        "consumed": _plain(CONSUMED),
        "processed": _plain(PROCESSED),
        "filtered": _labelled(FILTERED),
        "dead_lettered": _labelled(DEAD_LETTERED),
        "late": _labelled(LATE),
        "produced": _labelled(PRODUCED),
    }


def accounting_holds(snap: dict[str, Any]) -> bool:
    """consumed == processed + filtered + dead-lettered."""
    total = snap["processed"] + sum(snap["filtered"].values()) + sum(snap["dead_lettered"].values())
    return bool(snap["consumed"] == total)


def resources() -> dict[str, float]:
    """Peak resident memory (MB) and CPU seconds (user + system) of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3)}


def process_id(argv: list[str] | None = None) -> int:
    """This process's id in the Bytewax cluster: BYTEWAX_PROCESS_ID, else `-i` of bytewax.run."""
    args = sys.argv[1:] if argv is None else argv
    for flag in ("-i", "--process-id"):
        if flag in args[:-1]:
            value = args[args.index(flag) + 1]
            return int(value) if value.isdigit() else 0
    value = os.environ.get("BYTEWAX_PROCESS_ID", "")
    return int(value) if value.isdigit() else 0


def serve(address: str) -> str:
    """Serve /metrics on host:port+process id; return where it listens."""
    host, _, port = address.rpartition(":")
    listen_port = int(port) + process_id()
    start_http_server(listen_port, addr=host.strip("[]"))
    return f"{host}:{listen_port}"


def write_summary(directory: Path) -> Path:
    """Write this process's counters and resource use as JSON into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"summary-process{process_id()}-pid{os.getpid()}.json"
    path.write_text(json.dumps({**snapshot(), **resources()}, sort_keys=True))
    return path
