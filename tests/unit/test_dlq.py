"""The dead-letter review tool without a broker: records, filters, rendering, export, replay."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from dataflow.deadletters import (
    HEADER_DETAIL,
    HEADER_FAILED_AT,
    HEADER_REASON,
    HEADER_REPLAY_COUNT,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
)
from dataflow.dlq.cli import build_parser, main, select
from dataflow.dlq.export import export_line, import_line, read_export, write_export
from dataflow.dlq.records import DeadLetter, DlqError, Filters, parse_time
from dataflow.dlq.rendering import describe_bytes, render_bytes, render_record, render_summary
from dataflow.dlq.replay import ReplayPlan, dry_run
from dataflow.dlq.summary import summarize
from tests.records import RawHeadersRecord

T0 = datetime(2024, 9, 12, 8, 30, tzinfo=UTC)


def letter(value: bytes | None = b'{"user_id": 1}', *, reason: str = "wrong_type",
           partition: int = 0, offset: int = 10, failed_at: datetime = T0,
           detail: str = "Expected `str`, got `int` - at `$.user_id`",
           extra: list[tuple[str, bytes | None]] | None = None, dlq_offset: int = 0,
           key: bytes | None = b"user-1") -> DeadLetter:
    """A dead letter as the dataflow writes it (original headers first, then dlq.*)."""
    headers = [*(extra or []),
               (HEADER_REASON, reason.encode()), (HEADER_DETAIL, detail.encode()),
               (HEADER_SOURCE_TOPIC, b"user-login"),
               (HEADER_SOURCE_PARTITION, str(partition).encode()),
               (HEADER_SOURCE_OFFSET, str(offset).encode()),
               (HEADER_FAILED_AT, failed_at.isoformat().encode())]
    return DeadLetter("user-login-dlq", 0, dlq_offset, 1_726_129_800_000, key, value, headers)


def test_dead_letter_reads_its_context_from_dlq_headers() -> None:
    """reason, detail, source and failure time come from the dlq.* headers."""
    record = letter(partition=2, offset=345)
    assert (record.reason, record.source_topic, record.source_partition, record.source_offset) \
        == ("wrong_type", "user-login", 2, 345)
    assert record.failed_at == T0
    assert record.detail == "Expected `str`, got `int` - at `$.user_id`"
    assert record.replay_count == 0


def test_record_without_dlq_headers_has_safe_defaults() -> None:
    """A record lacking dlq.* headers has reason "(none)" and no source or time."""
    bare = DeadLetter("t", 0, 0, None, None, b"x", [])
    assert (bare.reason, bare.detail, bare.source_partition, bare.failed_at) \
        == ("(none)", "", None, None)


def test_replay_headers_drop_dlq_headers_and_increment_the_count() -> None:
    """Original headers stay in order, dlq.* go, replay.count becomes previous + 1."""
    record = letter(extra=[("trace", b"\x00\xff"), (HEADER_REPLAY_COUNT, b"2"), ("empty", None)])
    assert record.replay_count == 2
    assert record.replay_headers() == [("trace", b"\x00\xff"), ("empty", None),
                                       (HEADER_REPLAY_COUNT, b"3")]
    assert letter().replay_headers() == [(HEADER_REPLAY_COUNT, b"1")]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-09-12T08:30:00Z", T0),
        ("2024-09-12T08:30:00", T0),
        ("2024-09-12T10:30:00+02:00", T0),
        ("2024-09-12", datetime(2024, 9, 12, tzinfo=UTC)),
    ],
)
def test_parse_time_is_timezone_aware_and_naive_means_utc(raw: str, expected: datetime) -> None:
    """ISO-8601 with or without an offset; a naive time is UTC."""
    parsed = parse_time(raw)
    assert parsed == expected and parsed.tzinfo is not None


def test_parse_time_refuses_other_text() -> None:
    """A time that is not ISO-8601 gives a DlqError naming the option."""
    with pytest.raises(DlqError, match=r"^--since: 'yesterday' is not an ISO-8601 time"):
        parse_time("yesterday", "--since")


def test_filters_select_by_reason_time_partition_and_source_offset() -> None:
    """Each filter keeps exactly the records inside its inclusive bounds."""
    records = [letter(reason=r, partition=p, offset=o, failed_at=T0 + timedelta(minutes=m))
               for r, p, o, m in [("wrong_type", 0, 5, 0), ("missing_field", 1, 6, 10),
                                  ("malformed_json", 1, 7, 20), ("wrong_type", 2, 8, 30)]]

    def offsets(filters: Filters) -> list[int | None]:
        return [r.source_offset for r in records if filters.matches(r)]

    assert offsets(Filters()) == [5, 6, 7, 8]
    assert offsets(Filters(reasons=frozenset({"wrong_type"}))) == [5, 8]
    assert offsets(Filters(since=T0 + timedelta(minutes=10),
                           until=T0 + timedelta(minutes=20))) == [6, 7]
    east = timezone(timedelta(hours=2))
    assert offsets(Filters(since=datetime(2024, 9, 12, 10, 50, tzinfo=east))) == [7, 8]
    assert offsets(Filters(source_partition=1)) == [6, 7]
    assert offsets(Filters(offset_from=6, offset_to=7)) == [6, 7]
    assert offsets(Filters(reasons=frozenset({"wrong_type"}), source_partition=2)) == [8]


def test_filters_on_time_or_offset_skip_records_without_those_headers() -> None:
    """A record with no dlq.failed_at / dlq.source.offset fails a time / offset filter."""
    bare = DeadLetter("t", 0, 0, None, None, b"x", [])
    assert not Filters(since=T0).matches(bare)
    assert not Filters(offset_to=100).matches(bare)
    assert Filters().matches(bare)


def test_empty_ranges_are_refused() -> None:
    """--since after --until, or --offset-from after --offset-to, is an error."""
    with pytest.raises(DlqError, match="--since is after --until"):
        Filters(since=T0, until=T0 - timedelta(seconds=1))
    with pytest.raises(DlqError, match="--offset-from is after --offset-to"):
        Filters(offset_from=5, offset_to=4)


def test_select_applies_filters_then_limit() -> None:
    """select yields matching records only, at most --limit of them."""
    records = [letter(reason="wrong_type" if i % 2 else "missing_field", offset=i)
               for i in range(10)]
    chosen = select(iter(records), Filters(reasons=frozenset({"wrong_type"})), limit=3)
    assert [r.source_offset for r in chosen] == [1, 3, 5]


@pytest.mark.parametrize(
    ("data", "described", "rendered"),
    [
        (None, "null", "null"),
        (b"", "empty", '""'),
        (b'{"a": "caf\xc3\xa9"}', "text, 14 bytes", '{"a": "café"}'),
        (b"line1\nline2\x1b[31m", "text, 16 bytes", "line1\\nline2\\x1b[31m"),
        (b"\x00\xff\xfeok", "binary, 5 bytes", "\\x00\\xff\\xfeok"),
        (b"abc\xc3", "binary, 4 bytes", "abc\\xc3"),
    ],
)
def test_values_are_rendered_safely(data: bytes | None, described: str, rendered: str) -> None:
    """UTF-8 text shows as text with control characters escaped; other bytes escaped."""
    assert describe_bytes(data) == described
    assert render_bytes(data) == rendered


def test_long_values_are_shortened_unless_full() -> None:
    """Values past the limit are cut with a note of the hidden bytes; --full shows all."""
    text = ("é" * 150).encode()
    assert render_bytes(text, limit=100) == "é" * 100 + " ... (+100 bytes; --full shows all)"
    assert render_bytes(text, limit=100, full=True) == "é" * 150
    binary = b"\xff" * 30
    assert render_bytes(binary, limit=10) == "\\xff" * 10 + " ... (+20 bytes; --full shows all)"


def test_render_record_shows_location_context_and_decoded_headers() -> None:
    """A show block names DLQ and source locations, the detail, key, value and headers."""
    block = render_record(letter(b"\x00\xff", reason="invalid_utf8", detail="invalid UTF-8",
                                 extra=[("trace", b"abc")], dlq_offset=4, offset=17))
    lines = block.splitlines()
    assert lines[0] == "user-login-dlq[0]@4  invalid_utf8  failed_at 2024-09-12T08:30:00+00:00"
    assert lines[1:5] == ["  source   user-login[0]@17", "  detail   invalid UTF-8",
                          "  key      [text, 6 bytes] user-1",
                          "  value    [binary, 2 bytes] \\x00\\xff"]
    assert lines[5] == "  headers  trace: abc"
    assert "           dlq.reason: invalid_utf8" in lines


def test_summary_counts_reasons_sources_times_and_details() -> None:
    """Totals by reason and source, first and last failure, most frequent details."""
    records = [letter(reason="wrong_type", partition=0, failed_at=T0 + timedelta(minutes=5)),
               letter(reason="wrong_type", partition=1, failed_at=T0),
               letter(reason="missing_field", partition=1, detail="Object missing `ip`",
                      failed_at=T0 + timedelta(hours=1),
                      extra=[(HEADER_REPLAY_COUNT, b"1")])]
    summary = summarize("user-login-dlq", records)
    data = summary.as_dict(top=5)
    assert data["total"] == 3
    assert data["by_reason"] == {"wrong_type": 2, "missing_field": 1}
    assert data["by_source"] == {"user-login[1]": 2, "user-login[0]": 1}
    assert data["first_failure"] == "2024-09-12T08:30:00+00:00"
    assert data["last_failure"] == "2024-09-12T09:30:00+00:00"
    assert data["replayed_before"] == 1
    assert data["top_details"][0] == {"detail": "Expected `str`, got `int` - at `$.user_id`",
                                      "count": 2}
    text = render_summary(summary, top=5)
    assert "wrong_type             2   66.7%  a field has the wrong JSON type" in text
    assert json.loads(json.dumps(data)) == data


def test_export_round_trip_keeps_every_byte() -> None:
    """Binary, invalid UTF-8, null values, keys and header values survive export + import."""
    records = [
        letter(b"\x00\x01\xfe\xff" * 64),
        letter(b"abc\xc3\x28", extra=[("bin", b"\xff\x00"), ("nothing", None)]),
        letter(None, reason="empty_value", key=None),
        letter(b"", reason="empty_value", key=b""),
    ]
    buffer = io.BytesIO()
    assert write_export(records, buffer) == 4
    lines = buffer.getvalue().splitlines()
    assert [import_line(line) for line in lines] == records
    first = json.loads(lines[2])
    assert first["value"] is None and first["key"] is None
    assert json.loads(export_line(records[1]))["headers"][0] == ["bin", "/wA="]


def test_read_export_names_the_bad_line(tmp_path: Path) -> None:
    """A damaged export line is reported with its file and line number."""
    path = tmp_path / "dead.jsonl"
    path.write_bytes(export_line(letter()) + b"\n" + b'{"topic": 1}\n')
    with pytest.raises(DlqError, match=r"dead\.jsonl:3: not an exported dead letter"):
        list(read_export(path))


def test_dry_run_lists_sends_and_skips_at_the_limit() -> None:
    """A dry run prints what would go and what reached --max-replays, and sends nothing."""
    records = [letter(offset=1), letter(offset=2, extra=[(HEADER_REPLAY_COUNT, b"3")])]
    out = io.StringIO()
    result = dry_run(records, ReplayPlan("user-login", "user-login-dlq", 3), out)
    assert (result.sent, result.skipped, result.failed) == (1, 1, 0)
    assert out.getvalue().splitlines() == [
        "would send user-login-dlq[0]@0 (wrong_type, from user-login[0]@1) to user-login "
        "with replay.count=1",
        "skip user-login-dlq[0]@0 (wrong_type, from user-login[0]@2): replay.count 3 reached "
        "--max-replays 3",
    ]


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["show", "--limit", "0"], "python -m dataflow dlq show: error: argument --limit: "
                                   "'0' is below 1"),
        (["replay", "--max-replays", "x"], "python -m dataflow dlq replay: error: argument "
                                           "--max-replays: 'x' is not a whole number"),
        (["nope"], "python -m dataflow dlq: error: argument COMMAND: invalid choice: 'nope' "
                   "(choose from 'summary', 'show', 'export', 'replay')"),
    ],
)
def test_bad_options_give_one_line_errors(argv: list[str], error: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A bad option exits 2 with exactly one error line on stderr."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == error + "\n"


def test_bad_values_fail_before_connecting(capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad time or range is one error line and exit 1, without reaching Kafka."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    assert main(["show", "--since", "2024-01-02", "--until", "2024-01-01"]) == 1
    assert capsys.readouterr().err == (
        "python -m dataflow dlq show: error: --since is after --until: nothing can match\n")


def test_help_lists_only_the_settings_the_tool_reads(capsys: pytest.CaptureFixture[str]) -> None:
    """dlq --help names its topics, client and log settings, not the job's window settings."""
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    listed = [line.split()[0] for line in out.split("environment:\n")[1].splitlines()]
    assert listed == ["KAFKA_BOOTSTRAP_SERVERS", "INPUT_TOPIC", "DLQ_TOPIC",
                      "CONSUMER_QUEUE_KBYTES", "DELIVERY_TIMEOUT_MS", "LOG_LEVEL", "LOG_FORMAT",
                      "KAFKA_CONFIG_<PROPERTY>"]


