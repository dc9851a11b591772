"""Start-up timing in the metrics module: mark_first_read, process age, the summary field."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dataflow import metrics

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    return done.stdout


def test_mark_first_read_keeps_the_first_instant(monkeypatch: pytest.MonkeyPatch) -> None:
    """A second call does not move the recorded instant."""
    monkeypatch.setattr(metrics, "_first_read", None)
    metrics.mark_first_read()
    first = metrics._first_read
    time.sleep(0.01)
    metrics.mark_first_read()
    assert first is not None
    assert metrics._first_read == first


def test_first_read_seconds_is_the_process_age_at_the_mark(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """first_read_seconds lies between the process's age just before and just after the mark."""
    monkeypatch.setattr(metrics, "_first_read", None)
    assert metrics.first_read_seconds() is None
    before = metrics.process_age_seconds()
    metrics.mark_first_read()
    after = metrics.process_age_seconds()
    time.sleep(0.05)  # later reads must still give the age at the mark, not now
    value = metrics.first_read_seconds()
    assert before is not None and after is not None and value is not None
    assert before - 0.001 <= value <= after + 0.001


def test_process_age_counts_from_exec() -> None:
    """A process that slept 0.3 s is at least 0.3 s old, and not older than its whole run."""
    began = time.monotonic()
    age = float(_python("import time; time.sleep(0.3); from dataflow import metrics; "
                        "print(metrics.process_age_seconds())"))
    elapsed = time.monotonic() - began
    assert 0.3 <= age <= elapsed + 0.011  # the kernel stamps the start in 1/100 s ticks


def test_snapshot_reports_first_read_only_after_the_mark() -> None:
    """In a fresh process the field is null until mark_first_read, then the age at the mark."""
    out = _python("import json, time; from dataflow import metrics; "
                  "a = metrics.snapshot()['first_read_seconds']; time.sleep(0.2); "
                  "metrics.mark_first_read(); time.sleep(0.2); "
                  "print(json.dumps([a, metrics.snapshot()['first_read_seconds'], "
                  "metrics.process_age_seconds()]))")
    before, at_mark, at_end = json.loads(out)
    assert before is None
    assert at_mark >= 0.2
    assert at_end - at_mark >= 0.2 - 0.002  # the time after the mark is not counted


def test_summary_file_carries_first_read_seconds(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """write_summary writes the field: null before a first read, a number after."""
    monkeypatch.setattr(metrics, "_first_read", None)
    assert json.loads(metrics.write_summary(tmp_path / "a").read_text())[
        "first_read_seconds"] is None
    metrics.mark_first_read()
    value = json.loads(metrics.write_summary(tmp_path / "b").read_text())["first_read_seconds"]
    assert isinstance(value, float) and value > 0
