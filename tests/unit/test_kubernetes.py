"""deploy/kubernetes, checked offline: schemas, settings, process ids and addresses, recovery init.

Every built-in kind is validated strictly (unknown fields refused) against the
Kubernetes JSON schemas that the kubernetes-validate package ships (installed from
PyPI by requirements-dev.txt; no network at test time); the PodMonitor custom
resource against tests/data/podmonitor-schema.json. The launch and recovery-init
scripts of the StatefulSet are run with sh, as the pod runs them.
"""

from __future__ import annotations

import copy
import json
import os
import re
import socket
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from dataflow.runner import check_metrics_port, cluster_addresses, process_commands
from dataflow.settings import (
    BYTEWAX_ENV_VARS,
    ENV_VARS,
    KAFKA_CONFIG_PREFIX,
    Settings,
)

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.30"
PODMONITOR_SCHEMA = ROOT / "tests" / "data" / "podmonitor-schema.json"
NOT_APPLIED = {"secret.example.yaml"}  # a template the operator fills in, not applied


@cache
def documents(name: str) -> tuple[dict[str, Any], ...]:
    """The YAML documents of one file of deploy/kubernetes."""
    return tuple(d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d)


def kustomization() -> dict[str, Any]:
    return documents("kustomization.yaml")[0]


def manifest_files() -> list[str]:
    return sorted(p.name for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")


def one(kind: str) -> dict[str, Any]:
    """The single applied resource of this kind."""
    found = [d for name in kustomization()["resources"] for d in documents(name)
             if d["kind"] == kind]
    assert len(found) == 1, kind
    return found[0]


def statefulset() -> dict[str, Any]:
    return one("StatefulSet")


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = statefulset()["spec"]["template"]["spec"]
    return spec


def container(name: str = "dataflow") -> dict[str, Any]:
    spec = pod_spec()
    return next(c for c in spec["containers"] + spec.get("initContainers", [])
                if c["name"] == name)


def settings_data() -> dict[str, str]:
    data: dict[str, str] = one("ConfigMap")["data"]
    return data


def validate(doc: dict[str, Any]) -> None:
    """Strict schema validation: Kubernetes' own schemas, or the PodMonitor one."""
    if doc["kind"] == "PodMonitor":
        jsonschema.Draft202012Validator(json.loads(PODMONITOR_SCHEMA.read_text())).validate(doc)
    else:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_kustomization_applies_every_manifest_once() -> None:
    """Every manifest file is a kustomization resource (the Secret example excepted), once."""
    resources = kustomization()["resources"]
    assert len(resources) == len(set(resources))
    assert sorted(resources) == [n for n in manifest_files() if n not in NOT_APPLIED]


@pytest.mark.parametrize("name", manifest_files())
def test_every_manifest_is_valid_against_its_schema(name: str) -> None:
    """Each document validates strictly against the Kubernetes (or PodMonitor) schema."""
    for doc in documents(name):
        validate(doc)


@pytest.mark.parametrize(
    ("kind", "path", "bad"),
    [("StatefulSet", ("spec",), {"replica": 3}),
     ("StatefulSet", ("spec", "template", "spec", "securityContext"), {"runAsUser": "app"}),
     ("PodMonitor", ("spec", "podMetricsEndpoints", 0), {"prot": "metrics"})],
    ids=["misspelt-field", "wrong-type", "podmonitor-misspelt-field"],
)
def test_validation_rejects_a_broken_manifest(kind: str, path: tuple[Any, ...],
                                              bad: dict[str, Any]) -> None:
    """A misspelt field or a wrong type fails validation (the check above can fail)."""
    doc = copy.deepcopy(one(kind))
    target = doc
    for step in path:
        target = target[step]
    target.update(bad)
    with pytest.raises(jsonschema.ValidationError):
        validate(doc)


def test_validation_needs_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Schemas come from the installed package: validation works with sockets refused."""
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("schema validation tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    validate(statefulset())
    validate(one("PodMonitor"))


def script_exports(script: str) -> set[str]:
    return set(re.findall(r"^\s*export ([A-Z_][A-Z0-9_]*)=", script, re.MULTILINE))


def test_every_variable_the_manifests_set_is_a_real_setting() -> None:
    """ConfigMap keys, env entries, script exports and Secret keys: settings the code reads."""
    names = set(settings_data())
    for c in pod_spec()["containers"] + pod_spec()["initContainers"]:
        names |= {e["name"] for e in c.get("env", [])}
        names |= script_exports(" ".join(c.get("command", [])))
    job = one("Job")["spec"]["template"]["spec"]["containers"][0]
    names |= set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", job["command"][2]))
    secret = documents("secret.example.yaml")[0]["stringData"]
    assert all(key.startswith(KAFKA_CONFIG_PREFIX) for key in secret)
    names |= set(secret)
    unknown = {n for n in names if n not in ENV_VARS | BYTEWAX_ENV_VARS
               and not n.startswith(KAFKA_CONFIG_PREFIX)}
    assert unknown == set()
    assert {"BYTEWAX_PROCESS_ID", "METRICS_ADDRESS"} <= names


def test_configmap_settings_pass_the_start_up_check() -> None:
    """The ConfigMap's settings (plus the example Secret's) are accepted by Settings.from_env."""
    secret = documents("secret.example.yaml")[0]["stringData"]
    settings = Settings.from_env({**settings_data(), **secret})
    assert settings.kafka_config["security.protocol"] == "SASL_SSL"


def launch(ordinal: int, **extra: str) -> subprocess.CompletedProcess[str]:
    """Run the dataflow container's launch script as pod ``ordinal``; it prints its env."""
    command = container()["command"]
    args = [*command, sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"]
    env = {"PATH": os.environ["PATH"], **settings_data(),
           "HOSTNAME": f"{statefulset()['metadata']['name']}-{ordinal}", **extra}
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=30)


