"""The benchmark's hand-written loop, its report and its command line, without a broker."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from dataflow.batches import Mark, ValidBatch
from dataflow.bench import _interleave, compile_package
from dataflow.bench.cases import Run, Topics, free_ports, start_up, written_by_kind
from dataflow.bench.handloop import HandLoop, count_key, window_records
from dataflow.bench.report import outputs_check, paired_to_baseline, summary, table
from dataflow.deadletters import dead_letter_headers
from dataflow.parsing import parse
from dataflow.schemas import Accepted, ProcessedLogin, Rejected
from dataflow.settings import Settings
from dataflow.steps import Enrich
from dataflow.transforms import enrich
from tests.records import FakeRecord, login_bytes

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_694_479_551  # 2023-09-12T00:45:51+00:00, in the window starting 00:45:00


@dataclass(frozen=True)
class Message(FakeRecord):
    """A consumed message as the loop sees it (confluent_kafka.Message has error())."""

    def error(self) -> None:
        return None


class FakeWriter:
    """Records what the loop produces."""

    def __init__(self) -> None:
        self.records: list[tuple[str, Any, Any, dict[str, Any]]] = []
        self.polls = 0

    def produce(self, topic: str, value: Any = None, key: Any = None, partition: int = -1,
                callback: Any = None, on_delivery: Any = None, timestamp: int = 0,
                headers: Any = None) -> None:
        """confluent-kafka's produce() signature, positional or by keyword."""
        kwargs = {"headers": headers, "timestamp": timestamp}
        self.records.append((topic, value, key, {k: v for k, v in kwargs.items()
                                                 if v is not None}))

    produce_waiting = produce

    def poll(self) -> None:
        self.polls += 1


def _batch() -> list[Message]:
    values = [login_bytes(timestamp=T0, locale="de", device_type="iOS"),
              login_bytes(timestamp=T0 + 1, locale="RU"),
              login_bytes(timestamp=T0 + 60, locale="DE", device_type=None),
              b"{not json",
              login_bytes(ip="not-an-ip"),
              None]
    return [Message(v, _partition=i % 2, _offset=10 + i, _timestamp_ms=(T0 + i) * 1000)
            for i, v in enumerate(values)]


def _loop(settings: Settings) -> tuple[HandLoop, FakeWriter, dict[int, int]]:
    writer = FakeWriter()
    loop = HandLoop(settings, writer)  # type: ignore[arg-type]
    position: dict[int, int] = {}
    loop.process(_batch(), position)
    return loop, writer, position


def test_loop_accounts_for_every_record_and_counts_windows() -> None:
    """consumed = processed + filtered + dead-lettered; windows per (window, field, value)."""
    loop, writer, position = _loop(Settings(excluded_locales=frozenset({"RU"})))
    assert (loop.consumed, loop.processed, loop.filtered) == (6, 2, 1)
    assert loop.dead_lettered == Counter(malformed_json=1, invalid_value=1, empty_value=1)
    assert position == {0: 15, 1: 16}
    start = T0 - T0 % 60
    assert loop.windows() == {(start, 0, "ios"): 1, (start, 1, "DE"): 1,
                            (start + 60, 0, None): 1, (start + 60, 1, "DE"): 1}
    assert Counter(topic for topic, *_ in writer.records) == {"processed-user-login": 2,
                                                              "user-login-dlq": 3}
    assert writer.polls == 1


def test_loop_writes_what_the_job_writes() -> None:
    """Processed records: the job's fields, user_id key, source.* headers, Kafka timestamp."""
    settings = Settings()
    _, writer, _ = _loop(settings)
    topic, value, key, kwargs = writer.records[0]
    source = _batch()[0]
    accepted = parse(source)
    assert isinstance(accepted, Accepted)
    got = msgspec.json.decode(value, type=ProcessedLogin)
    want = enrich(accepted, got.processed_at)
    assert (topic, got, key) == ("processed-user-login", want, accepted.login.user_id.encode())
    _, job = Enrich(settings)(ValidBatch(source.partition(), 1, [accepted],
                                         Mark(None, "active"), 0, 0.0))
    [(_, _, _, job_headers, _)] = job.records
    assert kwargs == {"headers": job_headers, "timestamp": source._timestamp_ms}


