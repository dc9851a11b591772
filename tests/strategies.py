"""Hypothesis strategies of odd input: logins with any Unicode and extreme numbers, raw headers.

For property tests of the job and of the ``dlq`` tool. ``records()`` gives consumed
records (``tests.records.RawHeadersRecord``, offsets 0, 1, 2, ... of one partition)
whose header names are raw bytes, often not UTF-8, read as confluent-kafka reads
them. Mostly near-valid logins, so that most records get far into the pipeline:
every string field holds any Unicode (lone surrogates included: a producer can
write them as ``\\ud800`` escapes or as invalid UTF-8), any field may be a number
instead, numbers are extreme and negative.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from dataflow.deadletters import (
    HEADER_DETAIL,
    HEADER_FAILED_AT,
    HEADER_REASON,
    HEADER_REPLAY_COUNT,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
    REASONS,
    STREAMS_EXCEPTION,
    STREAMS_OFFSET,
    STREAMS_PARTITION,
    STREAMS_TOPIC,
)
from dataflow.parsing import MAX_TIMESTAMP, MIN_TIMESTAMP
from tests.records import RawHeadersRecord

FIELDS = ("user_id", "app_version", "ip", "locale", "device_id", "timestamp", "device_type")
# Locales the property tests exclude (EXCLUDED_LOCALES), in the cases producers send them.
EXCLUDED = frozenset({"RU"})

# A job clock (epoch seconds) for which every plausible timestamp below is in the past.
JOB_CLOCK = 1_700_000_000
# Integers at the edges of every range the job or a reader could trip on.
EDGES = (0, -1, 1, 2**31 - 1, -(2**31), 2**32, 2**53 + 1, 2**63 - 1, -(2**63), 2**63, 2**64,
         -(2**64) - 1, 2**200, -(2**200), MIN_TIMESTAMP - 1, MIN_TIMESTAMP, MAX_TIMESTAMP,
         MAX_TIMESTAMP + 1, JOB_CLOCK, JOB_CLOCK + 301, MAX_TIMESTAMP * 1000, 10**18 - 1, 10**18)
extreme_ints = st.sampled_from(EDGES) | st.integers()
numbers = extreme_ints | st.floats()  # floats include NaN and infinities (malformed JSON)

unicode_text = st.text(st.characters(), max_size=30)  # any code point, surrogates too
field_text = st.text(st.characters(), min_size=1, max_size=30)
# Digits of every kind: ASCII, superscript, Arabic-Indic, circled, other scripts' Nd and No.
DIGITS = "0123456789\u00b2\u00b9\u0661\u0662\u2460\u2469\u0e55\u09ea\u07c0\uff11\U0001d7ce"
version_part = (st.text(st.sampled_from(DIGITS), max_size=25)
                | st.text(st.characters(categories=["Nd", "No"]), max_size=4)
                | st.sampled_from(["9" * 18, "9" * 19, "1" * 256]) | unicode_text)
versions = st.lists(version_part, min_size=1, max_size=5).map(".".join)
locales = st.sampled_from(["ru", "RU", "Ru", "US", "de", "\u0130", "\u00df"]) | field_text
plausible_timestamps = (st.integers(MIN_TIMESTAMP, JOB_CLOCK)
                        | st.integers(MIN_TIMESTAMP, JOB_CLOCK).map(str))
odd_timestamps = (extreme_ints | extreme_ints.map(str)
                  | st.integers(MIN_TIMESTAMP, MAX_TIMESTAMP))
json_values = st.recursive(
    st.none() | st.booleans() | numbers | unicode_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(unicode_text, inner, max_size=3),
    max_leaves=8,
)


def _mostly(draw: st.DrawFn, usual: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> Any:
    """A value of ``usual`` three times in four, else of ``odd`` (shrinks towards usual)."""
    return draw(odd if draw(st.integers(0, 3)) == 3 else usual)


DROP = object()  # stands for a field left out
# Odd values of each field: wrong text, out of range, or any JSON value (numbers included).
odd_fields = {
    "ip": unicode_text, "timestamp": odd_timestamps, "locale": unicode_text,
    "user_id": unicode_text, "device_id": unicode_text, "app_version": unicode_text,
    "device_type": unicode_text,
}


@st.composite
def login_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A login object: three in four valid, with any Unicode in their text and odd versions
    (so most records get far into the pipeline); the others with one to three fields left
    out or given an odd value, a number or any JSON value; sometimes an unknown field."""
    document: dict[str, Any] = {
        "user_id": draw(field_text), "app_version": draw(versions),
        "ip": draw(st.ip_addresses().map(str)), "locale": draw(locales),
        "device_id": draw(field_text), "timestamp": draw(plausible_timestamps),
    }
    if draw(st.booleans()):
        document["device_type"] = draw(field_text | st.none())
    changed = _mostly(draw, st.just([]), st.lists(st.sampled_from(FIELDS), min_size=1,
                                                   max_size=3, unique=True))
    for name in changed:
        value = draw(odd_fields[name] | numbers | json_values | st.just(DROP))
        if value is DROP:
            document.pop(name, None)
        else:
            document[name] = value
    if draw(st.integers(0, 3)) == 3:
        document[draw(unicode_text)] = draw(json_values)  # an unknown field, or a duplicate
    return document


