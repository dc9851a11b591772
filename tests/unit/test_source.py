"""The source partition: announces itself, times its batches, goes idle when caught up and
quiet, finishes, saves its offset with its clock, and stops when the job is asked to."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from dataflow import lifecycle
from dataflow.batches import SourceBatch
from dataflow.errors import SourceError
from dataflow.event_time import ACTIVE, FINISHED, IDLE, ClockState
from dataflow.settings import Settings
from dataflow.source import TICK, LoginSource, on_tick
from tests.records import FakeRecord, ListReader, login_bytes

BASE = 1_694_479_500


def _part(records: list[FakeRecord], resume: Any = None, live: bool = False,
          **changes: Any) -> tuple[Any, ListReader]:
    readers: list[ListReader] = []

    def make(_settings: Settings, _p: int, offset: int | None) -> ListReader:
        readers.append(ListReader(records, 2, offset or 0, live))
        return readers[-1]

    source = LoginSource(Settings(**changes), make, partitions=[0])
    part = source.build_part("read", "0", resume)
    return part, part._reader  # waits until the background opening is done


def _batch(part: Any) -> SourceBatch:
    [batch] = part.next_batch()
    assert isinstance(batch, SourceBatch)
    return batch


def test_partition_announces_itself_first() -> None:
    """The first batch tells the shards the partition exists, so windows wait for it."""
    part, _ = _part([FakeRecord(login_bytes(timestamp=BASE), _offset=i) for i in range(3)],
                    live=True)
    first = _batch(part)
    assert first.mark.announce and len(first.records) == 2
    assert (first.partition, first.partitions, first.through) == (0, 1, 2)
    assert not _batch(part).mark.announce  # same window, same state


def test_batches_carry_the_clocks_decisions() -> None:
    """The source marks the late records of a batch, in offset order."""
    records = [FakeRecord(login_bytes(timestamp=ts), _offset=i)
               for i, ts in enumerate((BASE + 30, BASE + 5))]
    batch = _batch(_part(records)[0])
    assert batch.stamps.late == {1}
    assert batch.mark.watermark == BASE + 20


def test_caught_up_quiet_partition_goes_idle_after_the_idle_time() -> None:
    """Caught up and quiet for IDLE_PARTITION_SECONDS: idle, announced once."""
    part, _ = _part([], live=True, idle_partition_seconds=1)
    assert _batch(part).mark.state == ACTIVE  # the announcement
    assert part.next_batch() == []
    time.sleep(1.05)
    idle = _batch(part)
    assert (idle.mark.state, idle.mark.announce, idle.records) == (IDLE, True, [])
    assert part.next_batch() == []
    assert part.next_awake() is not None  # an empty partition is not polled every 1 ms


def test_a_position_moved_without_records_is_passed_on() -> None:
    """Past transaction markers the position moves without records: an empty batch tells the
    sink, which commits it."""
    part, reader = _part([FakeRecord(login_bytes(timestamp=BASE), _offset=0)], live=True)
    assert _batch(part).through == 1
    reader.position = 2  # a commit marker, skipped by the consumer
    moved = _batch(part)
    assert (moved.records, moved.through) == ([], 2)
    assert part.next_batch() == []


def test_finished_partition_says_so_then_stops() -> None:
    """At the end of a finite run the partition announces it is finished, then ends."""
    part, _ = _part([FakeRecord(login_bytes(timestamp=BASE), _offset=0)])
    assert _batch(part).mark.state == FINISHED
    with pytest.raises(StopIteration):
        part.next_batch()


def test_snapshot_saves_the_offset_with_the_clock() -> None:
    """A snapshot is (next offset, clock): both always describe the same point."""
    records = [FakeRecord(login_bytes(timestamp=BASE + i), _offset=i) for i in range(5)]
    part, _ = _part(records)
    part.next_batch()
    assert part.snapshot() == (2, ClockState(BASE + 1, ACTIVE))


def test_resumes_from_a_saved_offset_and_clock() -> None:
    """A saved clock is restored (holding windows back again): old events are late at once."""
    records = [FakeRecord(login_bytes(timestamp=BASE), _offset=i) for i in range(4)]
    part, reader = _part(records, resume=(2, ClockState(BASE + 100, IDLE)), live=True)
    assert reader.position == 2
    batch = _batch(part)
    assert (batch.stamps.late, batch.mark.state) == ({0, 1}, ACTIVE)


def test_a_new_partition_without_state_starts_at_its_beginning() -> None:
    """A partition the topic gained while the job ran reads from its start, whatever
    STARTING_OFFSET says."""
    seen: list[str] = []

    def make(settings: Settings, _p: int, offset: int | None) -> ListReader:
        seen.append(settings.starting_offset)
        return ListReader([], 2, 0, True)

    source = LoginSource(Settings(starting_offset="latest"), make, partitions=[0, 1],
                         new_partitions={1})
    for partition in ("0", "1"):
        assert source.build_part("read", partition, None)._reader is not None  # opened
    assert seen == ["latest", "earliest"]


def test_a_workers_partitions_take_turns_one_batch_per_activation() -> None:
    """Two partitions of one worker, both with full batches to read: one reads per
    activation, in turn; the one refused asks to be called again at once."""
    records = [FakeRecord(login_bytes(timestamp=BASE), _offset=i) for i in range(6)]
    source = LoginSource(Settings(source_batch_size=2),
                         lambda _s, _p, _o: ListReader(records, 2, 0, True), partitions=[0, 1])
    parts = [source.build_part("read", name, None) for name in ("0", "1")]
    for part in parts:
        assert part._reader is not None  # opened

    def activation() -> list[int]:
        read = []
        for part in parts:  # Bytewax calls a worker's due partitions in name order
            if [b for b in part.next_batch() if b.records]:
                read.append(part._partition)
            else:
                awake = part.next_awake()
                assert awake is not None
                assert (awake - datetime.now(UTC)).total_seconds() <= 0
        return read

    assert [activation() for _ in range(4)] == [[0], [1], [0], [1]]


def test_partial_batches_read_again_together_on_the_next_tick() -> None:
    """After a batch that was not full, each partition of a worker reads again at the same
    next 5 ms tick of the clock, so one activation serves them all."""
    records = [FakeRecord(login_bytes(timestamp=BASE), _offset=i) for i in range(6)]
    source = LoginSource(Settings(), lambda _s, _p, _o: ListReader(records, 2, 0, True),
                         partitions=[0, 1])
    parts = [source.build_part("read", name, None) for name in ("0", "1")]
    for part in parts:
        assert part._reader is not None  # opened
    for _ in range(3):  # a try whose two reads straddle a tick (a slow machine) is retried
        time.sleep(TICK - time.time() % TICK + 0.0005)  # just after a tick
        before = time.time()
        awake = []
        for part in parts:
            assert len(_batch(part).records) == 2  # a partial batch (SOURCE_BATCH_SIZE 2000)
            awake.append(part.next_awake())
        after = time.time()
        if on_tick(before) == on_tick(after):
            break
    else:
        pytest.fail("no two reads within one tick in 3 tries")
    assert awake[0] == awake[1] == parts[0].next_awake()  # fixed until the next read
    assert awake[0] is not None
    assert awake[0].timestamp() == pytest.approx(on_tick(before))
    assert 0 < awake[0].timestamp() - before <= TICK


@pytest.fixture
def stop_requested() -> Iterator[None]:
    """A stop request for the test's duration (without the exit that follows one), withdrawn
    after it."""
    lifecycle._STOP.reason = "interrupted"
    yield
    lifecycle._STOP.reason = None


def test_a_partition_ends_when_the_job_is_asked_to_stop(stop_requested: None) -> None:
    """After Ctrl-C or SIGTERM the next batch ends the partition (StopIteration)."""
    part, _ = _part([FakeRecord(login_bytes(timestamp=BASE), _offset=0)], live=True)
    with pytest.raises(StopIteration):
        part.next_batch()


def test_a_partition_is_built_at_once_and_opens_its_reader_in_the_background() -> None:
    """build_part does not wait for the reader (a consumer and a broker round trip); the
    first batch does."""
    opened = threading.Event()

    def make(_settings: Settings, _p: int, offset: int | None) -> ListReader:
        assert opened.wait(5)
        return ListReader([FakeRecord(login_bytes(timestamp=BASE), _offset=0)], 2, 0, False)

    source = LoginSource(Settings(), make, partitions=[0])
    began = time.monotonic()
    part = source.build_part("read", "0", None)
    assert time.monotonic() - began < 1.0
    opened.set()
    assert _batch(part).mark.state == FINISHED


def test_a_reader_that_cannot_open_stops_the_first_batch_and_close_still_works() -> None:
    """The opening's error (e.g. offsets unreadable) comes out of next_batch; close() is quiet."""
    def make(_settings: Settings, _p: int, offset: int | None) -> ListReader:
        raise SourceError("cannot read the offsets of topic 'user-login' partition 0")

    source = LoginSource(Settings(), make, partitions=[0])
    part = source.build_part("read", "0", None)
    with pytest.raises(SourceError, match="cannot read the offsets"):
        part.next_batch()
    part.close()
