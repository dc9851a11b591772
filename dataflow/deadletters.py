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
# Added by `dlq replay`; kept on a record that fails again, so loops are visible.
HEADER_REPLAY_COUNT = "replay.count"

# Processed records carry where they came from, so duplicates after a
# recovery replay can be detected downstream.
HEADER_FROM_TOPIC = "source.topic"
HEADER_FROM_PARTITION = "source.partition"
HEADER_FROM_OFFSET = "source.offset"

_MAX_DETAIL = 1000


def source_headers(record: KafkaRecord) -> Headers:
    """Headers naming a record's source topic, partition and offset."""
    # topic/partition/offset are None only on error events, which never get here.
    return [
        (HEADER_FROM_TOPIC, record.topic().encode()),  # type: ignore[union-attr]
        (HEADER_FROM_PARTITION, b"%d" % record.partition()),  # type: ignore[str-format]
        (HEADER_FROM_OFFSET, b"%d" % record.offset()),  # type: ignore[str-format]
    ]


def dead_letter_headers(rejected: Rejected, failed_at: datetime) -> Headers:
    """The original headers plus the dlq.* context of one rejected record."""
    source: KafkaRecord = rejected.source
    headers = list(source.headers() or ())
    headers += [
        (HEADER_REASON, rejected.reason.encode()),
        (HEADER_DETAIL, rejected.detail[:_MAX_DETAIL].encode()),
        (HEADER_SOURCE_TOPIC, str(source.topic()).encode()),
        (HEADER_SOURCE_PARTITION, str(source.partition()).encode()),
        (HEADER_SOURCE_OFFSET, str(source.offset()).encode()),
        (HEADER_FAILED_AT, failed_at.astimezone(UTC).isoformat().encode()),
    ]
    return headers
