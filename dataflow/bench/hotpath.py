"""`python -m dataflow.bench.hotpath`: the job's per-record Python work, no Kafka.

Builds real ``confluent_kafka.Message`` objects carrying the bench's mix (5% bad,
3% excluded) and times the job's hot path over them in batches of
``SOURCE_BATCH_SIZE``: the partition's batch step (parse, dead letters, filter,
enrich and encode, lateness, partial counts) once with a ``produce()`` that does
nothing, and once producing to a producer that never connects (its queue is
purged after each batch). It prints µs per input record for each, best of
``--repeat`` runs. Kafka's own cost (fetch, network, broker) is not in it: this
is the floor of what the job's Python costs.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Message, Producer

from dataflow.batches import PartitionProcessor
from dataflow.bench.cases import EXCLUDED, MIX
from dataflow.flow import tune_garbage_collector
from dataflow.generator.events import EventFactory
from dataflow.schemas import OutRecord
from dataflow.settings import Settings

START = 1_700_000_000


def messages(count: int, rate: float = 2000.0) -> list[Any]:
    """The bench's mix as consumed Messages of one partition, event time advancing at ``rate``."""
    factory = EventFactory(7, MIX, START, rate=rate, excluded_locales=(EXCLUDED,))
    return [Message("user-login", 0, offset, key, value, None, None, (1, START * 1000 + offset))
            for offset, (key, value, _kind) in enumerate(factory.take(count))]


class _Writer:
    """A writer whose records go nowhere: dropped by ``produce`` itself, or purged from a
    producer that never connects after each batch."""

    def __init__(self, producer: Producer | None) -> None:
        self._producer = producer
        self.produce: Callable[..., None] = (producer.produce if producer is not None
                                             else lambda *_args: None)

    def produce_record(self, record: OutRecord) -> None:
        topic, key, value, headers, timestamp = record
        self.produce(topic, value, key, -1, None, None, timestamp or 0, headers)

    def after_batch(self, written: list[OutRecord], rebuild: object, produced: int,
                    topic: str) -> None:
        if self._producer is not None:
            self._producer.purge()


def _best(run: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - began)
    return best


def measure(count: int, repeat: int) -> dict[str, float]:
    """µs per input record of each step, best of ``repeat``."""
    settings = Settings(excluded_locales=frozenset({EXCLUDED}))
    records = messages(count)
    size = settings.source_batch_size
    chunks = [records[i:i + size] for i in range(0, len(records), size)]
    producer = Producer({"bootstrap.servers": "127.0.0.1:1", "queue.buffering.max.messages":
                         2_000_000, "queue.buffering.max.kbytes": 2_097_151,
                         "log_level": 0})

    def step(writer: _Writer) -> Callable[[], None]:
        def run() -> None:
            processor = PartitionProcessor(settings, 0, 1, writer)
            for chunk in chunks:
                processor.process(chunk)
        return run

    tune_garbage_collector()  # as the job does
    result = {
        "batch step (parse, dead letters, filter, enrich, lateness, partial counts)":
            _best(step(_Writer(None)), repeat),
        "produce (librdkafka, not sent): the same with it, less the above":
            _best(step(_Writer(producer)), repeat),
    }
    first = next(iter(result))
    result["produce (librdkafka, not sent): the same with it, less the above"] -= result[first]
    return {name: seconds / count * 1e6 for name, seconds in result.items()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m dataflow.bench.hotpath", description=__doc__)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    figures = measure(args.records, args.repeat)
    width = max(map(len, figures))
    for name, micros in figures.items():
        print(f"{name:<{width}}  {micros:5.2f} us/record")
    print(f"{'total':<{width}}  {sum(figures.values()):5.2f} us/record")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
