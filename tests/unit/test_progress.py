"""The progress line, the bar toward the end of a finite run, and the numbers they read."""

from __future__ import annotations

import io
import weakref
from dataclasses import dataclass
from typing import Any

import pytest
import structlog

from dataflow import logs, metrics, progress
from dataflow.event_time import ACTIVE
from dataflow.progress import Reading, heartbeat_fields, heartbeat_text, summary_text
from dataflow.settings import Settings
from dataflow.shards import ShardUpdate
from dataflow.terminal import StatusLine
from dataflow.windows import ShardLogic

START = 1_694_479_500  # a minute boundary: 2023-09-12T00:45:00Z


def _reading(at: float, read: int, processed: int,
             to_end: tuple[int, int] | None = None, **changes: Any) -> Reading:
    values: dict[str, Any] = {
        "dead_lettered": {}, "filtered": 0, "late": 0, "lag": 0, "window_counts": 0,
        "oldest_open": None, **changes}
    return Reading(at=at, read=read, processed=processed, to_end=to_end, **values)


@dataclass(eq=False)  # hashable: the registry holds it weakly, by identity
class _Reader:
    start: int
    position: int
    end: int | None


@pytest.fixture
def tracked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fresh registries of readers and shards for one test."""
    monkeypatch.setattr(metrics, "_readers", weakref.WeakSet())
    monkeypatch.setattr(metrics, "_shards", weakref.WeakSet())


def test_heartbeat_fields_are_totals_since_start_and_rates_over_the_interval() -> None:
    """read/processed are totals; read_per_s/processed_per_s come from the last interval."""
    before = _reading(100.0, 1_000, 900)
    now = _reading(110.0, 1_500, 1_380, dead_lettered={"malformed_json": 3}, filtered=7,
                   late=2, lag=40, window_counts=12, oldest_open=START)
    assert heartbeat_fields(before, now, process=1) == {
        "process_id": 1, "interval_s": 10.0, "read": 1_500, "read_per_s": 50.0,
        "processed": 1_380, "processed_per_s": 48.0,
        "dead_lettered": {"malformed_json": 3}, "filtered": 7, "late": 2, "lag": 40,
        "window_counts_written": 12, "oldest_open_window": "2023-09-12T00:45:00+00:00"}


def test_a_finite_run_adds_the_fraction_done_and_the_time_left() -> None:
    """to_end_*: offsets read of those to read, and the time left at the interval's rate."""
    before = _reading(0.0, 0, 0, to_end=(0, 1_000))
    now = _reading(10.0, 400, 400, to_end=(400, 1_000))
    fields = heartbeat_fields(before, now, process=0)
    assert (fields["to_end_done"], fields["to_end_total"], fields["to_end_fraction"],
            fields["seconds_left"]) == (400, 1_000, 0.4, 15)
    stalled = heartbeat_fields(now, _reading(20.0, 400, 400, to_end=(400, 1_000)), 0)
    assert stalled["seconds_left"] is None
    done = heartbeat_fields(now, _reading(20.0, 1_000, 1_000, to_end=(1_000, 1_000)), 0)
    assert (done["to_end_fraction"], done["seconds_left"]) == (1.0, 0)


def test_heartbeat_text_says_the_fields_in_words() -> None:
    """The console line: counts with thousands separators, reasons, the window's time of day."""
    before = _reading(0.0, 0, 0, to_end=(0, 300_000))
    now = _reading(10.0, 126_000, 120_500, to_end=(126_000, 300_000),
                   dead_lettered={"malformed_json": 1_250, "missing_field": 9}, filtered=4_000,
                   late=12, lag=174_000, window_counts=30, oldest_open=START)
    fields = heartbeat_fields(before, now, process=0)
    assert heartbeat_text(fields, processes=1, today="2023-09-12") == (
        "read 126,000 (12,600/s), processed 120,500 (12,050/s), dead letters 1,259 "
        "(malformed_json 1,250, missing_field 9), filtered 4,000, late 12, lag 174,000, "
        "window counts written 30, oldest open window 00:45:00 UTC, 42% to the end, "
        "about 14 s left")
    fields["oldest_open_window"] = None
    assert heartbeat_text(fields, processes=3, today="2024-01-01").startswith(
        "process 0: read 126,000 (12,600/s), ")
    assert "no window open" in heartbeat_text(fields, processes=1)
    fields["oldest_open_window"] = "2023-09-12T00:45:00+00:00"
    assert "oldest open window 2023-09-12 00:45:00 UTC" in heartbeat_text(
        fields, processes=1, today="2024-01-01")


