"""The source partition: announces itself, goes idle when caught up and quiet, finishes,
saves its offset with its clock, and commits only what a previous snapshot saved."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from dataflow.errors import SourceError
from dataflow.settings import Settings
from dataflow.source import LoginSource
from dataflow.transforms import iso_utc
from dataflow.watermarks import ACTIVE, FINISHED, IDLE, SHARD_KEYS, ClockState
from tests.records import FakeRecord, ListReader, ListWriters, login_bytes, written

BASE = 1_694_479_500


def _part(records: list[FakeRecord], resume: Any = None, live: bool = False,
          written_to: list[Any] | None = None, **changes: Any) -> tuple[Any, ListReader]:
    readers: list[ListReader] = []

    def make(_settings: Settings, _p: int, offset: int | None) -> ListReader:
        readers.append(ListReader(records, 2, offset or 0, live))
        return readers[-1]

    source = LoginSource(Settings(**changes), make, partitions=[0],
                         writers=ListWriters([] if written_to is None else written_to))
    part = source.build_part("read", "0", resume)
    return part, part._reader  # waits until the background opening is done


def _states(out: list[Any]) -> set[str]:
    return {u.state for _, u in out}


def test_partition_announces_itself_to_every_shard_first() -> None:
    """The first batch tells every shard the partition exists, so windows wait for it."""
    part, _ = _part([FakeRecord(login_bytes(timestamp=BASE))] * 3)
    out = part.next_batch()
    assert {k for k, _ in out} \
        == set(SHARD_KEYS)


def test_caught_up_quiet_partition_goes_idle_after_the_idle_time() -> None:
    """Caught up and quiet for IDLE_PARTITION_SECONDS: idle, announced once."""
    part, _ = _part([], live=True, idle_partition_seconds=1)
    part.next_batch()
    assert _states(part.next_batch()) <= {ACTIVE}
    time.sleep(1.05)
    assert _states(part.next_batch()) == {IDLE}
    assert part.next_batch() == []
    assert part.next_awake() is not None  # an empty partition is not polled every 1 ms


def test_finished_partition_says_so_then_stops() -> None:
    """At the end of a finite run the partition announces it is finished, then ends."""
    part, _ = _part([FakeRecord(login_bytes(timestamp=BASE), _offset=0)])
    assert FINISHED in _states(part.next_batch())
    try:
        part.next_batch()
    except StopIteration:
        return
    raise AssertionError("the partition did not stop")


def test_snapshot_saves_offset_with_clock_and_commits_it_on_the_next_batch() -> None:
    """A snapshot is (offset, clock); its offset is committed only when the next batch is
    asked for (everything before it is written by then)."""
    records = [FakeRecord(login_bytes(timestamp=BASE + i), _offset=i) for i in range(5)]
    part, reader = _part(records)
    part.next_batch()
    offset, clock = part.snapshot()
    assert (offset, clock) == (2, ClockState(BASE + 1, ACTIVE))
    assert reader.committed == []
    part.next_batch()
    assert reader.committed == [2]


def test_resumes_from_a_saved_clock_and_from_an_old_offset_only_snapshot() -> None:
    """Saved clocks are restored (holding again); older snapshots held the offset alone."""
    records = [FakeRecord(login_bytes(timestamp=BASE), _offset=i) for i in range(4)]
    out: list[Any] = []
    part, reader = _part(records, resume=(2, ClockState(BASE + 100, IDLE)), written_to=out)
    assert reader.position == 2
    part.next_batch()
    batch, _ = written(out)
    assert batch.late == {(iso_utc(BASE), "device_type", "android"): 2,
                          (iso_utc(BASE), "locale", "RU"): 2}
    part, reader = _part(records, resume=3)
    assert reader.position == 3


def test_a_partition_is_built_at_once_and_opens_its_reader_in_the_background() -> None:
    """build_part does not wait for the reader (a consumer and a broker round trip); the
    first batch does."""
    opened = threading.Event()

    def make(_settings: Settings, _p: int, offset: int | None) -> ListReader:
        assert opened.wait(5)
        return ListReader([FakeRecord(login_bytes(timestamp=BASE), _offset=0)], 2, 0, False)

    source = LoginSource(Settings(), make, partitions=[0], writers=ListWriters([]))
    began = time.monotonic()
    part = source.build_part("read", "0", None)
    assert time.monotonic() - began < 1.0
    opened.set()
    assert FINISHED in _states(part.next_batch())


def test_a_reader_that_cannot_open_stops_the_first_batch_and_close_still_works() -> None:
    """The opening's error (e.g. offsets unreadable) comes out of next_batch; close() is quiet."""
    def make(_settings: Settings, _p: int, offset: int | None) -> ListReader:
        raise SourceError("cannot read the offsets of topic 'user-login' partition 0")

    source = LoginSource(Settings(), make, partitions=[0], writers=ListWriters([]))
    part = source.build_part("read", "0", None)
    with pytest.raises(SourceError, match="cannot read the offsets"):
        part.next_batch()
    part.close()
