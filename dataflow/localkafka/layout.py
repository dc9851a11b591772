"""Shape of the local cluster: node ids, ports, folders and the recorded layout.

A cluster is 1 or 3 nodes, each a combined broker and controller bound to
127.0.0.1. Node ``n`` (1-based) serves clients on ``port + n - 1`` and its
controller on ``port + 100 + n - 1`` (defaults: 9092-9094 and 9192-9194).
The layout is recorded in ``<dir>/cluster.json`` at first start, so later
commands on the same folder need only ``--dir``.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from pathlib import Path

from dataflow.localkafka.errors import LayoutError

KAFKA_VERSION = "4.4.0"
HOST = "127.0.0.1"
DEFAULT_PORT = 9092
DEFAULT_DIR = ".local-kafka"
CONTROLLER_PORT_OFFSET = 100
BROKER_COUNTS = (1, 3)
RECORD_FILE = "cluster.json"


@dataclass(frozen=True, slots=True)
class Layout:
    """Number of nodes and first client port; every port is derived from these."""

    port: int = DEFAULT_PORT
    brokers: int = 1

    def __post_init__(self) -> None:
        if self.brokers not in BROKER_COUNTS:
            msg = f"--brokers must be 1 or 3, not {self.brokers}"
            raise LayoutError(msg)
        highest = self.port + CONTROLLER_PORT_OFFSET + self.brokers - 1
        if self.port < 1024 or highest > 65535:
            msg = (f"--port {self.port} leaves no room for its {self.brokers} client and "
                   f"controller ports; choose a port from 1024 to {65536 - 100 - self.brokers}")
            raise LayoutError(msg)

    @property
    def node_ids(self) -> tuple[int, ...]:
        return tuple(range(1, self.brokers + 1))

    def check_node(self, node: int) -> None:
        """Raise LayoutError unless ``node`` is one of this cluster's node ids."""
        if node not in self.node_ids:
            msg = f"--node {node} does not exist: this cluster has node(s) 1-{self.brokers}"
            raise LayoutError(msg)

    def client_port(self, node: int) -> int:
        return self.port + node - 1

    def controller_port(self, node: int) -> int:
        return self.port + CONTROLLER_PORT_OFFSET + node - 1

    def node_ports(self, node: int) -> tuple[int, int]:
        return self.client_port(node), self.controller_port(node)

    def node_bootstrap(self, node: int) -> str:
        return f"{HOST}:{self.client_port(node)}"

    @property
    def bootstrap(self) -> str:
        return ",".join(self.node_bootstrap(n) for n in self.node_ids)

    @property
    def quorum_voters(self) -> str:
        return ",".join(f"{n}@{HOST}:{self.controller_port(n)}" for n in self.node_ids)

    @property
    def replication(self) -> int:
        """Replication factor of internal and default topics: 1 alone, 3 in a cluster."""
        return 1 if self.brokers == 1 else 3

    @property
    def min_insync(self) -> int:
        return 1 if self.brokers == 1 else 2

    def describe(self) -> str:
        nodes = "1 broker" if self.brokers == 1 else f"{self.brokers} brokers"
        return f"{nodes} on port {self.port}"


@dataclass(frozen=True, slots=True)
class Recorded:
    """What ``cluster.json`` holds: the layout and the id the storage was formatted with."""

    layout: Layout
    cluster_id: str
    kafka_version: str = KAFKA_VERSION


def new_cluster_id() -> str:
    """A random Kafka cluster id: a UUID in URL-safe base64 without padding."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka avoids ids that read as a command-line flag
            return text


def node_dir(state_dir: Path, node: int) -> Path:
    return state_dir / f"node-{node}"


def read_recorded(state_dir: Path) -> Recorded | None:
    """The recorded layout of ``state_dir``, or None when nothing was started there."""
    path = state_dir / RECORD_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        layout = Layout(port=int(raw["port"]), brokers=int(raw["brokers"]))
        return Recorded(layout, str(raw["cluster_id"]), str(raw["kafka_version"]))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        msg = f"{path} is unreadable ({exc}); remove the folder {state_dir} to start afresh"
        raise LayoutError(msg) from exc


def write_recorded(state_dir: Path, recorded: Recorded) -> None:
    data = {"port": recorded.layout.port, "brokers": recorded.layout.brokers,
            "cluster_id": recorded.cluster_id, "kafka_version": recorded.kafka_version}
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = state_dir / f"{RECORD_FILE}.tmp"
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(state_dir / RECORD_FILE)


def effective_layout(state_dir: Path, port: int | None, brokers: int | None) -> Layout:
    """The layout to use: options given win, else the recorded one, else the defaults."""
    recorded = read_recorded(state_dir)
    default = recorded.layout if recorded else Layout()
    return Layout(port=port or default.port, brokers=brokers or default.brokers)


def check_matches(recorded: Recorded, wanted: Layout, state_dir: Path) -> None:
    """Raise LayoutError when ``wanted`` differs from the cluster formatted in ``state_dir``."""
    if recorded.layout != wanted:
        msg = (f"{state_dir} holds a cluster of {recorded.layout.describe()}, not "
               f"{wanted.describe()}; use --brokers {recorded.layout.brokers} --port "
               f"{recorded.layout.port}, another --dir, or remove {state_dir}")
        raise LayoutError(msg)
    if recorded.kafka_version != KAFKA_VERSION:
        msg = (f"{state_dir} was formatted by Kafka {recorded.kafka_version}, this tool runs "
               f"{KAFKA_VERSION}; remove {state_dir} to start afresh")
        raise LayoutError(msg)