def test_loop_dead_letters_with_the_dlq_headers() -> None:
    """A rejected record keeps key and value and gets the same dlq.* headers as in the job."""
    _, writer, _ = _loop(Settings())
    source = _batch()[3]
    [(topic, value, key, kwargs)] = [r for r in writer.records if r[1] == b"{not json"]
    rejected = parse(source)
    assert isinstance(rejected, Rejected)
    failed_at = datetime.fromisoformat(dict(kwargs["headers"])["dlq.failed_at"].decode())
    assert (topic, value, key) == ("user-login-dlq", source.value(), source.key())
    assert kwargs["headers"] == dead_letter_headers(rejected, failed_at)
    assert failed_at.tzinfo is not None and failed_at.utcoffset() == UTC.utcoffset(None)


def test_window_records_have_the_counts_topic_key_and_shape() -> None:
    """Key field:value@window_start; JSON window_start/end, field, value, count, final."""
    start = T0 - T0 % 60
    [(key, value, timestamp), (key2, value2, _)] = window_records(
        {(start, 0, None): 3, (start, 1, 4): 2}, ("device_type", "ip_version"), 60)
    assert key == b"device_type:unknown@2023-09-12T00:45:00+00:00"
    assert json.loads(value) == {"window_start": "2023-09-12T00:45:00+00:00",
                                 "window_end": "2023-09-12T00:46:00+00:00",
                                 "field": "device_type", "value": "unknown", "count": 3,
                                 "final": True}
    assert timestamp == (start + 60) * 1000
    assert key2 == b"ip_version:4@2023-09-12T00:45:00+00:00"
    assert json.loads(value2)["value"] == "4"


def test_count_key_reads_the_timestamp_and_the_configured_fields_in_order() -> None:
    """The key is (timestamp, *values of COUNT_FIELDS), normalised as the job counts them."""
    accepted = parse(Message(login_bytes(locale="de", device_type="iOS", timestamp=T0)))
    assert isinstance(accepted, Accepted)
    record = enrich(accepted, "now")
    assert count_key(("locale",))(record) == (T0, "DE")
    assert count_key(("ip_version", "device_type"))(record) == (T0, 4, "ios")


def _run(rate_records: int, written: dict[str, int] | None = None,
         first: float | None = None) -> Run:
    extra: dict[str, Any] = {} if written is None else {"written": written}
    if first is not None:  # the rest of the 1 s run was spent reading
        extra["first_read_seconds"] = first
        extra["reading_seconds"] = 1.0 - first
    return Run(rate_records, 1.0, rate_records * 5e-6, [100.0], accounting=True, extra=extra)


def _results(job_written: dict[str, int], first: float | None) -> dict[str, list[Run]]:
    hand = {"out": 90, "dlq": 5, "counts": 4}
    return {"ceiling": [_run(400)], "hand": [_run(200, hand, 0.2)],
            "job": [_run(100, job_written, first), _run(120, job_written, first)]}


def test_table_shows_both_ratios_cpu_per_record_and_start_up() -> None:
    """The job's row: ratios to the ceiling and the hand loop, the same from the first read
    on (start-up left out), CPU us per record, start-up."""
    text = table(_results({"out": 90, "dlq": 5, "counts": 4}, 0.5), "ceiling", "hand")
    row = next(line for line in text.splitlines() if line.startswith("| job |"))
    # From the first read: 220 records/s (median of 200 and 240) against the hand loop's 250.
    assert row == ("| job | 100 | 0.25 | 0.50 | 100, 120 | 220 (0.88) | 5.00 | 0.50 | 100 | "
                   "holds | same |")
    hand_row = next(line for line in text.splitlines() if line.startswith("| hand |"))
    assert "| 0.50 | 1.00 |" in hand_row and "| 250 (1.00) |" in hand_row
    assert hand_row.endswith("| reference |")
    ceiling_row = next(line for line in text.splitlines() if line.startswith("| ceiling |"))
    assert "| 400 | n/a | 5.00 | n/a |" in ceiling_row


