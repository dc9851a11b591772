"""Property tests of ``parse``: any bytes, any JSON, any mangled login -> Accepted or Rejected
(and ``parse_all``, the parse step's loop, agrees).

The profile below keeps the whole module to a few seconds; set
HYPOTHESIS_PARSING_PROFILE=thorough for a longer search.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflow.deadletters import REASONS
from dataflow.parsing import MAX_TIMESTAMP, MIN_TIMESTAMP, parse, parse_all
from dataflow.schemas import Accepted, Rejected
from tests.records import FakeRecord, login_bytes

settings.register_profile("parsing-fast", max_examples=300, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("parsing-thorough", max_examples=20_000, deadline=None,
                          database=None, suppress_health_check=[HealthCheck.too_slow])
PROFILE = settings.get_profile(
    "parsing-" + os.environ.get("HYPOTHESIS_PARSING_PROFILE", "fast"))

FIELDS = ("user_id", "app_version", "ip", "locale", "device_id", "timestamp", "device_type")
DIGITS = re.compile(r"[0-9]{1,12}")

# JSON leaves: huge integers (past 64 bits) and floats including inf/NaN on purpose.
leaves = (st.none() | st.booleans() | st.integers() | st.integers(min_value=2**63 - 2)
          | st.floats() | st.text(max_size=20))
json_values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=5),
    max_leaves=30,
)

# Well-formed JSON only: no NaN or infinity, no lone surrogates.
characters = st.characters(codec="utf-8")
strict_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(characters, max_size=20),
    lambda inner: st.lists(inner, max_size=5)
    | st.dictionaries(st.text(characters, max_size=10), inner, max_size=5),
    max_leaves=30,
)
texts = st.text(characters, min_size=1, max_size=40)
valid_login = st.fixed_dictionaries(
    {
        "user_id": texts,
        "app_version": texts,
        "ip": st.ip_addresses().map(str),
        "locale": st.text(characters, min_size=1, max_size=35),
        "device_id": texts,
        "timestamp": st.integers(MIN_TIMESTAMP, MAX_TIMESTAMP)
        | st.integers(MIN_TIMESTAMP, MAX_TIMESTAMP).map(str),
    },
    optional={"device_type": texts | st.none(), "extra": strict_json},
)


def encode(document: Any, ascii_only: bool) -> bytes:
    """JSON bytes as a producer might send them; lone surrogates become invalid UTF-8."""
    return json.dumps(document, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def check_outcome(value: bytes | None) -> Accepted | Rejected:
    """parse returns (never raises) an Accepted that fits the schema or a known Rejected;
    parse_all gives the same."""
    record = FakeRecord(value)
    result = parse(record)
    assert result.source is record
    accepted: list[Accepted] = []
    rejected: list[Rejected] = []
    parse_all([record], accepted, rejected)
    assert [*accepted, *rejected] == [result]  # the parse step's loop agrees
    if isinstance(result, Rejected):
        assert result.reason in REASONS, result
        assert result.detail
        return result
    assert type(result) is Accepted, result
    assert MIN_TIMESTAMP <= result.timestamp <= MAX_TIMESTAMP
    stamp = result.login.timestamp
    assert result.timestamp == (int(stamp) if isinstance(stamp, str) else stamp)
    assert isinstance(stamp, int) or DIGITS.fullmatch(stamp), stamp
    assert result.ip_version in (4, 6)
    assert ipaddress.ip_address(result.login.ip).version == result.ip_version
    login = result.login
    for name in ("user_id", "app_version", "device_id"):
        assert 1 <= len(getattr(login, name)) <= 256
    assert 1 <= len(login.locale) <= 35
    assert login.device_type is None or 1 <= len(login.device_type) <= 256
    return result


@PROFILE
@given(st.binary(max_size=300) | st.none())
def test_arbitrary_bytes_never_raise(value: bytes | None) -> None:
    """Any value bytes (or a null value) give an Accepted or a Rejected with a known reason."""
    check_outcome(value)


@PROFILE
@given(json_values, st.booleans())
def test_arbitrary_json_never_raises(document: Any, ascii_only: bool) -> None:
    """Any JSON document (nested, huge numbers, NaN, surrogates) parses to a known outcome."""
    result = check_outcome(encode(document, ascii_only))
    if not isinstance(document, dict):  # NaN or a lone surrogate inside make it malformed
        assert isinstance(result, Rejected)
        assert result.reason in ("not_an_object", "malformed_json", "invalid_utf8"), result


@PROFILE
@given(valid_login, st.booleans())
def test_valid_logins_are_accepted_with_their_fields(document: dict[str, Any],
                                                     ascii_only: bool) -> None:
    """A login that meets the schema (any extra field) is Accepted with the values it sent."""
    result = check_outcome(encode(document, ascii_only))
    assert isinstance(result, Accepted), result
    assert result.timestamp == int(document["timestamp"])
    assert result.login.ip == document["ip"]
    assert result.login.user_id == document["user_id"]
    assert result.login.device_type == document.get("device_type")


@st.composite
def mangled_login(draw: st.DrawFn) -> dict[str, Any]:
    """A valid login with some fields dropped, nulled or replaced by any JSON value."""
    document = dict(draw(valid_login))
    for name in draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=4, unique=True)):
        change = draw(st.sampled_from(("drop", "null", "retype")))
        if change == "drop":
            document.pop(name, None)
        elif change == "null":
            document[name] = None
        else:
            document[name] = draw(json_values)
    return document


@PROFILE
@given(mangled_login(), st.booleans())
def test_mangled_logins_never_raise(document: dict[str, Any], ascii_only: bool) -> None:
    """Dropped, nulled or retyped fields give a known reason, or an Accepted that fits."""
    result = check_outcome(encode(document, ascii_only))
    required = set(FIELDS) - {"device_type"}
    if not required <= document.keys() or any(document[n] is None for n in required):
        assert isinstance(result, Rejected), result


@PROFILE
@given(valid_login, st.sampled_from(FIELDS[:5]), st.text(max_size=5))
def test_control_characters_in_text_fields_never_raise(document: dict[str, Any], name: str,
                                                       suffix: str) -> None:
    """NUL and other control characters inside a field give a known outcome."""
    document[name] = f"{document[name]}\x00{suffix}\n"
    check_outcome(encode(document, ascii_only=True))


@pytest.mark.parametrize(
    ("changes", "detail"),
    [
        ({"ip": "1.2.3.4\x00"}, "'1.2.3.4\\x00' is not an IP address - at `$.ip`"),
        ({"timestamp": "1694479551\n"},
         "Expected `str` matching regex '^[0-9]{1,12}\\\\Z' - at `$.timestamp`"),
    ],
)
def test_cases_the_properties_found_are_invalid_values(changes: dict[str, Any],
                                                       detail: str) -> None:
    """A NUL inside the IP and a newline after the timestamp digits are invalid values."""
    result = check_outcome(login_bytes(**changes))
    assert isinstance(result, Rejected)
    assert (result.reason, result.detail) == ("invalid_value", detail)


def test_json_null_document_is_not_an_object() -> None:
    """The document `null` is not an object (it used to be reported as a missing field)."""
    result = check_outcome(b"null")
    assert isinstance(result, Rejected)
    assert (result.reason, result.detail) == ("not_an_object", "Expected `object`, got `null`")
