"""One running job per CONSUMER_GROUP: identities, who conflicts with whom, how long to wait,
who stops after a race and the refusal lines (no broker)."""

from __future__ import annotations

import os
import subprocess
import sys
from itertools import permutations
from pathlib import Path

from dataflow.instance_group import GroupView, member_config, still_waiting
from dataflow.instances import (
    Instance,
    Member,
    _pid_namespace,
    cluster_id,
    conflicts,
    identity,
    in_use_line,
    must_stop,
    parse_client_id,
)
from dataflow.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
ME = Instance("ab12cd34", 0, 4242, "host-a")


def member_of(instance: Instance, member_id: str = "") -> Member:
    """The group member an instance would be, as the broker describes it."""
    return Member(member_id or f"{instance.client_id}-uuid", instance.client_id, "/10.0.0.1")


def test_client_id_names_the_cluster_process_pid_and_host_and_reads_back() -> None:
    """login-dataflow/<cluster>/<index>/<pid>@<host>#<pid namespace>; another client's id
    reads as None."""
    assert ME.client_id == "login-dataflow/ab12cd34/0/4242@host-a#0"
    assert parse_client_id(ME.client_id) == ME
    assert parse_client_id("login-dataflow/ab12cd34/3/7@pod-3.svc.local") == Instance(
        "ab12cd34", 3, 7, "pod-3.svc.local")
    assert parse_client_id("rdkafka") is None
    assert parse_client_id("login-dataflow/ab12cd34/x/7@h") is None


def test_cluster_id_depends_on_the_addresses_and_the_input_topic_only() -> None:
    """Same addresses (spacing aside) and topic: same id; another topic or list: another."""
    two = cluster_id("h0:2101;h1:2101", "logins")
    assert two == cluster_id(" h0:2101 ; h1:2101;", "logins")
    assert len({two, cluster_id("h0:2101;h1:2101", "other"), cluster_id("h0:2101", "logins"),
                cluster_id(None, "logins")}) == 4
    assert cluster_id(None, "logins") == cluster_id("", "logins")


def test_siblings_are_fine_and_everything_else_conflicts() -> None:
    """Other indexes of this cluster pass; this index again, another cluster, a stranger
    and a zombie of this very process (same client.id, other member) conflict."""
    sibling = member_of(Instance(ME.cluster, 1, 99, "host-b"))
    duplicate = member_of(Instance(ME.cluster, 0, 77, "host-b"))
    other_cluster = member_of(Instance("ffff0000", 1, 55, "host-a"))
    stranger = Member("console-1", "console-consumer", "/10.0.0.9")
    zombie = member_of(ME, "old-member")
    own = member_of(ME, "own-member")
    everyone = [sibling, duplicate, other_cluster, stranger, zombie, own]
    assert conflicts(ME, everyone, own_member_id="own-member") == [
        duplicate, other_cluster, stranger, zombie]
    assert conflicts(ME, [sibling]) == []


def test_exactly_one_of_two_racing_jobs_stops_and_a_whole_cluster_stops_together() -> None:
    """Every pair decides the same way from both sides; a cluster's processes agree."""
    jobs = [Instance("ab12cd34", 0, 10, "a"), Instance("ab12cd34", 0, 9, "a"),
            Instance("ab12cd34", 0, 10, "b"), Instance("00ff00ff", 0, 10, "a")]
    for me, other in permutations(jobs, 2):
        assert must_stop(me, f"m-{me.client_id}", member_of(other, f"m-{other.client_id}")) \
            != must_stop(other, f"m-{other.client_id}", member_of(me, f"m-{me.client_id}"))
    single = Instance("00ff00ff", 0, 10, "a")
    cluster = [Instance("ab12cd34", index, 100 + index, f"pod-{index}") for index in range(3)]
    assert {must_stop(p, "m", member_of(single)) for p in cluster} == {True}
    assert not must_stop(single, "m", member_of(cluster[0]))
    assert not must_stop(ME, "m", Member("console-1", "console-consumer", "/10.0.0.9"))


