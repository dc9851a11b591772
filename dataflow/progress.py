"""What a person sees while the job runs: a heartbeat line, and progress toward the end.

Every ``PROGRESS_SECONDS`` each process logs one ``progress`` line: records read and
processed since start and per second over the last interval, dead letters by reason,
filtered, late, the consumer lag over its partitions, window counts written and the
oldest window still open, and in a ``STOP_AT_END`` run how far it is toward the end
offsets captured at start-up, with the time left. On a console the line is words; in
JSON the same numbers are fields (``dataflow.logs``: ``readable``).

``PROGRESS_SECONDS=auto`` (the default) is 10 s on a console, where a person watches,
and 60 s with JSON logs, where the reader is a log store: one line per process a
minute says the job is alive and how it moves (Kafka Streams logs its summary every
2 minutes, ``log.summary.interval.ms``), while dashboards take the same numbers from
the metrics endpoint. 0 turns it off, the bar too.

A ``STOP_AT_END`` run on a terminal also shows a progress bar per process on the
terminal's last line (records read of those to read, rate, time left), redrawn every
``BAR_SECONDS``; log lines print above it (``dataflow.terminal``). It is drawn by
``tqdm.format_meter``: tqdm is small, has no dependencies, and its one-line meter with a
smoothed rate and time left is what the bar needs; the line itself is written by
``StatusLine``, which erases the line before each draw, so the bars of several
processes on one terminal replace each other instead of mixing (rich's live display
moves the cursor up over lines another process may have printed).

Nothing here runs per record: one thread per process reads the counters
(``dataflow.metrics``) and the readers' positions when it wakes.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec

from dataflow import logs, metrics
from dataflow.settings import Settings
from dataflow.terminal import StatusLine

log = logs.get_logger(__name__)
CONSOLE_SECONDS = 10
JSON_SECONDS = 60
BAR_SECONDS = 0.5
_SMOOTHING = 0.3  # weight of the newest rate in the bar's moving average (tqdm's default)
# tqdm's own meter, with counts of 0 shown as 0 (its unit scale says 0.00): 126k/300k
_BAR = "{l_bar}{bar}| {done}/{whole} [{elapsed}<{remaining}, {rate_fmt}]"


def _count(n: int) -> str:
    from tqdm import tqdm  # imported with the first bar: 10-50 ms and 2 MB a job without one saves

    return str(tqdm.format_sizeof(n)) if n else "0"


def interval_seconds(settings: Settings) -> int:
    """PROGRESS_SECONDS, with ``auto`` resolved by the log format (configure logs first)."""
    if settings.progress_seconds is not None:
        return settings.progress_seconds
    return JSON_SECONDS if logs.json_logs() else CONSOLE_SECONDS


class Reading(msgspec.Struct, frozen=True):
    """This process's numbers at one instant (``at``: time.monotonic())."""

    at: float
    read: int
    processed: int
    dead_lettered: dict[str, int]
    filtered: int
    late: int
    lag: int
    window_counts: int
    oldest_open: int | None
    to_end: tuple[int, int] | None  # (offsets read, offsets to read) of a STOP_AT_END run


def take(clock: Callable[[], float] = time.monotonic) -> Reading:
    """Read the counters, the lag gauge, the window shards and the readers now."""
    snap = metrics.snapshot()
    return Reading(
        at=clock(), read=snap["consumed"], processed=snap["processed"],
        dead_lettered=dict(sorted(snap["dead_lettered"].items())),
        filtered=sum(snap["filtered"].values()),
        late=max(snap["late"].values(), default=0),  # every late event counts once per field
        lag=metrics.lag(),
        window_counts=metrics.windows_written(),
        oldest_open=metrics.oldest_open_window(), to_end=metrics.input_progress())


def _per_second(before: int, now: int, seconds: float) -> float:
    return round((now - before) / seconds, 1) if seconds > 0 else 0.0


