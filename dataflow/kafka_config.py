"""Kafka client configurations built from the settings, checked at start-up.

Every configuration carries ``logger``: librdkafka's own lines (``%4|...|GETPID|...``)
go through the project's logs (``dataflow.logs.kafka_logger``), at their level and
in the log format, never raw to stderr, for every client built from these. A
producer's and a consumer's lines are served by their poll()/consume()/flush(), an
admin client's by its poll() only (until then they wait in its queue).
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer

from dataflow.errors import SettingsError
from dataflow.logs import kafka_logger
from dataflow.settings import KAFKA_CONFIG_PREFIX, Settings


def _client(settings: Settings) -> dict[str, Any]:
    """What every client of the project has: the brokers, and its log lines through ours."""
    return {"bootstrap.servers": settings.bootstrap_servers, "logger": kafka_logger()}


def consumer_config(settings: Settings) -> dict[str, Any]:
    """Consumer for one assigned partition: no group management; the job commits itself."""
    return {
        **_client(settings),
        "group.id": settings.consumer_group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": False,
        "queued.max.messages.kbytes": settings.consumer_queue_kbytes,
        "fetch.wait.max.ms": 500,
        # librdkafka waits fetch.queue.backoff.ms (default 1 s) once the prefetch queue is
        # full; with a bounded queue that stalls the partition, so retry soon instead.
        "fetch.queue.backoff.ms": 10,
        **settings.kafka_config,
        # A position the broker no longer has (retention deleted it, or the log ends before
        # it) comes back as an _AUTO_OFFSET_RESET consumer error instead of librdkafka moving
        # on in silence, so the reader counts and reports what was skipped and picks where to
        # go on (never the end). Readers always assign a concrete offset, so nothing else
        # resets. After KAFKA_CONFIG_*: another value would skip records without a word.
        "auto.offset.reset": "error",
    }


def producer_config(settings: Settings) -> dict[str, Any]:
    """Idempotent producer, every write acknowledged by all in-sync replicas."""
    return {
        **_client(settings),
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "batch.num.messages": 10_000,
        "delivery.timeout.ms": settings.delivery_timeout_ms,
        **settings.kafka_config,
    }


def transactional_config(settings: Settings) -> dict[str, Any]:
    """The producer of exactly-once mode. A transaction may stay open as long as a write may
    be retried (librdkafka requires message.timeout.ms <= transaction.timeout.ms). Its
    records are seen only when the epoch's transaction commits, so lingering 100 ms
    instead of 5 costs no latency and makes fewer, larger requests: each input partition
    has a producer of its own here (a KAFKA_CONFIG_LINGER_MS still wins)."""
    return {**producer_config(settings), "linger.ms": 100,
            "transaction.timeout.ms": max(settings.delivery_timeout_ms, 60_000),
            **settings.kafka_config}


def admin_config(settings: Settings) -> dict[str, Any]:
    return {**_client(settings), **settings.kafka_config}


def check_client_configs(settings: Settings) -> None:
    """Build (and drop) a consumer and a producer so a bad property fails at start-up."""
    producer = (transactional_config(settings) if settings.exactly_once
                else producer_config(settings))
    for kind, factory, config in (
        ("consumer", Consumer, consumer_config(settings)),
        ("producer", Producer, producer),
    ):
        try:
            client = factory(config)
        except KafkaException as exc:
            msg = f"{KAFKA_CONFIG_PREFIX}*: the Kafka {kind} rejects its configuration: {exc}"
            raise SettingsError(msg) from exc
        if kind == "consumer":
            client.close()
