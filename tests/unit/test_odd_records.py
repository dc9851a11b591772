"""No record stops the job or the dlq tool: odd records through both, every one accounted for.

``run_pipeline`` below is the one place that knows the shape of the job's per-record
pipeline; everything else here only sees what it returns. The records come from
``tests.strategies`` (any Unicode, extreme numbers, header names that are not UTF-8,
as confluent-kafka reads them: ``tests.records.RawHeadersRecord``).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflow import metrics
from dataflow.deadletters import (
    HEADER_HEADERS_UNREADABLE,
    HEADER_UNREADABLE_NAME,
    REASONS,
    original_headers,
)
from dataflow.dlq.export import export_line, import_line
from dataflow.dlq.records import DeadLetter, Filters
from dataflow.dlq.rendering import render_record, render_summary
from dataflow.dlq.replay import ReplayPlan, dry_run
from dataflow.dlq.summary import summarize
from dataflow.parsing import parse
from dataflow.schemas import Accepted, KafkaRecord, OutRecord, ProcessedLogin
from dataflow.settings import Settings
from dataflow.transforms import version_parts
from tests.records import RawHeadersRecord, login_bytes
from tests.strategies import EXCLUDED, JOB_CLOCK, records

NOW = float(JOB_CLOCK)  # the job's clock: later timestamps (+300 s) are future_timestamp
SETTINGS = Settings(excluded_locales=EXCLUDED)  # the setting under test: filtering counts


@dataclass(frozen=True)
class Outcome:
    """What the job wrote for a list of input records."""

    processed: list[OutRecord]  # to OUTPUT_TOPIC
    dead: list[OutRecord]  # to DLQ_TOPIC
    filtered: int  # dropped on purpose (login_records_filtered_total)


def run_pipeline(records: Sequence[KafkaRecord]) -> Outcome:
    """The records, in offset order, through the job's per-record pipeline -> its outputs.

    THE ONE PLACE TO CHANGE when the pipeline's shape changes (today the steps of
    ``dataflow.flow`` as plain functions over one batch: the source's clock, parse, the
    locale filter, enrich, dead letters, late records and partial counts; the filtered
    count is the job's own counter). Late counts and window updates are not per-record
    outputs: they are made, so they must not raise, and left out.
    """
    from dataflow.batches import InvalidBatch, Mark, SourceBatch, ValidBatch
    from dataflow.event_time import PartitionClock
    from dataflow.steps import (
        DeadLetters,
        Enrich,
        LateRecords,
        ParseBatches,
        PartialCounts,
        drop_excluded_locales,
    )

    def filtered() -> int:
        return sum(metrics.snapshot()["filtered"].values())

    before = filtered()
    clock = PartitionClock(SETTINGS.allowed_lateness_seconds, SETTINGS.max_future_seconds)
    batch = SourceBatch(0, 1, list(records), clock.stamp(records, NOW),
                        Mark(clock.watermark, clock.state, True), len(records), NOW)
    parsed, invalid = ParseBatches(SETTINGS)(batch)
    assert isinstance(parsed, ValidBatch) and isinstance(invalid, InvalidBatch)
    valid = drop_excluded_locales(SETTINGS)(parsed)
    LateRecords(SETTINGS)(valid)
    PartialCounts(SETTINGS)(valid)
    return Outcome(Enrich(SETTINGS)(valid)[1].records, DeadLetters(SETTINGS)(invalid)[1].records,
                   filtered() - before)


settings.register_profile("odd-fast", max_examples=150, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.data_too_large])
settings.register_profile("odd-thorough", max_examples=5_000, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.data_too_large])
PROFILE = settings.get_profile("odd-" + os.environ.get("HYPOTHESIS_ODD_PROFILE", "fast"))
PROCESSED_DECODER = msgspec.json.Decoder(ProcessedLogin)


def _header(headers: Sequence[tuple[str, bytes | None]], name: str) -> bytes | None:
    return dict(headers).get(name)


def _headers_unreadable(record: RawHeadersRecord) -> bool:
    """Whether confluent-kafka would fail to read this record's headers."""
    try:
        for name, _ in record.raw_headers:
            name.split(b"\0", 1)[0].decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def check_dead_letter(letter: OutRecord, source: RawHeadersRecord) -> None:
    """A dead letter keeps key and value, and the original headers or else the marker."""
    _, key, value, headers, _ = letter
    assert (key, value) == (source.key(), source.value())
    assert headers is not None
    for name, header_value in headers:  # what confluent-kafka's produce() takes
        name.encode("utf-8")
        assert header_value is None or type(header_value) is bytes
    assert _header(headers, "dlq.reason").decode() in REASONS  # type: ignore[union-attr]
    if _headers_unreadable(source):
        assert headers[0][0] == HEADER_HEADERS_UNREADABLE
        assert _header(headers, HEADER_UNREADABLE_NAME) is not None
    else:
        kept = [(raw.split(b"\0", 1)[0].decode(), v) for raw, v in source.raw_headers]
        assert headers[:len(kept)] == kept


