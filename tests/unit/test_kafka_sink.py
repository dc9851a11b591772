"""The sink's refusals at produce() time: one-line DeliveryError, no broker needed.

produce() checks the record size and the argument types locally, before any
network, so these run against a producer whose broker does not exist.
"""

from __future__ import annotations

import logging

import pytest

from dataflow.errors import DeliveryError
from dataflow.kafka_config import producer_config
from dataflow.kafka_sink import ConfirmedKafkaSink, WorkerProducer
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
    """Write one record through a worker's producer (librdkafka's connect errors muted)."""
    config = {**producer_config(SETTINGS), "logger": _QUIET}
    WorkerProducer(config, 1.0, SETTINGS.dlq_topic).write([record])


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


def test_sink_partitions_are_the_input_partitions_indexed_in_bytewax_order() -> None:
    """A partition name maps to its index among the sorted names; another key to a hash."""
    names = [str(p) for p in range(12)]
    sink = ConfirmedKafkaSink(SETTINGS, lambda: names)
    assert sink.list_parts() == names
    assert [sink.part_fn(n) for n in ("0", "1", "10", "11", "2", "9")] == [0, 1, 2, 3, 4, 11]
    assert sink.part_fn("shard-03") == sink.part_fn("shard-03") >= 0


def test_a_workers_partitions_share_one_producer_released_with_the_last() -> None:
    """Partitions built on one thread share a producer; closing the last one drops it."""
    sink = ConfirmedKafkaSink(SETTINGS, lambda: ["0", "1"])
    sink._config["logger"] = _QUIET  # nothing listens on port 9
    first, second = sink.build_part("write", "0", None), sink.build_part("write", "1", None)
    assert first._producer is second._producer
    first.close()
    third = sink.build_part("write", "0", None)
    assert third._producer is second._producer
    second.close()
    third.close()
    assert sink.build_part("write", "0", None)._producer is not second._producer
