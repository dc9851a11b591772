"""`python -m dataflow run`: N local Bytewax processes forming one cluster.

Each process is ``python -m dataflow.worker dataflow.flow -i K -a ADDRS [-w W]``
(``bytewax.run`` with clean endings, see ``dataflow.worker``)
with the same environment. Process K starts once process K-1 listens on its port
(read from /proc/net/tcp, not dialled), so no dial is refused and retried a
second later. Ctrl-C or SIGTERM is forwarded to every process;
when one process fails the others are stopped and its exit code is returned. A
process that could not restart itself after the input topic gained partitions
exits with ``EXIT_PARTITIONS_ADDED`` (``dataflow.lifecycle``): then all of them are
started again (without recovery, from the offsets they committed).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from dataflow.errors import EXIT_PARTITIONS_ADDED, PipelineError, SettingsError
from dataflow.settings import Settings, describe_settings

PROJECT_ROOT = Path(__file__).resolve().parents[1]
GRACE_SECONDS = 20.0
# A process dials every process before it, and a refused dial is retried only a second
# later (with an error message): each process starts once the one before it listens,
# and at the latest after this long.
LISTEN_WAIT_SECONDS = 10.0
LISTEN_POLL_SECONDS = 0.01
_TCP_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dataflow run",
        description="Run the login dataflow on N local processes forming one Bytewax cluster. "
        "The job's settings come from the environment:\n\n" + describe_settings(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-p", "--processes", type=int, default=1, help="processes (default 1)")
    parser.add_argument("-w", "--workers-per-process", type=int, default=1,
                        help="worker threads per process (default 1; threads share the GIL)")
    parser.add_argument("--base-port", type=int, default=2101,
                        help="first of the N consecutive loopback ports the processes use "
                        "to talk to each other (default 2101)")
    recovery = parser.add_argument_group("recovery (all three together)")
    recovery.add_argument("-r", "--recovery-directory", type=Path,
                          help="Bytewax recovery directory; partitions are created if missing")
    recovery.add_argument("-s", "--snapshot-interval", type=int,
                          help="seconds between snapshots (the replay window after a crash)")
    recovery.add_argument("-b", "--backup-interval", type=int, default=None,
                          help="seconds to keep older snapshots (0 when the directory is not "
                          "backed up elsewhere)")
    return parser


def check_metrics_port(address: str, process_index: int) -> None:
    """Process K serves METRICS_ADDRESS's port + K: that port must exist (at most 65535)."""
    if not address:
        return
    port = int(address.rpartition(":")[2])
    if port + process_index > 65535:
        msg = (f"METRICS_ADDRESS: port {port} + process index {process_index} = "
               f"{port + process_index} is above 65535 (process K listens on port+K); "
               "choose a lower port")
        raise SettingsError(msg)


def _check_args(args: argparse.Namespace) -> None:
    if args.processes < 1 or args.workers_per_process < 1:
        msg = "--processes and --workers-per-process must be at least 1"
        raise PipelineError(msg)
    given = [args.recovery_directory is not None, args.snapshot_interval is not None,
             args.backup_interval is not None]
    if any(given) and not all(given):
        msg = "recovery needs -r/--recovery-directory, -s/--snapshot-interval and " \
              "-b/--backup-interval together"
        raise PipelineError(msg)
    for port in range(args.base_port, args.base_port + args.processes):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                msg = f"port {port} is in use; choose another --base-port"
                raise PipelineError(msg)


def ensure_recovery_partitions(directory: Path, count: int) -> None:
    """Create Bytewax recovery partitions once; reuse existing ones."""
    if directory.is_dir() and any(directory.glob("part-*.sqlite3")):
        return
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(directory), str(count)],
                   check=True)


EPOCH_WITHOUT_RECOVERY_S = 1


def child_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """This environment, with the project importable from any working directory."""
    env = {k: v for k, v in (environ or dict(os.environ)).items()
           if k not in ("BYTEWAX_PROCESS_ID", "BYTEWAX_ADDRESSES")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH"))
                                        if p)
    return env


def cluster_addresses(endpoints: list[tuple[str, int]]) -> str:
    """BYTEWAX_ADDRESSES: process K's own host:port at index K, ';'-separated.

    The one rule every deployment follows: here N loopback ports, in docker-compose.yml
    and deploy/kubernetes one host name per process on a common port.
    """
    return ";".join(f"{host}:{port}" for host, port in endpoints)