def check_processed(out: OutRecord, source: RawHeadersRecord) -> None:
    """A processed record decodes strictly; version parts are 64-bit numbers or null."""
    login = PROCESSED_DECODER.decode(out[2])  # type: ignore[arg-type]
    assert out[1] == login.user_id.encode()
    assert login.timestamp <= NOW + SETTINGS.max_future_seconds
    for part in (login.app_version_major, login.app_version_minor, login.app_version_patch):
        assert part is None or 0 <= part < 2**63
    assert isinstance(parse(source), Accepted)


def _offset(headers: Sequence[tuple[str, bytes | None]] | None, name: str) -> int:
    raw = _header(headers or [], name)
    assert raw is not None
    return int(raw)


@PROFILE
@given(records())
def test_every_odd_record_is_processed_filtered_or_dead_lettered(batch: list[RawHeadersRecord],
                                                                  ) -> None:
    """The pipeline never raises; processed + filtered + dead-lettered == records in, each once."""
    outcome = run_pipeline(batch)
    assert len(outcome.processed) + outcome.filtered + len(outcome.dead) == len(batch)
    processed = {_offset(r[3], "source.offset"): r for r in outcome.processed}
    dead = {_offset(r[3], "dlq.source.offset"): r for r in outcome.dead}
    assert len(processed) == len(outcome.processed) and len(dead) == len(outcome.dead)
    assert not processed.keys() & dead.keys()
    for record in batch:
        assert len(record.calls) <= 1  # a second headers() would crash a real process
        offset = record.offset()
        if offset in processed:
            check_processed(processed[offset], record)
        elif offset in dead:
            check_dead_letter(dead[offset], record)
        else:  # filtered: a valid login of an excluded locale
            result = parse(record)
            assert isinstance(result, Accepted)
            assert result.login.locale.upper() in EXCLUDED


def as_read_back(letter: OutRecord, offset: int) -> RawHeadersRecord:
    """A dead letter the job wrote as the dlq tool's consumer gives it back from Kafka."""
    topic, key, value, headers, timestamp = letter
    return RawHeadersRecord(value, key, _topic=topic, _offset=offset,
                            _timestamp_ms=-1 if timestamp is None else timestamp,
                            raw_headers=[(n.encode(), v) for n, v in headers or ()])


def _printable(text: str) -> bool:
    return all(c.isprintable() or c == "\n" for c in text)


def read_with_dlq_tool(messages: Sequence[KafkaRecord]) -> list[DeadLetter]:
    """What summary, show, export and replay --dry-run do with each record; asserts that
    nothing raises and that nothing unprintable reaches the terminal."""
    letters = [DeadLetter.from_message(m) for m in messages]
    summary = summarize("user-login-dlq", letters)
    assert _printable(render_summary(summary, 5))
    json.dumps(summary.as_dict(5))
    since = datetime(2000, 1, 1, tzinfo=UTC)
    for letter in letters:
        assert _printable(render_record(letter)) and _printable(render_record(letter, full=True))
        assert import_line(export_line(letter)) == letter
        Filters(frozenset({"malformed_json"}), since, None, 0, 0, 10).matches(letter)
        for name, _ in letter.replay_headers():
            name.encode("utf-8")
    for plan in (ReplayPlan("user-login", "user-login-dlq", 3),
                 ReplayPlan(None, "user-login-dlq", 3)):
        out = io.StringIO()
        dry_run(letters, plan, out)
        assert _printable(out.getvalue())
    return letters


