"""One worker's input partitions take turns: one reads per activation, round the partitions
in name order, skipping those with nothing to read, none ever left waiting."""

from __future__ import annotations

import random
from collections.abc import Collection

from dataflow.turns import Turns

NAMES = [str(p) for p in range(8)]  # "0" < "1" < ... as Bytewax orders them


def _turns(names: Collection[str] = NAMES) -> Turns:
    turns = Turns()
    for name in names:
        turns.join(name)
    return turns


def _activation(turns: Turns, called: Collection[str], with_records: Collection[str]) -> list[str]:
    """Bytewax calls the due partitions in name order; those allowed and with records read."""
    readers = []
    for name in sorted(called):
        if turns.may_read(name) and name in with_records:
            turns.read(name)
            readers.append(name)
    return readers


def test_a_lone_partition_reads_in_every_activation() -> None:
    """A worker with one partition: it is never refused."""
    turns = _turns(["0"])
    assert all(_activation(turns, ["0"], ["0"]) == ["0"] for _ in range(5))


def test_busy_partitions_read_one_per_activation_round_in_name_order() -> None:
    """Every partition has records: one reads per activation, each in turn."""
    turns = _turns()
    readers = [_activation(turns, NAMES, NAMES) for _ in range(16)]
    assert readers == [[name] for name in NAMES * 2]


def test_a_partition_with_nothing_to_read_passes_the_turn_on() -> None:
    """The partition whose turn it is has no records: the next one reads in the same
    activation."""
    turns = _turns()
    assert _activation(turns, NAMES, ["3", "5"]) == ["3"]
    assert _activation(turns, NAMES, ["3", "5"]) == ["5"]
    assert _activation(turns, NAMES, ["3", "5"]) == []  # none after "5" had records
    assert _activation(turns, NAMES, ["3", "5"]) == ["3"]


def test_partitions_not_called_hold_no_turn() -> None:
    """Partitions Bytewax does not call (pausing) never block the others: the one called
    reads at least every other activation (refused, it is called again at once)."""
    turns = _turns()
    assert _activation(turns, NAMES, NAMES) == ["0"]
    assert [_activation(turns, ["0"], ["0"]) for _ in range(4)] == [[], ["0"], [], ["0"]]


def test_a_partition_that_left_is_not_waited_for() -> None:
    """After the last partition still reading, the turn goes back to the first at once."""
    turns = _turns(["0", "1", "2"])
    turns.leave("2")
    assert [_activation(turns, ["0", "1"], ["0", "1"]) for _ in range(4)] == [
        ["0"], ["1"], ["0"], ["1"]]


def test_no_partition_with_records_waits_more_than_a_round() -> None:
    """Random schedules: at most one reader per activation, and a partition called in every
    activation with records always reads within one round of the partitions and two more."""
    rng = random.Random(7)
    for _ in range(200):
        turns = _turns()
        starved = rng.choice(NAMES)
        waited = 0
        for _ in range(60):
            called = {name for name in NAMES if rng.random() < 0.6} | {starved}
            with_records = {name for name in called if rng.random() < 0.7} | {starved}
            readers = _activation(turns, called, with_records)
            assert len(readers) <= 1
            waited = 0 if readers == [starved] else waited + 1
            assert waited <= len(NAMES) + 2