def process_commands(args: argparse.Namespace) -> list[tuple[list[str], dict[str, str]]]:
    """Command line and environment of each process (ids and addresses as bytewax env vars)."""
    addresses = cluster_addresses([("127.0.0.1", args.base_port + i)
                                   for i in range(args.processes)])
    command = [sys.executable, "-m", "dataflow.worker", "dataflow.flow",
               "-w", str(args.workers_per_process)]
    if args.recovery_directory is not None:
        command += ["-r", str(args.recovery_directory), "-s", str(args.snapshot_interval),
                    "-b", str(args.backup_interval)]
    else:
        # Without recovery an epoch only paces the consumer-group commits (each epoch's
        # positions are committed once it is written): 1 s instead of Bytewax's 10 s.
        command += ["-s", str(EPOCH_WITHOUT_RECOVERY_S)]
    base_env = child_environment()
    if args.processes == 1:
        return [(command, base_env)]
    return [(command, {**base_env, "BYTEWAX_PROCESS_ID": str(i), "BYTEWAX_ADDRESSES": addresses})
            for i in range(args.processes)]


def _stop_all(children: list[subprocess.Popen[bytes]], sig: int = signal.SIGINT) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(sig)
    deadline = time.monotonic() + GRACE_SECONDS
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


# What wakes the supervisor: a child ended (or stopped), Ctrl-C, or SIGTERM.
_WAKE = {signal.SIGCHLD, signal.SIGINT, signal.SIGTERM}


def supervise(children: list[subprocess.Popen[bytes]]) -> int:
    """Wait for all processes; the first failure stops the rest and gives the exit code.

    Sleeps until a signal arrives instead of polling: the signals are blocked and
    taken with ``sigwait``, so one that comes between two checks is kept pending,
    never lost, and a finite run ends as soon as its last process does.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _WAKE)
    try:
        while True:
            codes = [child.poll() for child in children]
            failed = [c for c in codes if c not in (None, 0)]
            if failed:
                _stop_all(children)
                return int(failed[0] or 1)
            if all(c == 0 for c in codes):
                return 0
            signum = signal.sigwait(_WAKE)
            if signum != signal.SIGCHLD:
                _stop_all(children)
                return 130 if signum == signal.SIGINT else 143
    finally:
        # A Ctrl-C or SIGTERM that came while stopping is done with: take it before unblocking.
        while pending := signal.sigpending() & _WAKE:
            signal.sigwait(pending)
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def listening(port: int, tables: tuple[Path, ...] = _TCP_TABLES) -> bool | None:
    """Whether a local TCP socket listens on ``port``, read from /proc/net/tcp without
    connecting (a test connection would count as a peer); None where there is no such table."""
    readable = False
    for table in tables:
        try:
            rows = table.read_text().splitlines()[1:]
        except OSError:
            continue
        readable = True
        for row in rows:
            fields = row.split()  # sl, local_address (hex ip:port), rem_address, st, ...
            if fields[3] == _LISTEN and int(fields[1].rpartition(":")[2], 16) == port:
                return True
    return None if not readable else False


def wait_until_listening(process: subprocess.Popen[bytes], port: int,
                         limit: float = LISTEN_WAIT_SECONDS) -> None:
    """Return once ``process`` listens on ``port``, has ended, or ``limit`` seconds passed."""
    deadline = time.monotonic() + limit
    while process.poll() is None and time.monotonic() < deadline:
        found = listening(port)
        if found is None:  # no /proc: give it a second, as a fixed stagger would
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            return
        if found:
            return
        time.sleep(LISTEN_POLL_SECONDS)


class _Terminated(Exception):
    """SIGTERM while the processes were starting."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env(os.environ)  # fail once here, not in every process
        _check_args(args)
        check_metrics_port(settings.metrics_address, args.processes - 1)
        if args.recovery_directory is not None:
            ensure_recovery_partitions(args.recovery_directory,
                                       args.processes * args.workers_per_process)
    except PipelineError as exc:
        print(f"login-dataflow: error: {exc}", file=sys.stderr)
        return 2
    while True:
        code = _start_and_supervise(args)
        if code != EXIT_PARTITIONS_ADDED:
            return code
        if args.recovery_directory is None:
            os.environ["STARTING_OFFSET"] = "committed"
        print("login-dataflow: the input topic gained partitions; starting again",
              file=sys.stderr)


def _start_and_supervise(args: argparse.Namespace) -> int:
    children: list[subprocess.Popen[bytes]] = []
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        for index, (cmd, env) in enumerate(process_commands(args)):
            if index:
                wait_until_listening(children[-1], args.base_port + index - 1)
                if any(child.poll() is not None for child in children):
                    break  # one ended at start-up: supervise() reports how
            children.append(subprocess.Popen(cmd, env=env))
    except (KeyboardInterrupt, _Terminated) as stop:  # while the processes were starting
        _stop_all(children)
        return 130 if isinstance(stop, KeyboardInterrupt) else 143
    finally:
        signal.signal(signal.SIGTERM, previous)
    return supervise(children)
