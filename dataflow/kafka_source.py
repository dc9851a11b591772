"""Kafka plumbing of the source: one consumer per input partition, assigned directly.

``PartitionReader`` reads one partition from a concrete offset and knows where
it is: its position (always a real offset, so a snapshot never saves "end"),
the end offset of a ``STOP_AT_END`` run, whether it is caught up with what can
be read, and its lag. It resumes from a saved offset, or without one from
``STARTING_OFFSET`` (earliest, latest, or the consumer group's committed
offset). ``commit`` stores a fully written position in ``CONSUMER_GROUP`` for
lag tools and ``STARTING_OFFSET=committed``.

Caught up and lag count what can be read. The consumer reads committed records
only (librdkafka's default ``isolation.level``): transaction markers and aborted
records never come out as messages, but the consumer's position moves past them,
and the reader's with it. The records of a transaction still open cannot be read
until it commits, yet the log end the consumer caches (the high watermark, read
without a broker round trip) counts them; so a reader short of it with nothing
to read asks for the last stable offset (``StableEnd``) and is caught up there,
with lag 0: an open transaction is a producer that has not delivered yet.

A position retention deleted, saved (seen at open) or reached while reading (the
job fell behind), goes on at the oldest record left, with an ``offset_expired``
warning and ``login_records_expired_total``: the consumer reports it as an error
(``auto.offset.reset=error``) instead of moving on in silence. A position past
the log end (a re-created topic, a truncated log) goes on at the log start.
Never at the end.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from confluent_kafka import (
    Consumer,
    IsolationLevel,
    KafkaError,
    KafkaException,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from dataflow import metrics
from dataflow.errors import MissingTopicError, SourceError
from dataflow.kafka_config import admin_config, consumer_config
from dataflow.logs import get_logger
from dataflow.schemas import KafkaRecord
from dataflow.settings import Settings

log = get_logger(__name__)
_FATAL_CODES = frozenset({KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_PARTITION,
                          KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError._AUTHENTICATION})
METADATA_TIMEOUT_S = 10.0
# How often a reader stopped short of the high watermark asks for the last stable offset.
STABLE_END_EVERY_S = 1.0


def list_partitions(settings: Settings, topic: str,
                    admin: AdminClient | None = None) -> list[int]:
    """Partition ids of a topic; MissingTopicError when it does not exist, SourceError when
    it cannot be read (Kafka unreachable, not authorised). Pass ``admin`` to reuse a client."""
    admin = admin or AdminClient(admin_config(settings))
    try:
        metadata = admin.list_topics(topic, timeout=METADATA_TIMEOUT_S)
    except Exception as exc:  # KafkaException: transport, timeout
        msg = f"cannot read metadata of topic {topic!r} from {settings.bootstrap_servers}: {exc}"
        raise SourceError(msg) from exc
    info = metadata.topics.get(topic)
    if info is None or (info.error is not None
                        and info.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
        msg = f"topic {topic!r} does not exist on {settings.bootstrap_servers}"
        raise MissingTopicError(msg)
    if info.error is not None or not info.partitions:
        reason = info.error.str() if info.error is not None else "it has no partitions"
        msg = f"topic {topic!r} on {settings.bootstrap_servers} cannot be read: {reason}"
        raise SourceError(msg)
    return sorted(info.partitions)


def describe_partitions(settings: Settings,
                        topics: Sequence[str]) -> tuple[dict[str, list[int]], list[str]]:
    """Partition ids of each topic and the topics that do not exist, from one metadata
    request; SourceError when one cannot be read (Kafka unreachable, not authorised).

    One ``describe_topics`` instead of a ``list_topics`` per topic: after its first
    request librdkafka swaps the bootstrap connection for the broker's own, and each
    later ``list_topics`` may wait 50 ms for it (reconnect.backoff.ms / 2; measured).
    """
    wanted = list(dict.fromkeys(topics))
    where = settings.bootstrap_servers
    admin = AdminClient(admin_config(settings))
    try:
        futures = admin.describe_topics(TopicCollection(wanted),
                                        request_timeout=METADATA_TIMEOUT_S)
    except Exception as exc:  # KafkaException, ValueError: a request that cannot be made
        msg = f"cannot read metadata of topic {wanted[0]!r} from {where}: {exc}"
        raise SourceError(msg) from exc
    found: dict[str, list[int]] = {}
    missing: list[str] = []
    for topic in wanted:
        try:
            found[topic] = sorted(p.id for p in futures[topic].result().partitions)
        except KafkaException as exc:
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if error is None or error.code() < 0:  # local: transport, timeout, authentication
                msg = f"cannot read metadata of topic {topic!r} from {where}: {exc}"
                raise SourceError(msg) from exc
            if error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:  # e.g. not authorised
                msg = f"topic {topic!r} on {where} cannot be read: {error.str()}"
                raise SourceError(msg) from exc
            missing.append(topic)
        else:
            if not found[topic]:
                msg = f"topic {topic!r} on {where} cannot be read: it has no partitions"
                raise SourceError(msg)
    return found, missing


def after_out_of_range(position: int, low: int, high: int) -> tuple[int, int]:
    """Where to read on after the broker refused ``position`` as out of range, given the
    partition's log start and end now, and how many records retention deleted under it.

    Below the log start: the oldest record left, the gap expired. Past the log end (the
    topic was re-created, or its log truncated): the log start, so nothing is skipped.
    Within both (the log changed since): the same position again."""
    if position < low:
        return low, low - position
    if position > high:
        return low, 0
    return position, 0


class StableEnd:
    """The last stable offset of one partition (the first offset of the oldest transaction
    still open: a read_committed consumer reads no further), asked of the broker without
    waiting, at most every ``every`` seconds. An answer holds while the reader stays at the
    position it was asked for: once it moves, records came and the answer is old."""

    def __init__(self, ask: Callable[[], Future[Any]], every: float = STABLE_END_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ask = ask  # a future of the broker's answer, a ListOffsetsResultInfo
        self._every = every
        self._clock = clock
        self._asked_at = -math.inf
        self._pending: tuple[int, Future[Any]] | None = None
        self._answer: tuple[int, int] | None = None  # (position asked for, stable offset)

    def end(self, position: int, high: int) -> int:
        """The end of what a reader at ``position``, with nothing to read although the high
        watermark is ``high``, can read: the last stable offset once the broker answered for
        this position, ``high`` until then."""
        if self._pending is not None and self._pending[1].done():
            (asked, future), self._pending = self._pending, None
            if future.exception() is None:
                self._answer = (asked, int(future.result().offset))
            else:
                log.debug("stable_offset_unknown", error=str(future.exception()))
        now = self._clock()
        if self._pending is None and now - self._asked_at >= self._every:
            self._asked_at = now
            try:
                self._pending = (position, self._ask())
            except (KafkaException, ValueError) as exc:  # a request that cannot be made
                log.debug("stable_offset_unknown", error=str(exc))
        if self._answer is not None and self._answer[0] == position:
            return self._answer[1]
        return high


@functools.cache
def _admin(config: tuple[tuple[str, Any], ...]) -> AdminClient:
    """One admin client per process for the readers' last stable offset questions."""
    return AdminClient(dict(config))


