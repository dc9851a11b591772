"""deploy/grafana/login-dataflow.json queries only metrics the job serves, with their labels."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from dataflow import metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "login-dataflow.json"
# Metrics the dashboard reads from elsewhere, on purpose: restarts as Kubernetes counts them.
EXTERNAL = {"kube_pod_container_status_restarts_total": "kube-state-metrics"}
PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "by", "without", "rate", "increase", "changes",
    "time", "irate", "topk", "label_values", "on", "ignoring", "and", "or", "unless",
}
# Labels Prometheus adds when it scrapes a pod (Prometheus Operator PodMonitor).
SCRAPE_LABELS = {"pod", "namespace", "container", "job", "instance"}


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def queries() -> list[str]:
    """Every PromQL text: panel targets and template variable queries."""
    found = [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]
    found += [v["definition"] for v in dashboard()["templating"]["list"] if v["type"] == "query"]
    return found


def served() -> dict[str, set[str]]:
    """Every metric name this process's /metrics endpoint serves, with its label names."""
    assert metrics.CONSUMED is not None  # registered on import of dataflow.metrics
    names: dict[str, set[str]] = {}
    for family in REGISTRY.collect():
        suffixes = {"counter": ("_total", "_created"), "gauge": ("",)}.get(family.type, ("",))
        labels = set(getattr(REGISTRY._names_to_collectors.get(family.name), "_labelnames", ()))
        for suffix in suffixes:
            names[family.name + suffix] = labels
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (selectors, ranges, groupings and strings removed)."""
    text = re.sub(r'"[^"]*"', "", expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without)\s*\([^)]*\)", " ", text)
    text = re.sub(r"label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,[^)]*\)", r" \1 ", text)
    return {w for w in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text)
            if w not in PROMQL_WORDS and not w.startswith("__")}


def problems(expr: str, available: dict[str, set[str]]) -> list[str]:
    """Unknown metrics, and matcher or `by` labels that none of the query's metrics has."""
    found = [f"unknown metric {n}" for n in sorted(metric_names(expr) - available.keys()
                                                  - EXTERNAL.keys())]
    for name, matchers in re.findall(r"([a-z_:][a-z0-9_:]*)\{([^}]*)\}", expr):
        if name in EXTERNAL or name not in available:
            continue
        found += [f"{name} has no label {label}"
                  for label in re.findall(r"([a-z_]+)\s*=~?", matchers)
                  if label not in available[name] | SCRAPE_LABELS]
    names = (metric_names(expr) & available.keys()) - EXTERNAL.keys()
    for labels in re.findall(r"\bby \(([^)]*)\)", expr):
        found += [f"no metric of the query has label {label}"
                  for label in (s.strip() for s in labels.split(","))
                  if names and not any(label in available[n] | SCRAPE_LABELS for n in names)]
    return found


def test_every_queried_metric_is_served_by_the_job() -> None:
    """Each metric in a query is in dataflow.metrics or prometheus_client's process metrics."""
    available = served()
    used = set().union(*(metric_names(q) for q in queries()))
    assert used - available.keys() - EXTERNAL.keys() == set()
    assert {"login_records_consumed_total", "login_consumer_lag",
            "process_start_time_seconds"} <= used


def test_grouping_and_matcher_labels_are_labels_of_the_metric() -> None:
    """`by (label)` and label matchers name labels the metric has (or scrape labels)."""
    available = served()
    assert {q: problems(q, available) for q in queries() if problems(q, available)} == {}


@pytest.mark.parametrize(
    ("expr", "problem"),
    [("sum by (reason) (rate(login_records_dead_letters_total[5m]))",
      "unknown metric login_records_dead_letters_total"),
     ('login_records_dead_lettered_total{colour="x"}',
      "login_records_dead_lettered_total has no label colour"),
     ("sum by (partition) (rate(login_records_consumed_total[5m]))",
      "no metric of the query has label partition")],
)
def test_the_checks_catch_a_wrong_metric_or_label(expr: str, problem: str) -> None:
    """A misspelt metric, a label it lacks, or a grouping by a missing label is reported."""
    assert problems(expr, served()) == [problem]


def test_dashboard_covers_what_operators_look_for() -> None:
    """Throughput, lag, dead letters with a reason filter, late events, windows, restarts."""
    text = " ".join(queries())
    for metric in ("login_records_consumed_total", "login_records_produced_total",
                   "login_consumer_lag", "login_records_dead_lettered_total",
                   "login_window_late_events_total", "login_windows_written_total",
                   "process_start_time_seconds"):
        assert metric in text, metric
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["reason"]["definition"] == \
        "label_values(login_records_dead_lettered_total, reason)"
    assert any('reason=~"$reason"' in q for q in queries())
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids))
