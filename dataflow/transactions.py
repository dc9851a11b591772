"""A transactional Kafka producer for one sink partition, in exactly-once mode.

``TransactionalWriter`` owns one ``transactional.id`` (an input partition's, or a
group of window shards'; ``dataflow.kafka_sink``). Its constructor starts
``init_transactions`` in the background, which fences any older producer with the
same id (a process of this job that is still running somewhere, or the one a crash
left behind) and aborts what that producer left open. A transaction begins with the
first record written after a commit and ends with ``commit``, which may carry input
offsets (``send_offsets_to_transaction``: committed to CONSUMER_GROUP only if the
records are). A commit runs in the background, so the commits of a worker's sink
partitions overlap with each other and with the next epoch's work; the next
transaction of the same producer begins only once it is done. Any failure (a record
Kafka refused, a commit that timed out, being fenced) raises ``DeliveryError`` and
stops the job: its transaction is not committed, so consumers reading committed data
never see its records, and the restart reads their input again.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter as Tally
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from dataflow import metrics
from dataflow.errors import DeliveryError, kafka_reason
from dataflow.kafka_config import transactional_config
from dataflow.kafka_writer import produce_each
from dataflow.logs import get_logger
from dataflow.oversize import DEFAULT_MESSAGE_MAX_BYTES, truncate_dead_letter
from dataflow.schemas import OutRecord
from dataflow.settings import Settings

log = get_logger(__name__)
# Fault injection for the crash tests (tests/integration/test_exactly_once_kafka.py): a
# pause between sending a transaction's offsets and committing it, announced in the log,
# so a test can kill the process in the middle of a commit. Unset in production.
_PAUSE_IN_COMMIT_S = float(os.environ.get("DATAFLOW_FAULT_PAUSE_IN_COMMIT_S") or 0)
_OPENING = ThreadPoolExecutor(max_workers=8, thread_name_prefix="init-transactions")
_COMMITTING = ThreadPoolExecutor(max_workers=8, thread_name_prefix="commit-transactions")
_FENCED: dict[str, TransactionalWriter] = {}  # by transactional.id: fenced, kept for the sinks


class TransactionalWriter:
    """One transactional.id's producer: records in a transaction, committed together."""

    def __init__(self, config: dict[str, Any], transactional_id: str, timeout_s: float,
                 dlq_topic: str) -> None:
        self._id = transactional_id
        self._timeout_s = timeout_s
        self._dlq_topic = dlq_topic
        self._max_bytes = int(config.get("message.max.bytes", DEFAULT_MESSAGE_MAX_BYTES))
        self._failures: list[str] = []
        self._open = False
        self._written: Tally[str] = Tally()  # records per topic in the open transaction
        self._committing: Future[None] | None = None
        self._producer = Producer({**config, "transactional.id": transactional_id,
                                   "on_delivery": self._on_delivery,
                                   "delivery.report.only.error": True})
        self._ready: Future[None] = _OPENING.submit(self._init)

    def _init(self) -> None:
        began = time.monotonic()
        self._producer.init_transactions(self._timeout_s)
        log.debug("transactions_ready", transactional_id=self._id,
                  seconds=round(time.monotonic() - began, 3))

    def _on_delivery(self, error: KafkaError | None, message: Any) -> None:
        if error is not None and len(self._failures) < 5:
            self._failures.append(f"write to topic {message.topic()!r} failed: {error.str()}")

    def _settle(self) -> None:
        """Wait for the commit in flight, if any (raises what it raised)."""
        committing, self._committing = self._committing, None
        if committing is not None:
            committing.result()

    def _begin(self) -> None:
        if self._open:
            return
        self._settle()
        try:
            self._ready.result()
            self._producer.begin_transaction()
        except KafkaException as exc:
            what = "could not begin a transaction"
            raise self._error(what, exc) from exc
        self._open = True

    def write(self, records: Sequence[OutRecord]) -> None:
        """Produce ``records`` in the open transaction (one begins if none is open)."""
        if not records:
            return
        self._begin()
        self._written[records[0][0]] += len(records)
        produce_each(self._producer, records, self._produce_patiently)

    def _produce_patiently(self, record: OutRecord) -> None:
        produce_patiently(self._producer, record, self._dlq_topic, self._max_bytes)

    def ready(self) -> None:
        """Wait until ``init_transactions`` is done (raises what it raised)."""
        try:
            self._ready.result()
        except KafkaException as exc:
            what = "could not be initialised"
            raise self._error(what, exc) from exc

    @property
    def open(self) -> bool:
        """Whether a transaction is open (records were written since the last commit)."""
        return self._open

    def commit(self, offsets: list[TopicPartition] | None = None, group: Any = None) -> None:
        """Commit the open transaction (beginning one for offsets alone), with ``offsets``
        of consumer group ``group`` (``consumer_group_metadata()``) when given, in the
        background; a failure is raised by the next call."""
        if not self._open and not offsets:
            self._settle()
            return
        self._begin()
        written, self._written = self._written, Tally()
        self._open = False
        self._committing = _COMMITTING.submit(self._commit, offsets, group, written)

    def _commit(self, offsets: list[TopicPartition] | None, group: Any,
                written: Tally[str]) -> None:
        try:
            if offsets:
                self._producer.send_offsets_to_transaction(offsets, group, self._timeout_s)
            if _PAUSE_IN_COMMIT_S:
                log.warning("fault_pause_in_commit", transactional_id=self._id,
                            seconds=_PAUSE_IN_COMMIT_S)
                time.sleep(_PAUSE_IN_COMMIT_S)
            self._producer.commit_transaction(self._timeout_s)
            log.debug("transaction_committed", transactional_id=self._id)
        except KafkaException as exc:
            what = "could not commit its transaction"
            raise self._error(what, exc) from exc
        if self._failures:  # cannot happen after a successful commit; never ignored
            raise DeliveryError("; ".join(self._failures))
        for topic, n in written.items():
            metrics.PRODUCED.labels(topic).inc(n)

    def flush(self) -> None:
        """Wait until the last commit is done (raises what it raised)."""
        self._settle()

    def _error(self, what: str, exc: KafkaException) -> DeliveryError:
        """The failure as one line; the transaction is aborted when it can be."""
        error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        if error is not None and error.txn_requires_abort():
            # The job stops anyway; if this fails the broker aborts it after
            # transaction.timeout.ms.
            with contextlib.suppress(KafkaException):
                self._producer.abort_transaction(self._timeout_s)
        details = "; ".join(self._failures)
        return DeliveryError(
            f"transactional.id {self._id!r} {what}, stopping so nothing is written twice or "
            f"lost (a restart reads its input again): {kafka_reason(exc)}"
            + (f"; {details}" if details else ""))

    def close(self) -> None:
        """Wait for the commit in flight, abort a transaction still open (it was not
        complete), then close. A failure is logged: the job is stopping already."""
        try:
            self._settle()
        except DeliveryError as exc:
            log.error("transaction_not_committed_at_stop", error=str(exc))
        if self._open:
            try:
                self._producer.abort_transaction(self._timeout_s)
            except KafkaException as exc:
                log.warning("transaction_not_aborted", transactional_id=self._id,
                            error=kafka_reason(exc))
            self._open = False


