"""Send dead letters back to a topic, byte for byte, with a replay counter.

Each record goes out with its original key and value untouched and its
original headers minus every failure-context header (``dlq.*``,
``__streams.errors.*``, ``__connect.errors.*``, ``kafka_dlt-*``);
``replay.count`` is set to one more than the record carried. Records that
reached ``max_replays`` are skipped, so a record that keeps failing cannot
loop for ever. A second copy of a dead letter (same source topic, partition
and offset) is skipped within one run. With ``to_original`` each record goes
to the topic its headers name; one without a usable topic is not sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from dataflow.dlq.records import DeadLetter, DlqError
from dataflow.dlq.rendering import escape_text
from dataflow.dlq.summary import source_name
from dataflow.errors import MissingTopicError, SourceError
from dataflow.kafka_config import producer_config, transactional_config
from dataflow.kafka_source import list_partitions
from dataflow.settings import Settings
from dataflow.transactions import transactional_id

TRANSACTION_TIMEOUT_S = 60.0  # exactly-once: init and commit of the replay's transaction


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    """Where records go and which are skipped."""

    to_topic: str | None  # None: each record to its original topic
    dlq_topic: str
    max_replays: int


@dataclass(slots=True)
class ReplayResult:
    """What a replay did (or, in a dry run, would do)."""

    to_topic: str | None
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    duplicates: int = 0
    unroutable: int = 0
    first_error: str | None = None
    by_topic: dict[str, int] = field(default_factory=dict)

    def on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        """Delivery callback: count confirmations and failures."""
        if err is None:
            self.sent += 1
            topic = str(msg.topic())
            self.by_topic[topic] = self.by_topic.get(topic, 0) + 1
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
    text = (f"{record.topic}[{record.partition}]@{record.offset} ({record.reason}, from "
            f"{source_name(record)}@{'?' if offset is None else offset})")
    return escape_text(text)  # the reason and the topic come from headers


class _Router:
    """Destination of each record; each original topic is checked once."""

    def __init__(self, plan: ReplayPlan, check: Callable[[str], None]) -> None:
        self._plan, self._check = plan, check
        self._refused: dict[str, str] = {}
        self._checked: set[str] = set()

    def destination(self, record: DeadLetter) -> tuple[str | None, str]:
        """(topic, "") or (None, why the record cannot be sent)."""
        if self._plan.to_topic is not None:
            return self._plan.to_topic, ""
        topic = record.source_topic
        if not topic:
            return None, "no original topic in its headers"
        if topic not in self._checked and topic not in self._refused:
            try:
                self._check(topic)
                self._checked.add(topic)
            except DlqError as exc:
                self._refused[topic] = str(exc)
        return (None, self._refused[topic]) if topic in self._refused else (topic, "")


def _walk(records: Iterable[DeadLetter], plan: ReplayPlan, router: _Router,
          result: ReplayResult, hold: Callable[[DeadLetter], None],
          out: TextIO | None) -> Iterable[tuple[str, DeadLetter]]:
    """Records to send with their destination; counts and (dry run) lists the rest."""
    seen: set[tuple[str, int, int]] = set()
    for record in records:
        if record.replay_count >= plan.max_replays:
            result.skipped += 1
            if out:
                print(f"skip {_describe(record)}: replay.count {record.replay_count} "
                      f"reached --max-replays {plan.max_replays}", file=out)
            continue
        key = record.source_key
        if key is not None and key in seen:
            result.duplicates += 1
            if out:
                print(f"skip {_describe(record)}: a copy of a dead letter already listed",
                      file=out)
            continue
        topic, why = router.destination(record)
        if topic is None:
            result.unroutable += 1
            hold(record)
            if out:
                print(f"cannot send {_describe(record)}: {escape_text(why)}", file=out)
            continue
        if key is not None:
            seen.add(key)
        yield topic, record


def dry_run(records: Iterable[DeadLetter], plan: ReplayPlan, out: TextIO,
            check: Callable[[str], None] = lambda _topic: None,
            hold: Callable[[DeadLetter], None] = lambda _record: None) -> ReplayResult:
    """List what a replay would send and skip; send nothing."""
    result = ReplayResult(plan.to_topic)
    for topic, record in _walk(records, plan, _Router(plan, check), result, hold, out):
        result.sent += 1
        result.by_topic[topic] = result.by_topic.get(topic, 0) + 1
        print(f"would send {_describe(record)} to {escape_text(topic)} with replay.count="
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


def replay(records: Iterable[DeadLetter], settings: Settings, plan: ReplayPlan,
           hold: Callable[[DeadLetter], None] = lambda _record: None) -> ReplayResult:
    """Send every record under the limit to its destination; every delivery confirmed.

    With PROCESSING_GUARANTEE=exactly-once the replay is one Kafka transaction: consumers
    reading committed data see all of it or, if anything fails, none of it."""
    result = ReplayResult(plan.to_topic)
    transactional = settings.exactly_once
    base = transactional_config(settings) if transactional else producer_config(settings)
    config: dict[str, Any] = {**base, "on_delivery": result.on_delivery}
    if transactional:
        config["transactional.id"] = transactional_id(settings, f"dlq-replay/{plan.dlq_topic}")
    producer = Producer(config)
    router = _Router(plan, lambda topic: check_destination(settings, topic, plan.dlq_topic))
    if transactional:
        producer.init_transactions(TRANSACTION_TIMEOUT_S)
        producer.begin_transaction()
    try:
        for topic, record in _walk(records, plan, router, result, hold, None):
            _produce(producer, topic, record)
            producer.poll(0)
    finally:
        unconfirmed = producer.flush()
    if transactional:
        _end_transaction(producer, result)
    if unconfirmed:
        result.failed += unconfirmed
        result.first_error = result.first_error or f"{unconfirmed} records never confirmed"
    return result


def _end_transaction(producer: Producer, result: ReplayResult) -> None:
    """Commit the replay's transaction; abort it if any write failed (then none is seen)."""
    try:
        if result.failed:
            producer.abort_transaction(TRANSACTION_TIMEOUT_S)
        else:
            producer.commit_transaction(TRANSACTION_TIMEOUT_S)
    except KafkaException as exc:
        result.failed += 1
        result.first_error = result.first_error or f"transaction not committed: {exc}"