def _when(start: int | None) -> str | None:
    return None if start is None else datetime.fromtimestamp(start, UTC).isoformat()


def heartbeat_fields(before: Reading, now: Reading, process: int) -> dict[str, Any]:
    """The fields of a ``progress`` line: totals since start, rates since ``before``."""
    seconds = now.at - before.at
    fields: dict[str, Any] = {
        "process_id": process, "interval_s": round(seconds, 1),
        "read": now.read, "read_per_s": _per_second(before.read, now.read, seconds),
        "processed": now.processed,
        "processed_per_s": _per_second(before.processed, now.processed, seconds),
        "dead_lettered": now.dead_lettered, "filtered": now.filtered, "late": now.late,
        "lag": now.lag, "window_counts_written": now.window_counts,
        "oldest_open_window": _when(now.oldest_open),
    }
    if now.to_end is not None:
        done, total = now.to_end
        done_before = before.to_end[0] if before.to_end is not None else 0
        rate = (done - done_before) / seconds if seconds > 0 else 0.0
        left = 0 if done >= total else round((total - done) / rate) if rate > 0 else None
        fields.update(to_end_done=done, to_end_total=total,
                      to_end_fraction=round(done / total, 4) if total else 1.0,
                      seconds_left=left)
    return fields


def _clock_time(start: str, today: str) -> str:
    """A window start as a person reads it: the time of day, with the date if not today."""
    when = datetime.fromisoformat(start)
    shown = f"{when:%H:%M:%S}" if when.date().isoformat() == today else f"{when:%Y-%m-%d %H:%M:%S}"
    return f"{shown} UTC"


def heartbeat_text(fields: dict[str, Any], processes: int, today: str | None = None) -> str:
    """The same line in words, for a console."""
    today = today or datetime.now(UTC).date().isoformat()
    dead = fields["dead_lettered"]
    reasons = f" ({', '.join(f'{r} {n:,}' for r, n in dead.items())})" if dead else ""
    oldest = fields["oldest_open_window"]
    parts = [f"read {fields['read']:,} ({fields['read_per_s']:,.0f}/s)",
             f"processed {fields['processed']:,} ({fields['processed_per_s']:,.0f}/s)",
             f"dead letters {sum(dead.values()):,}{reasons}",
             f"filtered {fields['filtered']:,}", f"late {fields['late']:,}",
             f"lag {fields['lag']:,}", f"window counts written {fields['window_counts_written']:,}",
             f"oldest open window {_clock_time(oldest, today)}" if oldest else "no window open"]
    if "to_end_total" in fields:
        left = fields["seconds_left"]
        done = fields["to_end_done"] >= fields["to_end_total"]
        parts.append(f"{fields['to_end_fraction']:.0%} to the end" + (
            "" if left is None or done else f", about {left:,} s left" if left
            else ", under 1 s left"))
    text = ", ".join(parts)
    return f"process {fields['process_id']}: {text}" if processes > 1 else text


def summary_text(snap: dict[str, Any], holds: bool, process: int, processes: int) -> str:
    """The ``run_summary`` line in words (``metrics.snapshot()`` at exit), for a console."""
    dead = snap["dead_lettered"]
    reasons = f" ({', '.join(f'{r} {n:,}' for r, n in sorted(dead.items()))})" if dead else ""
    written = ", ".join(f"{topic} {n:,}" for topic, n in sorted(snap["produced"].items()))
    text = (f"read {snap['consumed']:,}, processed {snap['processed']:,}, dead letters "
            f"{sum(dead.values()):,}{reasons}, filtered {sum(snap['filtered'].values()):,}, "
            f"late {max(snap['late'].values(), default=0):,}; written: {written or 'nothing'}; "
            f"read = processed + filtered + dead letters: {'holds' if holds else 'DOES NOT HOLD'}")
    return f"process {process}: {text}" if processes > 1 else text


