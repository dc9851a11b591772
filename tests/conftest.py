"""Fixtures shared by every test: the Kafka broker of the session and fresh topics.

Nothing here starts a broker until a test asks for ``kafka_bootstrap`` (or a
fixture built on it), so unit tests never need Java. With
``KAFKA_BOOTSTRAP_SERVERS`` set, tests use that cluster and start nothing.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from dataflow.localkafka import LocalKafka
from dataflow.localkafka.errors import LocalKafkaFailure

TEST_PORT = 28092  # below the ephemeral range (32768-): no client connection can hold it
TEST_DIR = ".local-kafka-test"
TOPIC_TIMEOUT_S = 30.0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration as `integration`."""
    integration = config.rootpath / "tests" / "integration"
    for item in items:
        if Path(item.path).is_relative_to(integration):
            item.add_marker(pytest.mark.integration)


def _show(config: pytest.Config, line: str) -> None:
    """Print a progress line on the terminal even while pytest captures output."""
    capture = config.pluginmanager.get_plugin("capturemanager")
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if capture is None or reporter is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(line)


@pytest.fixture(scope="session")
def local_kafka(pytestconfig: pytest.Config) -> Iterator[LocalKafka | None]:
    """The session's broker (port 39092, dir .local-kafka-test), None if external.

    Started for the first test that needs it and stopped at the end of the session,
    unless it was already running before (then it is reused and left running).
    """
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield None
        return
    kafka = LocalKafka(pytestconfig.rootpath / TEST_DIR, port=TEST_PORT,
                       notify=lambda line: _show(pytestconfig, line))
    began = time.monotonic()
    try:
        started = kafka.start()
    except LocalKafkaFailure as exc:
        pytest.fail("\n".join([f"the test broker did not start: {exc}", *exc.details]),
                    pytrace=False)
    if started:
        _show(pytestconfig, f"test broker started at {kafka.bootstrap} in "
                            f"{time.monotonic() - began:.1f} s")
    try:
        yield kafka
    finally:
        if started:  # a broker that was already running (started by hand) is left running
            kafka.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(local_kafka: LocalKafka | None) -> str:
    """bootstrap.servers of the session's broker, or $KAFKA_BOOTSTRAP_SERVERS when set."""
    return local_kafka.bootstrap if local_kafka else os.environ["KAFKA_BOOTSTRAP_SERVERS"]


@pytest.fixture(scope="session")
def admin(kafka_bootstrap: str) -> AdminClient:
    """An admin client of the session's broker."""
    return AdminClient({"bootstrap.servers": kafka_bootstrap})


def _wait_for_topic(admin: AdminClient, name: str, partitions: int) -> None:
    deadline = time.monotonic() + TOPIC_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            topic = admin.list_topics(topic=name, timeout=5).topics.get(name)
        except KafkaException:
            topic = None
        if (topic is not None and topic.error is None and len(topic.partitions) == partitions
                and all(p.leader >= 0 for p in topic.partitions.values())):
            return
        time.sleep(0.1)
    pytest.fail(f"topic {name} did not appear within {TOPIC_TIMEOUT_S:.0f} s", pytrace=False)


@pytest.fixture
def make_topic(admin: AdminClient) -> Iterator[Callable[..., str]]:
    """Factory of fresh uuid-named topics, ready when returned, deleted after the test."""
    created: list[str] = []

    def make(partitions: int = 1, config: dict[str, str] | None = None) -> str:
        name = f"test-{uuid.uuid4().hex}"
        futures = admin.create_topics([NewTopic(name, partitions, -1, config=config or {})],
                                      request_timeout=TOPIC_TIMEOUT_S)
        futures[name].result(timeout=TOPIC_TIMEOUT_S)
        created.append(name)
        _wait_for_topic(admin, name, partitions)
        return name

    yield make
    if created:
        futures = admin.delete_topics(created, request_timeout=TOPIC_TIMEOUT_S)
        for future in futures.values():
            future.result(timeout=TOPIC_TIMEOUT_S)
