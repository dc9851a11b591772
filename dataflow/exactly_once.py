"""Exactly-once mode: where each input partition resumes, so that its outputs, its clock
and the window shards agree with the last committed transactions (docs/exactly-once.md).

Kafka holds all of the job's state in this mode, in transactions:

- each input partition's outputs (processed records, dead letters, late records) and
  its offset are committed together to CONSUMER_GROUP, the offset's metadata holding
  the partition's clock and where its exactly-once processing began (``first``);
- each group of window shards commits its count records together with its state in
  STATE_TOPIC (``dataflow.changelog``), which records, per input partition, the last
  batch applied (``through``) and the partition's clock after it.

The two kinds of transaction commit independently, so at a restart a shard may have
applied a partition's batches beyond the partition's committed offset, or not as far.
``prepare`` reads both and gives each partition a ``Resume``: read again from the
lowest point any shard or the partition itself stands at, with the clock at that
point; batches whose outputs are committed already are marked replay (their outputs
are not written again); batches are cut where a shard stands, and each shard applies
only the batches past its point. Bytewax's recovery state, if any, is not used.
"""

from __future__ import annotations

import json

import msgspec
from confluent_kafka import Consumer, KafkaException, TopicPartition

from dataflow import changelog, metrics, transactions
from dataflow.errors import PipelineError
from dataflow.event_time import ACTIVE, NO_TIME, ClockState
from dataflow.kafka_config import consumer_config
from dataflow.logs import get_logger
from dataflow.settings import Settings
from dataflow.shards import SHARD_KEYS, SHARD_SINK_NAMES, ShardState

log = get_logger(__name__)
COMMITTED_TIMEOUT_S = 30.0


class Resume(msgspec.Struct, frozen=True):
    """Where one input partition starts again, and what of it is done already."""

    start: int  # the offset to read from
    clock: ClockState  # the partition's clock at ``start``
    committed: int  # the outputs of every record below it are committed
    boundaries: tuple[int, ...]  # offsets no batch may straddle (where shards stand)
    first: int  # where its exactly-once processing began


def metadata(first: int, newest: int, state: str) -> str:
    """The committed offset's metadata: where processing began and the clock."""
    return json.dumps({"first": first, "newest": newest, "state": state},
                      separators=(",", ":"))


def read_metadata(text: str | None) -> tuple[int, int, str] | None:
    """(first, newest, state) from a committed offset's metadata; None if not ours."""
    try:
        doc = json.loads(text or "")
        return int(doc["first"]), int(doc["newest"]), str(doc["state"])
    except (ValueError, TypeError, KeyError):
        return None


def resume(partition: int, committed: int, saved: str | None,
           states: dict[str, ShardState]) -> Resume | None:
    """Where ``partition`` starts again; None when it never committed (a fresh start)."""
    stand = changelog.resume_points(states, SHARD_KEYS, partition)
    if committed < 0:
        if stand.lowest is not None:
            log.warning("exactly_once_shards_without_offset", partition=partition,
                        hint="the partition's first commit precedes its first output")
        return None
    meta = read_metadata(saved)
    first = meta[0] if meta is not None else committed
    if meta is None or stand.missing:
        # Not begun in this mode, or a shard has nothing of it: from its beginning.
        start, clock = first, ClockState(NO_TIME, ACTIVE)
    elif stand.lowest is not None and stand.lowest[0] < committed:
        start, clock = stand.lowest[0], ClockState(stand.lowest[1], stand.lowest[2])
    else:
        start, clock = committed, ClockState(meta[1], meta[2])
    boundaries = tuple(b for b in sorted({*stand.boundaries, committed}) if b > start)
    return Resume(start, clock, committed, boundaries, first)


class Plan(msgspec.Struct):
    """What a process of the job needs to start in exactly-once mode."""

    states: dict[str, ShardState]
    resumes: dict[int, Resume]
    firsts: dict[int, int] = msgspec.field(default_factory=dict)  # set as partitions open

    def first(self, partition: int) -> int:
        """Where ``partition``'s exactly-once processing began (for the offset metadata)."""
        return self.firsts[partition]


def prepare(settings: Settings, partitions: list[int]) -> Plan:
    """Read STATE_TOPIC and CONSUMER_GROUP's offsets; a Resume for every partition that
    committed before (PipelineError when Kafka cannot tell)."""
    topic = changelog.ensure_topic(settings)
    processes, _workers = metrics.cluster_shape()
    transactions.fence(settings, [*(f"p{p}" for p in partitions), *SHARD_SINK_NAMES],
                       keep=processes == 1)
    states = changelog.read_states(settings, topic)
    # The last committed offsets, not waiting for a pending transaction's (none is left
    # after the fencing; read_uncommitted does not ask the broker for stable offsets).
    consumer = Consumer({**consumer_config(settings), "isolation.level": "read_uncommitted"})
    try:
        committed = consumer.committed(
            [TopicPartition(settings.input_topic, p) for p in partitions],
            timeout=COMMITTED_TIMEOUT_S)
    except KafkaException as exc:
        msg = (f"cannot read the committed offsets of CONSUMER_GROUP "
               f"{settings.consumer_group!r}: {exc}")
        raise PipelineError(msg) from exc
    finally:
        consumer.close()
    resumes = {}
    for tp in committed:
        found = resume(tp.partition, tp.offset, tp.metadata, states)
        if found is not None:
            resumes[tp.partition] = found
            log.info("exactly_once_resume", partition=tp.partition, start=found.start,
                     committed=found.committed, replay=max(0, found.committed - found.start))
    firsts = {p: r.first for p, r in resumes.items()}
    return Plan(states, resumes, firsts)