def test_summary_in_the_json_has_the_same_figures() -> None:
    """The JSON summary names ratios to both references; a missing start-up is null."""
    doc = summary(_results({"out": 90, "dlq": 5, "counts": 4}, None), "ceiling", "hand")
    assert doc["job"] == {"records_per_s": 100, "ratio_to_ceiling": 0.25,
                          "ratio_to_handloop": 0.5, "records_per_s_after_first_read": None,
                          "ratio_to_handloop_after_first_read": None, "cpu_us_per_record": 5.0,
                          "first_read_seconds": None, "outputs": "same"}


def _cpu_run(records: int, seconds: float, cpu_us: float) -> Run:
    return Run(records, seconds, records * cpu_us / 1e6, [100.0], accounting=True)


def test_paired_to_baseline_takes_the_median_of_the_rounds_ratios() -> None:
    """Round K of a case against round K of its baseline; medians of those ratios."""
    job = [_cpu_run(100, 1.0, 11.0), _cpu_run(100, 2.0, 20.0), _cpu_run(100, 1.0, 9.0)]
    base = [_cpu_run(100, 1.0, 10.0), _cpu_run(100, 1.0, 10.0), _cpu_run(100, 1.0, 10.0)]
    assert paired_to_baseline(job, base) == {"rounds": 3, "rate_ratio": 1.0, "cpu_ratio": 1.1,
                                             "cpu_ratio_by_round": [1.1, 2.0, 0.9]}
    results = {"ceiling": [_run(400)], "hand": [_run(200)], "job": job, "job (baseline)": base}
    assert summary(results, "ceiling", "hand")["job"]["paired_to_baseline"]["cpu_ratio"] == 1.1
    assert ("job, paired with its baseline round by round (3 rounds): records/s x1.000, "
            "CPU per record x1.100" in table(results, "ceiling", "hand"))


def _latency_run(p99: float) -> Run:
    return Run(100, 1.0, 0.1, [60.0], extra={"rate": 100, "sent": 110, "received": 110,
                                             "measured": 100, "p50_ms": p99 / 4,
                                             "p95_ms": p99 / 2, "p99_ms": p99, "max_ms": p99 * 2})


def test_latency_is_the_median_of_each_percentile_over_the_runs() -> None:
    """Three latency runs: each percentile's median is quoted, and every run's p99."""
    results = {"ceiling": [_run(400)], "hand": [_run(200)],
               "latency": [_latency_run(40.0), _latency_run(200.0), _latency_run(50.0)]}
    assert summary(results, "ceiling", "hand")["latency"] == {
        "p50_ms": 12.5, "p95_ms": 25.0, "p99_ms": 50.0, "max_ms": 100.0, "runs": 3,
        "p99_ms_by_run": [40.0, 200.0, 50.0]}
    line = table(results, "ceiling", "hand").splitlines()[-1]
    assert line.startswith("latency: 100 events/s for the measured period, 3 run(s), medians "
                           "over them: p50 12.5 ms, p95 25.0 ms, p99 50.0 ms, max 100.0 ms; "
                           "p99 by run: 40.0, 200.0, 50.0 ms; received 330 of 330")


def test_outputs_check_names_what_differs_and_late_records() -> None:
    """Different record counts per topic are spelled out; late records are shown apart."""
    hand = [_run(1, {"out": 90, "dlq": 5, "counts": 4})]
    assert outputs_check([_run(1, {"out": 90, "dlq": 5, "counts": 4, "late": 2})],
                         hand) == "same (+2 late)"
    assert outputs_check([_run(1, {"out": 89, "dlq": 5, "counts": 3})],
                         hand) == "differs: out 89 vs 90, counts 3 vs 4"


