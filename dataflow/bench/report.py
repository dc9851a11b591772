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


def _throughput(runs: list[Run]) -> bool:
    return bool(runs) and "p99_ms" not in runs[0].extra


def cpu_us_per_record(runs: list[Run]) -> float:
    """Median over runs of CPU microseconds (user + system, every process) per record read."""
    return statistics.median(r.cpu_seconds / r.records * 1e6 if r.records else 0.0 for r in runs)


def rate_after_first_read(runs: list[Run]) -> float | None:
    """Median records/s from the first read to the exit, over the runs that reported it."""
    values = [rate for r in runs if (rate := r.rate_after_first_read) is not None]
    return statistics.median(values) if values else None


def first_read_seconds(runs: list[Run]) -> float | None:
    """Median launch-to-first-read seconds of the runs that reported it; None if none did."""
    values = [r.extra["first_read_seconds"] for r in runs
              if r.extra.get("first_read_seconds") is not None]
    return statistics.median(values) if values else None


def outputs_check(runs: list[Run], reference: list[Run]) -> str:
    """Records per output topic against the hand-written loop's: out, dlq and counts equal."""
    if not reference or any("written" not in r.extra for r in [*runs, *reference]):
        return "-"
    want = reference[0].extra["written"]
    problems = []
    for kind in ("out", "dlq", "counts"):
        got = sorted({r.extra["written"].get(kind, 0) for r in runs})
        if got != [want.get(kind, 0)]:
            problems.append(f"{kind} {'/'.join(map(str, got))} vs {want.get(kind, 0)}")
    late = max(r.extra["written"].get("late", 0) for r in runs)
    text = "differs: " + ", ".join(problems) if problems else "same"
    return text + (f" (+{late} late)" if late else "")


BASELINE_SUFFIX = " (baseline)"


def paired_to_baseline(runs: list[Run], baseline: list[Run]) -> dict[str, Any]:
    """A case against its baseline run by run: the runs of round K ran next to each other,
    so each ratio compares two runs on the same machine state. The median of the per-round
    ratios of records/s and of CPU per record, and each round's CPU ratio."""
    pairs = [(run, base) for run, base in zip(runs, baseline, strict=False)
             if run.records and base.records and base.rate and base.cpu_seconds]
    cpu = [(run.cpu_seconds / run.records) / (base.cpu_seconds / base.records)
           for run, base in pairs]
    return {"rounds": len(pairs),
            "rate_ratio": round(statistics.median(run.rate / base.rate for run, base in pairs), 3)
            if pairs else None,
            "cpu_ratio": round(statistics.median(cpu), 3) if cpu else None,
            "cpu_ratio_by_round": [round(ratio, 3) for ratio in cpu]}


def latency_medians(runs: list[Run]) -> dict[str, float]:
    """Each percentile of the latency runs, the median over the runs (not of one run)."""
    return {key: statistics.median(r.extra[key] for r in runs)
            for key in ("p50_ms", "p95_ms", "p99_ms", "max_ms")}


def summary(results: dict[str, list[Run]], ceiling: str, handloop: str) -> dict[str, Any]:
    """Per throughput case: median records/s, both ratios, the same from the first read on
    (start-up left out), CPU per record, start-up; with a baseline, the case paired with it
    round by round (``paired_to_baseline``). Per latency case: the median of each percentile
    over its runs."""
    base, hand = median_run(results[ceiling]).rate, median_run(results[handloop]).rate
    hand_reading = rate_after_first_read(results[handloop])
    out: dict[str, dict[str, Any]] = {}
    for name, runs in results.items():
        if not _throughput(runs):
            continue
        rate, reading = median_run(runs).rate, rate_after_first_read(runs)
        out[name] = {"records_per_s": round(rate), "ratio_to_ceiling": round(rate / base, 3),
                     "ratio_to_handloop": round(rate / hand, 3),
                     "records_per_s_after_first_read": None if reading is None else round(reading),
                     "ratio_to_handloop_after_first_read":
                         None if reading is None or not hand_reading
                         else round(reading / hand_reading, 3),
                     "cpu_us_per_record": round(cpu_us_per_record(runs), 2),
                     "first_read_seconds": first_read_seconds(runs),
                     "outputs": "reference" if name == handloop else
                     outputs_check(runs, results[handloop]) if name != ceiling else "-"}
        if name + BASELINE_SUFFIX in results:
            out[name]["paired_to_baseline"] = paired_to_baseline(
                runs, results[name + BASELINE_SUFFIX])
    for name, runs in results.items():
        if runs and not _throughput(runs):
            out[name] = {**{key: round(value, 1) for key, value in latency_medians(runs).items()},
                         "runs": len(runs),
                         "p99_ms_by_run": [round(r.extra["p99_ms"], 1) for r in runs]}
    return out


