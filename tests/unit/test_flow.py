"""The whole flow on bytewax.testing sources and sinks, on 1 and 2 workers."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main

from dataflow import metrics
from dataflow.flow import build_flow
from dataflow.settings import Settings
from tests.records import FakeRecord, login_bytes

SETTINGS = Settings(window_seconds=60, allowed_lateness_seconds=3600,
                    excluded_locales=frozenset({"BY"}))
T0 = 1_694_479_551
BASE = T0 - T0 % 60


def _records() -> list[FakeRecord]:
    values = [
        login_bytes(timestamp=BASE + 1, device_type="Android", locale="ru"),
        login_bytes(timestamp=str(BASE + 2), device_type="iOS", locale="US"),
        login_bytes(timestamp=BASE + 61, device_type=None, locale="US"),
        login_bytes(timestamp=BASE + 5, locale="BY"),  # filtered
        b"{not json",
        login_bytes(ip="not-an-ip"),
        None,
    ]
    return [FakeRecord(v, _offset=i, _partition=i % 2) for i, v in enumerate(values)]


def _run(workers: int) -> tuple[list[Any], dict[str, Any]]:
    before = metrics.snapshot()
    out: list[Any] = []
    flow = build_flow(SETTINGS, source=TestingSource(_records()), sink=TestingSink(out))
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    after = metrics.snapshot()
    delta = {
        "consumed": 0,  # the testing source does not count reads
        "processed": after["processed"] - before["processed"],
        "filtered": sum(after["filtered"].values()) - sum(before["filtered"].values()),
        "dead": sum(after["dead_lettered"].values()) - sum(before["dead_lettered"].values()),
    }
    return out, delta


@pytest.mark.parametrize("workers", [1, 2])
def test_flow_routes_every_record_once(workers: int) -> None:
    """Valid records are processed, bad ones dead-lettered, excluded ones filtered."""
    out, delta = _run(workers)
    topics = Counter(record[0] for record in out)
    assert topics["processed-user-login"] == 3
    assert topics["user-login-dlq"] == 3
    assert delta == {"consumed": 0, "processed": 3, "filtered": 1, "dead": 3}


@pytest.mark.parametrize("workers", [1, 2])
def test_flow_counts_windows_exactly(workers: int) -> None:
    """Window counts per field value are exact and identical on 1 and 2 workers."""
    out, _ = _run(workers)
    counts = sorted(
        (c["window_start"], c["field"], c["value"], c["count"])
        for c in (json.loads(r[2]) for r in out if r[0] == "user-login-counts")
    )
    start = "2023-09-12T00:45:00+00:00"
    nxt = "2023-09-12T00:46:00+00:00"
    assert counts == [
        (start, "device_type", "android", 1),
        (start, "device_type", "ios", 1),
        (start, "locale", "RU", 1),
        (start, "locale", "US", 1),
        (nxt, "device_type", "unknown", 1),
        (nxt, "locale", "US", 1),
    ]


@pytest.mark.parametrize("workers", [1, 2])
def test_late_event_goes_to_the_late_topic_and_is_counted(workers: int) -> None:
    """An event for a closed window is written to LATE_TOPIC and counted, and still processed."""
    settings = Settings(window_seconds=60, allowed_lateness_seconds=10,
                        count_fields=("device_type",))
    stamps = [BASE + 1, BASE + 200, BASE + 5]  # the third belongs to a window closed by the second
    records = [FakeRecord(login_bytes(timestamp=ts), _offset=i) for i, ts in enumerate(stamps)]
    before = metrics.snapshot()["late"].get("device_type", 0)
    out: list[Any] = []
    flow = build_flow(settings, source=TestingSource(records, batch_size=1), sink=TestingSink(out))
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    late = [json.loads(r[2]) for r in out if r[0] == "user-login-late"]
    assert late == [{"window_start": "2023-09-12T00:45:00+00:00",
                     "window_end": "2023-09-12T00:46:00+00:00",
                     "field": "device_type", "value": "android", "count": 1}]
    assert metrics.snapshot()["late"]["device_type"] - before == 1
    counts = sorted((json.loads(r[2])["window_start"], json.loads(r[2])["count"])
                    for r in out if r[0] == "user-login-counts")
    assert counts == [("2023-09-12T00:45:00+00:00", 1), ("2023-09-12T00:48:00+00:00", 1)]
    assert sum(1 for r in out if r[0] == "processed-user-login") == 3
