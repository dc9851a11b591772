"""One running job per CONSUMER_GROUP and per recovery directory.

Two instances with the same CONSUMER_GROUP (a second deploy, a forgotten terminal)
would both read every partition, write every record twice and overwrite each other's
committed offsets. So each process of the job claims its place at start-up:

- It is a member of the consumer group ``<CONSUMER_GROUP>.instances``: a consumer
  subscribed to INPUT_TOPIC that pauses whatever it is assigned (it never fetches),
  polled from a daemon thread, with the client.id
  ``login-dataflow/<cluster>/<process index>/<pid>@<hostname>``. ``<cluster>`` is a
  short hash of the cluster's addresses (``-a`` or BYTEWAX_ADDRESSES; "single" for
  one process) and INPUT_TOPIC. ``kafka-consumer-groups.sh --describe --group
  login-dataflow.instances --members`` lists the running processes. It is a group of
  its own: the job's readers assign() their partitions and commit to CONSUMER_GROUP as
  a simple consumer, which the broker refuses (UNKNOWN_MEMBER_ID) once that group has
  members.
- Before joining, it describes that group (while the caller checks the topics). A
  member of the same cluster with another process index is a sibling. Any other
  member (another cluster, or this cluster's process index again: a duplicate, or the
  zombie of a process killed a moment ago) is waited for up to the session timeout and
  a margin, since a zombie leaves by then; one still there refuses the start with
  ``InstanceConflictError`` (exit 2, one line).
- After each assignment (the join runs in the background: the broker may delay it by
  group.initial.rebalance.delay.ms) it looks once more. A conflicting member that is
  there now started at the same moment, and ``must_stop`` decides which one stops.
- With a recovery directory, it holds ``.lock-process-<K>`` there
  (``dataflow.recovery_guard.DirectoryLock``) for its whole life.

``Claim.release`` (at exit) closes the member, which leaves the group at once, so the
next run is not kept waiting.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from confluent_kafka import (
    Consumer,
    ConsumerGroupState,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from dataflow.errors import InstanceConflictError, kafka_reason
from dataflow.kafka_config import admin_config
from dataflow.kafka_source import METADATA_TIMEOUT_S
from dataflow.logs import get_logger
from dataflow.recovery_guard import (
    DirectoryLock,
    bytewax_option,
    lock_recovery_directory,
    recovery_directory,
)
from dataflow.settings import Settings

log = get_logger(__name__)

APP = "login-dataflow"
GROUP_SUFFIX = ".instances"
# The broker's default group.min.session.timeout.ms: a member that died without leaving
# (kill -9) is removed this long after its last heartbeat.
SESSION_TIMEOUT_MS = 6000
WAIT_MARGIN_S = 3.0
DESCRIBE_EVERY_S = 0.5
POLL_S = 0.1  # how often the member's thread serves its consumer (heartbeats are librdkafka's)
LEAVE_TIMEOUT_S = 5.0
_RETRIABLE = frozenset({KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                        KafkaError.COORDINATOR_NOT_AVAILABLE})
_REBALANCING = frozenset({ConsumerGroupState.PREPARING_REBALANCING,
                          ConsumerGroupState.COMPLETING_REBALANCING})
_CLIENT_ID = re.compile(
    rf"^{APP}/(?P<cluster>[0-9a-f]+)/(?P<index>\d+)/(?P<pid>\d+)@(?P<host>[^#]+)"
    r"(?:#(?P<ns>\d+))?$")


def _pid_namespace() -> int:
    """This process's pid namespace (0 where /proc does not say): pids are comparable only
    within one."""
    try:
        return int(os.readlink("/proc/self/ns/pid").partition("[")[2].rstrip("]"))
    except (OSError, ValueError):
        return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


@dataclass(frozen=True, slots=True)
class Instance:
    """One process of one job: its cluster, process index, pid and host."""

    cluster: str
    index: int
    pid: int
    host: str
    namespace: int = 0  # the pid namespace, 0 when unknown

    @property
    def client_id(self) -> str:
        return f"{APP}/{self.cluster}/{self.index}/{self.pid}@{self.host}#{self.namespace}"

    def dead_here(self, me: Instance) -> bool:
        """Whether it is a process of this machine and pid namespace that no longer exists
        (killed a moment ago: its membership has not timed out yet)."""
        return (self.host == me.host and self.namespace == me.namespace != 0
                and self.pid != me.pid and not _alive(self.pid))

    def describe(self) -> str:
        return (f"process {self.index} of cluster {self.cluster}, pid {self.pid} "
                f"on host {self.host}")


def parse_client_id(client_id: str) -> Instance | None:
    """The instance a member's client.id names; None for a client that is not this job."""
    found = _CLIENT_ID.match(client_id)
    if found is None:
        return None
    return Instance(found["cluster"], int(found["index"]), int(found["pid"]), found["host"],
                    int(found["ns"] or 0))


