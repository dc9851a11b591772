"""One running job per CONSUMER_GROUP and per recovery directory: the claim at start-up.

Two instances with the same CONSUMER_GROUP (a second deploy, a forgotten terminal)
would both read every partition, write every record twice and overwrite each other's
committed offsets. So each process of the job claims its place at start-up:

- It is a member of the consumer group ``<CONSUMER_GROUP>.instances``: a consumer
  subscribed to INPUT_TOPIC that pauses whatever it is assigned (it never fetches),
  polled from a daemon thread, with a client.id that says which process of which job
  it is (``dataflow.instances``). ``kafka-consumer-groups.sh --describe --group
  login-dataflow.instances --members`` lists the running processes. It is a group of
  its own: the job's readers assign() their partitions and commit to CONSUMER_GROUP as
  a simple consumer, which the broker refuses (UNKNOWN_MEMBER_ID) once that group has
  members.
- Before joining, it describes that group, while the caller checks the topics and
  builds the flow (``Claim.begin``, then ``Claim.conclude``). A member of the same
  cluster with another process index is a sibling. Any other member (another cluster,
  or this cluster's process index again: a duplicate, or the zombie of a process
  killed a moment ago on another machine) is waited for up to the session timeout and
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

import os
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import msgspec
from confluent_kafka import (
    Consumer,
    ConsumerGroupState,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from dataflow.errors import InstanceConflictError, kafka_reason
from dataflow.instances import (
    GROUP_SUFFIX,
    Instance,
    Member,
    conflicts,
    identity,
    in_use_line,
    must_stop,
)
from dataflow.kafka_config import admin_config
from dataflow.kafka_source import METADATA_TIMEOUT_S
from dataflow.logs import get_logger
from dataflow.recovery_guard import DirectoryLock, lock_recovery_directory, recovery_directory
from dataflow.settings import Settings

log = get_logger(__name__)

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


class GroupView(msgspec.Struct, frozen=True):
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
        # It never fetches (it pauses what it is assigned); should a fetch slip in between
        # the assignment and the pause, keep what it may queue small.
        "queued.max.messages.kbytes": 1, "max.partition.fetch.bytes": 1024,
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
    docstring. ``begin`` before checking the topics, so that the instances group is
    described while the topics are checked and the flow is built; ``conclude`` before
    anything reads or writes Kafka: it waits for conflicts and joins the group."""

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

    def begin(self) -> Claim:
        """Lock the recovery directory and send the describe of the instances group."""
        if self._directory is not None:
            self._lock = lock_recovery_directory(self._directory, self.me.index)
        self._first = self._admin.describe_consumer_groups(
            [self._group], request_timeout=METADATA_TIMEOUT_S)[self._group]
        return self

    def conclude(self) -> None:
        """Wait for conflicting members, then join the group; released on failure."""
        if self._member is not None:
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
    """This process's claim, to begin before the topic check, conclude once the flow is
    built and release at exit."""
    return Claim(settings, identity(settings), recovery_directory())
