"""Dead letters too large for a Kafka record: cut to fit, with what was cut on record.

A source record the broker accepted can still make a dead letter that is too
large: the same bytes plus the ``dlq.*`` headers may pass the producer's
``message.max.bytes`` (or the dead-letter topic's ``max.message.bytes``). Such a
dead letter is written cut to fit rather than stopping the job:

- the ``dlq.*`` headers (reason, detail, source, time) are always kept;
- ``dlq.truncated=true``, ``dlq.original.size`` (bytes of the value) and
  ``dlq.original.sha256`` (hex SHA-256 of the whole original value) are added;
- the key and the original headers are kept whole when they fit. If not, the key
  is cut to at most half of what is left (``dlq.original.key.size`` and
  ``dlq.original.key.sha256`` added) and the original headers are kept, in order,
  while they fit (``dlq.dropped.headers`` says how many were left out);
- the value keeps its first bytes, as many as fit in what remains.

Pure functions, no Kafka: the sink decides when to call them.
"""

from __future__ import annotations

import hashlib

from dataflow.deadletters import DLQ_HEADER_PREFIX
from dataflow.schemas import Headers

HEADER_TRUNCATED = "dlq.truncated"
HEADER_ORIGINAL_SIZE = "dlq.original.size"
HEADER_ORIGINAL_SHA256 = "dlq.original.sha256"
HEADER_ORIGINAL_KEY_SIZE = "dlq.original.key.size"
HEADER_ORIGINAL_KEY_SHA256 = "dlq.original.key.sha256"
HEADER_DROPPED_HEADERS = "dlq.dropped.headers"
# librdkafka's own default for the producer's message.max.bytes.
DEFAULT_MESSAGE_MAX_BYTES = 1_000_000
# Room left for the record and batch framing the size limits also count (a v2 record
# batch header is 61 bytes, a record's own framing a few dozen).
FRAMING_BYTES = 1024
# Varint lengths of a header's name and value, and the header count, at most.
_HEADER_FRAMING = 10


def header_bytes(headers: Headers | None) -> int:
    """Bytes the headers take in a record, framing included (an upper bound)."""
    return sum(len(name.encode()) + len(value or b"") + _HEADER_FRAMING
               for name, value in headers or ())


def record_bytes(key: bytes | None, value: bytes | None, headers: Headers | None) -> int:
    """Bytes a record counts against the size limits (an upper bound)."""
    return len(key or b"") + len(value or b"") + header_bytes(headers) + FRAMING_BYTES


def fits(key: bytes | None, value: bytes | None, headers: Headers | None, limit: int) -> bool:
    """Whether a record of this key, value and headers stays within ``limit`` bytes."""
    return record_bytes(key, value, headers) <= limit


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).hexdigest().encode()


def _split(headers: Headers | None) -> tuple[Headers, Headers]:
    original = [(n, v) for n, v in headers or () if not n.startswith(DLQ_HEADER_PREFIX)]
    context = [(n, v) for n, v in headers or () if n.startswith(DLQ_HEADER_PREFIX)]
    return original, context


def _kept_in_order(headers: Headers, room: int) -> Headers:
    kept: Headers = []
    for header in headers:
        size = header_bytes([header])
        if size > room:
            break
        kept.append(header)
        room -= size
    return kept


def truncate_dead_letter(
    key: bytes | None, value: bytes | None, headers: Headers | None, limit: int,
) -> tuple[bytes | None, bytes | None, Headers]:
    """Key, value and headers of a dead letter cut to fit ``limit`` bytes (scheme above)."""
    original_value = value or b""
    original, context = _split(headers)
    marks: Headers = [
        (HEADER_TRUNCATED, b"true"),
        (HEADER_ORIGINAL_SIZE, b"%d" % len(original_value)),
        (HEADER_ORIGINAL_SHA256, _sha256(original_value)),
    ]
    key_marks: Headers = [(HEADER_ORIGINAL_KEY_SIZE, b"%d" % len(key or b"")),
                          (HEADER_ORIGINAL_KEY_SHA256, _sha256(key or b"")),
                          (HEADER_DROPPED_HEADERS, b"%d" % len(original))]
    room = limit - FRAMING_BYTES - header_bytes(context) - header_bytes(marks)
    key_size = len(key or b"")
    if key_size + header_bytes(original) <= room:
        kept_key, kept = key, original
    else:
        room -= header_bytes(key_marks)  # reserved for the key and dropped-header marks
        if room < 0:
            msg = f"limit of {limit} bytes leaves no room for a dead letter's dlq.* headers"
            raise ValueError(msg)
        kept_key = key
        if key_size > room:
            kept_key = (key or b"")[: room // 2]
            marks += key_marks[:2]
        kept = _kept_in_order(original, room - len(kept_key or b""))
        if len(kept) < len(original):
            marks.append((HEADER_DROPPED_HEADERS, b"%d" % (len(original) - len(kept))))
    room -= len(kept_key or b"") + header_bytes(kept)
    if room < 0:
        msg = f"limit of {limit} bytes leaves no room for a dead letter's dlq.* headers"
        raise ValueError(msg)
    cut_value = None if value is None else original_value[:room]
    return kept_key, cut_value, [*kept, *context, *marks]
