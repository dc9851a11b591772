"""Who is who among the members of ``<CONSUMER_GROUP>.instances``: pure logic.

Each process of the job is a member of that group (``dataflow.instance_group``), with
the client.id ``login-dataflow/<cluster>/<process index>/<pid>@<hostname>#<pid
namespace>``. ``<cluster>`` is a short hash of the cluster's addresses (``-a`` or
BYTEWAX_ADDRESSES; "single" for one process) and INPUT_TOPIC. This module reads those
ids back and decides: a member of the same cluster with another process index is a
sibling; a process of this machine and pid namespace that no longer exists (killed a
moment ago) is no one; any other member is another job (``conflicts``), and of two
jobs that started at the same moment ``must_stop`` picks the one that stops.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import msgspec

from dataflow.logs import get_logger
from dataflow.recovery_guard import (
    bytewax_option,
)
from dataflow.settings import Settings

log = get_logger(__name__)

APP = "login-dataflow"
GROUP_SUFFIX = ".instances"
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


class Instance(msgspec.Struct, frozen=True):
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


class Member(msgspec.Struct, frozen=True):
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