def port_of(name: str) -> int:
    return int(next(p["containerPort"] for p in container()["ports"] if p["name"] == name))


def test_pod_ordinals_give_the_process_ids_and_addresses_the_runner_gives() -> None:
    """Pod K is process K and listens at the K-th address: the same rule as `dataflow run`."""
    sts = statefulset()
    replicas = sts["spec"]["replicas"]
    service = one("Service")
    assert sts["spec"]["serviceName"] == service["metadata"]["name"]
    expected = cluster_addresses([(f"{sts['metadata']['name']}-{k}.{service['metadata']['name']}",
                                   port_of("cluster")) for k in range(replicas)])
    runner = process_commands(_runner_args(replicas))
    for k in range(replicas):
        done = launch(k)
        assert done.returncode == 0, done.stderr
        env = json.loads(done.stdout)
        assert env["BYTEWAX_PROCESS_ID"] == runner[k][1]["BYTEWAX_PROCESS_ID"] == str(k)
        assert env["BYTEWAX_ADDRESSES"] == expected
        own = env["BYTEWAX_ADDRESSES"].split(";")[k]
        assert own.startswith(f"{env['HOSTNAME']}.")  # this pod's own name
        assert len(runner[k][1]["BYTEWAX_ADDRESSES"].split(";")) == replicas
    assert {p["port"] for p in service["spec"]["ports"]} >= {port_of("cluster")}


def _runner_args(processes: int) -> Any:
    import argparse

    return argparse.Namespace(processes=processes, workers_per_process=1, base_port=2101,
                              recovery_directory=None, snapshot_interval=None,
                              backup_interval=None)