@PROFILE
@given(records())
def test_dlq_tool_reads_every_dead_letter_the_job_writes(batch: list[RawHeadersRecord]) -> None:
    """summary, show, export and replay --dry-run take every dead letter of the odd records."""
    dead = run_pipeline(batch).dead
    letters = read_with_dlq_tool([as_read_back(d, i) for i, d in enumerate(dead)])
    assert all(letter.scheme == "dlq" and letter.reason in REASONS for letter in letters)


@PROFILE
@given(records())
def test_dlq_tool_reads_any_record_of_a_dead_letter_topic(batch: list[RawHeadersRecord]) -> None:
    """Any record in the dead-letter topic (another tool's, headers not UTF-8) is read."""
    letters = read_with_dlq_tool(batch)
    for record, letter in zip(batch, letters, strict=True):
        assert len(record.calls) == 1
        assert (letter.key, letter.value) == (record.key(), record.value())
        if _headers_unreadable(record):
            assert letter.headers[0][0] == HEADER_HEADERS_UNREADABLE


UNREADABLE = (b"the original headers could not be read and are not kept: a header name is "
              b"not UTF-8 ('utf-8' codec can't decode byte 0xff in position 0: invalid start "
              b"byte)")


def test_rejected_record_with_a_non_utf8_header_name_is_dead_lettered_with_the_marker() -> None:
    """Malformed JSON with a header name that is not UTF-8: a dead letter with the marker."""
    record = RawHeadersRecord(b'{"user_id": ', b"k", raw_headers=[
        (b"trace", b"1"), (b"\xff\xfeorigin", b"raw"), (b"\xfe2", None)])
    [(_, key, value, headers, _)] = run_pipeline([record]).dead
    assert (key, value) == (b"k", b'{"user_id": ')
    assert headers is not None
    assert headers[:3] == [(HEADER_HEADERS_UNREADABLE, UNREADABLE),
                           (HEADER_UNREADABLE_NAME, b"\xff\xfeorigin"),
                           ("dlq.reason", b"malformed_json")]
    assert len(record.calls) == 1


def test_valid_login_with_a_non_utf8_header_name_is_processed() -> None:
    """Headers are not read for a valid login: it is processed whatever their names."""
    record = RawHeadersRecord(login_bytes(locale="US"), raw_headers=[(b"\xff", b"v")])
    outcome = run_pipeline([record])
    assert (len(outcome.processed), outcome.dead, outcome.filtered) == (1, [], 0)


@given(st.sampled_from(["1.\u00b2", "\u0661.\u0662", "\u2460", "2.\u2469.3", "9" * 19]))
def test_logins_with_versions_of_other_digits_are_processed(version: str) -> None:
    """Superscript, Arabic-Indic, circled and too long digits: processed, the part null."""
    record = RawHeadersRecord(login_bytes(app_version=version, locale="US"))
    [out] = run_pipeline([record]).processed
    login = PROCESSED_DECODER.decode(out[2])  # type: ignore[arg-type]
    assert login.app_version == version
    parts = (login.app_version_major, login.app_version_minor, login.app_version_patch)
    assert parts == version_parts(version)
    assert None in parts


def test_marker_stands_for_headers_that_fail_for_another_reason() -> None:
    """Any exception from headers() gives the marker with its type and message, no name."""

    class Broken(RawHeadersRecord):
        def headers(self) -> list[tuple[str, bytes | None]] | None:
            raise RuntimeError("boom")

    assert original_headers(Broken(b"x")) == [
        (HEADER_HEADERS_UNREADABLE,
         b"the original headers could not be read and are not kept: RuntimeError: boom")]
