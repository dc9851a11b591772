"""How the job stops and how its process ends, the same under every entry point.

``python -m bytewax.run dataflow.flow``, ``python -m dataflow.worker`` and
``python -m dataflow run`` all build the flow through ``dataflow.entrypoint``,
which calls ``install()``. From then on:

- **Ctrl-C (SIGINT) or SIGTERM** asks the job to stop instead of raising inside
  Bytewax's worker loop: every source partition ends before its next batch
  (``stop_requested``), the steps drain, the sinks confirm what they were given and
  commit the offsets it covers, the window shards write nothing provisional, and
  the process exits with 130 (SIGINT) or 143 (SIGTERM), without a panic or a
  traceback. Before the dataflow runs (start-up checks, or Bytewax waiting for the
  cluster's other processes) nothing was read, and the process exits at once. A
  second Ctrl-C at least 2 s after the first ends the process at once (what was not
  confirmed is read again by the next run). A process still
  running ``STOP_GRACE_SECONDS`` after the request (another process of the
  cluster was not asked to stop) exits the same way.
- **New input partitions**: ``watch_partitions`` reads the input topic's partition
  count every ``PARTITION_CHECK_SECONDS`` (at the same wall-clock instants in every
  process, so a cluster sees the change together). When it grew, the job stops the
  same way and then starts itself again with the same command (``exec``), so the
  new partitions are read from their start; without a recovery directory the
  restart resumes from the offsets just committed (``STARTING_OFFSET=committed``).
  If it cannot start itself again it exits with ``EXIT_PARTITIONS_ADDED`` (3), on
  which ``python -m dataflow run`` restarts it, as do the compose and Kubernetes
  restart policies.
- **A failure of ours** (a ``PipelineError``, such as a write Kafka refused) is
  printed as one line, ``login-dataflow: error: ...``, instead of a traceback;
  exit code 1. So is Bytewax failing to set up this process's cluster connections (another
  process holds or knocks on its port: ``ClusterAddressError``), with exit code 2, a
  start refused.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from dataflow.errors import (
    EXIT_INTERRUPTED,
    EXIT_PARTITIONS_ADDED,
    EXIT_TERMINATED,
    ClusterAddressError,
    PipelineError,
)
from dataflow.logs import get_logger

log = get_logger(__name__)
PARTITION_CHECK_SECONDS = 10.0
STOP_GRACE_SECONDS = 10.0
_SECOND_INTERRUPT_AFTER_S = 2.0  # a terminal delivers Ctrl-C to the runner's children too


class _Stop:
    """The one stop request of this process: why, the exit code, and whether to restart;
    and whether the run failed meanwhile (then its failure decides the exit)."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.code = 0
        self.restart = False
        self.at = 0.0
        self.failed = False


_STOP = _Stop()
_LAST_WORDS: list[Callable[[], None]] = []  # run even by an exit that skips atexit
_installed = False
_running = False  # whether the dataflow runs: a source partition of this process was built


def mark_running() -> None:
    """The dataflow runs (a source partition was built): a stop now drains it."""
    global _running  # one process-wide fact
    _running = True


def stop_requested() -> bool:
    """Whether the job was asked to stop (checked by each source partition per batch)."""
    return _STOP.reason is not None


def stop_reason() -> str | None:
    return _STOP.reason


def request_stop(reason: str, code: int, restart: bool = False, **context: Any) -> None:
    """Ask every source partition of this process to end; the first request wins."""
    if _STOP.reason is not None:
        return
    _STOP.reason, _STOP.code, _STOP.restart, _STOP.at = reason, code, restart, time.monotonic()
    log.warning("stopping", reason=reason, exit_code=code, restart=restart, **context)
    if not _running and _installed:
        # Still starting (checks, or Bytewax waiting for the cluster's other processes):
        # nothing was read, so nothing is left to write; Bytewax would not notice anyway.
        _exit_now(code)
    threading.Thread(target=_exit_after_grace, name="stop-grace", daemon=True).start()


def _exit_after_grace() -> None:
    time.sleep(STOP_GRACE_SECONDS)
    log.error("stop_timeout", seconds=STOP_GRACE_SECONDS, reason=_STOP.reason,
              hint="another process of the cluster kept running; what was not confirmed is "
                   "read again by the next run")
    _exit_now(_STOP.code)


def at_any_exit(action: Callable[[], None]) -> None:
    """Run ``action`` at exit, also at an exit that cannot wait for the dataflow (the grace
    time ran out, a second Ctrl-C): leaving the instances group, so the next start is not
    refused while the broker still counts this process as running. It must be quick and
    safe to run twice."""
    _LAST_WORDS.append(action)
    atexit.register(action)


def _exit_now(code: int) -> None:
    for action in reversed(_LAST_WORDS):
        with contextlib.suppress(Exception):
            action()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed, or no descriptor
            stream.flush()
    os._exit(code)


