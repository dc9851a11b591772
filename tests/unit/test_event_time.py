"""The source's clock: lateness in offset order, future events, the fast-device cap."""

from __future__ import annotations

from dataflow.event_time import (
    ACTIVE,
    CLOCK_AHEAD_TOLERANCE_SECONDS,
    IDLE,
    NO_TIME,
    ClockState,
    PartitionClock,
)
from tests.records import FakeRecord, login_bytes

BASE = 1_694_479_500  # a minute boundary
READ = 1_700_000_000.0  # when the tests' batches are read (after every BASE event)


def _records(*stamps: int, written_ms: int | None = None) -> list[FakeRecord]:
    return [FakeRecord(login_bytes(timestamp=ts), _offset=i, _timestamp_ms=written_ms)
            for i, ts in enumerate(stamps)]


def _clock() -> PartitionClock:
    return PartitionClock(lateness=10, max_future=300)


def test_lateness_is_decided_in_offset_order_whatever_the_batches() -> None:
    """More than the lateness older than the newest event is late; same for any batch size."""
    stamps = (BASE + 20, BASE + 12, BASE + 9, BASE + 30, BASE + 19, BASE + 61)
    results = []
    for size in (1, 2, 6):
        clock, late = _clock(), []
        for start in range(0, len(stamps), size):
            found = clock.stamp(_records(*stamps[start:start + size]), READ)
            late += [stamps[start + i] for i in sorted(found.late)]
        results.append((late, clock.newest))
    assert results[0] == results[1] == results[2] == ([BASE + 9, BASE + 19], BASE + 61)


def test_any_record_with_a_valid_timestamp_moves_the_clock() -> None:
    """A record whose timestamp is valid moves the clock even if another field is invalid;
    one without a valid timestamp (malformed, missing, out of range) moves nothing."""
    clock = _clock()
    records = [FakeRecord(login_bytes(timestamp=BASE + 5, ip="not-an-ip")),
               FakeRecord(b"{not json"), FakeRecord(None),
               FakeRecord(login_bytes(timestamp=None)),
               FakeRecord(login_bytes(timestamp=5_000_000_000))]
    stamps = clock.stamp(records, READ)
    assert clock.newest == BASE + 5
    assert not stamps.late and not stamps.future


def test_event_far_ahead_of_its_reference_time_is_future_and_moves_nothing() -> None:
    """More than MAX_FUTURE_SECONDS ahead of when it was read: future, no clock move."""
    clock = _clock()
    found = clock.stamp(_records(BASE, int(READ) + 301, BASE + 1), READ)
    assert found.future == {1}
    assert clock.newest == BASE + 1


def test_reference_time_is_the_kafka_timestamp_when_it_is_earlier_than_the_read() -> None:
    """An event read long after it was written is compared with its Kafka timestamp, so a
    replay decides as the first read did."""
    clock = _clock()
    written_ms = (BASE + 100) * 1000
    found = clock.stamp(_records(BASE + 99, BASE + 401, written_ms=written_ms), READ)
    assert found.future == {1}
    assert clock.newest == BASE + 99


def test_a_fast_device_clock_moves_the_clock_only_to_its_reference_time() -> None:
    """One event 200 s ahead among live events marks none of the later events late."""
    now = BASE + 1_000
    live = [now + i // 5 for i in range(25)]
    stamps = [*live[:5], now + 200, *live[5:]]
    clock = _clock()
    late = []
    for i, ts in enumerate(stamps):  # one record per batch, read as it is written
        read_at = now + i // 5
        found = clock.stamp(_records(ts, written_ms=int(read_at) * 1000), read_at)
        late += list(found.late)
    assert late == []
    assert clock.newest == max(live)  # the fast event moved it to its read time + 2 s only


def test_without_a_kafka_timestamp_the_read_time_is_the_reference() -> None:
    """A record with no Kafka timestamp is capped by the time it was read."""
    clock = _clock()
    clock.stamp(_records(int(READ) + 100), READ)
    assert clock.newest == int(READ) + CLOCK_AHEAD_TOLERANCE_SECONDS


def test_an_idle_partition_is_active_again_with_its_next_record() -> None:
    """Idle holds no window back until the partition's next record."""
    clock = _clock()
    clock.state = IDLE
    clock.stamp([], READ)
    assert clock.state == IDLE
    clock.stamp(_records(BASE), READ)
    assert clock.state == ACTIVE


def test_a_restored_clock_holds_windows_back_again() -> None:
    """After a restart a saved idle or finished partition is active until seen so again."""
    assert PartitionClock.restore(10, 300, ClockState(BASE, IDLE)) == PartitionClock(
        10, 300, BASE, ACTIVE)
    assert PartitionClock.restore(10, 300, None).newest == NO_TIME
