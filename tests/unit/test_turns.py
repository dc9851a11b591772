"""One worker's input partitions take turns: one batch's worth of records per activation,
round the partitions in name order, skipping those with nothing to read, none ever left
waiting; at a trickle every partition reads in every activation."""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping

from dataflow.turns import Turns

NAMES = [str(p) for p in range(8)]  # "0" < "1" < ... as Bytewax orders them
BUDGET = 2000  # SOURCE_BATCH_SIZE
FULL = dict.fromkeys(NAMES, BUDGET)  # a backlog: every read is a full batch


def _turns(names: Collection[str] = NAMES) -> Turns:
    turns = Turns(BUDGET)
    for name in names:
        turns.join(name)
    return turns


def _activation(turns: Turns, called: Collection[str], records: Mapping[str, int]) -> list[str]:
    """Bytewax calls the due partitions in name order; those allowed and with records read
    (``records``: how many each would read)."""
    readers = []
    for name in sorted(called):
        if turns.may_read(name) and records.get(name):
            turns.read(name, records[name])
            readers.append(name)
    return readers


def test_a_lone_partition_reads_in_every_activation() -> None:
    """A worker with one partition: it is never refused."""
    turns = _turns(["0"])
    assert all(_activation(turns, ["0"], FULL) == ["0"] for _ in range(5))


def test_under_a_backlog_one_partition_reads_per_activation_in_name_order() -> None:
    """Every partition has a full batch: one reads per activation, each in turn."""
    turns = _turns()
    readers = [_activation(turns, NAMES, FULL) for _ in range(16)]
    assert readers == [[name] for name in NAMES * 2]


def test_at_a_trickle_every_partition_reads_in_every_activation() -> None:
    """Small reads that together stay under the budget: nobody waits."""
    turns = _turns()
    trickle = dict.fromkeys(NAMES, 5)
    assert all(_activation(turns, NAMES, trickle) == NAMES for _ in range(3))


def test_partitions_read_until_the_budget_is_filled_then_the_next_go_first() -> None:
    """Reads add up to the budget; the partitions after the one that filled it read first
    in the next activation."""
    turns = _turns()
    records = {"0": 600, "1": 600, "2": 900, "3": 600, "4": 600, "5": 600, "6": 0, "7": 0}
    assert _activation(turns, NAMES, records) == ["0", "1", "2"]
    assert _activation(turns, NAMES, records) == ["3", "4", "5"]  # 1,800: not filled
    assert _activation(turns, NAMES, records) == ["0", "1", "2"]


def test_a_partition_with_nothing_to_read_passes_the_turn_on() -> None:
    """The partition whose turn it is has no records: the next one reads in the same
    activation."""
    turns = _turns()
    records = {"3": BUDGET, "5": BUDGET}
    assert _activation(turns, NAMES, records) == ["3"]
    assert _activation(turns, NAMES, records) == ["5"]
    assert _activation(turns, NAMES, records) == []  # none after "5" had records
    assert _activation(turns, NAMES, records) == ["3"]


def test_partitions_not_called_hold_no_turn() -> None:
    """Partitions Bytewax does not call (pausing) never block the others: the one called
    reads at least every other activation (refused, it is called again at once)."""
    turns = _turns()
    assert _activation(turns, NAMES, FULL) == ["0"]
    assert [_activation(turns, ["0"], FULL) for _ in range(4)] == [[], ["0"], [], ["0"]]


def test_a_partition_that_left_is_not_waited_for() -> None:
    """After the last partition still reading, the turn goes back to the first at once."""
    turns = _turns(["0", "1", "2"])
    turns.leave("2")
    assert [_activation(turns, ["0", "1"], FULL) for _ in range(4)] == [
        ["0"], ["1"], ["0"], ["1"]]


def test_no_partition_with_records_waits_more_than_a_round() -> None:
    """Random schedules and read sizes: an activation reads less than the budget plus one
    batch, and a partition called in every activation with a full batch to read always
    reads within one round of the partitions and two more activations."""
    rng = random.Random(7)
    for _ in range(200):
        turns = _turns()
        starved = rng.choice(NAMES)
        waited = 0
        for _ in range(60):
            called = {name for name in NAMES if rng.random() < 0.6} | {starved}
            records = {name: rng.choice((0, 1, 50, 700, BUDGET)) for name in called}
            records[starved] = BUDGET
            readers = _activation(turns, called, records)
            assert sum(records[name] for name in readers) < 2 * BUDGET
            waited = 0 if starved in readers else waited + 1
            assert waited <= len(NAMES) + 2
