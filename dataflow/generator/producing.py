"""Send generated events to Kafka, paced or as fast as possible.

Pacing: event ``i`` is due ``i / rate`` seconds after the start. The loop sends
whatever is due in one small burst, then waits for the next event in steps of
at most a millisecond, serving delivery callbacks meanwhile (``poll(wait)``).
At rate 0 it sends bursts back to back. Every delivery is confirmed by the
producer's delivery callback; ``poll(0)`` after each burst serves them.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, TextIO

from confluent_kafka import KafkaError, Message, Producer

from dataflow.generator.events import (
    EventFactory,
    Shares,
    TimeShape,
    excluded_locales_for,
)
from dataflow.kafka_config import admin_config, producer_config
from dataflow.settings import Settings
from dataflow.topics import ensure_topics

MAX_BURST = 500
MAX_WAIT_SECONDS = 0.001
PROGRESS_SECONDS = 5.0
ADMIN_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True, slots=True)
class GeneratorOptions:
    """What to generate and how fast; defaults match the CLI."""

    rate: float = 2.0
    count: int = 0
    seed: int | None = None
    start_time: float | None = None
    partitions: int = 3
    shares: Shares = field(default_factory=Shares)
    topic: str | None = None
    progress_seconds: float = PROGRESS_SECONDS


@dataclass(slots=True)
class GeneratorSummary:
    """What a run sent: confirmed, failed, per kind, and how fast."""

    topic: str
    sent: int = 0
    failed: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0
    first_error: str | None = None

    @property
    def produced(self) -> int:
        """Events handed to the producer (confirmed or not)."""
        return sum(self.by_kind.values())

    @property
    def rate(self) -> float:
        """Events produced per second of the run."""
        return self.produced / self.elapsed if self.elapsed > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain mapping for JSON output and logs."""
        return {"topic": self.topic, "sent": self.sent, "failed": self.failed,
                "by_kind": dict(sorted(self.by_kind.items())),
                "elapsed_seconds": round(self.elapsed, 3), "events_per_second": round(self.rate),
                "first_error": self.first_error}


def ensure_topic(settings: Settings, topic: str, partitions: int) -> bool:
    """Create ``topic`` with ``partitions`` if missing; True when it was created."""
    # librdkafka's lines go through the project's logs (LOG_LEVEL): dataflow.kafka_config
    report = ensure_topics(admin_config(settings), [topic], partitions,
                           timeout=ADMIN_TIMEOUT_SECONDS)
    return bool(report.created)


class _Deliveries:
    """Delivery callback: counts confirmations and failures."""

    def __init__(self, summary: GeneratorSummary) -> None:
        self._summary = summary

    def __call__(self, err: KafkaError | None, _msg: Message) -> None:
        if err is None:
            self._summary.sent += 1
            return
        self._summary.failed += 1
        if self._summary.first_error is None:
            self._summary.first_error = str(err)


def _send_again(producer: Producer, topic: str, key: bytes, value: bytes) -> None:
    """Retry a produce refused with BufferError (local queue full) until it is taken."""
    while True:
        producer.poll(0.05)  # serve delivery callbacks, which frees room in the queue
        try:
            producer.produce(topic, value, key)
            return
        except BufferError:
            continue


class _Progress:
    def __init__(self, summary: GeneratorSummary, every: float, out: TextIO) -> None:
        self._summary, self._every, self._out = summary, every, out
        self._start = self._last = time.perf_counter()

    def tick(self) -> None:
        now = time.perf_counter()
        if now - self._last < self._every:
            return
        self._last = now
        s = self._summary
        rate = s.produced / (now - self._start)
        print(f"generate: {s.produced:,} produced to {s.topic}, {s.sent:,} confirmed, "
              f"{s.failed:,} failed, {rate:,.0f}/s", file=self._out, flush=True)


def _due(produced: int, start: float, options: GeneratorOptions) -> tuple[int, float]:
    """How many events to send now, and how long to wait if none."""
    if options.rate <= 0:
        due = MAX_BURST
    else:
        elapsed = time.perf_counter() - start
        due = int(elapsed * options.rate) + 1 - produced
        if due <= 0:
            return 0, min(produced / options.rate - elapsed, MAX_WAIT_SECONDS)
    if options.count:
        due = min(due, options.count - produced)
    return min(due, MAX_BURST), 0.0


def _loop(producer: Producer, events: Iterator[tuple[bytes, bytes, str]], topic: str,
          options: GeneratorOptions, summary: GeneratorSummary,
          stop: Callable[[], bool], progress: _Progress) -> None:
    by_kind, produced = summary.by_kind, 0
    start = time.perf_counter()
    while not (options.count and produced >= options.count) and not stop():
        due, wait = _due(produced, start, options)
        if not due:
            producer.poll(max(wait, 0.0))
            continue
        produce = producer.produce
        for key, value, kind in islice(events, due):
            try:
                produce(topic, value, key)
            except BufferError:
                _send_again(producer, topic, key, value)
            by_kind[kind] += 1
        produced += due
        producer.poll(0)
        progress.tick()


def run_generator(settings: Settings, options: GeneratorOptions,
                  stop: threading.Event | None = None,
                  progress_out: TextIO | None = None) -> GeneratorSummary:
    """Produce events until ``options.count`` are sent or ``stop`` is set; flush."""
    topic = options.topic or settings.input_topic
    ensure_topic(settings, topic, options.partitions)
    factory = EventFactory(options.seed, options.shares, options.start_time, rate=options.rate,
                           excluded_locales=excluded_locales_for(settings),
                           time_shape=TimeShape.from_settings(settings))
    summary = GeneratorSummary(topic)
    # acks=all, idempotence, linger.ms=5 (dataflow.kafka_config); one callback for every write
    producer = Producer({**producer_config(settings), "on_delivery": _Deliveries(summary)})
    progress = _Progress(summary, options.progress_seconds, progress_out or sys.stderr)
    stopped = stop.is_set if stop is not None else (lambda: False)
    start = time.perf_counter()
    try:
        _loop(producer, iter(factory), topic, options, summary, stopped, progress)
    finally:
        remaining = producer.flush()
        summary.elapsed = time.perf_counter() - start
    if remaining:
        summary.failed += remaining
        summary.first_error = summary.first_error or f"{remaining} events never confirmed"
    return summary
