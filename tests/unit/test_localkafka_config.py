"""Layout and server.properties of the local broker, rendered without starting anything."""

from __future__ import annotations

import string
from pathlib import Path

import pytest

from dataflow.localkafka.config import render_properties, server_properties
from dataflow.localkafka.errors import LayoutError
from dataflow.localkafka.layout import (
    Layout,
    Recorded,
    check_matches,
    effective_layout,
    new_cluster_id,
    read_recorded,
    write_recorded,
)


def test_single_node_properties_for_a_dev_box() -> None:
    """One node: broker+controller on 127.0.0.1, no auto-created topics, replication 1."""
    props = server_properties(Layout(port=9092), 1, Path("/data/node-1/data"))
    assert {k: props[k] for k in (
        "process.roles", "node.id", "controller.quorum.voters", "listeners",
        "advertised.listeners", "log.dirs", "auto.create.topics.enable", "delete.topic.enable",
        "group.initial.rebalance.delay.ms", "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor", "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor", "min.insync.replicas",
        "default.replication.factor")} == {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": "1@127.0.0.1:9192",
        "listeners": "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9192",
        "advertised.listeners": "PLAINTEXT://127.0.0.1:9092",
        "log.dirs": "/data/node-1/data",
        "auto.create.topics.enable": "false",
        "delete.topic.enable": "true",
        "group.initial.rebalance.delay.ms": "0",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "min.insync.replicas": "1",
        "default.replication.factor": "1",
    }


def test_three_node_properties_use_a_static_quorum_and_replication_three() -> None:
    """Node 2 of 3: ports port+1 and port+101, all voters listed, RF 3 and min ISR 2."""
    layout = Layout(port=39092, brokers=3)
    props = server_properties(layout, 2, Path("/d"))
    assert props["node.id"] == "2"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:39093,CONTROLLER://127.0.0.1:39193"
    assert props["controller.quorum.voters"] == (
        "1@127.0.0.1:39192,2@127.0.0.1:39193,3@127.0.0.1:39194")
    assert props["offsets.topic.replication.factor"] == "3"
    assert props["transaction.state.log.min.isr"] == "2"
    assert props["min.insync.replicas"] == "2"
    assert layout.bootstrap == "127.0.0.1:39092,127.0.0.1:39093,127.0.0.1:39094"


def test_rendered_properties_are_one_key_value_a_line() -> None:
    """The rendered file starts with a comment and holds each property as key=value."""
    text = render_properties({"a.b": "1", "c": "x,y"})
    assert text.splitlines() == [
        "# Written by `python -m dataflow kafka start`; rewritten at every start.",
        "a.b=1", "c=x,y"]


@pytest.mark.parametrize(("port", "brokers", "message"), [
    (9092, 2, "--brokers must be 1 or 3, not 2"),
    (80, 1, "--port 80 leaves no room for its 1 client and controller ports; "
            "choose a port from 1024 to 65435"),
    (65434, 3, "--port 65434 leaves no room for its 3 client and controller ports; "
               "choose a port from 1024 to 65433"),
])
def test_invalid_layouts_are_refused(port: int, brokers: int, message: str) -> None:
    """Broker counts other than 1 or 3 and ports without room for +100 are refused."""
    with pytest.raises(LayoutError) as caught:
        Layout(port=port, brokers=brokers)
    assert str(caught.value) == message


def test_unknown_node_is_refused() -> None:
    """Asking for node 2 of a one-node cluster names the nodes that exist."""
    with pytest.raises(LayoutError) as caught:
        server_properties(Layout(), 2, Path("/d"))
    assert str(caught.value) == "--node 2 does not exist: this cluster has node(s) 1-1"


def test_cluster_id_is_22_url_safe_characters() -> None:
    """Cluster ids look like Kafka's: 22 URL-safe base64 characters, never a leading '-'."""
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for cluster_id in ids:
        assert len(cluster_id) == 22
        assert not cluster_id.startswith("-")
        assert set(cluster_id) <= set(string.ascii_letters + string.digits + "-_")


def test_recorded_layout_round_trips_and_fills_missing_options(tmp_path: Path) -> None:
    """cluster.json keeps the layout; options left out take the recorded values."""
    assert read_recorded(tmp_path) is None
    assert effective_layout(tmp_path, None, None) == Layout()
    recorded = Recorded(Layout(port=39500, brokers=3), "abc")
    write_recorded(tmp_path, recorded)
    assert read_recorded(tmp_path) == recorded
    assert effective_layout(tmp_path, None, None) == Layout(port=39500, brokers=3)
    assert effective_layout(tmp_path, 39600, None) == Layout(port=39600, brokers=3)


def test_layout_that_contradicts_the_recorded_one_is_refused(tmp_path: Path) -> None:
    """Starting a folder formatted for one broker as a 3-node cluster explains the way out."""
    recorded = Recorded(Layout(port=9092, brokers=1), "abc")
    with pytest.raises(LayoutError) as caught:
        check_matches(recorded, Layout(port=9092, brokers=3), tmp_path)
    assert str(caught.value) == (
        f"{tmp_path} holds a cluster of 1 broker on port 9092, not 3 brokers on port 9092; "
        f"use --brokers 1 --port 9092, another --dir, or remove {tmp_path}")


def test_unreadable_record_is_reported(tmp_path: Path) -> None:
    """A damaged cluster.json gives a LayoutError naming the file, not a traceback."""
    (tmp_path / "cluster.json").write_text("{not json")
    with pytest.raises(LayoutError, match=r"cluster\.json is unreadable"):
        read_recorded(tmp_path)


def test_only_a_cluster_fences_its_brokers_quickly() -> None:
    """A node of a 3-node cluster has a 4 s broker session (failures noticed fast); a
    single node 30 s, so a few seconds without CPU do not take its partitions offline."""
    one = server_properties(Layout(port=29092, brokers=1), 1, Path("/tmp/x"))
    three = server_properties(Layout(port=29092, brokers=3), 2, Path("/tmp/x"))
    assert one["broker.session.timeout.ms"] == "30000"
    assert three["broker.session.timeout.ms"] == "4000"
    assert one["broker.heartbeat.interval.ms"] == three["broker.heartbeat.interval.ms"] == "1000"
