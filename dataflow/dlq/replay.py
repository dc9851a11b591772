"""Send dead letters back to a topic, byte for byte, with a replay counter.

Each record goes out with its original key and value untouched and its
original headers minus every ``dlq.*`` header; ``replay.count`` is set to one
more than the record carried. Records that reached ``max_replays`` are
skipped, so a record that keeps failing cannot loop for ever.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TextIO

from confluent_kafka import KafkaError, Message, Producer

from dataflow.dlq.records import DeadLetter, DlqError
from dataflow.dlq.summary import source_name
from dataflow.errors import MissingTopicError, SourceError
from dataflow.kafka_config import producer_config
from dataflow.kafka_source import list_partitions
from dataflow.settings import Settings


@dataclass(slots=True)
class ReplayResult:
    """What a replay did (or, in a dry run, would do)."""

    to_topic: str
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    first_error: str | None = None

    def on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        """Delivery callback: count confirmations and failures."""
        if err is None:
            self.sent += 1
            return
        self.failed += 1
        if self.first_error is None:
            self.first_error = str(err)


def check_destination(settings: Settings, topic: str, dlq_topic: str) -> None:
    """Refuse a missing destination, or the dead-letter topic being read."""
    if topic == dlq_topic:
        msg = f"refusing to replay into {topic!r}, the dead-letter topic being read"
        raise DlqError(msg)
    try:
        list_partitions(settings, topic)
    except MissingTopicError as exc:
        msg = f"destination topic {topic!r} does not exist"
        raise DlqError(msg) from exc
    except SourceError as exc:
        raise DlqError(str(exc)) from exc


def _describe(record: DeadLetter) -> str:
    offset = record.source_offset
    return (f"{record.topic}[{record.partition}]@{record.offset} ({record.reason}, from "
            f"{source_name(record)}@{'?' if offset is None else offset})")


def dry_run(records: Iterable[DeadLetter], to_topic: str, max_replays: int,
            out: TextIO) -> ReplayResult:
    """List what a replay would send and skip; send nothing."""
    result = ReplayResult(to_topic)
    for record in records:
        if record.replay_count >= max_replays:
            result.skipped += 1
            print(f"skip {_describe(record)}: replay.count {record.replay_count} "
                  f"reached --max-replays {max_replays}", file=out)
            continue
        result.sent += 1
        print(f"would send {_describe(record)} to {to_topic} with replay.count="
              f"{record.replay_count + 1}", file=out)
    return result


def _produce(producer: Producer, topic: str, record: DeadLetter) -> None:
    headers: list[tuple[str, str | bytes | None]] = list(record.replay_headers())
    while True:
        try:
            producer.produce(topic, record.value, record.key, headers=headers)
            return
        except BufferError:  # local queue full: serve deliveries, then retry
            producer.poll(0.05)


def replay(records: Iterable[DeadLetter], settings: Settings, to_topic: str,
           max_replays: int) -> ReplayResult:
    """Send every record under the limit to ``to_topic``; every delivery confirmed."""
    result = ReplayResult(to_topic)
    producer = Producer({**producer_config(settings), "on_delivery": result.on_delivery})
    try:
        for record in records:
            if record.replay_count >= max_replays:
                result.skipped += 1
                continue
            _produce(producer, to_topic, record)
            producer.poll(0)
    finally:
        unconfirmed = producer.flush()
    if unconfirmed:
        result.failed += unconfirmed
        result.first_error = result.first_error or f"{unconfirmed} records never confirmed"
    return result