def test_the_refusal_lines_name_the_group_the_other_instance_and_what_to_do() -> None:
    """A running job, a job that raced this one, and a client that is not this job."""
    other = member_of(Instance("ab12cd34", 0, 4242, "x"))
    assert in_use_line("login-dataflow", other) == (
        "CONSUMER_GROUP 'login-dataflow' is in use by a running job (process 0 of cluster "
        "ab12cd34, pid 4242 on host x, member of group 'login-dataflow.instances'); stop it, "
        "or give this job its own CONSUMER_GROUP")
    assert in_use_line("g", other, raced=True) == (
        "CONSUMER_GROUP 'g' is in use by a job that started at the same moment (process 0 of "
        "cluster ab12cd34, pid 4242 on host x, member of group 'g.instances'); this one "
        "stops, that one keeps running; give each job its own CONSUMER_GROUP")
    assert in_use_line("g", Member("m", "console", "/10.0.0.9")) == (
        "CONSUMER_GROUP 'g' is in use by another client (client.id 'console' from /10.0.0.9, "
        "member of group 'g.instances'); stop it, or give this job its own CONSUMER_GROUP")


def test_identity_reads_the_cluster_like_bytewax_run(tmp_path: Path) -> None:
    """-a, else BYTEWAX_ADDRESSES, else the hostfile; -i or BYTEWAX_PROCESS_ID; else single."""
    settings = Settings(input_topic="logins")
    hostfile = tmp_path / "hosts"
    hostfile.write_text("h0:2101\nh1:2101\n")
    given = identity(settings, ["dataflow.flow", "-i", "1", "-a", "h0:2101;h1:2101"], {})
    from_env = identity(settings, ["dataflow.flow"], {"BYTEWAX_ADDRESSES": "h0:2101;h1:2101"})
    from_file = identity(settings, ["dataflow.flow"], {"BYTEWAX_HOSTFILE_PATH": str(hostfile)})
    alone = identity(settings, ["dataflow.flow"], {})
    assert given.cluster == from_env.cluster == from_file.cluster == cluster_id(
        "h0:2101;h1:2101", "logins")
    assert (given.index, alone.index, alone.cluster) == (1, 0, cluster_id(None, "logins"))
    assert (alone.pid, alone.host) == (os.getpid(), os.uname().nodename)


def test_the_member_never_commits_and_leaves_within_a_short_session() -> None:
    """Group '<CONSUMER_GROUP>.instances', 6 s session unless KAFKA_CONFIG_* sets one, its
    own client.id, and no static membership that would fence the other processes."""
    settings = Settings(consumer_group="g", kafka_config={
        "client.id": "mine", "group.instance.id": "one", "security.protocol": "SSL"})
    config = member_config(settings, ME, "g.instances")
    assert {k: config[k] for k in ("group.id", "client.id", "session.timeout.ms",
                                   "heartbeat.interval.ms", "max.poll.interval.ms",
                                   "enable.auto.commit", "security.protocol")} == {
        "group.id": "g.instances", "client.id": ME.client_id, "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 2000, "max.poll.interval.ms": 6000,
        "enable.auto.commit": False, "security.protocol": "SSL"}
    assert "group.instance.id" not in config
    longer = Settings(kafka_config={"session.timeout.ms": "30000"})
    assert {k: member_config(longer, ME, "g.instances")[k]
            for k in ("session.timeout.ms", "max.poll.interval.ms")} == {
        "session.timeout.ms": 30000, "max.poll.interval.ms": 30000}


def test_a_conflicting_member_is_waited_for_as_long_as_a_dead_one_can_stay() -> None:
    """Session timeout + 3 s in a stable group; twice the session + 3 s while it rebalances
    (a member that died mid-rebalance stays until the rebalance times out)."""
    stable, rebalancing = GroupView([]), GroupView([], rebalancing=True)
    assert [still_waiting(t, stable, 6.0) for t in (0.0, 8.9, 9.0)] == [True, True, False]
    assert [still_waiting(t, rebalancing, 6.0) for t in (9.0, 14.9, 15.0)] == [
        True, True, False]


def test_a_member_of_a_process_gone_from_this_machine_is_no_conflict() -> None:
    """A member naming a pid of this host and pid namespace that no longer exists (killed a
    moment ago) is not waited for; one whose process lives, or of another host, is."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    me = Instance("ab12cd34", 0, os.getpid(), "host-a", _pid_namespace())
    dead = Instance("ab12cd34", 0, int(gone.stdout), "host-a", me.namespace)
    alive = Instance("ab12cd34", 0, os.getppid(), "host-a", me.namespace)
    elsewhere = Instance("ab12cd34", 0, int(gone.stdout), "host-b", me.namespace)
    members = [Member(str(n), i.client_id, "/127.0.0.1")
               for n, i in enumerate((dead, alive, elsewhere))]
    assert [m.member_id for m in conflicts(me, members)] == ["1", "2"]
