"""Talk to the local broker with confluent-kafka: wait until it answers."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

_QUIET = logging.getLogger("dataflow.localkafka.librdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False  # connection-refused chatter while a broker starts is expected


def quiet_admin_config(bootstrap: str) -> dict[str, Any]:
    """Admin client settings for the local broker, with librdkafka's log lines dropped."""
    # The stubs type config values as str | int | float; librdkafka takes a logger too.
    return {"bootstrap.servers": bootstrap, "logger": _QUIET,
            "socket.connection.setup.timeout.ms": 2000}


def admin_client(bootstrap: str) -> AdminClient:
    """An admin client whose librdkafka log lines are dropped."""
    return AdminClient(quiet_admin_config(bootstrap))


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