def produce_patiently(producer: Producer, record: OutRecord, dlq_topic: str,
                      max_bytes: int) -> None:
    """produce() once the local queue has room; a dead letter too large is cut to fit
    (``dataflow.oversize``), once; any other refusal is a ``DeliveryError``."""
    topic, key, value, headers, timestamp = record
    cut = False
    while True:
        try:
            producer.produce(topic, value, key, headers=headers,  # type: ignore[arg-type]
                             timestamp=timestamp or 0)
            return
        except BufferError:
            producer.poll(0.001)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            too_large = (isinstance(error, KafkaError)
                         and error.code() == KafkaError.MSG_SIZE_TOO_LARGE)
            if topic != dlq_topic or not too_large or cut:
                msg = f"write to topic {topic!r} failed: {kafka_reason(exc)}"
                raise DeliveryError(msg) from exc
            key, value, headers = truncate_dead_letter(key, value, headers, max_bytes)
            cut = True
            log.warning("dead_letter_truncated", topic=topic, limit_bytes=max_bytes)


def transactional_id(settings: Settings, name: str) -> str:
    """The transactional.id of one sink partition (``p<n>`` for input partition n, or a
    group of shards): stable across restarts, so a restarted job fences what is left."""
    return f"login-dataflow/{settings.consumer_group}/{settings.input_topic}/{name}"


def writer(settings: Settings, name: str) -> TransactionalWriter:
    """The transactional producer of one sink partition: the one ``fence`` kept, if any."""
    kept = _FENCED.pop(transactional_id(settings, name), None)
    if kept is not None:
        return kept
    return TransactionalWriter(transactional_config(settings), transactional_id(settings, name),
                               settings.delivery_timeout_ms / 1000 + 10, settings.dlq_topic)


def fence(settings: Settings, names: Sequence[str], keep: bool = False) -> None:
    """Initialise the transactional.id of every sink partition once: any producer left from
    before (a crashed or still running process) is fenced, and any transaction it left open
    is aborted, so its pending offsets and state records stop holding back readers. Done at
    start-up, before any process of the cluster writes. With ``keep`` (a job of one process,
    which builds every sink partition itself) the producers are kept for the sink
    partitions, which then start writing at once instead of initialising again (about a
    second of the first epoch: the first writes waited for 12 ``init_transactions``).
    Otherwise they are let go: every process fences every id, so a kept one could be
    fenced by another process's start."""
    writers = {transactional_id(settings, name): writer(settings, name) for name in names}
    for one in writers.values():
        one.ready()
    if keep:
        _FENCED.update(writers)