def test_start_up_is_from_the_launch_to_the_last_first_read_and_needs_every_process() -> None:
    """Start-up runs from the command's launch to the slowest process's first read; reading
    time from the earliest first read to the exit; nothing if a process did not report."""
    reads = [{"first_read_at": 100.7}, {"first_read_at": 100.9}]
    assert start_up(reads, 100.0, 110.0) == {"first_read_seconds": 0.9, "reading_seconds": 9.3}
    assert start_up([{"first_read_at": 100.7}, {"first_read_at": None}], 100.0, 110.0) == {}
    assert start_up([{}], 100.0, 110.0) == {}


def test_written_by_kind_names_the_uuid_topics() -> None:
    """Produced counts per topic are keyed out/dlq/counts/late for comparison across runs."""
    env = {"OUTPUT_TOPIC": "o1", "DLQ_TOPIC": "d1", "COUNTS_TOPIC": "c1", "LATE_TOPIC": "l1"}
    assert written_by_kind({"o1": 9, "d1": 1, "c1": 2}, env) == {"out": 9, "dlq": 1, "counts": 2}


@pytest.mark.parametrize("path", ["/nonexistent", "/tmp"])
def test_bad_baseline_is_one_line_and_exit_2(path: str) -> None:
    """--baseline that is not a checkout of the project: one line, exit 2, before any broker."""
    done = subprocess.run([sys.executable, "-m", "dataflow", "bench", "--baseline", path],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert done.stderr == (f"bench: error: --baseline {path}: not a checkout of this project "
                           "(no dataflow/__main__.py)\n")


def test_free_ports_are_consecutive_bindable_and_apart_from_brokers_and_clients() -> None:
    """The job's N ports are all free now, below the ephemeral range clients draw from and
    below the brokers' range (20000-32000)."""
    first = free_ports(3)
    assert first >= 10_000 and first + 3 <= 20_000
    for port in range(first, first + 3):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))


def test_checkouts_are_compiled_even_where_python_writes_no_bytecode(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """compile_package writes each checkout's bytecode under PYTHONDONTWRITEBYTECODE."""
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    (tmp_path / "dataflow").mkdir()
    (tmp_path / "dataflow" / "step.py").write_text("X = 1\n")
    compile_package(tmp_path, None)
    assert [p.name.split(".")[0] for p in (tmp_path / "dataflow" / "__pycache__").iterdir()] == [
        "step"]


def test_a_finished_cases_topics_are_deleted_and_the_input_kept() -> None:
    """delete_from deletes the topics made since the mark (a case's outputs), not the
    input made before it."""
    deleted: list[list[str]] = []

    class Admin:
        def delete_topics(self, names: list[str]) -> dict[str, Any]:
            deleted.append(list(names))
            return {}

    topics = Topics.__new__(Topics)
    topics._admin = Admin()  # type: ignore[assignment]
    topics.made = ["bench-in-1"]
    mark = len(topics.made)
    topics.made += ["bench-out-2", "bench-dlq-3"]
    topics.delete_from(mark)
    assert (deleted, topics.made) == ([["bench-out-2", "bench-dlq-3"]], ["bench-in-1"])
    topics.delete_from(len(topics.made))
    assert deleted == [["bench-out-2", "bench-dlq-3"]]  # nothing new: no call


def test_interleaved_rounds_alternate_the_order_of_the_cases() -> None:
    """Round 1 runs the cases in order, round 2 in reverse, round 3 in order again."""
    ran: list[str] = []

    class NoTopics:
        made: list[str] = []

        def delete_from(self, first: int) -> None:
            pass

    def case(name: str) -> Any:
        return lambda: ran.append(name) or Run(1, 1.0, 1.0, [1.0])

    results: dict[str, list[Run]] = {}
    _interleave(3, [(n, case(n)) for n in "abc"], NoTopics(), results,  # type: ignore[arg-type]
                lambda _run: "")
    assert "".join(ran) == "abccbaabc"
    assert {name: len(runs) for name, runs in results.items()} == {"a": 3, "b": 3, "c": 3}
