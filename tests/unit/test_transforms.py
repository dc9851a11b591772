"""Enrichment and dead-letter records built from parsed logins, by the flow's steps."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import msgspec

from dataflow.batches import InvalidBatch, Mark, ValidBatch
from dataflow.parsing import parse
from dataflow.schemas import Accepted, OutRecord, ProcessedLogin, Rejected
from dataflow.settings import Settings
from dataflow.steps import DeadLetters, Enrich
from dataflow.transforms import version_parts
from tests.records import FakeRecord, login_bytes

NOW = datetime(2026, 11, 24, 12, 0, 0, 123000, tzinfo=UTC)


def _accepted(doc: bytes) -> Accepted:
    result = parse(FakeRecord(doc))
    assert isinstance(result, Accepted)
    return result


def _rejected(record: FakeRecord) -> Rejected:
    result = parse(record)
    assert isinstance(result, Rejected)
    return result


def _batch_step(*records: FakeRecord) -> list[OutRecord]:
    """What the enrich step writes for these valid records of partition 2, read at NOW."""
    logins = [_accepted_record(record) for record in records]
    key, out = Enrich(Settings())(ValidBatch(2, 3, logins, Mark(None, "active"), 8,
                                             NOW.timestamp()))
    assert (key, out.through) == ("2", 8)
    return out.records


def _accepted_record(record: FakeRecord) -> Accepted:
    result = parse(record)
    assert isinstance(result, Accepted)
    return result


def _dead_letters(*rejected: Rejected) -> list[OutRecord]:
    """What the dead_letters step writes for these rejected records, failed at NOW."""
    _, out = DeadLetters(Settings())(InvalidBatch(3, list(rejected), 100, NOW.timestamp()))
    return out.records


def test_enrich_normalises_and_adds_fields() -> None:
    """Output has an int timestamp, upper locale, lower device type, ISO times, version parts."""
    [(topic, key, value, headers, ts)] = _batch_step(FakeRecord(
        login_bytes(locale="ru", device_type="iOS", app_version="2.10.x"), _partition=2,
        _offset=7, _timestamp_ms=1_694_479_551_000))
    out = msgspec.json.decode(value, type=ProcessedLogin)
    assert topic == "processed-user-login"
    assert key == b"424cdd21-063a-43a7-b91b-7ca1a833afae"
    assert (out.locale, out.device_type, out.timestamp) == ("RU", "ios", 1_694_479_551)
    assert out.login_at == "2023-09-12T00:45:51+00:00"
    assert out.processed_at == "2026-11-24T12:00:00.123+00:00"
    assert (out.app_version_major, out.app_version_minor, out.app_version_patch) == (2, 10, None)
    assert out.ip_version == 4
    assert headers == [("source.topic", b"user-login"), ("source.partition", b"2"),
                       ("source.offset", b"7")]
    assert ts == 1_694_479_551_000


def test_missing_device_type_stays_null_in_output() -> None:
    """A login without device_type is processed with device_type null."""
    [(_, _, value, _, _)] = _batch_step(FakeRecord(login_bytes(device_type=None)))
    assert json.loads(value)["device_type"] is None


def test_dead_letter_keeps_bytes_key_headers_and_adds_context() -> None:
    """A dead letter is the original record plus dlq.* headers."""
    record = FakeRecord(b"\xff{", _key=b"\x00key", _headers=[("trace", b"\x01")],
                        _partition=3, _offset=99)
    [(topic, key, value, headers, _)] = _dead_letters(_rejected(record))
    assert (topic, key, value) == ("user-login-dlq", b"\x00key", b"\xff{")
    assert headers == [
        ("trace", b"\x01"),
        ("dlq.reason", b"invalid_utf8"),
        ("dlq.detail", b"invalid UTF-8 at byte 0"),
        ("dlq.source.topic", b"user-login"),
        ("dlq.source.partition", b"3"),
        ("dlq.source.offset", b"99"),
        ("dlq.failed_at", b"2026-11-24T12:00:00.123000+00:00"),
        ("__streams.errors.exception", b"invalid_utf8"),
        ("__streams.errors.message", b"invalid UTF-8 at byte 0"),
        ("__streams.errors.topic", b"user-login"),
        ("__streams.errors.partition", b"3"),
        ("__streams.errors.offset", b"99"),
    ]


def test_null_value_dead_letter_stays_null() -> None:
    """A record with a null value becomes a dead letter whose value is still null."""
    [(_, _, value, _, _)] = _dead_letters(_rejected(FakeRecord(None)))
    assert value is None


def test_version_parts() -> None:
    """Dotted versions split into numbers; absent, odd, non-ASCII or too long parts are None."""
    assert version_parts("2.3.0") == (2, 3, 0)
    assert version_parts("5") == (5, None, None)
    assert version_parts("1.2.3.4") == (1, 2, 3)
    assert version_parts("1.\u00b2") == (1, None, None)  # superscript two: isdigit() says yes
    assert version_parts("\u0661.\u0662") == (None, None, None)  # Arabic-Indic digits
    assert version_parts("\u2460") == (None, None, None)  # circled digit one
    assert version_parts("+1.-2. 3") == version_parts("1_0..") == (None, None, None)
    assert version_parts("9" * 18 + ".0") == (10**18 - 1, 0, None)
    assert version_parts("9" * 19 + ".1." + "7" * 5000) == (None, 1, None)
