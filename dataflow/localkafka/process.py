"""Processes of the local broker: launch detached, find by pid file, end by pid.

A broker is only ever signalled through the pid recorded in its pid file, and
only after ``/proc/<pid>/cmdline`` shows it is a ``kafka.Kafka`` java process
started for that very node folder (the ``-Dlocalkafka.node.dir=`` argument):
a reused pid or any other Kafka on the machine is never touched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from dataflow.localkafka.errors import BrokerStartError, BrokerStopError

PROC = Path("/proc")
NODE_DIR_FLAG = "-Dlocalkafka.node.dir="
MAIN_CLASS = "kafka.Kafka"
# `sh` puts the broker in the background and prints its pid, then exits: the broker
# is re-parented away from the caller (no zombie, no ResourceWarning for a live child).
_LAUNCHER = 'log=$1; shift; "$@" </dev/null >>"$log" 2>&1 & echo $!'


def node_marker(node_dir: Path) -> str:
    """The command-line argument that names the node folder a broker was started for."""
    return f"{NODE_DIR_FLAG}{node_dir.resolve()}"


def read_cmdline(pid: int, proc: Path = PROC) -> list[str]:
    """The argument vector of ``pid``, or [] if it is gone or unreadable."""
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [arg.decode(errors="replace") for arg in raw.split(b"\0") if arg]


def is_alive(pid: int, proc: Path = PROC) -> bool:
    """Whether ``pid`` exists and is not a zombie (an ended child nobody reaped yet)."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return False
    state = stat.rpartition(")")[2].split()[:1]
    return bool(state) and state[0] not in {"Z", "X"}


def is_our_broker(pid: int, node_dir: Path, proc: Path = PROC) -> bool:
    """Whether ``pid`` is a live broker java process started for ``node_dir``."""
    argv = read_cmdline(pid, proc)
    return (bool(argv) and Path(argv[0]).name == "java" and MAIN_CLASS in argv
            and node_marker(node_dir) in argv and is_alive(pid, proc))


def read_pid(pid_file: Path) -> int | None:
    """The pid recorded in ``pid_file``, or None if there is no valid one."""
    try:
        text = pid_file.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def write_pid(pid_file: Path, pid: int) -> None:
    tmp = pid_file.with_suffix(".tmp")
    tmp.write_text(f"{pid}\n", encoding="ascii")
    tmp.replace(pid_file)


def port_in_use(host: str, port: int) -> bool:
    """Whether binding ``host:port`` fails as it would for the broker (SO_REUSEADDR on)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno in {errno.EADDRINUSE, errno.EACCES}
    return False


def accepts_connections(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def launch_detached(argv: Sequence[str], log_file: Path, cwd: Path) -> int:
    """Start ``argv`` in its own session, output appended to ``log_file``; return its pid."""
    try:
        done = subprocess.run(["/bin/sh", "-c", _LAUNCHER, "sh", str(log_file), *argv],
                              cwd=cwd, capture_output=True, text=True, timeout=30,
                              check=False, start_new_session=True, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        msg = f"could not launch {argv[0]}: {exc}"
        raise BrokerStartError(msg) from exc
    pid_text = done.stdout.strip()
    if done.returncode != 0 or not pid_text.isdigit():
        msg = f"could not launch {argv[0]}: {done.stderr.strip() or 'no pid reported'}"
        raise BrokerStartError(msg)
    return int(pid_text)


def _signal(pid: int, node_dir: Path, sig: signal.Signals) -> None:
    if is_our_broker(pid, node_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def terminate(brokers: Sequence[tuple[int, Path]], timeout: float) -> list[int]:
    """SIGTERM each (pid, node dir) broker, wait, SIGKILL after ``timeout``; pids killed.

    With ``timeout`` 0 the brokers get SIGKILL at once, as in a crash.
    """
    if timeout > 0:
        for pid, node_dir in brokers:
            _signal(pid, node_dir, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(is_alive(pid) for pid, _ in brokers):
        time.sleep(0.1)
    killed = [pid for pid, node_dir in brokers if is_our_broker(pid, node_dir)]
    for pid, node_dir in brokers:
        _signal(pid, node_dir, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(is_alive(pid) for pid in killed):
        time.sleep(0.1)
    still = [pid for pid in killed if is_alive(pid)]
    if still:
        msg = f"broker process(es) {', '.join(map(str, still))} survived SIGKILL"
        raise BrokerStopError(msg)
    return killed


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def tail(path: Path, lines: int = 20, since: int = 0) -> list[str]:
    """The last ``lines`` non-empty lines of a text file after byte ``since`` ([] if none)."""
    try:
        with path.open("rb") as handle:
            end = handle.seek(0, os.SEEK_END)
            start = since if since <= end else 0  # a smaller file was rotated or replaced
            handle.seek(max(start, end - 64 * 1024))
            text = handle.read().decode(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]