@dataclass(frozen=True, slots=True)
class Member:
    """A member of the instances group, as the broker describes it."""

    member_id: str
    client_id: str
    host: str  # the client's address as the broker sees it, e.g. /10.0.0.7

    @property
    def instance(self) -> Instance | None:
        return parse_client_id(self.client_id)


def cluster_id(addresses: str | None, input_topic: str) -> str:
    """A short hash naming one cluster: its process addresses ("single" for one process)
    and its input topic."""
    normal = ";".join(a.strip() for a in (addresses or "").split(";") if a.strip())
    key = f"{normal or 'single'}\n{input_topic}"
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def conflicts(me: Instance, members: Iterable[Member], own_member_id: str = "") -> list[Member]:
    """The members that mean another job: all but this process's own member, the other
    processes of its cluster, and processes of this machine that are gone (a kill -9 a
    moment ago: no need to wait for the session timeout)."""
    found = []
    for member in members:
        other = member.instance
        if member.member_id == own_member_id or (
                other is not None and other.cluster == me.cluster and other.index != me.index):
            continue
        if other is not None and other.dead_here(me):
            continue
        found.append(member)
    return found


def must_stop(me: Instance, own_member_id: str, other: Member) -> bool:
    """Of two instances that joined at the same moment, whether this one stops.

    Every process decides the same way: the greater cluster id stops, so all processes
    of one cluster stop and none of the other's; within one cluster id (two single-process
    jobs), the greater ``pid@host``, then member id. A client that is not this job never
    stops itself, so the job does not stop for it either (it logs it). Two identical
    multi-process clusters started at the same instant may each lose a process; the
    restarts then meet the check before joining.
    """
    theirs = other.instance
    if theirs is None:
        return False
    return ((me.cluster, f"{me.pid}@{me.host}", own_member_id)
            > (theirs.cluster, f"{theirs.pid}@{theirs.host}", other.member_id))


def in_use_line(consumer_group: str, member: Member, raced: bool = False) -> str:
    """The one line of a refusal: the group, the other instance, what to do."""
    group = consumer_group + GROUP_SUFFIX
    other = member.instance
    if other is None:
        return (f"CONSUMER_GROUP {consumer_group!r} is in use by another client (client.id "
                f"{member.client_id!r} from {member.host}, member of group {group!r}); stop "
                "it, or give this job its own CONSUMER_GROUP")
    if raced:
        return (f"CONSUMER_GROUP {consumer_group!r} is in use by a job that started at the "
                f"same moment ({other.describe()}, member of group {group!r}); this one stops, "
                "that one keeps running; give each job its own CONSUMER_GROUP")
    return (f"CONSUMER_GROUP {consumer_group!r} is in use by a running job ({other.describe()}, "
            f"member of group {group!r}); stop it, or give this job its own CONSUMER_GROUP")


def identity(settings: Settings, argv: Sequence[str] | None = None,
             environ: Mapping[str, str] | None = None) -> Instance:
    """This process: its cluster (addresses as bytewax.run reads them), index (as
    ``metrics.process_id``), pid and host."""
    env = os.environ if environ is None else environ
    addresses = bytewax_option(("-a", "--addresses"), "BYTEWAX_ADDRESSES", argv, env)
    if addresses is None and env.get("BYTEWAX_HOSTFILE_PATH"):
        with contextlib.suppress(OSError):  # bytewax.run reports a missing hostfile itself
            addresses = ";".join(Path(env["BYTEWAX_HOSTFILE_PATH"]).read_text().split())
    index = bytewax_option(("-i", "--process-id"), "BYTEWAX_PROCESS_ID", argv, env) or ""
    return Instance(cluster_id(addresses, settings.input_topic),
                    int(index) if index.isdigit() else 0, os.getpid(), socket.gethostname(),
                    _pid_namespace())


