"""Dead letters too large for a Kafka record: cut to fit, with size and SHA-256 of the original."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataflow.oversize import (
    FRAMING_BYTES,
    fits,
    header_bytes,
    record_bytes,
    truncate_dead_letter,
)
from dataflow.schemas import Headers

LIMIT = 1_000_000
CONTEXT: Headers = [("dlq.reason", b"malformed_json"), ("dlq.detail", b"x" * 1000),
                    ("dlq.source.topic", b"user-login"), ("dlq.source.partition", b"0"),
                    ("dlq.source.offset", b"42"),
                    ("dlq.failed_at", b"2026-12-02T20:00:00+00:00")]


def named(headers: Headers, name: str) -> bytes | None:
    return dict(headers).get(name)


def test_value_is_cut_to_fit_and_key_headers_and_context_are_kept() -> None:
    """A 1 MB value: its first bytes fit, key and all headers kept, size and SHA-256 added."""
    value = b'{"user_id": "' + b"a" * 999_990
    original: Headers = [("trace", b"abc")]
    key, cut, headers = truncate_dead_letter(b"k", value, [*original, *CONTEXT], LIMIT)
    assert key == b"k"
    assert cut is not None and value.startswith(cut) and len(cut) < len(value)
    assert headers[:len(original) + len(CONTEXT)] == [*original, *CONTEXT]
    assert named(headers, "dlq.truncated") == b"true"
    assert named(headers, "dlq.original.size") == str(len(value)).encode()
    assert named(headers, "dlq.original.sha256") == hashlib.sha256(value).hexdigest().encode()
    assert named(headers, "dlq.dropped.headers") is None
    assert named(headers, "dlq.original.key.size") is None
    assert fits(key, cut, headers, LIMIT)
    assert record_bytes(key, cut, headers) > LIMIT - 100  # it uses the room it has


def test_headers_that_do_not_fit_are_dropped_from_the_end_and_counted() -> None:
    """Original headers that do not fit go, last first; the dlq.* context always stays."""
    original: Headers = [(f"h{i}", b"v" * 300_000) for i in range(5)]
    key, cut, headers = truncate_dead_letter(b"k", b"{" * 10, [*original, *CONTEXT], LIMIT)
    assert key == b"k"
    assert [n for n, _ in headers if n.startswith("h")] == ["h0", "h1", "h2"]
    assert named(headers, "dlq.dropped.headers") == b"2"
    assert all(h in headers for h in CONTEXT)
    assert cut == b"{" * 10  # the value fits whole; only headers were cut
    assert fits(key, cut, headers, LIMIT)


def test_a_key_too_large_is_cut_to_half_the_room_with_its_size_and_hash() -> None:
    """A 2 MB key: cut, dlq.original.key.size and .sha256 added, value keeps what is left."""
    huge_key = b"K" * 2_000_000
    key, cut, headers = truncate_dead_letter(huge_key, b"v" * 2_000_000, CONTEXT, LIMIT)
    assert key is not None and huge_key.startswith(key)
    assert 400_000 < len(key) <= LIMIT // 2
    assert named(headers, "dlq.original.key.size") == b"2000000"
    assert named(headers, "dlq.original.key.sha256") == \
        hashlib.sha256(huge_key).hexdigest().encode()
    assert cut is not None and len(cut) > 400_000
    assert fits(key, cut, headers, LIMIT)


def test_a_null_value_stays_null() -> None:
    """Only headers were too large: a null value is not turned into empty bytes."""
    _, cut, headers = truncate_dead_letter(None, None, [("big", b"x" * 2_000_000), *CONTEXT],
                                           LIMIT)
    assert cut is None
    assert named(headers, "dlq.original.size") == b"0"
    assert named(headers, "dlq.dropped.headers") == b"1"


def test_a_limit_too_small_for_the_context_is_an_error() -> None:
    """A limit that cannot hold the dlq.* headers raises ValueError (the sink's DeliveryError)."""
    with pytest.raises(ValueError, match=r"leaves no room for a dead letter's dlq\.\* headers"):
        truncate_dead_letter(b"k", b"v" * 10_000, CONTEXT, FRAMING_BYTES + 500)


def test_header_bytes_counts_names_values_and_framing() -> None:
    """Header size is name + value + 10 bytes of framing each."""
    assert header_bytes([("ab", b"cde"), ("f", b"")]) == 5 + 10 + 1 + 10
    assert header_bytes(None) == 0


@given(key_size=st.integers(0, 3_000_000), value_size=st.integers(0, 3_000_000),
       header_sizes=st.lists(st.integers(0, 600_000), max_size=6),
       limit=st.integers(20_000, 2_000_000))
def test_the_cut_record_always_fits_and_keeps_prefixes(
    key_size: int, value_size: int, header_sizes: list[int], limit: int,
) -> None:
    """Any sizes: the result fits the limit, key and value are prefixes, context is kept."""
    key, value = b"k" * key_size, b"v" * value_size
    original: Headers = [(f"h{i}", b"x" * n) for i, n in enumerate(header_sizes)]
    cut_key, cut_value, headers = truncate_dead_letter(key, value, [*original, *CONTEXT], limit)
    assert fits(cut_key, cut_value, headers, limit)
    assert cut_key is not None and key.startswith(cut_key)
    assert cut_value is not None and value.startswith(cut_value)
    assert all(h in headers for h in CONTEXT)
    kept = [h for h in headers if h[0].startswith("h")]
    assert kept == original[:len(kept)]
    assert named(headers, "dlq.original.size") == str(value_size).encode()