def test_reason_accepts_our_codes_and_exception_classes() -> None:
    """--reason takes a reason code or a dotted exception class; other text is refused."""
    args = build_parser().parse_args(["show", "--reason", "wrong_type", "--reason",
                                      "org.apache.kafka.connect.errors.DataException"])
    assert args.reason == ["wrong_type", "org.apache.kafka.connect.errors.DataException"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["show", "--reason", "wrongtype"])


@pytest.mark.parametrize("raw", [b"0001-01-01T00:00:00+01:00", b"9999-12-31T23:59:59-01:00"])
def test_failure_time_beyond_the_years_datetime_holds_is_none(raw: bytes) -> None:
    """A dlq.failed_at that leaves years 1..9999 in UTC is no time, not an OverflowError."""
    record = DeadLetter("t", 0, 0, None, None, b"x", [(HEADER_REASON, b"x"),
                                                      (HEADER_FAILED_AT, raw)])
    assert record.failed_at is None
    assert Filters(since=T0).matches(record) is False


def test_kafka_timestamp_out_of_range_is_no_failure_time() -> None:
    """Another scheme's record stamped beyond datetime's range has no failure time."""
    for stamp in (-(2**63), 2**63 - 1):
        record = DeadLetter("t", 0, 0, stamp, None, b"x", [("__connect.errors.topic", b"t")])
        assert record.failed_at is None