@dataclass(frozen=True, slots=True)
class GroupView:
    """A consumer group as described: its members, and whether a rebalance is under way."""

    members: list[Member]
    rebalancing: bool = False


def describe_group(admin: AdminClient, group: str, first: Future[Any] | None = None) -> GroupView:
    """The members of a consumer group (none when it does not exist). Retries while the
    group's coordinator is still being chosen or loaded, as on a fresh cluster."""
    deadline = time.monotonic() + METADATA_TIMEOUT_S
    future = first
    while True:
        if future is None:
            future = admin.describe_consumer_groups([group],
                                                    request_timeout=METADATA_TIMEOUT_S)[group]
        try:
            description = future.result()
        except KafkaException as exc:
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            code = error.code() if error is not None else None
            if code == KafkaError.GROUP_ID_NOT_FOUND:
                return GroupView([])
            if code in _RETRIABLE and time.monotonic() < deadline:
                time.sleep(0.1)
                future = None
                continue
            msg = (f"CONSUMER_GROUP: cannot describe consumer group {group!r}, which holds "
                   f"this job's running processes: {kafka_reason(exc)}")
            raise InstanceConflictError(msg) from exc
        return GroupView([Member(m.member_id, m.client_id, m.host) for m in description.members],
                         description.state in _REBALANCING)


def still_waiting(elapsed: float, view: GroupView, session_s: float) -> bool:
    """Whether to wait longer for conflicting members to leave. A member that died leaves
    a stable group within the session timeout; one that died during a rebalance is kept
    until the rebalance times out (max.poll.interval.ms, set to the session timeout)."""
    if elapsed < session_s + WAIT_MARGIN_S:
        return True
    return view.rebalancing and elapsed < 2 * session_s + WAIT_MARGIN_S


