"""Creating the topics that are missing: one mechanism for every tool that needs it.

The local broker's ``create-topics``, the generator and the exactly-once state topic
(``dataflow.changelog``) call ``ensure_topics``
with a full admin configuration, so security settings (``KAFKA_CONFIG_*``) apply.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from dataflow.errors import TopicError, kafka_reason


class TopicReport(msgspec.Struct, frozen=True):
    """Which of the asked topics were created and which existed already."""

    created: tuple[str, ...]
    existed: tuple[str, ...]


def ensure_topics(config: Mapping[str, Any], names: Iterable[str], partitions: int,
                  replication: int = -1, timeout: float = 30.0,
                  topic_config: Mapping[str, str] | None = None) -> TopicReport:
    """Create each topic in ``names`` that does not exist yet; wait until all are there.

    ``replication`` -1 takes the broker's default; ``topic_config`` (e.g. a compacted
    cleanup policy) applies to the topics created.
    """
    admin = AdminClient(dict(config))
    wanted = list(dict.fromkeys(names))
    try:
        present = set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        msg = f"no Kafka broker answered at {config.get('bootstrap.servers')}: {kafka_reason(exc)}"
        raise TopicError(msg) from exc
    existed = [name for name in wanted if name in present]
    created: list[str] = []
    missing = [name for name in wanted if name not in present]
    if missing:
        futures = admin.create_topics([NewTopic(n, partitions, replication,
                                                config=dict(topic_config or {}))
                                       for n in missing], request_timeout=timeout)
        for name, future in futures.items():
            try:
                future.result(timeout=timeout)
                created.append(name)
            except KafkaException as exc:
                if exc.args and isinstance(exc.args[0], KafkaError) \
                        and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    existed.append(name)  # created meanwhile by someone else
                    continue
                msg = f"could not create topic {name!r}: {kafka_reason(exc)}"
                raise TopicError(msg) from exc
    _wait_visible(admin, created, timeout)
    return TopicReport(tuple(n for n in wanted if n in created),
                       tuple(n for n in wanted if n in existed))


def _wait_visible(admin: AdminClient, names: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = set(names)
    while pending and time.monotonic() < deadline:
        try:
            topics = admin.list_topics(timeout=2).topics
        except KafkaException:
            topics = {}
        pending = {n for n in pending if n not in topics or topics[n].error is not None}
        if pending:
            time.sleep(0.1)
    if pending:
        msg = f"topic(s) {', '.join(sorted(pending))} did not appear within {timeout:.0f} s"
        raise TopicError(msg)
