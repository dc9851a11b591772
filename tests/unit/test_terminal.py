"""The status line under the log lines, the start in words, and what reaches stderr."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from dataflow import logs, metrics
from dataflow.kafka_config import admin_config, consumer_config, producer_config
from dataflow.settings import Settings
from dataflow.start_line import describe_start
from dataflow.terminal import ERASE_LINE, StatusLine
from tests.pty_screen import render


def _screen(columns: int = 40) -> StatusLine:
    screen = StatusLine(io.StringIO())
    screen.columns = lambda: columns  # type: ignore[method-assign]
    return screen


def _written(screen: StatusLine) -> str:
    return screen.stream.getvalue()  # type: ignore[attr-defined]


def test_a_log_line_prints_above_the_status_in_one_write() -> None:
    """A line erases the status, prints whole, and the status comes back below it."""
    screen = _screen()
    screen.show("42%|####      |")
    before = len(_written(screen))
    print("2026-01-01T00:00:00Z [info] progress: read 5", file=screen)  # type: ignore[arg-type]
    assert _written(screen)[before:] == (
        f"{ERASE_LINE}2026-01-01T00:00:00Z [info] progress: read 5\n42%|####      |")
    assert render(_written(screen).encode()).lines() == [
        "2026-01-01T00:00:00Z [info] progress: read 5", "42%|####      |"]


def test_a_line_is_held_until_its_newline() -> None:
    """Parts of a line are not printed between two status draws: the line comes out whole."""
    screen = _screen()
    screen.show("bar 1")
    screen.write("first half, ")
    screen.show("bar 2")
    screen.write("second half\n")
    assert render(_written(screen).encode()).lines() == ["first half, second half", "bar 2"]


def test_the_status_is_cut_to_the_terminal_width_and_kept_or_erased_at_the_end() -> None:
    """A status never wraps (a wrapped one could not be redrawn in place); finish keeps it."""
    screen = _screen(columns=10)
    screen.show("0123456789abcdef")
    screen.finish(keep=True)
    screen.write("after\n")
    assert render(_written(screen).encode(), columns=10).lines() == ["012345678", "after"]
    erased = _screen()
    erased.show("bar")
    erased.finish(keep=False)
    erased.write("after\n")
    assert render(_written(erased).encode()).lines() == ["after"]


def test_two_writers_on_one_terminal_replace_each_others_status() -> None:
    """Two processes' status lines take turns on the last line; their log lines stay whole."""
    shared = io.StringIO()
    one, two = StatusLine(shared), StatusLine(shared)
    one.show("process 0: 10%")
    two.show("process 1: 55%")
    one.write("line from process 0\n")
    two.show("process 1: 60%")
    assert render(shared.getvalue().encode()).lines() == [
        "line from process 0", "process 1: 60%"]


def test_a_process_whose_bar_ended_still_erases_anothers_status_before_its_lines() -> None:
    """Process 1 done (its bar kept as a line), process 0 at 65%: 1's next line is whole."""
    shared = io.StringIO()
    zero, one = StatusLine(shared), StatusLine(shared)
    one.show("process 1: 100%")
    one.finish(keep=True)
    zero.show("process 0: 65%")
    print("progress: process 1: read 150,142", file=one)  # type: ignore[arg-type]
    zero.show("process 0: 70%")
    assert render(shared.getvalue().encode()).lines() == [
        "process 1: 100%", "progress: process 1: read 150,142", "process 0: 70%"]


def test_without_a_status_a_flushed_part_of_a_line_is_printed_and_continued() -> None:
    """After the bar, text flushed before its newline is not held back (nor erased)."""
    screen = _screen()
    screen.write("waiting ...")
    screen.flush()
    assert _written(screen) == f"{ERASE_LINE}waiting ..."
    screen.write(" done\n")
    assert render(_written(screen).encode()).lines() == ["waiting ... done"]


