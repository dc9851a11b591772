"""The writer's refusals and failed writes: one-line DeliveryError naming the source record.

produce() checks the record size and the argument types locally, before any
network, and a write to a broker that does not exist times out after
``delivery.timeout.ms``: these run against a producer whose broker does not exist.
"""

from __future__ import annotations

import logging
import time

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


def test_a_write_that_fails_after_its_batch_stops_the_next_check_naming_its_source() -> None:
    """A record produced from the batch loop that Kafka never confirms: the writer's next
    check raises DeliveryError naming the source record, rebuilt from the batch."""
    from dataflow.batches import PartitionProcessor
    from tests.records import FakeRecord, login_bytes

    settings = Settings(bootstrap_servers="127.0.0.1:9", delivery_timeout_ms=300)
    config = {**producer_config(settings), "logger": _QUIET}
    writer = KafkaWriter(config, 5.0, settings.dlq_topic)
    records = [FakeRecord(login_bytes(timestamp=1_694_479_551 + i), _offset=41 + i)
               for i in range(2)]
    PartitionProcessor(settings, 0, 1, writer).process(records)  # type: ignore[arg-type]
    with pytest.raises(DeliveryError) as caught:
        for _ in range(100):  # librdkafka fails the writes after delivery.timeout.ms
            writer.check()
            time.sleep(0.05)
    message = str(caught.value)
    assert message.startswith("2 of 2 writes failed, stopping so nothing is lost: ")
    for offset in (41, 42):
        assert (f"write to topic 'processed-user-login' (source user-login partition 0 offset "
                f"{offset}) failed: Local: Message timed out") in message
