"""What a person sees while the job runs, read from a real terminal (a pty) and from the log
stream: the start in words, a progress line, a bar toward the end of a finite run, log lines
printed whole above the bar, and no raw librdkafka line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from tests.integration.jobs import ROOT, free_ports, job_topics
from tests.kafka_io import produce_all
from tests.pty_screen import PtyRun
from tests.records import login_bytes

RECORDS = 300_000  # over a second of reading on one process: progress lines print under the bar
BAD_SHARE = "0.01"
_STAMP = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z \[(info|warning|error|debug) *\] "


@pytest.fixture(scope="module")
def big_topic(admin: AdminClient, kafka_bootstrap: str) -> Iterator[str]:
    """A 2-partition input topic with RECORDS generated logins, 1% of them malformed."""
    name = f"test-{uuid.uuid4().hex}"
    admin.create_topics([NewTopic(name, 2, -1)])[name].result(timeout=30)
    done = subprocess.run(
        [sys.executable, "-m", "dataflow", "generate", "--rate", "0", "--count", str(RECORDS),
         "--topic", name, "--partitions", "2", "--malformed", BAD_SHARE],
        cwd=ROOT, env={**_plain_env(), "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap},
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    yield name
    admin.delete_topics([name])[name].result(timeout=30)


def _plain_env() -> dict[str, str]:
    """This environment without any of the job's settings or Bytewax's: the shipped defaults."""
    from dataflow.settings import BYTEWAX_ENV_VARS, ENV_VARS

    return {k: v for k, v in os.environ.items()
            if k not in ENV_VARS | BYTEWAX_ENV_VARS and not k.startswith("KAFKA_CONFIG_")}


def _env(bootstrap: str, topics: dict[str, str], **settings: str) -> dict[str, str]:
    """A person's terminal session: the topics, and only the settings the test is about."""
    return {**_plain_env(), "TERM": "xterm-256color", "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "INPUT_TOPIC": topics["input"], "OUTPUT_TOPIC": topics["output"],
            "DLQ_TOPIC": topics["dlq"], "COUNTS_TOPIC": topics["counts"],
            "LATE_TOPIC": topics["late"], **settings}


def _garbled(lines: list[str]) -> list[str]:
    """Log lines that do not start at the line's start, and bars with a log line in them."""
    logged = [line for line in lines if re.search(r"\] (starting|progress|run_summary)", line)]
    return ([line for line in logged if not re.match(_STAMP, line)]
            + [line for line in lines if "to the end:" in line and "[info" in line])


def test_a_finite_run_on_a_terminal_shows_its_start_in_words_a_bar_and_whole_log_lines(
    kafka_bootstrap: str, make_topic: Callable[..., str], big_topic: str,
) -> None:
    """On a pty: the start in words, whole progress lines over the bar, 100%, the summary."""
    topics = job_topics(make_topic, big_topic)
    run = PtyRun([sys.executable, "-m", "bytewax.run", "dataflow.flow"],
                 _env(kafka_bootstrap, topics, STOP_AT_END="true", PROGRESS_SECONDS="1"), ROOT)
    try:
        assert run.wait(120) == 0, "\n".join(run.lines()[-30:])
    finally:
        run.kill()
    screen = run.screen()
    lines = screen.lines()
    assert screen.unknown == []  # only text, \r, \n and erase-line reached the terminal
    start = next(i for i, line in enumerate(lines) if "] starting: " in line)
    assert lines[start].endswith("starting: process 0 of 1, 1 worker")
    assert lines[start + 1:start + 5] == [
        f"    reads    {big_topic} (2 partitions) at {kafka_bootstrap}, from the earliest "
        "offset, up to the end offsets of now, then stops (STOP_AT_END)",
        f"    writes   {topics['output']}; dead letters to {topics['dlq']}; window counts to "
        f"{topics['counts']}; late logins to {topics['late']}; at-least-once",
        "    windows  60 s tumbling, by event time; 10 s allowed lateness; counts by "
        "device_type, locale",
        "    metrics  off (METRICS_ADDRESS=host:port turns them on)"]
    assert not [line for line in lines if "bootstrap_servers" in line or "{" in line]
    assert _garbled(lines) == []
    progress = [line for line in lines if "] progress: " in line]
    assert any(re.search(r"[0-9]% to the end, (about [0-9,]+|under 1) s left$", line)
               for line in progress), "\n".join(lines)
    assert re.search(r"progress: read [0-9,]+ \([0-9,]+/s\), processed [0-9,]+ \([0-9,]+/s\), "
                     r"dead letters [0-9,]+ \(malformed_json [0-9,]+\), filtered 0, late 0, "
                     r"lag [0-9,]+, window counts written [0-9,]+, ", progress[0])
    bars = [line for line in lines if line.startswith("to the end: ")]
    assert bars == [bars[-1]] and re.match(
        r"to the end: 100%\|█+\| 300k/300k \[\d\d:\d\d<00:00, [0-9.]+k records/s\]$", bars[-1])
    summary = next(line for line in lines if "] run_summary: " in line)
    assert summary.endswith("read = processed + filtered + dead letters: holds")
    assert f"run_summary: read {RECORDS:,}, processed " in summary


