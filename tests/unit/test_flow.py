"""The whole flow on list-backed partitions and a testing sink, on 1 and 2 workers."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from bytewax.testing import TestingSink, cluster_main, run_main

from dataflow import metrics
from dataflow.flow import build_flow
from dataflow.settings import Settings
from tests.records import FakeRecord, list_source, login_bytes

SETTINGS = Settings(excluded_locales=frozenset({"BY"}))
T0 = 1_694_479_551
BASE = T0 - T0 % 60
START = "2023-09-12T00:45:00+00:00"
NEXT = "2023-09-12T00:46:00+00:00"


def _records() -> list[FakeRecord]:
    values = [
        login_bytes(timestamp=BASE + 1, device_type="Android", locale="ru"),
        login_bytes(timestamp=str(BASE + 2), device_type="iOS", locale="US"),
        login_bytes(timestamp=BASE + 75, device_type=None, locale="US"),
        login_bytes(timestamp=BASE + 5, locale="BY"),  # filtered
        b"{not json",
        login_bytes(ip="not-an-ip"),
        None,
    ]
    return [FakeRecord(v, _offset=i // 2, _partition=i % 2) for i, v in enumerate(values)]


def _run(records: list[FakeRecord], workers: int, settings: Settings = SETTINGS,
         batch_size: int = 100) -> list[Any]:
    out: list[Any] = []
    flow = build_flow(settings, source=list_source(settings, records, batch_size, out=out),
                      sink=TestingSink(out))
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return [record for _partition, records in out for record in records]


def _docs(out: list[Any], topic: str) -> list[dict[str, Any]]:
    return [json.loads(r[2]) for r in out if r[0] == topic]


def _last_counts(out: list[Any]) -> dict[tuple[str, str, str], tuple[int, bool]]:
    """(window_start, field, value) -> (count, final) of the last record of each window."""
    return {(c["window_start"], c["field"], c["value"]): (c["count"], c["final"])
            for c in _docs(out, "user-login-counts")}


@pytest.mark.parametrize("workers", [1, 2])
def test_flow_routes_every_record_once(workers: int) -> None:
    """Valid records are processed, bad ones dead-lettered, excluded ones filtered."""
    before = metrics.snapshot()
    out = _run(_records(), workers)
    after = metrics.snapshot()
    topics = Counter(record[0] for record in out)
    assert topics["processed-user-login"] == 3
    assert topics["user-login-dlq"] == 3
    assert after["processed"] - before["processed"] == 3
    assert sum(after["filtered"].values()) - sum(before["filtered"].values()) == 1
    assert sum(after["dead_lettered"].values()) - sum(before["dead_lettered"].values()) == 3


@pytest.mark.parametrize("workers", [1, 2])
def test_flow_counts_windows_exactly(workers: int) -> None:
    """Counts are exact on 1 and 2 workers; the window the watermark passed is final, the
    last one is written provisional when the run ends."""
    assert _last_counts(_run(_records(), workers)) == {
        (START, "device_type", "android"): (1, True),
        (START, "device_type", "ios"): (1, True),
        (START, "locale", "RU"): (1, True),
        (START, "locale", "US"): (1, True),
        (NEXT, "device_type", "unknown"): (1, False),
        (NEXT, "locale", "US"): (1, False),
    }


@pytest.mark.parametrize("workers", [1, 2])
def test_late_event_goes_to_the_late_topic_and_is_still_processed(workers: int) -> None:
    """An event older than its partition's watermark is late: LATE_TOPIC, not counted,
    counted in the late metric, and still processed."""
    settings = Settings(count_fields=("device_type",))
    stamps = [BASE + 1, BASE + 200, BASE + 5]  # the third is 195 s older than the newest
    records = [FakeRecord(login_bytes(timestamp=ts), _offset=i) for i, ts in enumerate(stamps)]
    before = metrics.snapshot()["late"].get("device_type", 0)
    out = _run(records, workers, settings, batch_size=1)
    assert _docs(out, "user-login-late") == [
        {"window_start": START, "window_end": NEXT, "field": "device_type", "value": "android",
         "count": 1}]
    assert metrics.snapshot()["late"]["device_type"] - before == 1
    assert _last_counts(out) == {(START, "device_type", "android"): (1, True),
                                 ("2023-09-12T00:48:00+00:00", "device_type", "android"):
                                     (1, False)}
    assert sum(1 for r in out if r[0] == "processed-user-login") == 3


@pytest.mark.parametrize("workers", [1, 2])
def test_counting_by_user_id_is_exact_with_many_distinct_values(workers: int) -> None:
    """COUNT_FIELDS=user_id (one key per user): 600 users over 3 windows, counts exact; the
    windows the watermark passed are final."""
    settings = Settings(count_fields=("user_id",))
    records = [FakeRecord(login_bytes(user_id=f"u{i % 600}", timestamp=BASE + i // 10),
                          _offset=i // 2, _partition=i % 2) for i in range(1800)]
    counts = _last_counts(_run(records, workers, settings, batch_size=97))
    assert len(counts) == 1800  # 600 users in each of 3 windows
    assert {n for n, _ in counts.values()} == {1}
    assert {start for (start, _, _), (_, final) in counts.items() if final} == {START, NEXT}
