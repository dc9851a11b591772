"""The whole flow on list-backed partitions and testing sinks, on 1 and 2 workers."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import types
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from bytewax.testing import TestingSink, cluster_main, run_main

import dataflow.flow
from dataflow import metrics
from dataflow.flow import build_flow
from dataflow.schemas import Accepted
from dataflow.settings import Settings
from tests.records import FakeRecord, Written, list_source, login_bytes, written

SETTINGS = Settings(excluded_locales=frozenset({"BY"}))
T0 = 1_694_479_551
BASE = T0 - T0 % 60
START = "2023-09-12T00:45:00+00:00"
NEXT = "2023-09-12T00:46:00+00:00"
# The steps a reader of dataflow/flow.py and of `python -m bytewax.visualize` sees, in order.
STEPS = ["read", "parse", "split_valid_invalid", "dead_letters", "drop_excluded_locales",
         "enrich", "late_records", "partial_counts", "window_shards", "count_records",
         "to_kafka", "write", "write_counts"]


def _records() -> list[FakeRecord]:
    values = [
        login_bytes(timestamp=BASE + 1, device_type="Android", locale="ru"),
        login_bytes(timestamp=str(BASE + 2), device_type="iOS", locale="US"),
        login_bytes(timestamp=BASE + 75, device_type=None, locale="US"),
        login_bytes(timestamp=BASE + 5, locale="BY"),  # filtered
        b"{not json",
        login_bytes(timestamp=BASE + 3, ip="not-an-ip"),  # dead-lettered; moves the clock
        None,
    ]
    return [FakeRecord(v, _offset=i // 2, _partition=i % 2) for i, v in enumerate(values)]


def _run(records: list[FakeRecord], workers: int, settings: Settings = SETTINGS,
         batch_size: int = 100, build: Any = build_flow) -> Written:
    out: list[Any] = []
    flow = build(settings, list_source(settings, records, batch_size), TestingSink(out),
                 TestingSink(out))
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return written(out)


def _last_counts(out: Written) -> dict[tuple[str, str, str], tuple[int, bool]]:
    """(window_start, field, value) -> (count, final) of the last record of each window."""
    return {(c["window_start"], c["field"], c["value"]): (c["count"], c["final"])
            for c in out.counts}


def test_the_graph_shows_every_step_of_the_pipeline() -> None:
    """Each stage the product promises is a named operator of the flow, top to bottom."""
    flow = build_flow(SETTINGS, list_source(SETTINGS, []))
    assert [step.step_name for step in flow.substeps] == STEPS


@pytest.mark.parametrize("workers", [1, 2])
def test_flow_routes_every_record_once(workers: int) -> None:
    """Valid records are processed, bad ones dead-lettered, excluded ones filtered."""
    before = metrics.snapshot()
    out = _run(_records(), workers)
    after = metrics.snapshot()
    assert len(out.processed) == 3
    assert Counter(reason for reason, _ in out.dead) == {
        "malformed_json": 1, "invalid_value": 1, "empty_value": 1}
    assert after["processed"] - before["processed"] == 3
    assert sum(after["filtered"].values()) - sum(before["filtered"].values()) == 1
    assert sum(after["dead_lettered"].values()) - sum(before["dead_lettered"].values()) == 3


@pytest.mark.parametrize("workers", [1, 2])
def test_flow_counts_windows_exactly(workers: int) -> None:
    """Counts are exact on 1 and 2 workers; once both partitions finished, the window the
    highest watermark passed is final, the last one is written provisional."""
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
    assert out.late == {(START, "device_type", "android"): 1}
    assert metrics.snapshot()["late"]["device_type"] - before == 1
    assert _last_counts(out) == {(START, "device_type", "android"): (1, True),
                                 ("2023-09-12T00:48:00+00:00", "device_type", "android"):
                                     (1, False)}
    assert len(out.processed) == 3


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


BLOCKED = ipaddress.ip_network("199.172.0.0/16")


def not_blocked(login: Accepted) -> bool:
    """The README's example filter: logins from 199.172.0.0/16 are dropped."""
    return ipaddress.ip_address(login.login.ip) not in BLOCKED


def test_adding_a_step_is_one_line_in_flow_py() -> None:
    """dataflow/flow.py with the README's one added line (and this test's function) runs:
    the blocked logins are dropped, counted as filtered, and nothing else changes."""
    path = Path(dataflow.flow.__file__)
    anchor = 'drop_excluded_locales(settings))\n'
    source = path.read_text()
    assert source.count(anchor) == 1
    added = ('    valid = op.map("drop_blocked_ips", valid, '
             'filter_logins(not_blocked, "blocked_ip"))\n')
    module = types.ModuleType("flow_with_a_new_step")
    module.__dict__["not_blocked"] = not_blocked
    sys.modules[module.__name__] = module
    try:
        exec(compile(source.replace(anchor, anchor + added), str(path), "exec"), module.__dict__)
        records = [FakeRecord(login_bytes(timestamp=BASE, ip=ip), _offset=i)
                   for i, ip in enumerate(("199.172.1.1", "10.0.0.1", "199.172.9.9"))]
        before = metrics.snapshot()["filtered"].get("blocked_ip", 0)
        out = _run(records, 1, Settings(), build=module.build_flow)
    finally:
        del sys.modules[module.__name__]
    assert [doc["ip"] for doc in out.processed] == ["10.0.0.1"]
    assert metrics.snapshot()["filtered"]["blocked_ip"] - before == 2


def test_bytewax_visualize_draws_the_steps_without_kafka() -> None:
    """`python -m bytewax.visualize dataflow.flow` draws every step, and needs no broker."""
    root = Path(dataflow.flow.__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"}
    done = subprocess.run([sys.executable, "-m", "bytewax.visualize", "dataflow.flow"],
                          env=env, cwd=root, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for step in STEPS:
        assert f'login-dataflow.{step}["{step} (' in done.stdout