@pytest.fixture
def console_logs() -> Iterator[None]:
    """Whatever a test configures, structlog's defaults and the log format come back."""
    before = logs.json_logs()
    yield
    structlog.reset_defaults()
    logs._json = before


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_readable_text_is_the_console_line_and_dropped_from_json(
    fmt: str, console_logs: None, capsys: pytest.CaptureFixture[str],
) -> None:
    """On a console a line with ``readable`` shows the words; in JSON the fields, no words."""
    logs.configure("info", fmt)
    logs.get_logger("t").info("progress", readable="read 5 (1/s)", read=5)
    err = capsys.readouterr().err
    if fmt == "console":
        assert err.endswith("[info     ] progress: read 5 (1/s)\n") and "read=5" not in err
    else:
        assert {k: v for k, v in json.loads(err).items() if k != "timestamp"} == {
            "event": "progress", "level": "info", "read": 5}


def test_log_lines_follow_sys_stderr_when_it_is_replaced(
    console_logs: None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Lines go to the current sys.stderr, so a status line installed later sees them."""
    logs.configure("info", "console")
    screen = _screen()
    monkeypatch.setattr("sys.stderr", screen)
    screen.show("bar")
    logs.get_logger("t").info("hello")
    assert render(_written(screen).encode(), columns=200).lines()[-1] == "bar"
    assert "[info     ] hello" in render(_written(screen).encode(), columns=200).lines()[0]


def test_every_client_configuration_routes_librdkafka_lines_through_structlog() -> None:
    """Consumer, producer and admin configurations carry the project's logger."""
    settings = Settings(kafka_config={"client.id": "x"})
    for config in (consumer_config(settings), producer_config(settings),
                   admin_config(settings)):
        assert isinstance(config["logger"], logging.Logger)
        assert config["logger"] is logs.kafka_logger()


def test_the_start_in_words() -> None:
    """What the job reads and writes, its windows, processes, metrics and recovery."""
    settings = Settings(bootstrap_servers="k:9092", excluded_locales=frozenset({"RU", "BY"}),
                        stop_at_end=True)
    text = describe_start(settings, 6, 1, 3, 2, Path("/data/recovery"), "127.0.0.1:9101", 10,
                          environ={})
    assert text == "\n    ".join([
        "process 1 of 3, 2 workers",
        "reads    user-login (6 partitions) at k:9092, from the recovery state, else from the "
        "earliest offset, up to the end offsets of now, then stops (STOP_AT_END)",
        "writes   processed-user-login; dead letters to user-login-dlq; window counts to "
        "user-login-counts; late logins to user-login-late; drops locales BY, RU; at-least-once",
        "windows  60 s tumbling, by event time; 10 s allowed lateness; counts by "
        "device_type, locale",
        "metrics  http://127.0.0.1:9101/metrics",
        "recovery /data/recovery; a progress line every 10 s; every setting: LOG_LEVEL=debug"])
    live = describe_start(Settings(starting_offset="committed"), 1, 0, 1, 1, None, None, 0,
                          environ={"BYTEWAX_DATAFLOW_API_ENABLED": "true"})
    assert "from login-dataflow's committed offsets, and keeps reading (Ctrl-C stops)" in live
    assert "metrics  Bytewax's http://0.0.0.0:3030/metrics" in live
    assert "recovery none; no progress lines (PROGRESS_SECONDS=0)" in live


@pytest.mark.parametrize(("argv", "env", "shape"), [
    ([], {}, (1, 1)),
    (["dataflow.flow", "-w", "2"], {}, (1, 2)),
    (["dataflow.flow", "-i", "1", "-a", "a:1;b:2;c:3"], {}, (3, 1)),
    (["dataflow.flow", "--addresses=a:1;b:2", "-w3"], {}, (2, 3)),
    ([], {"BYTEWAX_ADDRESSES": "a:1;b:2", "BYTEWAX_WORKERS_PER_PROCESS": "4"}, (2, 4)),
])
def test_cluster_shape_reads_what_bytewax_run_reads(
    argv: list[str], env: dict[str, str], shape: tuple[int, int],
) -> None:
    """Processes from -a/BYTEWAX_ADDRESSES, workers from -w/BYTEWAX_WORKERS_PER_PROCESS."""
    assert metrics.cluster_shape(argv, env) == shape


def test_cluster_shape_counts_the_hostfile(tmp_path: Path) -> None:
    """BYTEWAX_HOSTFILE_PATH (Bytewax's Helm chart): one process per non-empty line."""
    hosts = tmp_path / "hosts"
    hosts.write_text("a:1\nb:1\n\n")
    assert metrics.cluster_shape([], {"BYTEWAX_HOSTFILE_PATH": str(hosts)}) == (2, 1)
