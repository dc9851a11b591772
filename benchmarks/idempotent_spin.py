"""librdkafka's idempotent producer polls in a loop while a produce request is in flight.

    python benchmarks/idempotent_spin.py BOOTSTRAP [MESSAGES [LINGER_MS]]
    taskset -a -p -c 0 <broker pid>; taskset -c 0 python benchmarks/idempotent_spin.py ...

A minimal reproduction, no dataflow code: MESSAGES records of 200 bytes produced to a new
one-partition topic as fast as ``produce()`` takes them, alternately with
``enable.idempotence`` false and true (``linger.ms`` 5 unless given, everything else
librdkafka's defaults). Each run prints its time, the producer's broker-thread wake-ups
from librdkafka's statistics, its produce requests and the CPU seconds of its threads.
On one CPU shared with the broker (the second command) idempotence makes the run slower:
the spinning thread takes the CPU the broker needs to answer. benchmarks/README.md
("The two-process stalls") says where in librdkafka the loop is.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

_TICK = os.sysconf("SC_CLK_TCK")


def thread_cpu() -> dict[str, float]:
    """CPU seconds of this process's threads, by thread name."""
    cpu: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        name = (task / "comm").read_text().strip()
        fields = (task / "stat").read_text().rpartition(")")[2].split()
        cpu[name] = cpu.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / _TICK
    return cpu


def run(bootstrap: str, topic: str, messages: int, linger_ms: int, idempotence: bool) -> None:
    stats: list[dict[str, Any]] = []
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": idempotence,
                         "linger.ms": linger_ms, "statistics.interval.ms": 500,
                         "stats_cb": lambda text: stats.append(json.loads(text))})
    value = b"x" * 200
    before = thread_cpu()
    started = time.perf_counter()
    for _ in range(messages):
        while True:
            try:
                producer.produce(topic, value)
                break
            except BufferError:
                producer.poll(0.001)
    producer.flush(60)
    seconds = time.perf_counter() - started
    time.sleep(0.6)  # one more statistics report, after the last request
    producer.poll(0)
    after = thread_cpu()
    broker = next(b for b in stats[-1]["brokers"].values() if b["nodeid"] >= 0)
    cpu = {name: round(after[name] - before.get(name, 0.0), 2) for name in after
           if after[name] - before.get(name, 0.0) >= 0.01}
    print(f"enable.idempotence={str(idempotence).lower():5}  {seconds:5.1f} s  "
          f"wake-ups {broker['wakeups']:>9,}  produce requests {broker['req']['Produce']:>5,}  "
          f"CPU s by thread {cpu}", flush=True)


def main() -> int:
    bootstrap = sys.argv[1]
    messages = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    linger_ms = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = f"spin-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    try:
        for idempotence in (False, True, False, True):
            run(bootstrap, topic, messages, linger_ms, idempotence)
    finally:
        admin.delete_topics([topic])[topic].result(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
