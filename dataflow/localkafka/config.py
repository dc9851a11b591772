"""Render one node's ``server.properties``: KRaft, combined broker and controller.

Settings suit a development or test box: topics are never created implicitly,
deleting topics works, consumer groups start without the usual 3 s delay, and
internal topics are replicated once on one node, three times (at least two in
sync) on a three-node cluster. On a cluster, broker sessions are short (4 s), so a
stopped or killed node is fenced, and may register again, quickly. A single node
keeps a long session (30 s): fencing the only broker helps no one, and a node
starved of CPU for a few seconds (a job on every core of a 2-core box) fenced
itself, taking every partition offline until it registered again: the stalls of
two-process runs (benchmarks/README.md).
"""

from __future__ import annotations

from pathlib import Path

from dataflow.localkafka.layout import HOST, Layout

# Properties that do not depend on the node or the cluster size.
_FIXED: dict[str, str] = {
    "process.roles": "broker,controller",
    "controller.listener.names": "CONTROLLER",
    "inter.broker.listener.name": "PLAINTEXT",
    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    "auto.create.topics.enable": "false",
    "delete.topic.enable": "true",
    "group.initial.rebalance.delay.ms": "0",
    "broker.heartbeat.interval.ms": "1000",
}
# A restarted or killed node of a cluster is noticed in 4 s instead of 9 s (failure
# tests); the only node is never fenced for being slow to answer itself.
CLUSTER_SESSION_MS = "4000"
SINGLE_NODE_SESSION_MS = "30000"


def server_properties(layout: Layout, node: int, log_dir: Path) -> dict[str, str]:
    """Every property of node ``node`` of ``layout``, its data kept in ``log_dir``."""
    layout.check_node(node)
    client, controller = layout.node_ports(node)
    replication, min_isr = str(layout.replication), str(layout.min_insync)
    props = {
        "node.id": str(node),
        "controller.quorum.voters": layout.quorum_voters,
        "listeners": f"PLAINTEXT://{HOST}:{client},CONTROLLER://{HOST}:{controller}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{client}",
        "log.dirs": str(log_dir),
        **_FIXED,
        "default.replication.factor": replication,
        "min.insync.replicas": min_isr,
        "offsets.topic.replication.factor": replication,
        "transaction.state.log.replication.factor": replication,
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": replication,
        "share.coordinator.state.topic.min.isr": min_isr,
        "broker.session.timeout.ms": (SINGLE_NODE_SESSION_MS if layout.brokers == 1
                                      else CLUSTER_SESSION_MS),
    }
    return props


def render_properties(props: dict[str, str]) -> str:
    """Java properties text, one ``key=value`` a line (values here need no escaping)."""
    lines = ["# Written by `python -m dataflow kafka start`; rewritten at every start."]
    lines += [f"{key}={value}" for key, value in props.items()]
    return "\n".join(lines) + "\n"