def table(results: dict[str, list[Run]], ceiling: str, handloop: str) -> str:
    rows = ["| case | records/s (median) | ratio to ceiling | ratio to hand loop | "
            "runs (records/s) | from the first read: records/s (ratio to hand loop) | "
            "CPU µs per record | start-up to first read (s) | "
            "peak RSS MB per process | accounting | outputs vs hand loop |",
            "|---|---:|---:|---:|---|---:|---:|---:|---:|---|---|"]
    by_case = summary(results, ceiling, handloop)
    rows_by_case = {name: row for name, row in by_case.items() if _throughput(results[name])}
    for name, row in rows_by_case.items():
        runs = results[name]
        rss = max(max(r.peak_rss_mb) for r in runs)
        accounting = "holds" if all(r.accounting for r in runs) else "BROKEN"
        rates = ", ".join(f"{r.rate:,.0f}" for r in runs)
        start = row["first_read_seconds"]
        reading, ratio = (row["records_per_s_after_first_read"],
                          row["ratio_to_handloop_after_first_read"])
        after = "n/a" if reading is None else (
            f"{reading:,}" + ("" if ratio is None else f" ({ratio:.2f})"))
        rows.append(f"| {name} | {row['records_per_s']:,} | {row['ratio_to_ceiling']:.2f} | "
                    f"{row['ratio_to_handloop']:.2f} | {rates} | {after} | "
                    f"{row['cpu_us_per_record']:.2f} | "
                    f"{'n/a' if start is None else f'{start:.2f}'} | {rss:.0f} | {accounting} | "
                    f"{row['outputs']} |")
    for name, row in rows_by_case.items():
        paired = row.get("paired_to_baseline")
        if paired and paired["rounds"]:
            rows.append("")
            rows.append(f"{name}, paired with its baseline round by round ({paired['rounds']} "
                        f"rounds): records/s x{paired['rate_ratio']:.3f}, CPU per record "
                        f"x{paired['cpu_ratio']:.3f} (medians of the rounds' ratios; CPU by "
                        f"round: {', '.join(f'{r:.3f}' for r in paired['cpu_ratio_by_round'])})")
    for name, runs in results.items():
        if runs and not _throughput(runs):
            e, medians = runs[0].extra, by_case[name]
            p99s = ", ".join(f"{p99:.1f}" for p99 in medians["p99_ms_by_run"])
            received = sum(r.extra["received"] for r in runs)
            sent = sum(r.extra["sent"] for r in runs)
            rows.append("")
            rows.append(f"{name}: {e['rate']:,} events/s for the measured period, "
                        f"{len(runs)} run(s), medians over them: p50 {medians['p50_ms']:.1f} ms, "
                        f"p95 {medians['p95_ms']:.1f} ms, p99 {medians['p99_ms']:.1f} ms, "
                        f"max {medians['max_ms']:.1f} ms; p99 by run: {p99s} ms; "
                        f"received {received:,} of {sent:,}; peak RSS "
                        f"{max(max(r.peak_rss_mb) for r in runs):.0f} MB")
    return "\n".join(rows)


def write_json(path: Path, results: dict[str, list[Run]], params: dict[str, Any],
               ceiling: str, handloop: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "params": params,
        "summary": summary(results, ceiling, handloop),
        "cases": {name: [{"records": r.records, "seconds": round(r.seconds, 3),
                          "records_per_s": round(r.rate), "cpu_seconds": r.cpu_seconds,
                          "cpu_us_per_record": round(r.cpu_seconds / r.records * 1e6, 2)
                          if r.records else None,
                          "peak_rss_mb": r.peak_rss_mb, "accounting": r.accounting, **r.extra}
                         for r in runs] for name, runs in results.items()},
    }
    path.write_text(json.dumps(doc, indent=2))