def member_config(settings: Settings, me: Instance, group: str) -> dict[str, Any]:
    """A consumer in the instances group that never fetches; KAFKA_CONFIG_* apply, and a
    KAFKA_CONFIG_SESSION_TIMEOUT_MS replaces the 6 s session timeout."""
    config = admin_config(settings)
    config.pop("group.instance.id", None)  # shared by every process it would fence them
    session_ms = int(config.get("session.timeout.ms", SESSION_TIMEOUT_MS))
    config.update({
        "group.id": group, "client.id": me.client_id,
        "group.protocol": "classic", "partition.assignment.strategy": "range",
        "session.timeout.ms": session_ms,
        # The rebalance timeout of a classic group: a member that dies while the group
        # rebalances stays until it runs out (300 s by default). This thread polls every
        # 0.1 s, so the session timeout is plenty (librdkafka's minimum).
        "max.poll.interval.ms": session_ms,
        "heartbeat.interval.ms": int(config.get("heartbeat.interval.ms", session_ms // 3)),
        "enable.auto.commit": False, "enable.auto.offset.store": False,
    })
    return config


class _Member:
    """This process's member of the instances group, polled from a daemon thread."""

    def __init__(self, settings: Settings, me: Instance, admin: AdminClient) -> None:
        self._group = settings.consumer_group
        self._me = me
        self._admin = admin
        try:
            self._consumer = Consumer(member_config(settings, me, self._group + GROUP_SUFFIX))
            self._consumer.subscribe([settings.input_topic], on_assign=self._on_assign)
        except KafkaException as exc:
            msg = (f"CONSUMER_GROUP: cannot join consumer group {self._group + GROUP_SUFFIX!r}, "
                   f"which holds this job's running processes: {kafka_reason(exc)}")
            raise InstanceConflictError(msg) from exc
        self._assigned = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="instances-member", daemon=True)
        self._thread.start()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        consumer.assign(partitions)
        consumer.pause(partitions)  # a member only: it never fetches
        self._assigned.set()

    def _run(self) -> None:
        try:
            # poll(0), then a wait that leave() cuts short: a clean exit does not wait for
            # a poll to time out.
            while not self._stop.wait(POLL_S):
                try:
                    self._consumer.poll(0)
                except KafkaException as exc:  # e.g. in a rebalance callback: try again
                    log.warning("instances_member_error", error=str(exc))
                if self._assigned.is_set():
                    self._assigned.clear()
                    self._check_after_join()
        finally:
            self._consumer.close()  # leaves the group at once

    def _check_after_join(self) -> None:
        """A conflicting member now started at the same moment: one of the two stops."""
        try:
            members = describe_group(self._admin, self._group + GROUP_SUFFIX).members
        except InstanceConflictError as exc:
            log.warning("instances_check_failed", error=str(exc))
            self._stop.wait(1.0)
            self._assigned.set()  # look again on the next turn
            return
        own = self._consumer.memberid() or ""
        for other in conflicts(self._me, members, own):
            if must_stop(self._me, own, other):
                print(f"login-dataflow: error: {in_use_line(self._group, other, raced=True)}",
                      file=sys.stderr, flush=True)
                self._consumer.close()
                # Stopping a running Bytewax process from a background thread: there is no
                # clean way, and this race (two jobs starting within a join of each other)
                # is rare. Nothing is lost: snapshots cover only confirmed writes.
                os._exit(2)
            log.warning("instances_raced", group=self._group, other=other.client_id,
                        hint="started at the same moment; the other one stops"
                        if other.instance else "a client that is not this job joined")

    def leave(self) -> None:
        self._stop.set()
        self._thread.join(POLL_S + LEAVE_TIMEOUT_S)


class Claim:
    """This process's claim on its CONSUMER_GROUP and recovery directory; see the module
    docstring. Enter before checking the topics, so the instances group is described
    meanwhile; leaving the ``with`` block waits for conflicts and joins the group."""

    def __init__(self, settings: Settings, me: Instance, directory: Path | None) -> None:
        self._settings = settings
        self.me = me
        self._directory = directory
        self._group = settings.consumer_group + GROUP_SUFFIX
        self._lock: DirectoryLock | None = None
        # The describe goes to the group's coordinator over a second connection, which
        # librdkafka opens after reconnect.backoff.ms / 2 (100 ms by default): 2-19 ms
        # instead of 2-57 ms at 10 (measured), unless KAFKA_CONFIG_* says otherwise.
        self._admin = AdminClient({"reconnect.backoff.ms": 10, **admin_config(settings)})
        self._first: Future[Any] | None = None
        self._member: _Member | None = None

    def __enter__(self) -> Claim:
        if self._directory is not None:
            self._lock = lock_recovery_directory(self._directory, self.me.index)
        self._first = self._admin.describe_consumer_groups(
            [self._group], request_timeout=METADATA_TIMEOUT_S)[self._group]
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if kind is not None:
            self.release()
            return
        try:
            self._wait_for_conflicts(self._admin)
            self._member = _Member(self._settings, self.me, self._admin)
        except BaseException:
            self.release()
            raise

    def _wait_for_conflicts(self, admin: AdminClient) -> None:
        view = describe_group(admin, self._group, self._first)
        found = conflicts(self.me, view.members)
        if not found:
            return
        session_s = int(member_config(self._settings, self.me, self._group)
                        ["session.timeout.ms"]) / 1000
        log.warning("instances_waiting", group=self._group, other=found[0].client_id,
                    seconds=session_s + WAIT_MARGIN_S, hint="a process killed a moment ago "
                    "leaves the group within the session timeout (twice that if it died "
                    "during a rebalance); a running one stays")
        began = time.monotonic()
        while found and still_waiting(time.monotonic() - began, view, session_s):
            time.sleep(DESCRIBE_EVERY_S)
            view = describe_group(admin, self._group)
            found = conflicts(self.me, view.members)
        if found:
            raise InstanceConflictError(in_use_line(self._settings.consumer_group, found[0]))
        log.info("instances_gone", group=self._group, seconds=round(time.monotonic() - began, 1))

    def release(self) -> None:
        """Leave the instances group and let go of the recovery directory's lock."""
        if self._member is not None:
            self._member.leave()
            self._member = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def claim(settings: Settings) -> Claim:
    """This process's claim, to enter around the topic check and release at exit."""
    return Claim(settings, identity(settings), recovery_directory())
