"""Pid files, the identity check before any signal, port checks, log tails, detached launch."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest

from dataflow.localkafka import process

NODE = Path("/work/.local-kafka/node-1")


def fake_proc(root: Path, pid: int, argv: list[str], state: str = "S") -> Path:
    """A /proc-like folder holding one process with this command line and state."""
    entry = root / str(pid)
    entry.mkdir(parents=True)
    (entry / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (entry / "stat").write_text(f"{pid} (java) {state} 1 {pid} {pid} 0 -1\n")
    return root


def broker_argv(node_dir: Path) -> list[str]:
    return ["/usr/bin/java", "-Xmx512m", process.node_marker(node_dir), "-cp", "/c/libs/*",
            "kafka.Kafka", f"{node_dir}/server.properties"]


def test_our_broker_is_recognised_by_its_node_folder(tmp_path: Path) -> None:
    """A live kafka.Kafka java process naming this node folder is ours."""
    proc = fake_proc(tmp_path, 4242, broker_argv(NODE))
    assert process.is_our_broker(4242, NODE, proc)


@pytest.mark.parametrize(("argv", "state"), [
    (broker_argv(Path("/elsewhere/.local-kafka/node-1")), "S"),  # another folder's broker
    (["/usr/bin/java", "-cp", "libs/*", "kafka.Kafka", "server.properties"], "S"),  # not ours
    (["/bin/sleep", process.node_marker(NODE), "kafka.Kafka"], "S"),  # not java
    (broker_argv(NODE), "Z"),  # ended, waiting to be reaped
])
def test_other_processes_are_never_taken_for_ours(tmp_path: Path, argv: list[str],
                                                  state: str) -> None:
    """Another folder's broker, a foreign Kafka, a non-java process or a zombie are not ours."""
    proc = fake_proc(tmp_path, 4242, argv, state)
    assert not process.is_our_broker(4242, NODE, proc)


def test_vanished_pid_is_neither_alive_nor_ours(tmp_path: Path) -> None:
    """A pid with no /proc entry is dead and not ours."""
    assert not process.is_alive(999, tmp_path)
    assert not process.is_our_broker(999, NODE, tmp_path)


@pytest.mark.parametrize(("text", "pid"), [("1234\n", 1234), ("", None), ("abc", None),
                                           ("0", None), ("-5", None)])
def test_pid_file_is_read_strictly(tmp_path: Path, text: str, pid: int | None) -> None:
    """Only a positive whole number counts as a recorded pid."""
    pid_file = tmp_path / "kafka.pid"
    pid_file.write_text(text)
    assert process.read_pid(pid_file) == pid


def test_pid_file_round_trips(tmp_path: Path) -> None:
    """A written pid reads back; a missing pid file reads as None."""
    pid_file = tmp_path / "kafka.pid"
    assert process.read_pid(pid_file) is None
    process.write_pid(pid_file, 31337)
    assert process.read_pid(pid_file) == 31337


def test_port_in_use_sees_a_listener() -> None:
    """A port another socket listens on is reported in use; a released one is not."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert process.port_in_use("127.0.0.1", port)
        assert process.accepts_connections("127.0.0.1", port)
    assert not process.port_in_use("127.0.0.1", port)


def test_tail_shows_only_lines_written_since_a_mark(tmp_path: Path) -> None:
    """A log tail from a byte offset skips earlier runs and keeps the last N lines."""
    log = tmp_path / "server.log"
    log.write_text("old 1\nold 2\n")
    mark = process.file_size(log)
    with log.open("a") as handle:
        handle.write("new 1\n\nnew 2\nnew 3\n")
    assert process.tail(log, 2, since=mark) == ["new 2", "new 3"]
    assert process.tail(log, 10, since=mark) == ["new 1", "new 2", "new 3"]
    assert process.tail(tmp_path / "missing.log") == []


def test_launch_detached_runs_in_its_own_session_not_as_our_child(tmp_path: Path) -> None:
    """The launched process gets its own session, is not our child, and logs to the file."""
    pid = process.launch_detached(["/bin/sh", "-c", "echo started; exec sleep 30"],
                                  tmp_path / "out.log", tmp_path)
    try:
        deadline = time.monotonic() + 5
        while not process.read_cmdline(pid):  # empty for an instant while it execs
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert process.read_cmdline(pid)[0] in {"/bin/sh", "sleep"}
        assert os.getsid(pid) != os.getsid(0)
        stat = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        assert int(stat[1]) != os.getpid()  # parent is not this test process
        deadline = time.monotonic() + 5
        while "started" not in (tmp_path / "out.log").read_text():
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        os.kill(pid, signal.SIGKILL)


def test_terminate_never_signals_a_process_that_is_not_ours(tmp_path: Path) -> None:
    """terminate() leaves alone a pid whose command line does not name the node folder."""
    pid = process.launch_detached(["sleep", "30"], tmp_path / "out.log", tmp_path)
    try:
        assert process.terminate([(pid, NODE)], timeout=0.2) == []
        assert process.is_alive(pid)
    finally:
        os.kill(pid, signal.SIGKILL)