def test_every_pod_serves_metrics_on_the_probed_port() -> None:
    """METRICS_ADDRESS port + process id is the 'metrics' port, which probes and scrapes use."""
    metrics_port = port_of("metrics")
    for k in range(statefulset()["spec"]["replicas"]):
        env = json.loads(launch(k).stdout)
        address = env["METRICS_ADDRESS"]
        check_metrics_port(address, int(env["BYTEWAX_PROCESS_ID"]))
        assert int(address.rpartition(":")[2]) + k == metrics_port
    for probe in ("readinessProbe", "livenessProbe"):
        assert container()[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    endpoint = one("PodMonitor")["spec"]["podMetricsEndpoints"][0]
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")


def test_a_pod_beyond_the_address_list_refuses_to_start() -> None:
    """Scaled up without new addresses: exit 2 and one line, no process started."""
    done = launch(3)
    assert done.returncode == 2
    assert done.stderr == ("login-dataflow: error: pod ordinal 3, but BYTEWAX_ADDRESSES lists 3 "
                           "processes; change replicas and BYTEWAX_ADDRESSES together\n")


def test_selectors_match_the_pods() -> None:
    """Service, PodDisruptionBudget and PodMonitor select the StatefulSet's pods."""
    labels = statefulset()["spec"]["template"]["metadata"]["labels"]
    assert statefulset()["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert one("Service")["spec"]["selector"].items() <= labels.items()
    assert one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert one("PodMonitor")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = one("Service")["spec"]
    assert (service["clusterIP"], service["publishNotReadyAddresses"]) == ("None", True)
    assert statefulset()["spec"]["podManagementPolicy"] == "Parallel"


def test_recovery_volume_user_and_paths_match_the_dockerfile() -> None:
    """Non-root as the image's app user; the recovery volume where the image expects it."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    uid = int(re.search(r"ARG APP_UID=(\d+)", dockerfile).group(1))  # type: ignore[union-attr]
    assert "/data/recovery" in dockerfile
    security = pod_spec()["securityContext"]
    assert (security["runAsNonRoot"], security["runAsUser"], security["fsGroup"]) == (
        True, uid, uid)
    for c in pod_spec()["containers"] + pod_spec()["initContainers"]:
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert {"name": "recovery", "mountPath": "/data/recovery"} in c["volumeMounts"]
    assert settings_data()["BYTEWAX_RECOVERY_DIRECTORY"] == "/data/recovery"
    [claim] = statefulset()["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "recovery"


def test_kafka_secrets_come_from_a_secret() -> None:
    """KAFKA_CONFIG_* comes from the Secret the example shows, never from the ConfigMap."""
    assert not any(k.startswith(KAFKA_CONFIG_PREFIX) for k in settings_data())
    refs = [r["secretRef"]["name"] for r in container()["envFrom"] if "secretRef" in r]
    assert refs == [documents("secret.example.yaml")[0]["metadata"]["name"]]


def test_resources_are_sized_from_the_benchmark() -> None:
    """One core and room above the measured 150 MB peak RSS per process; no CPU limit."""
    resources = container()["resources"]
    assert resources["requests"]["cpu"] == "1"
    assert resources["requests"]["memory"] == "256Mi"
    assert "cpu" not in resources["limits"]
    assert "150 MB" in (ROOT / "benchmarks" / "README.md").read_text()


def run_recovery_init(directory: Path, ordinal: int,
                      addresses: str | None = None) -> subprocess.CompletedProcess[str]:
    """The recovery-init container's script, as pod ``ordinal``, on ``directory``.

    ``addresses`` replaces the ConfigMap's BYTEWAX_ADDRESSES (the partition count).
    """
    cluster = {"BYTEWAX_ADDRESSES": addresses} if addresses else {}
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           **settings_data(), **cluster, "BYTEWAX_RECOVERY_DIRECTORY": str(directory),
           "HOSTNAME": f"login-dataflow-{ordinal}", "TMPDIR": str(directory.parent)}
    return subprocess.run(container("recovery-init")["command"], env=env, capture_output=True,
                          text=True, timeout=60)


def test_recovery_init_creates_this_pods_partition_once(tmp_path: Path) -> None:
    """Empty volume: part-K of N; run again: left alone; foreign files: refused, exit 1."""
    volume = tmp_path / "volume"
    volume.mkdir()
    done = run_recovery_init(volume, 1)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in volume.iterdir()) == ["part-1.sqlite3"]
    before = (volume / "part-1.sqlite3").read_bytes()
    assert run_recovery_init(volume, 1).returncode == 0
    assert (volume / "part-1.sqlite3").read_bytes() == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    refused = run_recovery_init(other, 0)
    assert refused.returncode == 1
    assert "holds files but no recovery partitions" in refused.stderr


def test_topics_job_creates_every_topic_the_job_uses() -> None:
    """The Job loops over the five topic settings, from the same ConfigMap as the job."""
    job = one("Job")["spec"]["template"]["spec"]["containers"][0]
    script = job["command"][2]
    looped = re.search(r"for topic in (.*); do", script).group(1)  # type: ignore[union-attr]
    assert re.findall(r"\$([A-Z_]+)", looped) == [
        "INPUT_TOPIC", "OUTPUT_TOPIC", "DLQ_TOPIC", "COUNTS_TOPIC", "LATE_TOPIC"]
    assert "--if-not-exists" in script
    compose = (ROOT / "docker-compose.yml").read_text()
    assert f"image: &kafka-image {job['image']}" in compose  # the compose topics image
    assert job["envFrom"] == [{"configMapRef": {"name": one("ConfigMap")["metadata"]["name"]}}]