def test_control_characters_from_headers_are_escaped_in_show_summary_and_dry_run() -> None:
    """A reason or source topic holding ESC or NUL reaches the terminal escaped."""
    record = DeadLetter("user-login-dlq", 0, 7, None, None, b"x", [
        (HEADER_REASON, b"\x1b[2Jboom"), (HEADER_SOURCE_TOPIC, b"t\x00"),
        (HEADER_SOURCE_PARTITION, b"0"), (HEADER_SOURCE_OFFSET, b"1")])
    assert render_record(record).splitlines()[:2] == [
        "user-login-dlq[0]@7  \\x1b[2Jboom  failed_at -", "  source   t\\x00[0]@1"]
    summary = render_summary(summarize("user-login-dlq", [record]), 5)
    assert "\\x1b[2Jboom" in summary and "t\\x00[0]" in summary
    assert all(c.isprintable() for c in summary.replace("\n", ""))
    out = io.StringIO()
    dry_run([record], ReplayPlan(None, "user-login-dlq", 3), out)
    assert out.getvalue() == ("would send user-login-dlq[0]@7 (\\x1b[2Jboom, from t\\x00[0]@1) "
                              "to t\\x00 with replay.count=1\n")


def test_record_whose_headers_cannot_be_read_keeps_key_and_value_and_the_marker() -> None:
    """A dead-letter record with a header name that is not UTF-8 is read, never raised on."""
    message = RawHeadersRecord(b"v", b"k", _topic="user-login-dlq", _offset=3,
                               raw_headers=[(b"dlq.reason", b"wrong_type"), (b"\xc3(", b"x")])
    record = DeadLetter.from_message(message)
    assert (record.key, record.value, record.offset) == (b"k", b"v", 3)
    assert record.headers == [
        ("dlq.headers.unreadable",
         b"the original headers could not be read and are not kept: a header name is not "
         b"UTF-8 ('utf-8' codec can't decode byte 0xc3 in position 0: invalid continuation "
         b"byte)"),
        ("dlq.headers.unreadable.name", b"\xc3(")]
    assert (record.reason, record.scheme, record.failed_at) == ("(none)", "(none)", None)
    assert record.replay_headers() == [(HEADER_REPLAY_COUNT, b"1")]
    assert import_line(export_line(record)) == record
    assert len(message.calls) == 1


def test_a_replay_count_too_long_for_a_number_counts_as_none() -> None:
    """replay.count of 4,300 nines (found by Hypothesis: int() takes it, str() of it plus one
    does not) is no count, and the replay headers are still written."""
    record = DeadLetter("t", 0, 0, None, None, b"x", [("replay.count", b"9" * 4300)])
    assert record.replay_count == 0
    assert record.replay_headers() == [("replay.count", b"1")]
