"""The flow's batch steps as plain functions: parse, filters, late records, partial counts."""

from __future__ import annotations

from typing import Any

from dataflow import metrics
from dataflow.batches import InvalidBatch, Mark, SourceBatch, ValidBatch, filter_logins
from dataflow.event_time import NO_STAMPS, Stamps
from dataflow.settings import Settings
from dataflow.shards import SHARD_KEYS, ShardUpdate, shard_key
from dataflow.steps import LateRecords, ParseBatches, PartialCounts, drop_excluded_locales
from dataflow.transforms import iso_utc
from tests.records import FakeRecord, login_bytes, written

BASE = 1_694_479_500  # a minute boundary
READ = 1_700_000_000.0
SETTINGS = Settings(count_fields=("locale",))
ACTIVE_MARK = Mark(BASE, "active")


def _source(*values: bytes | None, stamps: Stamps = NO_STAMPS,
            mark: Mark = ACTIVE_MARK) -> SourceBatch:
    records: list[Any] = [FakeRecord(v, _offset=10 + i) for i, v in enumerate(values)]
    return SourceBatch(1, 2, records, stamps, mark, 10 + len(values), READ)


def _parsed(batch: SourceBatch, settings: Settings = SETTINGS) -> tuple[ValidBatch, InvalidBatch]:
    valid, invalid = ParseBatches(settings)(batch)
    assert isinstance(valid, ValidBatch) and isinstance(invalid, InvalidBatch)
    return valid, invalid


def test_parse_splits_a_batch_into_its_valid_and_invalid_records() -> None:
    """Every record lands in one of the two, in offset order; both carry the batch's place."""
    valid, invalid = _parsed(_source(login_bytes(locale="US"), b"{bad", None,
                                     login_bytes(locale="FR")))
    assert [a.source.offset() for a in valid.logins] == [10, 13]
    assert [r.reason for r in invalid.rejected] == ["malformed_json", "empty_value"]
    assert (valid.partition, valid.through, invalid.partition, invalid.through) == (1, 14, 1, 14)


def test_parse_dead_letters_what_the_source_found_too_far_ahead() -> None:
    """A valid login the clock marked future becomes a future_timestamp dead letter."""
    ahead = int(READ) + 3_600
    valid, invalid = _parsed(_source(login_bytes(timestamp=ahead), login_bytes(),
                                     stamps=Stamps(future=frozenset({0}))))
    assert len(valid.logins) == 1
    [(reason, detail)] = [(r.reason, r.detail) for r in invalid.rejected]
    assert reason == "future_timestamp"
    assert detail.startswith(f"timestamp {ahead} (") and "3600 s ahead" in detail


def test_parse_marks_the_late_logins_and_keeps_them_valid() -> None:
    """A login the clock marked late is still valid (it is processed), flagged late."""
    valid, _ = _parsed(_source(login_bytes(), login_bytes(), stamps=Stamps(late=frozenset({1}))))
    assert [a.late for a in valid.logins] == [False, True]
    assert valid.any_late


def test_filter_steps_keep_what_the_rule_accepts_and_count_the_rest() -> None:
    """A filter step drops logins on purpose, counted by its reason; no rule, no change."""
    valid, _ = _parsed(_source(login_bytes(locale="ru"), login_bytes(locale="US")))
    before = metrics.snapshot()["filtered"].get("excluded_locale", 0)
    kept = drop_excluded_locales(Settings(excluded_locales=frozenset({"RU"})))(valid)
    assert [a.login.locale for a in kept.logins] == ["US"]
    assert metrics.snapshot()["filtered"]["excluded_locale"] - before == 1
    assert drop_excluded_locales(Settings())(valid) is valid
    blocked = filter_logins(lambda a: a.login.locale != "US", "not_us")(valid)
    assert [a.login.locale for a in blocked.logins] == ["ru"]  # as received
    assert filter_logins(None, "nothing")(valid) is valid


def test_late_records_count_the_late_logins_per_window_and_value() -> None:
    """One LATE_TOPIC record per (window, field, value) of this batch's late logins."""
    valid, _ = _parsed(_source(login_bytes(timestamp=BASE + 1), login_bytes(timestamp=BASE + 2),
                               login_bytes(timestamp=BASE + 70),
                               stamps=Stamps(late=frozenset({0, 1}))))
    key, out = LateRecords(SETTINGS)(valid)
    assert (key, out.through) == ("1", 13)
    assert written([(key, out)]).late == {(iso_utc(BASE), "locale", "RU"): 2}
    assert LateRecords(SETTINGS)(_parsed(_source(login_bytes()))[0])[1].records == []


def _counted(updates: list[tuple[str, ShardUpdate]]) -> dict[tuple[int, str, str], int]:
    return {(s, f, v): n for _, u in updates for s, f, v, n in u.counts}


def test_partial_counts_go_to_each_values_shard_without_the_late_logins() -> None:
    """Counts per (window, field, value) of the logins on time, to the value's shard."""
    settings = Settings(count_fields=("locale", "device_type"))
    valid, _ = _parsed(_source(login_bytes(timestamp=BASE + 1, device_type="iOS"),
                               login_bytes(timestamp=BASE + 61, device_type=None),
                               login_bytes(timestamp=BASE + 2),
                               stamps=Stamps(late=frozenset({2})),
                               mark=Mark(BASE + 51, "active")), settings)
    updates = PartialCounts(settings)(valid)
    assert _counted(updates) == {(BASE, "locale", "RU"): 1, (BASE + 60, "locale", "RU"): 1,
                                 (BASE, "device_type", "ios"): 1,
                                 (BASE + 60, "device_type", "unknown"): 1}
    assert {shard for shard, u in updates for s, f, v, n in u.counts} == {
        shard_key(f, v) for _, f, v in _counted(updates)}
    assert {(u.partition, u.partitions, u.watermark) for _, u in updates} == {(1, 2, BASE + 51)}


def test_every_shard_hears_of_an_announced_watermark_or_state() -> None:
    """An announced mark goes to all shards, with or without counts."""
    valid, _ = _parsed(_source(mark=Mark(BASE, "idle", announce=True)))
    updates = PartialCounts(SETTINGS)(valid)
    assert [shard for shard, _ in updates] == list(SHARD_KEYS)
    assert {u.state for _, u in updates} == {"idle"}
    quiet, _ = _parsed(_source())
    assert PartialCounts(SETTINGS)(quiet) == []


def test_count_values_follow_the_documented_rules() -> None:
    """device_type lower-cased or 'unknown', locale upper-cased, ip_version as text."""
    settings = Settings(count_fields=("device_type", "locale", "ip_version", "app_version",
                                      "user_id", "device_id"))
    valid, _ = _parsed(_source(login_bytes(timestamp=BASE, device_type="iOS", locale="ru",
                                           ip="::1"),
                               login_bytes(timestamp=BASE, device_type=None)), settings)
    counted = _counted(PartialCounts(settings)(valid))
    assert {(f, v) for _, f, v in counted} == {
        ("device_type", "ios"), ("device_type", "unknown"), ("locale", "RU"),
        ("ip_version", "6"), ("ip_version", "4"), ("app_version", "2.3.0"),
        ("user_id", "424cdd21-063a-43a7-b91b-7ca1a833afae"), ("device_id", "593-47-5928")}
