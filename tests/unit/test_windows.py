"""Window shards: the job's watermark, when a window is written, provisional windows, late."""

from __future__ import annotations

from dataflow.event_time import ACTIVE, FINISHED, IDLE
from dataflow.shards import ShardUpdate
from dataflow.windows import ShardLate, ShardWindows, WindowTotal, job_watermark


def _update(partition: int, watermark: int | None, state: str = ACTIVE,
            counts: tuple[tuple[int, str, str, int], ...] = (), partitions: int = 2
            ) -> ShardUpdate:
    return ShardUpdate(partition, partitions, watermark, state, counts)


def test_job_watermark_is_the_minimum_of_the_holding_partitions() -> None:
    """Idle and finished partitions are left out; one with no event yet holds everything."""
    assert job_watermark(3, {0: (100, ACTIVE), 1: (50, ACTIVE), 2: (10, IDLE)}) == 50
    assert job_watermark(3, {0: (100, ACTIVE), 1: (50, FINISHED), 2: (None, IDLE)}) == 100
    assert job_watermark(3, {0: (100, ACTIVE), 1: (None, ACTIVE), 2: (5, ACTIVE)}) is None
    assert job_watermark(3, {0: (100, ACTIVE), 1: (50, ACTIVE)}) is None  # 2 not heard of


def test_job_watermark_without_holding_partitions_is_the_highest_reached() -> None:
    """When every partition is idle or finished, windows close up to the furthest watermark."""
    assert job_watermark(2, {0: (100, IDLE), 1: (300, FINISHED)}) == 300
    assert job_watermark(2, {0: (None, IDLE), 1: (None, FINISHED)}) is None


def test_window_is_written_once_every_holding_partition_passed_its_end() -> None:
    """A window [0, 60) waits for the slower partition, then is written final and dropped."""
    shard = ShardWindows(60)
    assert shard.apply([_update(0, 70, counts=((0, "locale", "US", 3),)),
                        _update(1, 50, counts=((0, "locale", "US", 2),))]) == []
    assert shard.apply([_update(1, 60)]) == [WindowTotal(0, "locale", "US", 5, True)]
    assert shard.state.windows == {}


def test_end_of_run_writes_open_windows_provisional_and_keeps_them() -> None:
    """on_eof writes final=false; a later watermark writes the complete count final=true."""
    shard = ShardWindows(60)
    shard.apply([_update(0, 10, FINISHED, ((0, "locale", "US", 3),)), _update(1, 5, FINISHED)])
    assert shard.provisional() == [WindowTotal(0, "locale", "US", 3, False)]
    restored = ShardWindows(60, shard.snapshot())
    assert restored.apply([_update(0, 20, ACTIVE, ((0, "locale", "US", 1),)),
                           _update(1, 65, FINISHED)]) == []
    assert restored.apply([_update(0, 60)]) == [WindowTotal(0, "locale", "US", 4, True)]


def test_returning_idle_partition_is_late_for_windows_already_written() -> None:
    """Counts for a window written while their partition was idle go to the late path."""
    shard = ShardWindows(60)
    shard.apply([_update(0, None, IDLE), _update(1, 130, counts=((60, "locale", "US", 1),))])
    out = shard.apply([_update(0, 0, ACTIVE, ((60, "locale", "DE", 2), (120, "locale", "DE", 1)))])
    assert out == [ShardLate(60, "locale", "DE", 2)]
    assert shard.state.written_through == 130  # never moves back
    assert shard.state.windows == {120: {("locale", "DE"): 1}}


def test_snapshot_is_a_copy() -> None:
    """Changes after a snapshot do not leak into it (Bytewax pickles it later)."""
    shard = ShardWindows(60)
    shard.apply([_update(0, 0, counts=((0, "locale", "US", 1),))])
    saved = shard.snapshot()
    shard.apply([_update(0, 0, counts=((0, "locale", "US", 1),))])
    assert saved.windows == {0: {("locale", "US"): 1}}


def test_count_and_late_records_are_keyed_per_window_and_stamped_when_written() -> None:
    """Count records: JSON with final, key field:value@window_start, no event-time timestamp
    (the broker stamps them now: never refused, never expired at once)."""
    import json

    from dataflow.settings import Settings
    from dataflow.windows import CountRecords

    write = CountRecords(Settings())
    shard, batch = write(("shard-00", WindowTotal(1_694_479_500, "locale", "US", 7, False)))
    [(topic, key, value, headers, ts)] = batch.records
    assert shard == "shard-00"  # written by the counts sink's partition of that shard
    assert (topic, key, headers, ts) == ("user-login-counts",
                                         b"locale:US@2023-09-12T00:45:00+00:00", None, None)
    assert json.loads(value) == {"window_start": "2023-09-12T00:45:00+00:00",
                                 "window_end": "2023-09-12T00:46:00+00:00", "field": "locale",
                                 "value": "US", "count": 7, "final": False}
    [(topic, key, value, _, ts)] = write(
        ("shard-00", ShardLate(1_694_479_500, "locale", "US", 2)))[1].records
    assert (topic, ts, json.loads(value)["count"]) == ("user-login-late", None, 2)