def _on_signal(signum: int, frame: object) -> None:
    if _STOP.reason is not None:
        if (signum == signal.SIGINT
                and time.monotonic() - _STOP.at >= _SECOND_INTERRUPT_AFTER_S):
            log.warning("interrupted_again", hint="exiting now without waiting for writes")
            _exit_now(EXIT_INTERRUPTED)
        return
    if signum == signal.SIGINT:
        request_stop("interrupted", EXIT_INTERRUPTED)
    else:
        request_stop("terminated", EXIT_TERMINATED)


def mark_failed() -> None:
    """The run failed (an entry point that catches the error itself says so)."""
    _STOP.failed = True


_NETWORKING_FAILED = "failed to initialize networking:"  # Bytewax 0.21, src/run.rs


def pipeline_error(exc: BaseException | None) -> PipelineError | None:
    """The first PipelineError in an exception's cause/context chain, if any; Bytewax's
    failure to set up this process's cluster connections (another process holds its port,
    or something else connected to it: "received incorrect timely handshake") as a
    ClusterAddressError, so it too is one line, not a Rust trace."""
    seen: list[BaseException] = []
    while exc is not None and all(exc is not s for s in seen):
        if isinstance(exc, PipelineError):
            return exc
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    for error in seen:
        reason = str(error).partition(_NETWORKING_FAILED)[2].split("\n")[0].strip()
        if reason:
            return _address_error(reason)
    return None


def _address_error(reason: str) -> ClusterAddressError:
    from dataflow import metrics  # only on this failure: the runner imports this module too

    process = metrics.process_id()
    addresses = metrics.cluster_addresses()
    address = addresses[process] if process < len(addresses) else "its address"
    return ClusterAddressError(
        f"process {process} could not open the cluster's connections on {address} "
        f"({reason}): another process listens on or connects to that port; stop it, or give "
        f"the job free ports (python -m dataflow run --base-port, or -a/BYTEWAX_ADDRESSES of "
        f"bytewax.run)")


def _excepthook(kind: type[BaseException], value: BaseException,
                traceback: TracebackType | None) -> None:
    ours = pipeline_error(value)
    if ours is None:
        sys.__excepthook__(kind, value, traceback)
        return
    print(f"login-dataflow: error: {type(ours).__name__}: {ours}", file=sys.stderr)


def install(restart_env: Callable[[dict[str, str]], dict[str, str]] | None = None) -> None:
    """Signal handlers, the one-line error hook, and the exit that follows a stop.

    Call from the main thread, before the dataflow runs. ``restart_env`` adjusts the
    environment of a restart after new partitions (``dataflow.entrypoint`` passes one
    that resumes from the committed offsets when there is no recovery directory).
    """
    global _installed  # once per process
    if _installed:
        return
    _installed = True
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    sys.excepthook = _excepthook
    # Registered before anything else registers, so it runs last (atexit is LIFO): the
    # run summary and the sinks' commits come first.
    atexit.register(_finish, restart_env or (lambda env: env))


def _finish(restart_env: Callable[[dict[str, str]], dict[str, str]]) -> None:
    """After a requested stop: start again (new partitions) or exit with its code. A failure
    of ours whose exit code is not Python's 1 (a cluster port in use: 2) exits with it, as
    under dataflow.worker."""
    failure = getattr(sys, "last_value", None)
    ours = pipeline_error(failure)
    if ours is not None and ours.exit_code != 1:
        _exit_now(ours.exit_code)
    if _STOP.reason is None or _STOP.failed or failure is not None:
        return  # a normal end, or a failure: Python's own exit code stands
    if _STOP.restart:
        argv = [sys.executable, *sys.orig_argv[1:]]
        env = restart_env(dict(os.environ))
        log.warning("restarting", command=" ".join(argv[1:]),
                    starting_offset=env.get("STARTING_OFFSET", "(default)"))
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        try:
            os.execve(sys.executable, argv, env)
        except OSError as exc:
            log.error("restart_failed", error=str(exc), exit_code=EXIT_PARTITIONS_ADDED)
    _exit_now(_STOP.code)


def watch_partitions(count_now: Callable[[], int], known: Sequence[int],
                     every: float = PARTITION_CHECK_SECONDS) -> threading.Thread:
    """Check the input topic's partition count every ``every`` seconds in the background;
    more than ``known`` stops the job for a restart that reads the new ones."""

    def watch() -> None:
        while not stop_requested():
            time.sleep(every - time.time() % every)  # the same instants in every process
            try:
                now = count_now()
            except Exception as exc:  # a broker away for a moment: try again next time
                log.debug("partition_check_failed", error=str(exc))
                continue
            if now > len(known):
                request_stop("input_partitions_added", EXIT_PARTITIONS_ADDED, restart=True,
                             partitions_before=len(known), partitions_now=now)
                return

    thread = threading.Thread(target=watch, name="partition-watch", daemon=True)
    thread.start()
    return thread


def committed_restart(recovery: bool) -> Callable[[dict[str, str]], dict[str, str]]:
    """The restart environment: without recovery, resume from the committed offsets."""

    def adjust(env: dict[str, str]) -> dict[str, str]:
        if not recovery:
            env = {**env, "STARTING_OFFSET": "committed"}
        return env

    return adjust