@st.composite
def values(draw: st.DrawFn) -> bytes | None:
    """A record value: three in four a login document as JSON, else any JSON, any bytes,
    empty or null."""
    ascii_only = draw(st.booleans())
    return _mostly(draw, login_documents().map(lambda d: to_json(d, ascii_only)),
                   json_values.map(lambda d: to_json(d, ascii_only))
                   | st.binary(max_size=60) | st.just(b"") | st.none())


def to_json(document: Any, ascii_only: bool) -> bytes:
    """JSON bytes as a producer might send them; lone surrogates become invalid UTF-8 (or
    ``\\ud800`` escapes when ``ascii_only``), NaN and infinities are kept (malformed)."""
    return json.dumps(document, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


keys = st.binary(max_size=20) | st.none()
# Kafka timestamps of records (CreateTime: whatever the producer chose).
kafka_timestamps = st.sampled_from([-1, 0, 2**63 - 1, -(2**63)]) | st.integers(-(2**63),
                                                                                2**63 - 1)

# Header names a reader looks for (the tool's schemes, replay.count), and their values at
# the edges: times out of datetime's range, numbers too long for int(), odd widths.
CONTEXT_NAMES = (HEADER_REASON, HEADER_DETAIL, HEADER_SOURCE_TOPIC, HEADER_SOURCE_PARTITION,
                 HEADER_SOURCE_OFFSET, HEADER_FAILED_AT, HEADER_REPLAY_COUNT, STREAMS_EXCEPTION,
                 STREAMS_TOPIC, STREAMS_PARTITION, STREAMS_OFFSET, "__connect.errors.topic",
                 "__connect.errors.offset", "kafka_dlt-original-topic",
                 "kafka_dlt-original-partition", "kafka_dlt-original-offset")
times = st.builds(lambda moment, offset: (moment.isoformat() + offset).encode(),
                  st.datetimes(), st.sampled_from(["", "Z", "+01:00", "-01:00", "+23:59"]))
utf8_header_names = (st.text(st.characters(codec="utf-8"), max_size=20).map(str.encode)
                     | st.sampled_from(CONTEXT_NAMES).map(str.encode))
header_values = (st.none() | st.binary(max_size=40) | times
                 | extreme_ints.map(lambda n: str(n).encode())
                 | st.sampled_from([b"9" * 4300, b"9" * 5000, *(r.encode() for r in REASONS)]))


@st.composite
def raw_headers(draw: st.DrawFn) -> list[tuple[bytes, bytes | None]]:
    """Headers as Kafka holds them (raw names): three lists in four with UTF-8 names only,
    the others with names of any bytes too (mostly not UTF-8)."""
    names = utf8_header_names
    if draw(st.integers(0, 3)) == 3:
        names |= st.binary(max_size=20)
    return draw(st.lists(st.tuples(names, header_values), max_size=6))


@st.composite
def records(draw: st.DrawFn, max_size: int = 12) -> list[RawHeadersRecord]:
    """Consumed records of one partition, offsets 0, 1, 2, ...: any key, value (mostly odd
    logins) and headers (names raw bytes), any Kafka timestamp."""
    return [RawHeadersRecord(draw(values()), draw(keys), _offset=offset,
                             _timestamp_ms=draw(kafka_timestamps), raw_headers=draw(raw_headers()))
            for offset in range(draw(st.integers(0, max_size)))]
