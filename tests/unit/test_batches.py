"""One partition's batch: lateness in partition order, future events, partial counts, updates."""

from __future__ import annotations

from typing import Any

from dataflow.batches import PartitionProcessor
from dataflow.settings import Settings
from dataflow.transforms import iso_utc
from dataflow.watermarks import FINISHED, IDLE, SHARD_KEYS, ShardUpdate, shard_key
from tests.records import FakeRecord, ListWriter, Written, login_bytes, written

NOW = 1_700_000_000.0
BASE = 1_694_479_500


class _Processor(PartitionProcessor):
    """The batch step writing to a ListWriter; ``step`` gives what a batch wrote, read back,
    and its shard updates."""

    def __init__(self, settings: Settings) -> None:
        self.writer = ListWriter()
        super().__init__(settings, partition=0, partitions=1, writer=self.writer,
                         now=lambda: NOW)

    def step(self, records: list[FakeRecord]) -> tuple[Written, list[tuple[str, ShardUpdate]]]:
        updates = self.process(records)  # type: ignore[arg-type]
        out, self.writer.out = self.writer.out, []
        return written(out + updates)


def _processor(**changes: Any) -> _Processor:
    return _Processor(Settings(count_fields=("locale",), **changes))


def _records(*stamps: int, locale: str = "US") -> list[FakeRecord]:
    return [FakeRecord(login_bytes(timestamp=ts, locale=locale), _offset=i)
            for i, ts in enumerate(stamps)]


def _counted(updates: list[tuple[str, ShardUpdate]]) -> dict[tuple[int, str, str], int]:
    return {(s, f, v): n for _, u in updates for s, f, v, n in u.counts}


def test_lateness_is_decided_in_partition_order_whatever_the_batches() -> None:
    """Out of order within the lateness counts; beyond it is late; same for any batch size."""
    stamps = (BASE + 20, BASE + 12, BASE + 9, BASE + 30, BASE + 19, BASE + 61)
    results = []
    for size in (1, 2, 6):
        processor, late, counted = _processor(), {}, {}
        for i in range(0, len(stamps), size):
            batch, updates = processor.step(_records(*stamps[i:i + size]))
            late.update({k: late.get(k, 0) + n for k, n in batch.late.items()})
            assert len(batch.processed) == len(stamps[i:i + size])  # late ones too
            for key, n in _counted(updates).items():
                counted[key] = counted.get(key, 0) + n
        results.append((late, counted, processor.clock.newest))
    assert results[0] == results[1] == results[2]
    late, counted, newest = results[0]
    assert late == {(iso_utc(BASE), "locale", "US"): 2}  # BASE+9 (11 s older), BASE+19 (11 s)
    assert counted == {(BASE, "locale", "US"): 3, (BASE + 60, "locale", "US"): 1}
    assert newest == BASE + 61


def test_event_far_ahead_is_dead_lettered_and_moves_no_watermark() -> None:
    """An event a day ahead of the job's clock becomes a future_timestamp dead letter."""
    processor = _processor()
    batch, _ = processor.step(_records(BASE, int(NOW) + 86_400, BASE + 1))
    assert [reason for reason, _ in batch.dead] == ["future_timestamp"]
    assert "ahead of the job's clock" in batch.dead[0][1]
    assert processor.clock.newest == BASE + 1
    assert len(batch.processed) == 2


def test_excluded_locales_are_filtered_before_counting() -> None:
    """Excluded events are not processed, not counted and do not move the clock."""
    processor = _processor(excluded_locales=frozenset({"RU"}))
    batch, updates = processor.step(_records(BASE + 50, locale="ru"))
    assert batch.processed == [] and _counted(updates) == {}
    assert processor.clock.watermark is None


def test_every_shard_hears_of_a_new_watermark_window_and_of_state_changes() -> None:
    """Partial counts go to their own shard; a watermark crossing a window end, idle and
    finished are announced to all shards."""
    processor = _processor()
    first = processor.step(_records(BASE + 30))[1]
    assert [k for k, _ in first] == list(SHARD_KEYS)  # first watermark: everyone
    same_window = processor.step(_records(BASE + 40))[1]
    assert [k for k, _ in same_window] == [shard_key("locale", "US")]
    assert {u.state for _, u in processor.set_idle()} == {IDLE}
    assert len(processor.set_finished()) == len(SHARD_KEYS)
    assert processor.clock.state == FINISHED


def test_idle_partition_takes_part_again_with_its_next_record() -> None:
    """After idle, the next batch makes the partition active again, announced everywhere."""
    processor = _processor()
    processor.process(_records(BASE))
    processor.set_idle()
    updates = processor.step(_records(BASE + 1))[1]
    assert len(updates) == len(SHARD_KEYS)
    assert {u.state for _, u in updates} == {"active"}


def test_values_getter_reads_every_countable_field_like_the_documented_rules() -> None:
    """The generated getter returns each field's value: device type lower-cased or
    'unknown', locale upper-cased, ip_version as text."""
    from dataflow.batches import values_getter
    from dataflow.parsing import parse
    from dataflow.schemas import Accepted
    from dataflow.settings import COUNTABLE_FIELDS
    from dataflow.transforms import enrich

    def processed(**changes: Any) -> Any:
        accepted = parse(FakeRecord(login_bytes(**changes)))
        assert isinstance(accepted, Accepted)
        return enrich(accepted, "now")

    accepted = processed(device_type="iOS", locale="ru", ip="::1")
    missing = processed(device_type=None)
    get = values_getter(COUNTABLE_FIELDS)
    assert get(accepted) == ("ios", "RU", "2.3.0", "6", "424cdd21-063a-43a7-b91b-7ca1a833afae",
                             "593-47-5928")
    assert values_getter(("device_type",))(missing) == ("unknown",)


def test_rebuild_gives_back_every_processed_record_the_loop_produced() -> None:
    """Delivery reports carry no headers: what ``rebuild`` gives the writer to name a failed
    write's source record equals what the loop produced (headers included)."""

    class Keeping(ListWriter):
        def after_batch(self, written: list[Any], rebuild: Any, produced: int,
                        topic: str) -> None:
            self.rebuilt = rebuild()
            super().after_batch(written, rebuild, produced, topic)

    writer = Keeping()
    settings = Settings(excluded_locales=frozenset({"RU"}))
    records = [FakeRecord(login_bytes(timestamp=BASE + i, locale=("RU", "US")[i % 2],
                                      device_type=("iOS", None)[i % 2]), _offset=i)
               for i in range(6)] + [FakeRecord(b"{bad", _offset=6)]
    PartitionProcessor(settings, 0, 1, writer, now=lambda: NOW).process(records)  # type: ignore[arg-type]
    [(_, produced)] = writer.out
    processed = [r for r in produced if r[0] == settings.output_topic]
    assert len(processed) == 3
    assert all(record in writer.rebuilt for record in processed)
