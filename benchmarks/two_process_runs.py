"""Many two-process runs of the job over one preloaded topic, to catch the rare slow one.

    python -m dataflow kafka start
    python benchmarks/two_process_runs.py [RECORDS [RUNS [VARIANT ...]]]

RECORDS defaults to 1,000,000 and RUNS to 30. Each VARIANT is extra environment for the
job, ``KEY=VALUE[,KEY=VALUE]`` (``KAFKA_CONFIG_ENABLE_IDEMPOTENCE=false``, say): the
shipped settings and every variant then take turns, RUNS rounds, so a noisy moment of
the shared machine hits them alike. One JSON line per run (records/s over the whole
command, exit code, and per process the records read, CPU seconds and seconds to its
first read), then for each of them the median, the slowest and how many runs were under
half the median (issue 20, item 9: the target is none).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataflow.bench.cases import Topics, free_ports, job_env, preload
from dataflow.logs import configure
from dataflow.settings import Settings

PARTITIONS = 8
SHIPPED = "shipped"


def one_run(settings: Settings, topics: Topics, source: str, records: int,
            variant: str) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        env = job_env(settings, topics, source, PARTITIONS, Path(tmp), stop_at_end=True)
        if variant != SHIPPED:
            env.update(item.partition("=")[::2] for item in variant.split(","))
        launched, started = time.time(), time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "dataflow", "run", "--processes", "2",
                               "--base-port", str(free_ports(2))],
                              env=env, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - started
        summaries = [json.loads(p.read_text()) for p in Path(tmp).glob("*.json")]
    row: dict[str, object] = {
        "variant": variant, "exit": done.returncode, "seconds": round(seconds, 2),
        "rate": round(records / seconds),
        "processes": [{"read": s["consumed"], "cpu_s": round(s["cpu_seconds"], 2),
                       "first_read_s": round((s.get("first_read_at") or launched) - launched, 2)}
                      for s in summaries]}
    if done.returncode or len(summaries) != 2:
        row["stderr"] = done.stderr[-1500:]
    return row


def main() -> int:
    records = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    variants = [SHIPPED, *sys.argv[3:]]
    settings = Settings.from_env(os.environ)
    configure("warning", "console")
    topics = Topics(settings)
    rates: dict[str, list[int]] = {variant: [] for variant in variants}
    try:
        source = topics.make("in", PARTITIONS)
        preload(settings, source, records, PARTITIONS)
        for run in range(runs):
            for variant in variants:
                row = {"run": run, **one_run(settings, topics, source, records, variant)}
                rates[variant].append(int(row["rate"]))  # type: ignore[call-overload]
                print(json.dumps(row), flush=True)
    finally:
        topics.delete_all()
    for variant, found in rates.items():
        median = statistics.median(found)
        print(f"{variant}: median {median:,.0f} records/s, slowest {min(found):,}, fastest "
              f"{max(found):,}; under half the median: "
              f"{sum(rate < median / 2 for rate in found)} of {len(found)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
