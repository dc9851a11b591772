"""The window shards' state as a compacted Kafka topic, in exactly-once mode.

Each shard's changes (``dataflow.windows.ShardChange``) become records of
STATE_TOPIC, written in the same Kafka transaction as the shard's count records
(``dataflow.kafka_sink``), so the state a restart reads is exactly the state
behind the counts it wrote. Keys are JSON arrays, so a later record supersedes
an earlier one and compaction keeps the latest of each:

- ``["m", shard]``: the shard's bookkeeping (partitions, marks, the point written
  through, and per input partition the last batch applied), a msgspec JSON object;
- ``["w", shard, window_start, field, value]``: one open window's count, a JSON
  integer; a tombstone (null value) once the window is written.

``read_states`` reads the whole topic (committed records only) into a
``ShardState`` per shard; ``resume_points`` tells each input partition where the
shards stand.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec
from confluent_kafka import Consumer, KafkaError, TopicPartition

from dataflow.errors import PipelineError, TopicError
from dataflow.kafka_config import admin_config, consumer_config
from dataflow.logs import get_logger
from dataflow.schemas import OutRecord
from dataflow.settings import Settings
from dataflow.shards import ShardChange, ShardState
from dataflow.topics import ensure_topics

log = get_logger(__name__)
_KEY = msgspec.json.Encoder()
_KEY_DECODER = msgspec.json.Decoder(list)
_STATE_DECODER = msgspec.json.Decoder(ShardState)
_COUNT_DECODER = msgspec.json.Decoder(int)
READ_TIMEOUT_S = 60.0
# A compacted topic that keeps its latest record of each key, and compacts soon.
TOPIC_CONFIG = {"cleanup.policy": "compact", "segment.ms": "600000",
                "min.cleanable.dirty.ratio": "0.1"}


def records(topic: str, change: ShardChange) -> list[OutRecord]:
    """The STATE_TOPIC records of one shard change: its counts, then its bookkeeping."""
    out: list[OutRecord] = [
        (topic, _KEY.encode(["w", change.shard, start, field, value]),
         None if count is None else b"%d" % count, None, None)
        for start, field, value, count in change.counts]
    out.append((topic, _KEY.encode(["m", change.shard]), _KEY.encode(change.state), None, None))
    return out


def apply_record(states: dict[str, ShardState], key: bytes, value: bytes | None) -> None:
    """One STATE_TOPIC record into the shards' states (later records win)."""
    parts = _KEY_DECODER.decode(key)
    if parts[0] not in ("m", "w"):
        return  # not ours (written by hand?): ignored
    if parts[0] == "m":
        saved = _STATE_DECODER.decode(value) if value is not None else ShardState()
        state = states.setdefault(parts[1], ShardState())
        state.partitions, state.marks = saved.partitions, saved.marks
        state.written_through, state.applied = saved.written_through, saved.applied
        return
    _, shard, start, field, text = parts
    windows = states.setdefault(shard, ShardState()).windows
    if value is None:
        window = windows.get(start)
        if window is not None:
            window.pop((field, text), None)
            if not window:
                del windows[start]
        return
    windows.setdefault(start, {})[(field, text)] = _COUNT_DECODER.decode(value)


def ensure_topic(settings: Settings) -> str:
    """STATE_TOPIC, created compacted (one partition) when it does not exist yet."""
    topic = settings.window_state_topic
    try:
        report = ensure_topics(admin_config(settings), [topic], 1, topic_config=TOPIC_CONFIG)
    except TopicError as exc:
        msg = f"STATE_TOPIC: {exc}"
        raise PipelineError(msg) from exc
    if report.created:
        log.info("state_topic_created", topic=topic)
    return topic


def read_states(settings: Settings, topic: str) -> dict[str, ShardState]:
    """Every shard's state as the last committed transactions left it."""
    consumer = Consumer({**consumer_config(settings), "isolation.level": "read_committed",
                         "enable.partition.eof": True})
    states: dict[str, ShardState] = {}
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {}
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        pending = set(ends)
        while pending:
            message = consumer.poll(READ_TIMEOUT_S)
            if message is None:
                msg = f"STATE_TOPIC {topic!r}: no record for {READ_TIMEOUT_S:.0f} s while reading"
                raise PipelineError(msg)
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(message.partition())
                    continue
                msg = f"STATE_TOPIC {topic!r}: {error.str()}"
                raise PipelineError(msg)
            apply_record(states, message.key() or b'["-"]', message.value())
            if (message.offset() or 0) + 1 >= ends[message.partition()]:
                pending.discard(message.partition())
    finally:
        consumer.close()
    return states


class ShardsStand(msgspec.Struct, frozen=True):
    """Where the shards stand for one input partition: the lowest ``through`` any of them
    applied (with the clock after it) and every shard's, to cut a replay at."""

    lowest: tuple[int, int, str] | None
    boundaries: tuple[int, ...]
    missing: bool  # some shard never applied a batch of this partition


def resume_points(states: dict[str, ShardState], shards: Iterable[str],
                  partition: int) -> ShardsStand:
    """What the shards applied of ``partition``."""
    applied = [states.get(shard, ShardState()).applied.get(partition) for shard in shards]
    known = [entry for entry in applied if entry is not None]
    if not known:
        return ShardsStand(None, (), True)
    lowest = min(known, key=lambda entry: entry[0])
    return ShardsStand(lowest, tuple(sorted({entry[0] for entry in known})),
                       len(known) < len(applied))
