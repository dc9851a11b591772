"""Dead letters: the reason codes and the record written to DLQ_TOPIC.

The value and key of the original record are kept byte for byte (a null value
stays null) and so are its headers; the context is added as ``dlq.*`` headers,
the way Kafka Connect adds ``__connect.errors.*``.
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
# Added by `dlq replay`; kept on a record that fails again, so loops are visible.
HEADER_REPLAY_COUNT = "replay.count"

# Processed records carry where they came from, so duplicates after a
# recovery replay can be detected downstream.
HEADER_FROM_TOPIC = "source.topic"
HEADER_FROM_PARTITION = "source.partition"
HEADER_FROM_OFFSET = "source.offset"

_MAX_DETAIL = 1000


def dead_letter_headers(rejected: Rejected, failed_at: datetime) -> Headers:
    """The original headers plus the dlq.* and KIP-1034 context of one rejected record."""
    source: KafkaRecord = rejected.source
    reason = rejected.reason.encode()
    detail = rejected.detail[:_MAX_DETAIL].encode()
    topic = str(source.topic()).encode()
    partition = str(source.partition()).encode()
    offset = str(source.offset()).encode()
    headers = list(source.headers() or ())
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