class Bar:
    """The progress bar of a STOP_AT_END run: tqdm's meter on a ``StatusLine``."""

    def __init__(self, screen: StatusLine, label: str, clock: Callable[[], float]) -> None:
        self.screen = screen
        self._label = label
        self._clock = clock
        self._began = clock()
        self._last: tuple[float, int] | None = None
        self._rate: float | None = None

    def draw(self, done: int, total: int) -> None:
        from tqdm import tqdm  # see _count

        now = self._clock()
        if self._last is not None and now > self._last[0]:
            newest = (done - self._last[1]) / (now - self._last[0])
            self._rate = newest if self._rate is None else (
                _SMOOTHING * newest + (1 - _SMOOTHING) * self._rate)
        self._last = (now, done)
        self.screen.show(tqdm.format_meter(
            done, total, now - self._began, ncols=self.screen.columns() - 1,
            prefix=self._label, unit=" records", unit_scale=True, rate=self._rate,
            bar_format=_BAR, done=_count(done), whole=_count(total)))


def wants_bar(settings: Settings, interval: int, stream: Any) -> bool:
    """A bar for a STOP_AT_END run with progress on, console logs, on a real terminal."""
    return (settings.stop_at_end and interval > 0 and not logs.json_logs()
            and stream.isatty() and os.environ.get("TERM") != "dumb")


class Progress:
    """The process's progress thread: a heartbeat every ``interval`` s, the bar more often."""

    def __init__(self, interval: int, process: int, processes: int, bar: Bar | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._process = process
        self._processes = processes
        self._clock = clock
        self.bar = bar
        self._last = take(clock)
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name="progress", daemon=True)
        thread.start()
        return thread

    def _run(self) -> None:
        while not self._stop.wait(BAR_SECONDS if self.bar is not None else self._interval):
            try:
                self.tick()
            except Exception as exc:  # progress is for people: it must never hurt the job
                log.warning("progress_stopped", error=f"{type(exc).__name__}: {exc}")
                with self._lock:
                    self._finish_bar()
                return

    def tick(self) -> None:
        """Redraw the bar (finishing it at the end), and log a heartbeat when one is due."""
        with self._lock:
            if self._stop.is_set():
                return
            if self.bar is not None:
                self._draw_bar()
            if self._clock() - self._last.at >= self._interval - BAR_SECONDS / 2:
                self.heartbeat()

    def _draw_bar(self) -> None:
        to_end = metrics.input_progress()
        if to_end is None or self.bar is None:
            return  # the readers are still opening
        done, total = to_end
        self.bar.draw(done, total)
        if done >= total:
            self._finish_bar()

    def heartbeat(self) -> None:
        now = take(self._clock)
        fields = heartbeat_fields(self._last, now, self._process)
        self._last = now
        log.info("progress", readable=heartbeat_text(fields, self._processes), **fields)

    def _finish_bar(self) -> None:
        if self.bar is not None:
            self.bar.screen.finish(keep=True)  # stays sys.stderr: see dataflow.terminal
            self.bar = None

    def stop(self) -> None:
        """At exit: no more lines; the bar, drawn once more with the last numbers, stays."""
        self._stop.set()
        with self._lock:
            if self.bar is not None:
                self._draw_bar()
            self._finish_bar()


def start(settings: Settings) -> Progress | None:
    """Start this process's progress reporting (after the flow is built); None when off."""
    interval = interval_seconds(settings)
    if interval <= 0:
        return None
    process = metrics.process_id()
    processes, _ = metrics.cluster_shape()
    bar = None
    if wants_bar(settings, interval, sys.stderr):
        screen = StatusLine(sys.stderr)
        sys.stderr = screen  # a TextIO in all that is used of it
        bar = Bar(screen, f"process {process} to the end" if processes > 1 else "to the end",
                  time.monotonic)
    progress = Progress(interval, process, processes, bar)
    progress.start()
    atexit.register(progress.stop)
    return progress
