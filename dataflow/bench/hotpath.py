"""`python -m dataflow.bench.hotpath`: the job's per-record Python work, step by step, no Kafka.

Builds real ``confluent_kafka.Message`` objects carrying the bench's mix (5% bad,
3% excluded) and times each step of the flow (``dataflow.flow``) over them in
batches of ``SOURCE_BATCH_SIZE``, as plain function calls: the source's clock,
parse, the locale filter, enrich, dead letters, late records, partial counts, and
the sink's hand-over to a producer that never connects (its queue purged after
each batch). Then the whole flow under Bytewax (``bytewax.testing.run_main``, a
list-backed source, sinks that drop what they get) over the same records, whose
excess over the sum of the steps is Bytewax's own cost. It prints µs per input
record, best of ``--repeat`` runs. Kafka's own cost (fetch, network, broker) is not
in it: this is the floor of what the job's Python costs.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import run_main
from confluent_kafka import Message, Producer

from dataflow.batches import Mark, SourceBatch
from dataflow.bench.cases import EXCLUDED, MIX
from dataflow.entrypoint import tune_garbage_collector
from dataflow.event_time import PartitionClock
from dataflow.flow import build_flow
from dataflow.generator.events import EventFactory
from dataflow.settings import Settings
from dataflow.source import LoginSource
from dataflow.steps import (
    DeadLetters,
    Enrich,
    LateRecords,
    ParseBatches,
    PartialCounts,
    drop_excluded_locales,
)

START = 1_700_000_000


def messages(count: int, rate: float = 2000.0) -> list[Any]:
    """The bench's mix as consumed Messages of one partition, event time advancing at ``rate``."""
    factory = EventFactory(7, MIX, START, rate=rate, excluded_locales=(EXCLUDED,))
    return [Message("user-login", 0, offset, key, value, None, None, (1, START * 1000 + offset))
            for offset, (key, value, _kind) in enumerate(factory.take(count))]


def _best(run: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - began)
    return best


class _Reader:
    """A reader over fixed chunks (``dataflow.source.Reader``)."""

    def __init__(self, chunks: list[list[Any]]) -> None:
        self._chunks = iter(chunks)
        self.position = 0
        self.done = False

    def read(self) -> list[Any]:
        chunk = next(self._chunks, [])
        self.done = not chunk
        self.position += len(chunk)
        return chunk

    def caught_up(self) -> bool:
        return self.done

    def close(self) -> None:
        pass


class _Dropped(StatelessSinkPartition[Any]):
    def write_batch(self, items: list[Any]) -> None:
        pass


class _Drop(DynamicSink[Any]):
    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Dropped:
        return _Dropped()


def measure(count: int, repeat: int) -> dict[str, float]:
    """µs per input record of each step, best of ``repeat``."""
    settings = Settings(excluded_locales=frozenset({EXCLUDED}))
    records = messages(count)
    size = settings.source_batch_size
    chunks = [records[i:i + size] for i in range(0, len(records), size)]
    read_at = START + count / 2000.0 + 60
    clock = PartitionClock(settings.allowed_lateness_seconds, settings.max_future_seconds)
    batches = [SourceBatch(0, 1, chunk, clock.stamp(chunk, read_at), Mark(None, "active"),
                           0, read_at) for chunk in chunks]
    parse = ParseBatches(settings)
    keep = drop_excluded_locales(settings)
    parsed = [parse(batch) for batch in batches]
    valid = [keep(pair[0]) for pair in parsed]  # type: ignore[arg-type]
    invalid = [pair[1] for pair in parsed]
    enrich, dead, late, partial = (Enrich(settings), DeadLetters(settings),
                                   LateRecords(settings), PartialCounts(settings))
    outputs = [enrich(batch)[1].records for batch in valid]
    producer = Producer({"bootstrap.servers": "127.0.0.1:1", "queue.buffering.max.messages":
                         2_000_000, "queue.buffering.max.kbytes": 2_097_151,
                         "log_level": 0})

    def hand_over() -> None:
        for records_ in outputs:
            for topic, key, value, headers, timestamp in records_:
                producer.produce(topic, value, key, -1, None, None, timestamp or 0,
                                 headers)  # type: ignore[arg-type]
            producer.purge()

    def whole_flow() -> None:
        source = LoginSource(settings, lambda _s, _p, _r: _Reader(chunks), partitions=[0])
        run_main(build_flow(settings, source, _Drop(), _Drop()))

    def each(step: Callable[[Any], object], items: list[Any]) -> Callable[[], object]:
        return lambda: [step(item) for item in items]

    def stamp() -> None:
        fresh = PartitionClock(settings.allowed_lateness_seconds, settings.max_future_seconds)
        for chunk in chunks:
            fresh.stamp(chunk, read_at)

    tune_garbage_collector()  # as the job does
    result = {
        "read: the clock (timestamp-only decode, lateness)": _best(stamp, repeat),
        "parse (msgspec, validation)": _best(each(parse, batches), repeat),
        "drop_excluded_locales": _best(each(keep, [p[0] for p in parsed]), repeat),
        "enrich (and encode)": _best(each(enrich, valid), repeat),
        "dead_letters": _best(each(dead, invalid), repeat),
        "late_records": _best(each(late, valid), repeat),
        "partial_counts": _best(each(partial, valid), repeat),
        "write: produce (librdkafka, not sent)": _best(hand_over, repeat),
    }
    steps = sum(result.values()) - result["write: produce (librdkafka, not sent)"]
    result["Bytewax: the whole flow without Kafka, less the steps"] = (
        _best(whole_flow, repeat) - steps)
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
