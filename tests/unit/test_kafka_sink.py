"""The sink's refusals at produce() time: one-line DeliveryError, no broker needed.

produce() checks the record size and the argument types locally, before any
network, so these run against a producer whose broker does not exist.
"""

from __future__ import annotations

import logging

import pytest

from dataflow.errors import DeliveryError
from dataflow.kafka_config import producer_config
from dataflow.kafka_sink import KafkaWriter
from dataflow.schemas import OutRecord
from dataflow.settings import Settings

_QUIET = logging.getLogger("tests.sink.librdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False

SOURCE = [("source.topic", b"user-login"), ("source.partition", b"0"),
          ("source.offset", b"7")]
# Nothing listens on port 9 of loopback; produce() never needs it in these tests.
SETTINGS = Settings(bootstrap_servers="127.0.0.1:9")


def write(record: OutRecord) -> None:
    """Write one record through a worker's writer (librdkafka's connect errors muted)."""
    config = {**producer_config(SETTINGS), "logger": _QUIET}
    KafkaWriter(config, 1.0, SETTINGS.dlq_topic).write([record])


def test_a_processed_record_too_large_is_a_delivery_error_naming_topic_and_source() -> None:
    """Non-DLQ record over message.max.bytes: DeliveryError with topic and source, not cut."""
    with pytest.raises(DeliveryError) as caught:
        write(("processed-user-login", b"k", b"x" * 1_100_000, SOURCE, None))
    assert str(caught.value) == (
        "write to topic 'processed-user-login' (source user-login partition 0 offset 7) "
        "failed: Unable to produce message: Broker: Message size too large")


def test_any_other_produce_exception_is_a_one_line_delivery_error() -> None:
    """A value produce() rejects (not bytes): DeliveryError naming the exception, one line."""
    with pytest.raises(DeliveryError) as caught:
        write(("processed-user-login", b"k", 12345, SOURCE, None))  # type: ignore[arg-type]
    message = str(caught.value)
    assert message.startswith("write to topic 'processed-user-login' (source user-login "
                              "partition 0 offset 7) failed: TypeError: ")
    assert "\n" not in message
