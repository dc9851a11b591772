"""End-to-end latency: generator at a fixed rate -> job -> processed record's arrival.

The job writes each processed record with its source record's Kafka timestamp
(the generator's produce time), so latency = arrival wall-clock - that timestamp,
both read from this machine's clock.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from dataflow.bench.cases import Run, Topics, free_ports, job_env, sum_summaries
from dataflow.logs import kafka_logger
from dataflow.metrics import accounting_holds
from dataflow.settings import Settings

WARM_UP_S = 3.0


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, round(q / 100 * (len(sorted_values) - 1)))
    return sorted_values[index]


def _collect(settings: Settings, topic: str, partitions: int, expected: int,
             measure_from_ms: float, deadline: float) -> tuple[int, list[float]]:
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "latency",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 5,
                         "logger": kafka_logger()})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    seen, latencies = 0, []
    try:
        while seen < expected and time.monotonic() < deadline:
            # consume(n, timeout) waits for n messages or the timeout, which would add up
            # to the timeout to every arrival; poll() returns at the first message, then
            # consume(n, 0) takes what else is already here without waiting.
            first = consumer.poll(0.05)
            if first is None:
                continue
            arrived_ms = time.time() * 1000
            for msg in [first, *consumer.consume(1000, 0)]:
                if msg.error() is not None:
                    continue
                seen += 1
                produced_ms = msg.timestamp()[1]
                if produced_ms >= measure_from_ms:
                    latencies.append(arrived_ms - produced_ms)
    finally:
        consumer.close()
    return seen, latencies


def run_latency(settings: Settings, topics: Topics, partitions: int, rate: int,
                seconds: float, more: dict[str, str] | None = None,
                checkout: Path | None = None) -> Run:
    """Run the job on 1 process, feed it at ``rate`` events/s, measure produce->arrival (as a
    consumer reading committed data sees it); ``more`` settings (exactly-once) when given, the
    job of another checkout (``--baseline``) when given; the generator is always this one's."""
    source = topics.make("latency-in", partitions)
    count = int(rate * (WARM_UP_S + seconds))
    with tempfile.TemporaryDirectory() as tmp:
        env = {**job_env(settings, topics, source, partitions, Path(tmp), stop_at_end=False),
               **(more or {})}
        env["INPUT_TOPIC"] = source
        run_env = {**env, "PYTHONPATH": str(checkout)} if checkout is not None else env
        job = subprocess.Popen([sys.executable, "-m", "dataflow", "run", "--processes", "1",
                                "--base-port", str(free_ports(1))], env=run_env, cwd=checkout)
        try:
            time.sleep(2.0)  # let the job start and assign its partitions
            measure_from = time.time() * 1000 + WARM_UP_S * 1000
            generator = subprocess.Popen(
                [sys.executable, "-m", "dataflow", "generate", "--rate", str(rate),
                 "--count", str(count), "--partitions", str(partitions)],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            seen, latencies = _collect(settings, env["OUTPUT_TOPIC"], partitions, count,
                                       measure_from, time.monotonic() + seconds + 60)
            generator.wait(60)
        finally:
            job.send_signal(signal.SIGINT)
            job.wait(60)
        summaries = [json.loads(p.read_text()) for p in Path(tmp).glob("*.json")]
    latencies.sort()
    total = sum_summaries(summaries)
    return Run(seen, seconds, sum(s["cpu_seconds"] for s in summaries),
               [s["peak_rss_mb"] for s in summaries],
               accounting=accounting_holds(total) if summaries else None,
               extra={"rate": rate, "sent": count, "received": seen,
                      "measured": len(latencies),
                      "p50_ms": _percentile(latencies, 50), "p95_ms": _percentile(latencies, 95),
                      "p99_ms": _percentile(latencies, 99),
                      "max_ms": latencies[-1] if latencies else float("nan")})