def test_live_run_text_has_no_end_and_no_dead_letter_reasons_when_none() -> None:
    """Without STOP_AT_END there is no fraction; no dead letters reads 'dead letters 0'."""
    fields = heartbeat_fields(_reading(0.0, 0, 0), _reading(10.0, 500, 500), process=0)
    assert heartbeat_text(fields, processes=1) == (
        "read 500 (50/s), processed 500 (50/s), dead letters 0, filtered 0, late 0, lag 0, "
        "window counts written 0, no window open")


def test_summary_text_states_the_accounting() -> None:
    """run_summary in words: what was read, what became of it, what was written."""
    snap = {"consumed": 10, "processed": 7, "filtered": {"excluded_locale": 1},
            "dead_lettered": {"wrong_type": 2}, "late": {"device_type": 1, "locale": 1},
            "produced": {"out": 7, "dlq": 2}}
    assert summary_text(snap, True, 0, 1) == (
        "read 10, processed 7, dead letters 2 (wrong_type 2), filtered 1, late 1; written: "
        "dlq 2, out 7; read = processed + filtered + dead letters: holds")
    assert summary_text(snap, False, 1, 2).startswith("process 1: read 10")
    assert summary_text(snap, False, 1, 2).endswith("DOES NOT HOLD")


@pytest.mark.parametrize(("raw", "fmt", "seconds"), [
    ("auto", "console", 10), ("auto", "json", 60), ("3", "json", 3), ("0", "console", 0)])
def test_progress_seconds_auto_depends_on_the_log_format(
    monkeypatch: pytest.MonkeyPatch, raw: str, fmt: str, seconds: int,
) -> None:
    """auto: 10 s on a console, 60 s in JSON; a number is taken as it is."""
    monkeypatch.setattr(logs, "_json", fmt == "json")
    settings = Settings.from_env({"PROGRESS_SECONDS": raw})
    assert progress.interval_seconds(settings) == seconds


def test_input_progress_sums_the_finite_partitions_of_this_process(tracked: None) -> None:
    """Offsets read since start over partitions with an end; past the end counts as the end."""
    readers = [_Reader(0, 40, 100), _Reader(10, 60, 50), _Reader(5, 5, 5), _Reader(0, 9, None)]
    for reader in readers:
        metrics.track_input(reader)
    assert metrics.input_progress() == (40 + 40 + 0, 100 + 40 + 0)
    del readers[:3]
    assert metrics.input_progress() is None  # only the live partition is left


def test_oldest_open_window_follows_the_shards(tracked: None) -> None:
    """The oldest window held by any shard of the process; None once all are written."""
    a, b = ShardLogic(60, None), ShardLogic(60, None)
    assert metrics.oldest_open_window() is None
    a.on_batch([ShardUpdate(0, 1, START + 125, ACTIVE, ((START + 120, "locale", "PL", 1),))])
    b.on_batch([ShardUpdate(0, 1, START + 70, ACTIVE, ((START + 60, "locale", "DE", 2),))])
    assert metrics.oldest_open_window() == START + 60
    assert metrics.OLDEST_OPEN_WINDOW.collect()[0].samples[0].value == START + 60
    b.on_batch([ShardUpdate(0, 1, START + 200, ACTIVE, ())])
    assert metrics.oldest_open_window() == START + 120