def test_the_bars_of_two_processes_share_one_terminal_without_mixing(
    kafka_bootstrap: str, make_topic: Callable[..., str], big_topic: str,
) -> None:
    """Two processes on one pty: each bar ends at 100% on its own line, log lines whole."""
    topics = job_topics(make_topic, big_topic)
    run = PtyRun([sys.executable, "-m", "dataflow", "run", "--processes", "2",
                  "--base-port", str(free_ports(2))],
                 _env(kafka_bootstrap, topics, STOP_AT_END="true", PROGRESS_SECONDS="1"), ROOT)
    try:
        assert run.wait(120) == 0, "\n".join(run.lines()[-30:])
    finally:
        run.kill()
    lines = run.lines()
    assert _garbled(lines) == []
    for process in (0, 1):
        assert [line for line in lines if line.startswith(f"process {process} to the end: 100%|")]
        assert any(f"] starting: process {process} of 2, 1 worker" in line for line in lines)
        assert any(f"] run_summary: process {process}: read " in line for line in lines)


def test_a_live_job_on_a_terminal_says_every_second_what_flows(
    kafka_bootstrap: str, make_topic: Callable[..., str],
) -> None:
    """Live on a pty: a progress line counts read, processed, dead letters; Ctrl-C is 130."""
    topics = job_topics(make_topic, make_topic(partitions=2))
    run = PtyRun([sys.executable, "-m", "bytewax.run", "dataflow.flow"],
                 _env(kafka_bootstrap, topics, PROGRESS_SECONDS="1"), ROOT)
    try:
        run.wait_for(lambda lines: any("] starting: " in line for line in lines), 30,
                     "the starting line")
        produce_all(kafka_bootstrap, topics["input"],
                    [(b"u%d" % i, login_bytes(user_id=f"u{i}"), i % 2) for i in range(300)]
                    + [(b"bad", b"{not json", 0)] * 10)
        run.wait_for(lambda lines: any(
            "] progress: read 310 (" in line and "processed 300 (" in line
            and "dead letters 10 (malformed_json 10), filtered 0, late 0, lag 0," in line
            for line in lines), 30, "a progress line with the 310 records")
        run.interrupt()
        assert run.wait(30) == 130
    finally:
        run.kill()
    lines = run.lines()
    assert _garbled(lines) == []
    assert "keeps reading (Ctrl-C stops)" in "\n".join(lines)
    assert not [line for line in lines if "to the end" in line]
    assert any("] stopping" in line for line in lines)


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_json_progress_lines_carry_the_numbers_and_the_fraction_done(
    kafka_bootstrap: str, make_topic: Callable[..., str], big_topic: str, tmp_path: Path,
) -> None:
    """Without a terminal: JSON progress events with every count and the fraction done."""
    topics = job_topics(make_topic, big_topic)
    log = tmp_path / "job.log"
    with log.open("wb") as out:
        done = subprocess.run([sys.executable, "-m", "bytewax.run", "dataflow.flow"], cwd=ROOT,
                              env=_env(kafka_bootstrap, topics, STOP_AT_END="true",
                                       PROGRESS_SECONDS="1"),
                              stdout=out, stderr=subprocess.STDOUT, timeout=120, check=False)
    text = log.read_text()
    assert done.returncode == 0, text[-3000:]
    events = _json_lines(text)
    assert [line for line in text.splitlines() if not line.startswith("{")] == []  # none raw
    starting = next(e for e in events if e["event"] == "starting")
    assert starting["settings"]["input_topic"] == big_topic and "readable" not in starting
    assert (starting["processes"], starting["workers_per_process"]) == (1, 1)
    progress = [e for e in events if e["event"] == "progress"]
    assert progress, text[-3000:]
    assert set(progress[0]) == {
        "event", "level", "timestamp", "process_id", "interval_s", "read", "read_per_s",
        "processed", "processed_per_s", "dead_lettered", "filtered", "late", "lag",
        "window_counts_written", "oldest_open_window", "to_end_done", "to_end_total",
        "to_end_fraction", "seconds_left"}
    first = progress[0]
    assert first["to_end_total"] == RECORDS and 0 < first["to_end_done"] <= RECORDS
    assert first["to_end_fraction"] == round(first["to_end_done"] / RECORDS, 4)
    # the counter moves right after the reader's position, and both are read in turn
    assert 0 < first["read"] <= first["to_end_done"] and first["read_per_s"] > 0
    assert set(first["dead_lettered"]) <= {"malformed_json"} and first["lag"] >= 0
    assert first["oldest_open_window"] is not None
    assert [p["to_end_done"] for p in progress] == sorted(p["to_end_done"] for p in progress)


def test_no_raw_librdkafka_line_from_the_jobs_clients(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path,
) -> None:
    """KAFKA_CONFIG_DEBUG=broker: no raw line; client lines are JSON events at debug only."""
    topics = job_topics(make_topic, make_topic())
    produce_all(kafka_bootstrap, topics["input"], [(b"u", login_bytes(), 0)] * 20)

    def run(**settings: str) -> str:
        try:
            done = subprocess.run([sys.executable, "-m", "bytewax.run", "dataflow.flow"],
                                  cwd=ROOT, env=_env(kafka_bootstrap, topics, STOP_AT_END="true",
                                                     KAFKA_CONFIG_DEBUG="broker", **settings),
                                  capture_output=True, text=True, timeout=60, check=False)
        except subprocess.TimeoutExpired as exc:  # what it logged, to see where it waited
            logged = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) \
                else str(exc.stderr)
            pytest.fail(f"the job did not end within 60 s; it logged: {logged[-6000:]}")
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stderr

    quiet = run()
    assert not [line for line in quiet.splitlines() if not line.startswith("{")]
    assert not [e for e in _json_lines(quiet) if "facility" in e]
    loud = _json_lines(run(LOG_LEVEL="debug"))
    clients = {e["client"].split("#")[1].split("-")[0] for e in loud
               if e.get("facility") == "BROKER" and e["level"] == "debug"}
    assert {"consumer", "producer"} <= clients
