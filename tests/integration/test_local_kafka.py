"""The local broker manager against a real Kafka: round trip, CLI status, start twice, failures."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from dataflow.localkafka import LocalKafka
from tests.conftest import TEST_PORT
from tests.integration.jobs import free_kafka_port

ROOT = Path(__file__).resolve().parents[2]


def kafka_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m dataflow kafka ARGS` from the repository root, output captured."""
    return subprocess.run([sys.executable, "-m", "dataflow", "kafka", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture
def session_broker(local_kafka: LocalKafka | None) -> LocalKafka:
    """The broker this session started; tests of the manager itself skip on an external one."""
    if local_kafka is None:
        pytest.skip("KAFKA_BOOTSTRAP_SERVERS is set: no local broker was started")
    return local_kafka


def produce_one(bootstrap: str, topic: str, key: bytes, value: bytes) -> list[Any]:
    """Produce one record with acks=all; the (error, message) pairs its callback received."""
    reports: list[Any] = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    producer.produce(topic, value, key, on_delivery=lambda err, msg: reports.append((err, msg)))
    producer.poll(0)
    assert producer.flush(30) == 0
    return reports


def test_produce_and_consume_round_trip(kafka_bootstrap: str,
                                        make_topic: Callable[..., str]) -> None:
    """A record written to a fresh topic is confirmed by its callback and read back intact."""
    topic = make_topic()
    reports = produce_one(kafka_bootstrap, topic, b"user-1", b'{"hello": "kafka"}')
    assert len(reports) == 1
    err, msg = reports[0]
    assert err is None
    assert (msg.topic(), msg.partition(), msg.offset()) == (topic, 0, 0)

    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": uuid.uuid4().hex,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 30
        got = None
        while got is None and time.monotonic() < deadline:
            got = consumer.poll(0.5)
        assert got is not None, "no record read back within 30 s"
        assert got.error() is None
        assert (got.key(), got.value(), got.offset()) == (b"user-1", b'{"hello": "kafka"}', 0)
    finally:
        consumer.close()


def test_status_reports_running(session_broker: LocalKafka) -> None:
    """`kafka status` prints the bootstrap address and pid of the running broker, exit code 0."""
    pid = session_broker.status().nodes[0].pid
    done = kafka_cli("status", "--dir", str(session_broker.state_dir))
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"running at {session_broker.bootstrap} (pid {pid})\n"


def test_start_when_running_says_already_running(session_broker: LocalKafka) -> None:
    """A second `kafka start` on the same folder starts nothing and exits 0."""
    pid = session_broker.status().nodes[0].pid
    done = kafka_cli("start", "--dir", str(session_broker.state_dir), "--port", str(TEST_PORT))
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"already running at {session_broker.bootstrap}\n"
    assert session_broker.status().nodes[0].pid == pid


def test_start_on_taken_port_fails_with_clear_message(tmp_path: Path) -> None:
    """A start on a port another program listens on names the port, exits 1, no traceback."""
    port = free_kafka_port(1)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        done = kafka_cli("start", "--dir", str(tmp_path / "kafka"), "--port", str(port))
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == (
        f"kafka start failed: port {port} on 127.0.0.1 (client port of node 1) is already in "
        "use by another program; stop it or choose another --port and --dir")
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "kafka" / "node-1" / "kafka.pid").exists()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalKafka]:
    """A three-node cluster of its own, stopped after the test whatever happens."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        pytest.skip("KAFKA_BOOTSTRAP_SERVERS is set: tests start no local broker")
    kafka = LocalKafka(tmp_path / "cluster", port=free_kafka_port(brokers=3), brokers=3)
    try:
        yield kafka
    finally:
        kafka.stop()


@pytest.mark.slow
def test_three_node_cluster_survives_one_stopped_node(cluster: LocalKafka) -> None:
    """With node 2 stopped, acks=all writes succeed; start_node brings it back; kill_node kills."""
    assert cluster.start() == [1, 2, 3]
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    assert set(admin.list_topics(timeout=10).brokers) == {1, 2, 3}
    topic = f"test-{uuid.uuid4().hex}"
    admin.create_topics([NewTopic(topic, 1, 3)])[topic].result(timeout=30)

    assert cluster.stop_node(2) is True
    assert [n.running for n in cluster.status().nodes] == [True, False, True]
    status = kafka_cli("status", "--dir", str(cluster.state_dir))
    assert status.returncode == 1
    assert "node 2: not running" in status.stdout
    survivors = f"{cluster.layout.node_bootstrap(1)},{cluster.layout.node_bootstrap(3)}"
    reports = produce_one(survivors, topic, b"k", b"v")
    assert [err for err, _ in reports] == [None]

    assert cluster.start_node(2) is True
    assert cluster.status().running
    # The node is up before the controller lists it again in the metadata: wait for that.
    deadline = time.monotonic() + 30
    while set(admin.list_topics(timeout=10).brokers) != {1, 2, 3}:
        assert time.monotonic() < deadline, "node 2 did not rejoin the cluster's metadata"
        time.sleep(0.2)

    assert cluster.kill_node(3) is True
    assert [n.running for n in cluster.status().nodes] == [True, True, False]
    assert cluster.stop() == [1, 2]
    assert cluster.status().stopped

