"""The sinks and their writer: placement by name, confirm before commit, and the writer's
refusals and failed writes as one-line DeliveryErrors naming the source record.

produce() checks the record size and the argument types locally, before any
network, and a write to a broker that does not exist times out after
``delivery.timeout.ms``: these run against a producer whose broker does not exist.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from dataflow import kafka_writer
from dataflow.batches import OutBatch
from dataflow.errors import DeliveryError
from dataflow.kafka_config import producer_config
from dataflow.kafka_sink import counts_sink, partition_sink
from dataflow.kafka_writer import KafkaWriter
from dataflow.schemas import OutRecord
from dataflow.settings import Settings
from dataflow.shards import SHARD_KEYS

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


def test_a_write_that_kafka_never_confirms_stops_the_next_check_naming_its_source() -> None:
    """Records Kafka never confirms: the writer's next check raises DeliveryError naming the
    source record of each, from what it was given (delivery reports carry no headers)."""
    settings = Settings(bootstrap_servers="127.0.0.1:9", delivery_timeout_ms=300)
    config = {**producer_config(settings), "logger": _QUIET}
    writer = KafkaWriter(config, 5.0, settings.dlq_topic)
    writer.write([("processed-user-login", b"k", b"v%d" % offset,
                   [*SOURCE[:2], ("source.offset", b"%d" % offset)], None)
                  for offset in (41, 42)])
    with pytest.raises(DeliveryError) as caught:
        for _ in range(100):  # librdkafka fails the writes after delivery.timeout.ms
            writer.check()
            time.sleep(0.05)
    message = str(caught.value)
    assert message.startswith("2 of 2 writes failed, stopping so nothing is lost: ")
    for offset in (41, 42):
        assert (f"write to topic 'processed-user-login' (source user-login partition 0 offset "
                f"{offset}) failed: Local: Message timed out") in message


def test_a_writer_waits_for_kafka_before_writing_once_confirm_every_records_wait(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """make_room confirms when CONFIRM_EVERY records are unconfirmed, and only then: before
    the next writes, not after the last ones."""
    monkeypatch.setattr(kafka_writer, "CONFIRM_EVERY", 3)
    settings = Settings(bootstrap_servers="127.0.0.1:9", delivery_timeout_ms=300)
    writer = KafkaWriter({**producer_config(settings), "logger": _QUIET}, 5.0,
                         settings.dlq_topic)
    confirmed: list[int] = []
    monkeypatch.setattr(writer, "confirm", lambda: confirmed.append(writer._pending))
    record = ("processed-user-login", b"k", b"v", SOURCE, None)
    writer.write([record, record])
    writer.make_room()
    assert confirmed == []
    writer.write([record, record])
    assert confirmed == []  # writing never waits
    writer.make_room()
    assert confirmed == [4]


class _Writer:
    """A writer that keeps what it is given and says when it confirmed."""

    def __init__(self, events: list[Any]) -> None:
        self.events = events

    def write(self, records: list[OutRecord]) -> None:
        self.events.append(("write", len(records)))

    def make_room(self) -> None:
        pass

    def check(self) -> None:
        pass

    def confirm(self) -> None:
        self.events.append(("confirm",))

    def close(self) -> None:
        pass


class _Writers:
    def __init__(self, writer: _Writer) -> None:
        self._writer = writer

    def get(self) -> _Writer:
        return self._writer


class _Committer:
    def __init__(self, events: list[Any]) -> None:
        self.events = events

    def commit(self, partition: int, offset: int) -> None:
        self.events.append(("commit", partition, offset))

    def hold(self) -> None:
        pass

    def release(self) -> None:
        pass


def test_each_key_goes_to_the_sink_partition_of_the_same_name() -> None:
    """part_fn maps a partition's name to its own index among the names sorted as text, as
    Bytewax indexes them ("10" sorts before "2")."""
    names = [str(p) for p in range(12)]
    sink = partition_sink(Settings(), lambda: names, _Writers(_Writer([])),  # type: ignore[arg-type]
                          _Committer([]))  # type: ignore[arg-type]
    ordered = sorted(names)
    assert all(ordered[sink.part_fn(name)] == name for name in names)
    counts = counts_sink(Settings(), _Writers(_Writer([])))  # type: ignore[arg-type]
    groups = sorted(counts.list_parts())
    assert [groups[counts.part_fn(key)] for key in SHARD_KEYS[:5]] == [
        "shards-0", "shards-1", "shards-2", "shards-3", "shards-0"]


def test_a_snapshot_confirms_every_write_before_it_commits_their_offset() -> None:
    """At an epoch's end the partition sink confirms, then commits the highest offset its
    batches cover, empty batches included; the counts sink commits nothing."""
    events: list[Any] = []
    sink = partition_sink(Settings(), lambda: ["0", "3"],
                          _Writers(_Writer(events)), _Committer(events))  # type: ignore[arg-type]
    part = sink.build_part("write", "3", None)
    part.write_batch([OutBatch([("t", None, b"v", None, None)] * 2, 10), OutBatch([], 12)])
    part.snapshot()
    assert events == [("write", 2), ("confirm",), ("commit", 3, 12)]
    counts: list[Any] = []
    shard = counts_sink(Settings(), _Writers(_Writer(counts))).build_part(  # type: ignore[arg-type]
        "write_counts", "shards-0", None)
    shard.write_batch([OutBatch([("c", b"k", b"v", None, None)])])
    shard.snapshot()
    assert counts == [("write", 1), ("confirm",)]
