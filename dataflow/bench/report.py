"""The benchmark's Markdown table and JSON file."""

from __future__ import annotations

import json
import os
import platform
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dataflow.bench.cases import Run


def median_run(runs: list[Run]) -> Run:
    """The run with the median rate (the middle one; the lower middle for an even count)."""
    ordered = sorted(runs, key=lambda r: r.rate)
    return ordered[(len(ordered) - 1) // 2]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem_gb:.0f} GiB, Python {platform.python_version()}"


def table(results: dict[str, list[Run]], ceiling: str) -> str:
    base = median_run(results[ceiling]).rate
    rows = ["| case | records/s (median) | ratio to ceiling | runs (records/s) | CPU s per 1M | "
            "peak RSS MB per process | accounting |", "|---|---:|---:|---|---:|---:|---|"]
    for name, runs in results.items():
        if not runs or "p99_ms" in runs[0].extra:
            continue
        mid = median_run(runs)
        cpu = statistics.median(r.cpu_seconds / r.records * 1e6 for r in runs)
        rss = max(max(r.peak_rss_mb) for r in runs)
        accounting = "holds" if all(r.accounting for r in runs) else "BROKEN"
        rates = ", ".join(f"{r.rate:,.0f}" for r in runs)
        rows.append(f"| {name} | {mid.rate:,.0f} | {mid.rate / base:.2f} | {rates} | "
                    f"{cpu:.1f} | {rss:.0f} | {accounting} |")
    for name, runs in results.items():
        if runs and "p99_ms" in runs[0].extra:
            e = median_run(runs).extra
            rows.append("")
            rows.append(f"{name}: {e['rate']:,} events/s for the measured period, "
                        f"{e['measured']:,} records measured: p50 {e['p50_ms']:.1f} ms, "
                        f"p95 {e['p95_ms']:.1f} ms, p99 {e['p99_ms']:.1f} ms, "
                        f"max {e['max_ms']:.1f} ms; received {e['received']:,} of "
                        f"{e['sent']:,}; peak RSS {max(runs[0].peak_rss_mb):.0f} MB")
    return "\n".join(rows)


def write_json(path: Path, results: dict[str, list[Run]], params: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "params": params,
        "cases": {name: [{"records": r.records, "seconds": round(r.seconds, 3),
                          "records_per_s": round(r.rate), "cpu_seconds": r.cpu_seconds,
                          "peak_rss_mb": r.peak_rss_mb, "accounting": r.accounting, **r.extra}
                         for r in runs] for name, runs in results.items()},
    }
    path.write_text(json.dumps(doc, indent=2))