def test_the_bar_is_drawn_from_the_readers_and_left_as_a_line_at_the_end(
    tracked: None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Progress.tick draws tqdm's meter with the smoothed rate; at the end it stays as a line."""
    reader = _Reader(0, 0, 4_000)
    metrics.track_input(reader)
    now = [0.0]
    screen = StatusLine(io.StringIO())
    monkeypatch.setattr(screen, "columns", lambda: 100)
    bar = progress.Bar(screen, "to the end", lambda: now[0])
    ticker = progress.Progress(3_600, 0, 1, bar, clock=lambda: now[0])
    for position in (1_000, 3_000, 4_000):
        now[0] += 1.0
        reader.position = position
        ticker.tick()
    out = screen.stream.getvalue()  # type: ignore[attr-defined]
    draws = out.split("\r\x1b[K")[1:]
    assert draws[0].startswith("to the end:  25%|") and draws[0].endswith(
        "| 1.00k/4.00k [00:01<00:03, 1.00k records/s]")  # tqdm's average before a rate
    assert draws[1].endswith("| 3.00k/4.00k [00:02<00:00, 2.00k records/s]")  # 1,000 left
    assert draws[-1].startswith("to the end: 100%|") and draws[-1].endswith("\n")
    assert ticker.bar is None  # finished: no more drawing


def test_at_exit_the_bar_is_drawn_with_the_last_numbers_and_kept(
    tracked: None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run that read its last records between two draws still leaves 100% on the screen."""
    reader = _Reader(0, 0, 2_000)
    metrics.track_input(reader)
    now = [0.0]
    screen = StatusLine(io.StringIO())
    monkeypatch.setattr(screen, "columns", lambda: 100)
    ticker = progress.Progress(3_600, 0, 1, progress.Bar(screen, "to the end", lambda: now[0]),
                               clock=lambda: now[0])
    now[0], reader.position = 1.0, 1_500
    ticker.tick()
    now[0], reader.position = 1.2, 2_000
    ticker.stop()
    out = screen.stream.getvalue()  # type: ignore[attr-defined]
    assert out.endswith("| 2.00k/2.00k [00:01<00:00, 2.50k records/s]\n")
    assert ticker.bar is None


def test_a_failing_progress_thread_says_so_once_and_leaves_the_job_alone(
    tracked: None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An error while reading the numbers ends the progress thread with one warning."""
    ticker = progress.Progress(1, 0, 1)
    monkeypatch.setattr(progress, "take", lambda clock: 1 / 0)
    with structlog.testing.capture_logs() as logged:
        ticker.start().join(5)
    assert logged == [{"event": "progress_stopped", "log_level": "warning",
                       "error": "ZeroDivisionError: division by zero"}]


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("stop_at_end", "interval", "json_logs", "stream", "term", "bar"), [
    (True, 10, False, _Tty(), "xterm", True),
    (False, 10, False, _Tty(), "xterm", False),  # a live run has no end
    (True, 0, False, _Tty(), "xterm", False),  # PROGRESS_SECONDS=0: no progress at all
    (True, 10, True, _Tty(), "xterm", False),  # JSON logs on a terminal: the fraction only
    (True, 10, False, io.StringIO(), "xterm", False),  # not a terminal
    (True, 10, False, _Tty(), "dumb", False),  # a terminal that cannot erase a line
])
def test_the_bar_needs_a_finite_run_console_logs_and_a_real_terminal(
    monkeypatch: pytest.MonkeyPatch, stop_at_end: bool, interval: int, json_logs: bool,
    stream: io.StringIO, term: str, bar: bool,
) -> None:
    """wants_bar: STOP_AT_END, progress on, console logs, a terminal that is not TERM=dumb."""
    monkeypatch.setattr(logs, "_json", json_logs)
    monkeypatch.setenv("TERM", term)
    assert progress.wants_bar(Settings(stop_at_end=stop_at_end), interval, stream) is bar
