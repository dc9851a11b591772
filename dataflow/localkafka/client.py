"""Talk to the local broker with confluent-kafka: wait until it answers, create topics."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from dataflow.localkafka.errors import TopicError

_QUIET = logging.getLogger("dataflow.localkafka.librdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False  # connection-refused chatter while a broker starts is expected


def admin_client(bootstrap: str) -> AdminClient:
    """An admin client whose librdkafka log lines are dropped."""
    # The stubs type config values as str | int | float; librdkafka takes a logger too.
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": _QUIET,
                              "socket.connection.setup.timeout.ms": 2000}
    return AdminClient(config)


def live_brokers(admin: AdminClient, timeout: float = 2.0) -> set[int] | None:
    """Ids of the brokers in the cluster metadata, or None if no broker answered."""
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException:
        return None
    return set(metadata.brokers)


def wait_for_brokers(bootstrap: str, node_ids: Iterable[int], timeout: float,
                     still_starting: Callable[[], None]) -> bool:
    """Poll metadata until every node id is a live broker; False after ``timeout`` s.

    ``still_starting`` is called between polls; it raises to stop waiting early,
    e.g. when a broker process has exited.
    """
    wanted = set(node_ids)
    admin = admin_client(bootstrap)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        still_starting()
        brokers = live_brokers(admin, timeout=min(2.0, max(0.1, deadline - time.monotonic())))
        if brokers is not None and wanted <= brokers:
            return True
        time.sleep(0.2)
    return False


@dataclass(frozen=True, slots=True)
class TopicReport:
    """Which of the requested topics were created and which existed already."""

    created: tuple[str, ...]
    existed: tuple[str, ...]


def ensure_topics(bootstrap: str, names: Iterable[str], partitions: int,
                  replication: int, timeout: float = 30.0) -> TopicReport:
    """Create each topic in ``names`` that does not exist yet; wait until all are there."""
    admin = admin_client(bootstrap)
    wanted = list(dict.fromkeys(names))
    try:
        present = set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        msg = f"no Kafka broker answered at {bootstrap}: {exc.args[0]}"
        raise TopicError(msg) from exc
    missing = [name for name in wanted if name not in present]
    existed = [name for name in wanted if name in present]
    created: list[str] = []
    if missing:
        futures = admin.create_topics([NewTopic(n, partitions, replication) for n in missing],
                                      request_timeout=timeout)
        for name, future in futures.items():
            try:
                future.result(timeout=timeout)
                created.append(name)
            except KafkaException as exc:
                error = exc.args[0]
                code = error.code() if isinstance(error, KafkaError) else None
                if code == KafkaError.TOPIC_ALREADY_EXISTS:
                    existed.append(name)
                    continue
                msg = f"could not create topic {name!r}: {error}"
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
