"""Parsing and validation: every input gives an Accepted or a Rejected with a stable reason."""

from __future__ import annotations

import pytest

from dataflow.parsing import ip_version, parse, parse_all
from dataflow.schemas import Accepted, Rejected
from tests.records import FakeRecord, login_bytes


def _rejected(value: bytes | None) -> Rejected:
    record = FakeRecord(value)
    result = parse(record)
    assert isinstance(result, Rejected), result
    accepted: list[Accepted] = []
    rejected: list[Rejected] = []
    parse_all([record], accepted, rejected)
    assert (accepted, rejected) == ([], [result])  # the parse step's loop says the same
    return result


def test_documented_sample_with_string_timestamp_is_accepted() -> None:
    """The seed's sample (timestamp as a string of epoch seconds) parses."""
    result = parse(FakeRecord(login_bytes()))
    assert isinstance(result, Accepted)
    assert result.timestamp == 1_694_479_551
    assert result.ip_version == 4


def test_generator_form_with_integer_timestamp_and_no_device_type_is_accepted() -> None:
    """The reference generator's form: integer timestamp, device_type left out."""
    result = parse(FakeRecord(login_bytes(timestamp=1_694_479_551, device_type=None)))
    assert isinstance(result, Accepted)
    assert result.login.device_type is None


def test_unknown_extra_fields_are_tolerated() -> None:
    """Producers evolve: unknown fields are ignored."""
    value = login_bytes()[:-1] + b', "new_field": {"nested": [1, 2]}}'
    assert isinstance(parse(FakeRecord(value)), Accepted)


def test_ipv6_is_accepted_with_its_version() -> None:
    """An IPv6 address is valid and tagged version 6."""
    result = parse(FakeRecord(login_bytes(ip="2001:db8::1")))
    assert isinstance(result, Accepted) and result.ip_version == 6


@pytest.mark.parametrize(
    ("value", "reason", "detail"),
    [
        (None, "empty_value", "the record value is null or empty"),
        (b"", "empty_value", "the record value is null or empty"),
        (b"\xff\xfe{}", "invalid_utf8", "invalid UTF-8 at byte 0"),
        (login_bytes()[:-1] + b',"unknown":"\xc3"}', "invalid_utf8", "invalid UTF-8 at byte 208"),
        (b"{not json", "malformed_json", "JSON is malformed: object keys must be strings (byte 1)"),
        (b"\xef\xbb\xbf" + login_bytes(), "malformed_json", None),
        (login_bytes() + b"trailing", "malformed_json", None),
        (b'{"timestamp": NaN}', "malformed_json", None),
        (b"[" * 10_000 + b"]" * 10_000, "not_an_object", "Expected `object`, got `array`"),
        (login_bytes()[:-1] + b',"deep":' + b"[" * 10_000 + b"]" * 10_000 + b"}",
         "malformed_json", "JSON nested too deeply to decode"),
        (b'"just a string"', "not_an_object", "Expected `object`, got `str`"),
        (login_bytes(user_id=None), "missing_field", "Object missing required field `user_id`"),
        (login_bytes(ip=None).replace(b'"locale"', b'"ip": null, "locale"'), "missing_field",
         "Expected `str`, got `null` - at `$.ip`"),
        (login_bytes(ip=5), "wrong_type", "Expected `str`, got `int` - at `$.ip`"),
        (login_bytes(timestamp=1.5), "wrong_type",
         "Expected `int | str`, got `float` - at `$.timestamp`"),
        (login_bytes(user_id=""), "invalid_value",
         "Expected `str` of length >= 1 - at `$.user_id`"),
        (login_bytes(ip="999.1.1.1"), "invalid_value",
         "'999.1.1.1' is not an IP address - at `$.ip`"),
        (login_bytes(timestamp="12ab"), "invalid_value", None),
        (login_bytes(timestamp=-1), "invalid_value", "Expected `int` >= 0 - at `$.timestamp`"),
        (login_bytes(timestamp=1_694_479_551_000), "invalid_value", None),
        (login_bytes(timestamp=2**70), "invalid_value", None),
    ],
)
def test_bad_records_get_a_stable_reason_and_a_clear_detail(
    value: bytes | None, reason: str, detail: str | None
) -> None:
    """Each kind of bad input maps to its documented reason code and message."""
    rejected = _rejected(value)
    assert rejected.reason == reason
    if detail is not None:
        assert rejected.detail == detail


def test_milliseconds_timestamp_detail_says_so() -> None:
    """A timestamp in milliseconds is rejected with a hint about the unit."""
    detail = _rejected(login_bytes(timestamp=1_694_479_551_000)).detail
    assert detail == ("timestamp 1694479551000 is outside 946684800..4102444800 epoch seconds "
                      "(milliseconds? expected seconds) - at `$.timestamp`")


def test_rejected_keeps_the_source_record() -> None:
    """The original record travels with the rejection, for a byte-exact dead letter."""
    record = FakeRecord(b"{", _offset=42)
    assert _rejected(record.value()).source.value() == b"{"
    result = parse(record)
    assert isinstance(result, Rejected) and result.source is record


@pytest.mark.parametrize(("text", "version"),
                         [("1.2.3.4", 4), ("::1", 6), ("01.2.3.4", 0), ("", 0), ("1.2.3", 0)])
def test_ip_version(text: str, version: int) -> None:
    """IPv4 and IPv6 are told apart; anything else is version 0."""
    assert ip_version(text) == version


def test_parse_all_splits_a_batch_as_parse_does_each_record_in_offset_order() -> None:
    """parse_all: every record in accepted or rejected, in order, each as parse() gives it."""
    values = [login_bytes(), b"{", login_bytes(ip="2001:db8::1"), None,
              login_bytes(user_id="Zoë"), login_bytes(ip="999.1.1.1"), login_bytes(timestamp=5)]
    records = [FakeRecord(value, _offset=n) for n, value in enumerate(values)]
    accepted: list[Accepted] = []
    rejected: list[Rejected] = []
    parse_all(records, accepted, rejected)
    results = [parse(record) for record in records]
    assert accepted == [r for r in results if isinstance(r, Accepted)]
    assert rejected == [r for r in results if isinstance(r, Rejected)]
    assert [a.source.offset() for a in accepted] == [0, 2, 4]
