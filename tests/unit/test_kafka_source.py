"""The reader's pure decisions: where to go on after an out-of-range position, and the end
of what can be read while a transaction is open (the last stable offset, asked without waiting)."""

from __future__ import annotations

from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaException

from dataflow.kafka_source import StableEnd, after_out_of_range


@pytest.mark.parametrize(("position", "low", "high", "expected"), [
    (7, 30, 50, (30, 23)),   # retention deleted 7..29 while the job was behind
    (0, 1, 1, (1, 1)),       # the log emptied by retention: nothing left to read
    (100, 0, 50, (0, 0)),    # past the log end (re-created topic): from the start, none lost
    (100, 80, 90, (80, 0)),  # past the end of a log that also lost its start
    (40, 30, 50, (40, 0)),   # the log moved back into range since: the same position
    (50, 30, 50, (50, 0)),   # at the log end is in range
])
def test_after_out_of_range(position: int, low: int, high: int,
                            expected: tuple[int, int]) -> None:
    """Below the log start: the log start, the gap counted as expired; past the end: the
    log start, nothing counted; within: the same position."""
    assert after_out_of_range(position, low, high) == expected


class Broker:
    """Answers StableEnd's questions by hand: each ask is a future the test resolves."""

    def __init__(self) -> None:
        self.asked: list[Future[Any]] = []

    def ask(self) -> Future[Any]:
        self.asked.append(Future())
        return self.asked[-1]

    def answer(self, offset: int) -> None:
        self.asked[-1].set_result(SimpleNamespace(offset=offset))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_stable_end_is_the_high_watermark_until_the_broker_answers() -> None:
    """The first call asks without waiting and gives the high watermark; once answered,
    the last stable offset for that position."""
    broker, clock = Broker(), Clock()
    stable = StableEnd(broker.ask, every=1.0, clock=clock)
    assert stable.end(5, 8) == 8
    assert len(broker.asked) == 1
    assert stable.end(5, 8) == 8  # not answered yet
    broker.answer(5)
    assert stable.end(5, 8) == 5
    assert len(broker.asked) == 1  # within the second: no new question


def test_stable_end_asks_at_most_once_per_interval_and_one_at_a_time() -> None:
    """No second question while one is pending, nor sooner than ``every`` after the last."""
    broker, clock = Broker(), Clock()
    stable = StableEnd(broker.ask, every=1.0, clock=clock)
    stable.end(5, 8)
    clock.now = 5.0
    stable.end(5, 8)
    assert len(broker.asked) == 1  # still pending
    broker.answer(5)
    stable.end(5, 8)  # takes the answer, then asks again (5 s since the last question)
    assert len(broker.asked) == 2
    clock.now = 5.5
    broker.answer(5)
    stable.end(5, 8)
    assert len(broker.asked) == 2


def test_stable_end_answer_holds_only_at_the_position_it_was_asked_for() -> None:
    """Once the reader has moved, an answer for an older position is not used."""
    broker, clock = Broker(), Clock()
    stable = StableEnd(broker.ask, every=1.0, clock=clock)
    stable.end(5, 8)
    broker.answer(5)
    assert stable.end(5, 8) == 5
    assert stable.end(6, 9) == 9


def test_stable_end_above_the_position_is_readable_lag() -> None:
    """An answer beyond the position (committed records not fetched yet) is the end."""
    broker = Broker()
    stable = StableEnd(broker.ask, every=1.0, clock=Clock())
    stable.end(5, 8)
    broker.answer(7)
    assert stable.end(5, 8) == 7


def test_stable_end_keeps_the_high_watermark_when_asking_fails() -> None:
    """A failed question (broker away) or one that cannot be made leaves the high watermark,
    so a partition is never caught up on a guess; it asks again after ``every``."""
    broker, clock = Broker(), Clock()
    stable = StableEnd(broker.ask, every=1.0, clock=clock)
    stable.end(5, 8)
    broker.asked[-1].set_exception(KafkaException("timed out"))
    assert stable.end(5, 8) == 8

    def refuse() -> Future[Any]:
        raise KafkaException("cannot ask")

    refusing = StableEnd(refuse, every=1.0, clock=clock)
    assert refusing.end(5, 8) == 8
    clock.now = 1.0
    assert stable.end(5, 8) == 8
    assert len(broker.asked) == 2