class PartitionReader:
    """Reads one partition of INPUT_TOPIC in batches."""

    def __init__(self, settings: Settings, partition: int, resume: int | None) -> None:
        self._topic = settings.input_topic
        self._partition = partition
        self._tp = TopicPartition(self._topic, partition)
        self._batch_size = settings.source_batch_size
        self._label = metrics.LAG.labels(str(partition))
        config = consumer_config(settings)
        self._consumer = Consumer(config)
        # read_uncommitted reads up to the high watermark: no stable offset to ask for.
        committed_only = str(config.get("isolation.level", "read_committed")).lower() \
            == "read_committed"
        self._admin_config = tuple(sorted(admin_config(settings).items()))
        self._stable = StableEnd(self._ask_stable_end) if committed_only else None
        low, high = self._watermarks()
        self.position = self._start(settings.starting_offset, resume, low, high)
        self.start = self.position  # where this run began: progress toward ``end``
        self.end = high if settings.stop_at_end else None
        metrics.track_input(self)
        self.done = self.end is not None and self.position >= self.end
        self._log_end = -1
        self._consumer.assign([TopicPartition(self._topic, partition, self.position)])

    def _watermarks(self) -> tuple[int, int]:
        """Log start and end from the broker (the end is the last stable offset under
        read_committed)."""
        try:
            low, high = self._consumer.get_watermark_offsets(self._tp, timeout=METADATA_TIMEOUT_S)
        except KafkaException as exc:
            msg = (f"cannot read the offsets of topic {self._topic!r} partition "
                   f"{self._partition}: {exc}")
            raise SourceError(msg) from exc
        return int(low), int(high)

    def _start(self, starting: str, resume: int | None, low: int, high: int) -> int:
        """A concrete offset to read from: saved, committed, earliest or latest."""
        if resume is None and starting == "committed":
            committed = self._consumer.committed([self._tp], timeout=METADATA_TIMEOUT_S)[0]
            resume = committed.offset if committed.offset >= 0 else None
        if resume is None:
            return high if starting == "latest" else low
        if resume < low:
            self._expired(resume, low)
            return low
        return resume

    def read(self) -> list[KafkaRecord]:
        """The next records (possibly none); marks ``done`` at the end of a finite run."""
        batch = self._consumer.consume(self._batch_size, 0)
        good: list[KafkaRecord] = [m for m in batch if m.error() is None]
        if good:
            self.position = good[-1].offset() + 1  # type: ignore[operator]  # set when consumed
            metrics.CONSUMED.inc(len(good))
            metrics.mark_first_read()
        if len(good) != len(batch):
            self._handle_errors([m for m in batch if m.error() is not None])
        elif not good:
            # Transaction markers, aborted records and compacted gaps never come out as
            # messages, but the consumer's position moves past them: without this, such a
            # partition would never be caught up nor reach the end of a finite run.
            position = self._consumer.position([self._tp])[0].offset
            self.position = max(self.position, position)
        if self.end is not None and self.position >= self.end:
            self.done = True
        self._update_lag(bool(good))
        return good

    def _update_lag(self, got_records: bool) -> None:
        # The log end as of the consumer's last fetch (no broker round trip): the high
        # watermark. A reader short of it with nothing to read may be at a transaction
        # still open, whose records cannot be read yet: the last stable offset is the end.
        high = int(self._consumer.get_watermark_offsets(self._tp, cached=True)[1])
        if high < 0:  # no fetch answered yet
            return
        if got_records or self.position >= high or self._stable is None:
            self._log_end = high
        else:
            self._log_end = self._stable.end(self.position, high)
        self._label.set(max(0, self._log_end - self.position))

    def _ask_stable_end(self) -> Future[Any]:
        tp = self._tp
        return _admin(self._admin_config).list_offsets(
            {tp: OffsetSpec.latest()}, isolation_level=IsolationLevel.READ_COMMITTED,
            request_timeout=METADATA_TIMEOUT_S)[tp]

    def caught_up(self) -> bool:
        """Whether the position has reached the end of what can be read: the log end the
        consumer last saw, or the last stable offset while a transaction is open."""
        return 0 <= self._log_end <= self.position

    def commit(self, offset: int, asynchronous: bool = True) -> None:
        """Store a fully written position in CONSUMER_GROUP (best effort: it is for lag
        tools and STARTING_OFFSET=committed; recovery snapshots are the truth)."""
        offsets = [TopicPartition(self._topic, self._partition, offset)]
        try:
            if asynchronous:
                self._consumer.commit(offsets=offsets, asynchronous=True)
            else:
                self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            log.warning("commit_failed", topic=self._topic, partition=self._partition,
                        offset=offset, error=str(exc))

    def _handle_errors(self, failed: list[KafkaRecord]) -> None:
        for message in failed:
            error = message.error()  # type: ignore[attr-defined]
            if error.code() == KafkaError._AUTO_OFFSET_RESET:
                self._out_of_range(error.str())
                continue
            where = f"topic {self._topic!r} partition {self._partition} offset {self.position}"
            if error.fatal() or error.code() in _FATAL_CODES:
                msg = f"cannot consume {where}: {error.str()}"
                raise SourceError(msg)
            log.warning("consumer_error", topic=self._topic, partition=self._partition,
                        error=error.str())

    def _out_of_range(self, reason: str) -> None:
        """The broker has no record at the position (every record before it was returned):
        go on where ``after_out_of_range`` says, reporting what was skipped."""
        try:
            low, high = self._watermarks()  # no fetch in flight now: answered at once
        except SourceError as exc:  # the broker is away: try the same position again
            reason = f"{reason}; {exc}"
            low = high = self.position
        at, lost = after_out_of_range(self.position, low, high)
        if lost:
            self._expired(self.position, at)
        elif at != self.position:
            log.warning("offset_out_of_range", topic=self._topic, partition=self._partition,
                        from_offset=self.position, to_offset=at, log_end=high,
                        hint="the log ends before this offset (the topic was re-created, "
                             "or its log truncated): reading it from its start")
        else:
            log.warning("consumer_error", topic=self._topic, partition=self._partition,
                        error=reason, hint="reading the same offset again")
        self.position = at
        self._consumer.assign([TopicPartition(self._topic, self._partition, at)])

    def _expired(self, position: int, low: int) -> None:
        lost = low - position
        log.warning("offset_expired", topic=self._topic, partition=self._partition,
                    from_offset=position, to_offset=low, records_lost=lost,
                    hint="retention deleted these records before the job read them")
        metrics.EXPIRED.inc(lost)

    def close(self) -> None:
        self._consumer.close()
