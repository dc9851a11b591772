"""Dead letters: the reason codes and the record written to DLQ_TOPIC.

The value and key of the original record are kept byte for byte (a null value
stays null) and so are its headers; the context is added as ``dlq.*`` headers,
the way Kafka Connect adds ``__connect.errors.*``. Headers that cannot be read (a
header name that is not UTF-8) are replaced by a ``dlq.headers.unreadable`` marker:
see ``original_headers``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from dataflow.schemas import Headers, KafkaRecord, Rejected

# Stable reason codes: dashboards and the review tool rely on them.
REASONS: Mapping[str, str] = {
    "empty_value": "the record has no value (null or zero bytes)",
    "invalid_utf8": "the value is not valid UTF-8",
    "malformed_json": "the value is not well-formed JSON (syntax, truncation, NaN, "
    "byte-order mark, trailing data, nesting too deep)",
    "not_an_object": "the JSON document is not an object",
    "missing_field": "a required field is missing or null",
    "wrong_type": "a field has the wrong JSON type",
    "invalid_value": "a field has the right type but an invalid value "
    "(empty text, not an IP address, timestamp out of range)",
    "future_timestamp": "the event is stamped more than MAX_FUTURE_SECONDS ahead of the "
    "job's clock",
}

HEADER_REASON = "dlq.reason"
HEADER_DETAIL = "dlq.detail"
HEADER_SOURCE_TOPIC = "dlq.source.topic"
HEADER_SOURCE_PARTITION = "dlq.source.partition"
HEADER_SOURCE_OFFSET = "dlq.source.offset"
HEADER_FAILED_AT = "dlq.failed_at"
DLQ_HEADER_PREFIX = "dlq."
# The same context under the Kafka Streams names (KIP-1034), UTF-8 text, so tools
# that know the Apache Kafka convention read our dead letters too.
STREAMS_HEADER_PREFIX = "__streams.errors."
STREAMS_EXCEPTION = "__streams.errors.exception"  # our reason code
STREAMS_MESSAGE = "__streams.errors.message"  # our detail
STREAMS_TOPIC = "__streams.errors.topic"
STREAMS_PARTITION = "__streams.errors.partition"
STREAMS_OFFSET = "__streams.errors.offset"
# Written instead of the original headers when they cannot be read (``original_headers``).
HEADER_HEADERS_UNREADABLE = "dlq.headers.unreadable"  # why, UTF-8 text
HEADER_UNREADABLE_NAME = "dlq.headers.unreadable.name"  # raw bytes of the name, when known
# Added by `dlq replay`; kept on a record that fails again, so loops are visible.
HEADER_REPLAY_COUNT = "replay.count"

# Processed records carry where they came from, so duplicates after a
# recovery replay can be detected downstream.
HEADER_FROM_TOPIC = "source.topic"
HEADER_FROM_PARTITION = "source.partition"
HEADER_FROM_OFFSET = "source.offset"

_MAX_DETAIL = 1000


def _undecodable_name(exc: BaseException) -> UnicodeDecodeError | None:
    """The UnicodeDecodeError behind ``exc`` (following its causes), if any."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, UnicodeDecodeError):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def unreadable_headers(exc: BaseException) -> Headers:
    """The marker that stands for headers that ``headers()`` could not give: why, and the
    raw bytes of the header name that is not UTF-8 when the exception carries them."""
    undecodable = _undecodable_name(exc)
    if undecodable is None:
        why = f"{type(exc).__name__}: {exc}"
    else:
        why = f"a header name is not UTF-8 ({undecodable})"
    marker = [(HEADER_HEADERS_UNREADABLE,
               f"the original headers could not be read and are not kept: {why}"[:_MAX_DETAIL]
               .encode("utf-8", "replace"))]
    if undecodable is not None and isinstance(undecodable.object, bytes):
        marker.append((HEADER_UNREADABLE_NAME, undecodable.object[:_MAX_DETAIL]))
    return marker


def original_headers(record: KafkaRecord) -> Headers:
    """The headers of a consumed record, or the ``dlq.headers.unreadable`` marker when they
    cannot be read.

    confluent-kafka (2.16) decodes header names as UTF-8 when ``headers()`` is first
    called. For a name that is not UTF-8 it raises ``SystemError("<method 'headers' of
    'confluent_kafka.cimpl.Message' objects> returned a result with an exception set")``,
    caused by the ``UnicodeDecodeError`` of that name; a second call returns a list with a
    NULL in place of the name, and touching it crashes the process. So ``headers()`` is
    called once per record, here, and nothing of a failed call is kept.
    """
    try:
        return list(record.headers() or ())
    except Exception as exc:  # any failure of the client: the record must still be written
        return unreadable_headers(exc)


def dead_letter_headers(rejected: Rejected, failed_at: datetime) -> Headers:
    """The original headers plus the dlq.* and KIP-1034 context of one rejected record."""
    source: KafkaRecord = rejected.source
    reason = rejected.reason.encode()
    detail = rejected.detail[:_MAX_DETAIL].encode()
    topic = str(source.topic()).encode()
    partition = str(source.partition()).encode()
    offset = str(source.offset()).encode()
    headers = original_headers(source)
    headers += [
        (HEADER_REASON, reason),
        (HEADER_DETAIL, detail),
        (HEADER_SOURCE_TOPIC, topic),
        (HEADER_SOURCE_PARTITION, partition),
        (HEADER_SOURCE_OFFSET, offset),
        (HEADER_FAILED_AT, failed_at.astimezone(UTC).isoformat().encode()),
        (STREAMS_EXCEPTION, reason),
        (STREAMS_MESSAGE, detail),
        (STREAMS_TOPIC, topic),
        (STREAMS_PARTITION, partition),
        (STREAMS_OFFSET, offset),
    ]
    return headers
