"""Counters of the job, served on Bytewax's own /metrics endpoint.

Steps increment them once per batch, not per record. For a finite run,
consumed == processed + filtered + dead_lettered, exactly; ``snapshot``
returns the numbers for tests, the benchmark and the end-of-run summary.

Two things are read where they live instead of being counted: the window shards
(``track_open_windows``: the oldest window still open) and the input readers
(``track_input``: how far a ``STOP_AT_END`` run is toward its end offsets). Each
registers once when it is built; reading them costs the hot path nothing.
"""

from __future__ import annotations

import json
import math
import os
import resource
import sys
import threading
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Gauge, start_http_server

from dataflow.recovery_guard import bytewax_option

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
OLDEST_OPEN_WINDOW = Gauge(
    "login_window_oldest_open_start_seconds",
    "Start (event time, epoch seconds) of the oldest window still open on this process's "
    "window shards; NaN when none is open.",
)

_tracked = threading.Lock()  # registrations come from worker and reader-opening threads
_shards: weakref.WeakSet[Any] = weakref.WeakSet()
_readers: weakref.WeakSet[Any] = weakref.WeakSet()


def track_open_windows(shard: Any) -> None:
    """A window shard of this process (``dataflow.windows.ShardWindows``); its open windows
    are the keys of ``shard.state.windows``, their starts."""
    with _tracked:
        _shards.add(shard)


def oldest_open_window() -> int | None:
    """Start of the oldest window open on this process's shards; None when none is open."""
    with _tracked:
        shards = list(_shards)
    starts = []
    for shard in shards:
        try:
            starts.append(min(shard.state.windows, default=None))
        except RuntimeError:  # resized by its worker meanwhile: left out this once
            continue
    return min((s for s in starts if s is not None), default=None)


def _oldest_open_or_nan() -> float:
    oldest = oldest_open_window()
    return math.nan if oldest is None else float(oldest)


OLDEST_OPEN_WINDOW.set_function(_oldest_open_or_nan)


def track_input(reader: Any) -> None:
    """An input partition's reader (``dataflow.kafka_source.PartitionReader``): its ``start``
    and ``position``, and ``end`` (None unless ``STOP_AT_END``), are offsets."""
    with _tracked:
        _readers.add(reader)


def input_progress() -> tuple[int, int] | None:
    """(offsets read, offsets to read) since start-up toward the end offsets of a
    ``STOP_AT_END`` run, over this process's partitions; None when it has none."""
    with _tracked:
        readers = list(_readers)
    finite = [(r.start, r.position, r.end) for r in readers if r.end is not None]
    if not finite:
        return None
    done = sum(max(0, min(position, end) - start) for start, position, end in finite)
    return done, sum(max(0, end - start) for start, _, end in finite)


def windows_written() -> int:
    """Window count records written by this process, final and provisional."""
    return _plain(WINDOWS_WRITTEN)


def lag() -> int:
    """Records not read yet, summed over this process's input partitions."""
    return sum(int(sample.value) for metric in LAG.collect() for sample in metric.samples)


# time.monotonic() and time.time() when this process first read a record (``mark_first_read``).
_first_read: float | None = None
_first_read_at: float | None = None


def mark_first_read() -> None:
    """Remember when this process read its first record; later calls only compare a global."""
    global _first_read, _first_read_at  # one process-wide instant, set once
    if _first_read is None:
        _first_read, _first_read_at = time.monotonic(), time.time()


def first_read_at() -> float | None:
    """Wall-clock time (epoch seconds) of this process's first record read; None before it.
    Whoever launched the process measures start-up from it, launcher included."""
    return _first_read_at


def process_age_seconds() -> float | None:
    """Seconds since this process was started (exec), from /proc/self/stat; None off Linux.

    The kernel records the start in clock ticks since boot (1/100 s here), on the
    boot-time clock, so the age is CLOCK_BOOTTIME now minus that. It covers
    everything from exec: interpreter start-up and every import, which no clock
    inside Python sees.
    """
    try:
        stat = Path("/proc/self/stat").read_text()
        # Fields after "pid (comm)": state is field 3, starttime field 22 (proc(5)).
        start_ticks = int(stat.rpartition(")")[2].split()[19])
        return time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def first_read_seconds() -> float | None:
    """Seconds from process start to the first record read; None before it (or off Linux)."""
    if _first_read is None:
        return None
    age = process_age_seconds()
    if age is None:
        return None
    return round(age - (time.monotonic() - _first_read), 3)


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
        "first_read_seconds": first_read_seconds(),
        "first_read_at": first_read_at(),
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


def cluster_addresses(argv: list[str] | None = None,
                      environ: Mapping[str, str] | None = None) -> list[str]:
    """The cluster's host:port addresses as bytewax.run reads them: -a/--addresses or
    BYTEWAX_ADDRESSES (';'-separated), or BYTEWAX_HOSTFILE_PATH's lines; [] when alone."""
    env = os.environ if environ is None else environ
    addresses = bytewax_option(("-a", "--addresses"), "BYTEWAX_ADDRESSES", argv, env) or ""
    found = [a.strip() for a in addresses.split(";") if a.strip()]
    if not found and env.get("BYTEWAX_HOSTFILE_PATH"):
        try:
            lines = Path(env["BYTEWAX_HOSTFILE_PATH"]).read_text().splitlines()
        except OSError:
            lines = []
        found = [line.strip() for line in lines if line.strip()]
    return found


def cluster_shape(argv: list[str] | None = None,
                  environ: Mapping[str, str] | None = None) -> tuple[int, int]:
    """(processes in the Bytewax cluster, worker threads per process), as bytewax.run reads
    them (``cluster_addresses``; -w or BYTEWAX_WORKERS_PER_PROCESS); 1 where none is given."""
    env = os.environ if environ is None else environ
    processes = len(cluster_addresses(argv, env))
    workers = bytewax_option(("-w", "--workers-per-process"), "BYTEWAX_WORKERS_PER_PROCESS",
                             argv, env) or ""
    return max(processes, 1), int(workers) if workers.strip().isdigit() else 1


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
