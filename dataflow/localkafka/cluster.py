"""``LocalKafka``: start, stop and inspect the local cluster from Python.

    kafka = LocalKafka(".local-kafka-test", port=39092, brokers=3)
    kafka.start()                 # formats storage and fetches jars on first use
    kafka.stop_node(2)            # one broker stops (kill_node(2): it crashes)...
    kafka.start_node(2)           # ...and comes back
    kafka.stop()

Start and stop hold a lock on ``<dir>/.lock``, so two callers never race.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from dataflow.localkafka import jars, process
from dataflow.localkafka.client import wait_for_brokers
from dataflow.localkafka.errors import BrokerStartError, PortInUseError
from dataflow.localkafka.layout import (
    DEFAULT_DIR,
    DEFAULT_PORT,
    HOST,
    Layout,
    Recorded,
    check_matches,
    new_cluster_id,
    read_recorded,
    write_recorded,
)
from dataflow.localkafka.node import DEFAULT_HEAP, Node, NodeStatus, format_storage

HEAP_ENV = "LOCAL_KAFKA_HEAP"


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    """Status of every node; ``running`` when all run, ``stopped`` when none does."""

    nodes: tuple[NodeStatus, ...]

    @property
    def running(self) -> bool:
        return all(n.running for n in self.nodes)

    @property
    def stopped(self) -> bool:
        return not any(n.running or n.stale for n in self.nodes)


class LocalKafka:
    """A local KRaft cluster of 1 or 3 nodes whose files live in ``state_dir``."""

    def __init__(self, state_dir: str | Path = DEFAULT_DIR, port: int = DEFAULT_PORT,
                 brokers: int = 1, *, cache_dir: Path | None = None, heap: str | None = None,
                 start_timeout: float = 90.0, stop_timeout: float = 30.0,
                 notify: jars.Notify | None = None) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.layout = Layout(port=port, brokers=brokers)
        self.cache_dir = cache_dir or jars.default_cache_dir(os.environ)
        self.heap = heap or os.environ.get(HEAP_ENV) or DEFAULT_HEAP
        self.start_timeout, self.stop_timeout = start_timeout, stop_timeout
        self.notify: jars.Notify = notify or (lambda _: None)
        self.nodes = {n: Node(self.state_dir, self.layout, n) for n in self.layout.node_ids}

    @property
    def bootstrap(self) -> str:
        """``host:port`` of every node, comma-separated, for ``bootstrap.servers``."""
        return self.layout.bootstrap

    def status(self) -> ClusterStatus:
        return ClusterStatus(tuple(node.status() for node in self.nodes.values()))

    def start(self) -> list[int]:
        """Start every node that is not running; the ids started ([]: all ran already)."""
        with self._locked():
            down = [s.node for s in self.status().nodes if not s.running]
            if down:
                self._start_nodes(down)
            return down

    def start_node(self, node: int) -> bool:
        """Start one node of the cluster; False if it was running already."""
        self.layout.check_node(node)
        with self._locked():
            if self.nodes[node].status().running:
                return False
            self._start_nodes([node])
            return True

    def stop(self, node: int | None = None, *, kill: bool = False) -> list[int]:
        """Stop every node (or only ``node``); the ids that were running and were stopped.

        ``kill`` sends SIGKILL at once instead of a clean SIGTERM shutdown.
        """
        if node is not None:
            self.layout.check_node(node)
        if not self.state_dir.is_dir():
            return []
        with self._locked():
            chosen = [self.nodes[node]] if node is not None else list(self.nodes.values())
            statuses = [(n, n.status()) for n in chosen]
            running = [(s.pid, n.dir) for n, s in statuses if s.pid is not None]
            process.terminate(running, 0 if kill else self.stop_timeout)
            for n, _ in statuses:
                n.pid_file.unlink(missing_ok=True)
            return [s.node for _, s in statuses if s.running]

    def stop_node(self, node: int) -> bool:
        """Stop one node cleanly; False if it was not running."""
        return bool(self.stop(node))

    def kill_node(self, node: int) -> bool:
        """Kill one node with SIGKILL, like a crash; False if it was not running."""
        return bool(self.stop(node, kill=True))

    def __enter__(self) -> LocalKafka:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _recorded(self) -> Recorded:
        recorded = read_recorded(self.state_dir)
        if recorded is None:
            recorded = Recorded(self.layout, new_cluster_id())
            write_recorded(self.state_dir, recorded)
        check_matches(recorded, self.layout, self.state_dir)
        return recorded

    def _check_ports(self, nodes: list[Node]) -> None:
        for node in nodes:
            for port, role in zip(self.layout.node_ports(node.id), ("client", "controller"),
                                  strict=True):
                if process.port_in_use(HOST, port):
                    msg = (f"port {port} on {HOST} ({role} port of node {node.id}) is already "
                           f"in use by another program; stop it or choose another --port "
                           f"and --dir")
                    raise PortInUseError(msg)

    def _start_nodes(self, ids: list[int]) -> None:
        recorded = self._recorded()
        nodes = [self.nodes[n] for n in ids]
        self._check_ports(nodes)
        java = jars.find_java()
        classpath = jars.classpath(jars.ensure_jars(self.cache_dir, self.notify))
        for node in nodes:
            node.pid_file.unlink(missing_ok=True)
            node.write_properties()
        fresh = [n for n in nodes if not n.formatted]
        if fresh:
            commands = [n.format_command(java, classpath, self.heap, recorded.cluster_id)
                        for n in fresh]
            format_storage(fresh, commands)
        launched = [(node, node.launch(java, classpath, self.heap)) for node in nodes]
        try:
            self._wait_ready(launched)
        except BaseException:
            process.terminate([(pid, node.dir) for node, pid in launched], self.stop_timeout)
            for node, _ in launched:
                node.pid_file.unlink(missing_ok=True)
            raise

    def _wait_ready(self, launched: list[tuple[Node, int]]) -> None:
        started = time.monotonic()

        def check_alive() -> None:
            for node, pid in launched:
                if not process.is_alive(pid):
                    reason = node.last_error()
                    msg = (f"broker node {node.id} exited during start-up"
                           + (f": {reason}" if reason else ""))
                    raise BrokerStartError(msg, node.log_tail())

        ids = [node.id for node, _ in launched]
        if not wait_for_brokers(self.bootstrap, ids, self.start_timeout, check_alive):
            msg = (f"broker(s) at {self.bootstrap} did not answer within "
                   f"{time.monotonic() - started:.0f} s")
            raise BrokerStartError(msg, [ln for n, _ in launched for ln in n.log_tail()])
