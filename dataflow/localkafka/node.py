"""One node of the local cluster: its folder, files, java command lines and state.

Files of node ``n`` live in ``<dir>/node-<n>/``: ``server.properties``, the data
in ``data/``, the pid in ``kafka.pid``, the broker log in ``server.log`` and the
JVM's own output (crashes, bad options) in ``kafka.out``.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from dataflow.localkafka import process
from dataflow.localkafka.config import render_properties, server_properties
from dataflow.localkafka.errors import BrokerStartError, LayoutError
from dataflow.localkafka.jars import LOG4J_CONFIG
from dataflow.localkafka.layout import Layout, node_dir

DEFAULT_HEAP = "512m"
_HEAP_RE = re.compile(r"^[1-9][0-9]*[kKmMgG]?$")
_FORMAT_TIMEOUT_S = 120
_JVM_ERROR_RE = re.compile(r"Error|Exception|Terminating")
_LOG_ERROR_RE = re.compile(r"\] (ERROR|FATAL) ")


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """Whether one node runs; ``stale`` means its pid file outlived its process."""

    node: int
    bootstrap: str
    pid: int | None
    stale: bool = False

    @property
    def running(self) -> bool:
        return self.pid is not None


class Node:
    """Files and commands of node ``node`` of a cluster kept in ``state_dir``."""

    def __init__(self, state_dir: Path, layout: Layout, node: int) -> None:
        layout.check_node(node)
        self.layout, self.id = layout, node
        self.dir = node_dir(state_dir, node)
        self.properties = self.dir / "server.properties"
        self.data = self.dir / "data"
        self.pid_file = self.dir / "kafka.pid"
        self.server_log = self.dir / "server.log"
        self.out_log = self.dir / "kafka.out"
        self._log_marks: dict[Path, int] = {}  # log sizes at launch: show only this run

    @property
    def bootstrap(self) -> str:
        return self.layout.node_bootstrap(self.id)

    def status(self) -> NodeStatus:
        pid = process.read_pid(self.pid_file)
        if pid is not None and process.is_our_broker(pid, self.dir):
            return NodeStatus(self.id, self.bootstrap, pid)
        return NodeStatus(self.id, self.bootstrap, None, stale=self.pid_file.exists())

    def write_properties(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        props = server_properties(self.layout, self.id, self.data.resolve())
        self.properties.write_text(render_properties(props), encoding="utf-8")

    @property
    def formatted(self) -> bool:
        return (self.data / "meta.properties").is_file()

    def jvm_options(self, heap: str) -> list[str]:
        if not _HEAP_RE.match(heap):
            msg = f"heap size {heap!r} is not a JVM size such as 512m or 1g"
            raise LayoutError(msg)
        return [f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
                f"-Dkafka.logs.dir={self.dir.resolve()}"]

    def format_command(self, java: str, classpath: str, heap: str, cluster_id: str) -> list[str]:
        return [java, *self.jvm_options(heap), "-cp", classpath, "kafka.tools.StorageTool",
                "format", "-t", cluster_id, "-c", str(self.properties.resolve()),
                "--ignore-formatted"]

    def broker_command(self, java: str, classpath: str, heap: str) -> list[str]:
        return [java, *self.jvm_options(heap), process.node_marker(self.dir), "-cp", classpath,
                process.MAIN_CLASS, str(self.properties.resolve())]

    def launch(self, java: str, classpath: str, heap: str) -> int:
        """Start the broker detached, record and return its pid."""
        self._log_marks = {path: process.file_size(path)
                           for path in (self.server_log, self.out_log)}
        pid = process.launch_detached(self.broker_command(java, classpath, heap),
                                      self.out_log, self.dir)
        process.write_pid(self.pid_file, pid)
        return pid

    def log_tail(self, lines: int = 15) -> list[str]:
        """Last lines of the broker log and JVM output since launch, each under a heading."""
        shown: list[str] = []
        for path, count in ((self.server_log, lines), (self.out_log, 8)):
            text = process.tail(path, count, self._log_marks.get(path, 0))
            if text:
                shown += [f"--- last lines of {path} ---", *text]
        return shown

    def last_error(self) -> str | None:
        """The last error line of the JVM output or broker log since launch, if any."""
        for path, pattern in ((self.out_log, _JVM_ERROR_RE), (self.server_log, _LOG_ERROR_RE)):
            for line in reversed(process.tail(path, 200, self._log_marks.get(path, 0))):
                if pattern.search(line):
                    return line.strip()[:240]
        return None


def format_storage(nodes: list[Node], commands: list[list[str]]) -> None:
    """Run the storage formatter of several nodes at once; BrokerStartError on failure."""
    running = [subprocess.Popen(cmd, cwd=n.dir, stdout=subprocess.PIPE, text=True,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
               for n, cmd in zip(nodes, commands, strict=True)]
    failures: list[tuple[Node, int, str]] = []
    for node, proc in zip(nodes, running, strict=True):
        try:
            output, _ = proc.communicate(timeout=_FORMAT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        if proc.returncode != 0:
            failures.append((node, proc.returncode, output))
    if failures:
        node, code, output = failures[0]
        msg = f"formatting the storage of node {node.id} in {node.data} failed (exit code {code})"
        raise BrokerStartError(msg, [ln for ln in output.splitlines() if ln.strip()][-15:])
