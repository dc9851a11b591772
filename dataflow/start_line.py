"""The ``starting`` line in words: what the job reads, where it writes, how it counts.

On a console the ``starting`` line is this text (``dataflow.logs``: ``readable``); the
full settings stay in the JSON line and, on a console, in a ``settings`` line at debug
level.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from dataflow.settings import Settings

_STARTS = {"earliest": "from the earliest offset",
           "latest": "from the log end (new records only)"}


def _from_where(settings: Settings, recovery: Path | None) -> str:
    start = _STARTS.get(settings.starting_offset,
                        f"from {settings.consumer_group}'s committed offsets")
    if recovery is not None:
        start = f"from the recovery state, else {start}"
    until = ("up to the end offsets of now, then stops (STOP_AT_END)" if settings.stop_at_end
             else "and keeps reading (Ctrl-C stops)")
    return f"{start}, {until}"


def _metrics(served: str | None, environ: Mapping[str, str]) -> str:
    where = []
    if served is not None:
        where.append(f"http://{served}/metrics")
    if environ.get("BYTEWAX_DATAFLOW_API_ENABLED", "").lower() == "true":
        port = environ.get("BYTEWAX_DATAFLOW_API_PORT", "3030")
        where.append(f"Bytewax's http://0.0.0.0:{port}/metrics")
    return " and ".join(where) if where else "off (METRICS_ADDRESS=host:port turns them on)"


def _guarantee(settings: Settings) -> str:
    if not settings.exactly_once:
        return "at-least-once"
    return (f"exactly-once (Kafka transactions, window state in "
            f"{settings.window_state_topic})")


def describe_start(settings: Settings, partitions: int, process: int, processes: int,
                   workers: int, recovery: Path | None, served: str | None,
                   progress_seconds: int, environ: Mapping[str, str] | None = None) -> str:
    """The start of a process, in a few indented lines after ``starting``."""
    env = os.environ if environ is None else environ
    s = settings
    worker_s = "worker" if workers == 1 else "workers"
    excluded = (f"; drops locales {', '.join(sorted(s.excluded_locales))}"
                if s.excluded_locales else "")
    progress = (f"a progress line every {progress_seconds} s" if progress_seconds
                else "no progress lines (PROGRESS_SECONDS=0)")
    recovery_text = recovery if recovery is not None else "none"
    if s.exactly_once:
        recovery_text = "in Kafka (exactly-once)"
    lines = [
        f"process {process} of {processes}, {workers} {worker_s}",
        f"reads    {s.input_topic} ({partitions} partitions) at {s.bootstrap_servers}, "
        f"{_from_where(s, recovery)}",
        f"writes   {s.output_topic}; dead letters to {s.dlq_topic}; window counts to "
        f"{s.counts_topic}; late logins to {s.late_topic}{excluded}; {_guarantee(s)}",
        f"windows  {s.window_seconds} s tumbling, by event time; {s.allowed_lateness_seconds} s "
        f"allowed lateness; counts by {', '.join(s.count_fields)}",
        f"metrics  {_metrics(served, env)}",
        f"recovery {recovery_text}; {progress}; "
        "every setting: LOG_LEVEL=debug",
    ]
    return "\n    ".join(lines)
