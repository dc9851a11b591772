"""Where a dead letter came from and why it failed, in every common header scheme.

Four schemes are read, first match wins (our own records carry both ``dlq.*``
and the KIP-1034 names, and ``dlq.*`` is read first):

- ``dlq``: this job (``dlq.reason``, ``dlq.detail``, ``dlq.source.*``);
- ``kafka-streams``: Kafka Streams KIP-1034 (``__streams.errors.*``, UTF-8 text);
- ``kafka-connect``: Kafka Connect (``__connect.errors.*``, UTF-8 text);
- ``spring-kafka``: Spring Kafka's DeadLetterPublishingRecoverer (``kafka_dlt-*``,
  partition a 4-byte and offset an 8-byte big-endian signed integer).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dataflow.deadletters import (
    DLQ_HEADER_PREFIX,
    HEADER_DETAIL,
    HEADER_REASON,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
    STREAMS_EXCEPTION,
    STREAMS_HEADER_PREFIX,
    STREAMS_MESSAGE,
    STREAMS_OFFSET,
    STREAMS_PARTITION,
    STREAMS_TOPIC,
)

Headers = Sequence[tuple[str, bytes | None]]
CONNECT_HEADER_PREFIX = "__connect.errors."
SPRING_HEADER_PREFIX = "kafka_dlt-"
# Headers that describe a failure, never sent back by a replay.
CONTEXT_PREFIXES = (DLQ_HEADER_PREFIX, STREAMS_HEADER_PREFIX, CONNECT_HEADER_PREFIX,
                    SPRING_HEADER_PREFIX)


def text(raw: bytes | None) -> str | None:
    """UTF-8 text of a header (undecodable bytes replaced), None when absent."""
    return None if raw is None else raw.decode("utf-8", "replace")


def decimal(raw: bytes | None) -> int | None:
    """A whole number written as text, None when absent or not a number."""
    try:
        return None if raw is None else int(raw)
    except ValueError:
        return None


def big_endian(size: int) -> Callable[[bytes | None], int | None]:
    """Reader of a signed big-endian integer of exactly ``size`` bytes (Java int / long)."""
    def read(raw: bytes | None) -> int | None:
        if raw is None or len(raw) != size:
            return None
        return int.from_bytes(raw, "big", signed=True)

    return read


@dataclass(frozen=True, slots=True)
class Scheme:
    """The header names (and number format) of one dead-letter convention."""

    name: str
    topic: str
    partition: str
    offset: str
    error: str
    message: str
    number: Callable[[bytes | None], int | None] = decimal
    offset_number: Callable[[bytes | None], int | None] = decimal


SCHEMES: tuple[Scheme, ...] = (
    Scheme("dlq", HEADER_SOURCE_TOPIC, HEADER_SOURCE_PARTITION, HEADER_SOURCE_OFFSET,
           HEADER_REASON, HEADER_DETAIL),
    Scheme("kafka-streams", STREAMS_TOPIC, STREAMS_PARTITION, STREAMS_OFFSET,
           STREAMS_EXCEPTION, STREAMS_MESSAGE),
    Scheme("kafka-connect", "__connect.errors.topic", "__connect.errors.partition",
           "__connect.errors.offset", "__connect.errors.exception.class.name",
           "__connect.errors.exception.message"),
    Scheme("spring-kafka", "kafka_dlt-original-topic", "kafka_dlt-original-partition",
           "kafka_dlt-original-offset", "kafka_dlt-exception-fqcn",
           "kafka_dlt-exception-message", big_endian(4), big_endian(8)),
)


@dataclass(frozen=True, slots=True)
class Origin:
    """Source place and error of a dead letter; None where the headers do not say."""

    scheme: str | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    error: str | None = None
    detail: str | None = None


def _last(headers: Headers) -> dict[str, bytes | None]:
    return dict(headers)  # the last value of a repeated header wins


def read_origin(headers: Headers) -> Origin:
    """The Origin given by the first scheme whose headers are present."""
    found = _last(headers)
    for scheme in SCHEMES:
        names = (scheme.topic, scheme.partition, scheme.offset, scheme.error, scheme.message)
        if not any(name in found for name in names):
            continue
        return Origin(scheme.name, text(found.get(scheme.topic)),
                      scheme.number(found.get(scheme.partition)),
                      scheme.offset_number(found.get(scheme.offset)),
                      text(found.get(scheme.error)), text(found.get(scheme.message)))
    return Origin()


def is_context(name: str) -> bool:
    """Whether a header is failure context of some scheme (dropped on replay)."""
    return name.startswith(CONTEXT_PREFIXES)
