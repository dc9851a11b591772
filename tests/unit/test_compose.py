"""docker-compose.yml, checked without a Docker engine.

The file is read the way Compose reads it: YAML anchors and merge keys resolved
(PyYAML does both), ``${NAME}`` substituted from the checked-in ``.env``, env
files folded into each service's environment. Then it is held against the
Compose Specification schema (tests/data/compose-spec.json) and against what the
code reads (dataflow.settings).
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from dataflow.settings import (
    BYTEWAX_ENV_VARS,
    ENV_VARS,
    KAFKA_CONFIG_PREFIX,
    SPECS,
    Settings,
)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOTENV_FILE = ROOT / ".env"
SCHEMA_FILE = ROOT / "tests" / "data" / "compose-spec.json"
TOPIC_SETTINGS = ("input_topic", "output_topic", "dlq_topic", "counts_topic", "late_topic")
RECOVERY_VARS = {
    "BYTEWAX_RECOVERY_DIRECTORY",
    "BYTEWAX_SNAPSHOT_INTERVAL",
    "BYTEWAX_RECOVERY_BACKUP_INTERVAL",
}
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, $NAME, $$
_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a Compose env file; comments and blank lines skipped."""
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep, f"{path.name}: {line!r} is not KEY=VALUE"
        values[name.strip()] = value.strip().strip("'\"")
    return values


def referenced_variables(node: Any) -> set[str]:
    """Names that ${...} or $NAME refer to in the values of a Compose file ($$ excluded)."""
    if isinstance(node, dict):
        return set().union(*(referenced_variables(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(referenced_variables(item) for item in node))
    if not isinstance(node, str):
        return set()
    return {m["braced"] or m["bare"] for m in _VARIABLE.finditer(node) if not m["escaped"]}


def interpolate(node: Any, env: dict[str, str]) -> Any:
    """Substitute variables in every string value, as Compose does; unset names fail."""
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(item, env) for item in node]
    if not isinstance(node, str):
        return node

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["bare"]
        op, arg = match["op"], match["arg"]
        value = env.get(name)
        if op in {":-", ":?"} and value == "":
            value = None
        if value is None and op in {":-", "-"}:
            return str(arg)
        if value is None:
            raise AssertionError(f"variable {name} is not set (add it to .env)")
        return value

    return _VARIABLE.sub(substitute, node)


def load_compose(**overrides: str) -> dict[str, Any]:
    """docker-compose.yml as Compose sees it with .env (plus ``overrides``) applied."""
    raw = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    env = read_env_file(DOTENV_FILE) | overrides
    return interpolate(raw, env)


def env_files(service: dict[str, Any]) -> list[Path]:
    """The env files a service reads, as paths."""
    entries = service.get("env_file", [])
    entries = [entries] if isinstance(entries, str) else entries
    return [ROOT / (e if isinstance(e, str) else e["path"]) for e in entries]


def container_env(service: dict[str, Any]) -> dict[str, str]:
    """What a container's environment gets from Compose: env files, then environment."""
    env: dict[str, str] = {}
    for path in env_files(service):
        env |= read_env_file(path)
    declared = service.get("environment", {})
    if isinstance(declared, list):
        declared = dict(item.partition("=")[::2] for item in declared)
    env |= {key: "" if value is None else str(value) for key, value in declared.items()}
    return env


def our_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services that run the project's image (the ones that build it)."""
    return {name: svc for name, svc in compose["services"].items() if "build" in svc}


def kafka_clients(compose: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Environments of our services that run the job or a tool (they get its settings)."""
    found = {name: container_env(svc) for name, svc in our_services(compose).items()}
    return {name: env for name, env in found.items() if env.keys() & ENV_VARS}


def dataflow_processes(compose: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Bytewax processes by service name: the services that set BYTEWAX_PROCESS_ID."""
    found = {name: container_env(svc) for name, svc in our_services(compose).items()}
    return {name: env for name, env in found.items() if "BYTEWAX_PROCESS_ID" in env}


def topics_script(compose: dict[str, Any]) -> str:
    """The shell script the one-shot `topics` service runs."""
    command = compose["services"]["topics"]["command"]
    return command if isinstance(command, str) else " ".join(command)


def published_ports(service: dict[str, Any]) -> list[tuple[str, int]]:
    """(host port, container port) of each short-syntax port mapping."""
    pairs = []
    for spec in service.get("ports", []):
        parts = str(spec).split(":")
        assert len(parts) >= 2, f"port {spec!r} publishes no fixed host port"
        pairs.append((parts[-2], int(parts[-1].split("/")[0])))
    return pairs


def dotenv_int(name: str) -> int:
    return int(read_env_file(DOTENV_FILE)[name])


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.mark.parametrize("recovery", ["on", "off"])
def test_compose_file_follows_the_compose_specification(recovery: str) -> None:
    """With .env applied, the file validates against the vendored Compose Specification schema."""
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(load_compose(RECOVERY=recovery)),
                    key=lambda e: list(e.absolute_path))
    assert [f"{list(e.absolute_path)}: {e.message}" for e in errors] == []


def test_compose_file_has_no_obsolete_version_key() -> None:
    """The file is a Compose Specification file: no top-level `version:`."""
    assert "version" not in yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


def test_every_interpolated_variable_has_its_default_in_dotenv() -> None:
    """Each ${NAME} in docker-compose.yml is defined in .env, the one place for defaults."""
    used = referenced_variables(yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8")))
    assert "TOPIC_PARTITIONS" in used
    assert used - read_env_file(DOTENV_FILE).keys() == set()


def test_dotenv_restates_the_settings_defaults() -> None:
    """Every job setting in .env equals its default in dataflow/settings.py."""
    dotenv = read_env_file(DOTENV_FILE)
    differing = {s.env: (dotenv[s.env], s.default) for s in SPECS
                 if s.env in dotenv and dotenv[s.env] != s.default}
    assert differing == {}
    assert "KAFKA_BOOTSTRAP_SERVERS" not in dotenv


@pytest.mark.parametrize("recovery", ["on", "off"])
def test_our_services_set_only_variables_the_code_reads(recovery: str) -> None:
    """Every variable Compose gives our containers is read by dataflow.settings or bytewax.run."""
    unknown = {
        (name, var)
        for name, svc in our_services(load_compose(RECOVERY=recovery)).items()
        for var in container_env(svc)
        if var not in ENV_VARS | BYTEWAX_ENV_VARS
        and not (var.startswith(KAFKA_CONFIG_PREFIX) and var != KAFKA_CONFIG_PREFIX)
    }
    assert unknown == set()


def test_our_services_get_valid_settings(compose: dict[str, Any]) -> None:
    """Settings.from_env accepts the environment of the job, the generator and the dlq tool."""
    clients = kafka_clients(compose)
    assert {"generator", "dlq", "dataflow-0"} <= clients.keys()
    for name, env in clients.items():
        assert Settings.from_env(env).bootstrap_servers == "kafka:9092", name


def test_our_services_reach_kafka_on_its_in_network_listener(compose: dict[str, Any]) -> None:
    """KAFKA_BOOTSTRAP_SERVERS of our containers is a listener Kafka advertises to the network."""
    kafka_env = container_env(compose["services"]["kafka"])
    advertised = {entry.split("://", 1)[1]
                  for entry in kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    for name, env in kafka_clients(compose).items():
        assert set(env["KAFKA_BOOTSTRAP_SERVERS"].split(",")) <= advertised, name


def test_topics_service_creates_the_topics_the_job_uses(compose: dict[str, Any]) -> None:
    """The topics service creates exactly the five topics of the settings, idempotently."""
    match = re.search(r"for topic in ([^;]+);", topics_script(compose))
    assert match is not None
    created = match[1].split()
    defaults = Settings()
    assert created == [getattr(defaults, attr) for attr in TOPIC_SETTINGS]
    for name, env in kafka_clients(compose).items():
        settings = Settings.from_env(env)
        assert created == [getattr(settings, attr) for attr in TOPIC_SETTINGS], name
    assert "--if-not-exists" in topics_script(compose)


def test_topics_get_the_partition_count_from_dotenv(compose: dict[str, Any]) -> None:
    """Topics and the generator use TOPIC_PARTITIONS from .env, enough for every worker."""
    partitions = dotenv_int("TOPIC_PARTITIONS")
    assert re.findall(r"--partitions (\S+)", topics_script(compose)) == [str(partitions)]
    generator = shlex.split(compose["services"]["generator"]["command"])
    assert generator[generator.index("--partitions") + 1] == str(partitions)


def test_topics_and_generator_wait_for_kafka_and_topics(compose: dict[str, Any]) -> None:
    """topics waits for a healthy broker; the generator for the topics to exist."""
    services = compose["services"]
    assert services["topics"]["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    assert services["topics"]["restart"] == "no"
    assert services["generator"]["depends_on"]["topics"] == {
        "condition": "service_completed_successfully"}
    assert shlex.split(services["generator"]["command"])[:4] == [
        "python", "-m", "dataflow", "generate"]


def test_process_ids_count_from_zero_without_gaps(compose: dict[str, Any]) -> None:
    """BYTEWAX_PROCESS_ID values are 0..N-1, one per dataflow service."""
    ids = sorted(int(env["BYTEWAX_PROCESS_ID"]) for env in dataflow_processes(compose).values())
    assert len(ids) >= 2
    assert ids == list(range(len(ids)))


def test_every_process_gets_the_same_address_list(compose: dict[str, Any]) -> None:
    """BYTEWAX_ADDRESSES is one list of N entries, entry i naming process i's service."""
    processes = dataflow_processes(compose)
    lists = {env["BYTEWAX_ADDRESSES"] for env in processes.values()}
    assert len(lists) == 1
    addresses = lists.pop().split(";")
    assert len(addresses) == len(processes)
    ports = {address.rpartition(":")[2] for address in addresses}
    assert len(ports) == 1 and ports.pop().isdigit()
    by_id = {int(env["BYTEWAX_PROCESS_ID"]): name for name, env in processes.items()}
    assert [address.rpartition(":")[0] for address in addresses] == [
        by_id[i] for i in range(len(addresses))]


def test_workers_fit_the_topic_and_recovery_partitions(compose: dict[str, Any]) -> None:
    """Processes x workers stays within the topic partitions and the recovery partitions."""
    processes = dataflow_processes(compose)
    workers = sum(int(env.get("BYTEWAX_WORKERS_PER_PROCESS", "1"))
                  for env in processes.values())
    assert workers <= dotenv_int("TOPIC_PARTITIONS")
    assert workers <= dotenv_int("RECOVERY_PARTITIONS")


def test_recovery_is_on_by_default_with_all_three_settings(compose: dict[str, Any]) -> None:
    """With the .env defaults every process has the recovery directory and both intervals."""
    assert read_env_file(DOTENV_FILE)["RECOVERY"] == "on"
    for name, env in dataflow_processes(compose).items():
        assert env.keys() >= RECOVERY_VARS, name
        assert int(env["BYTEWAX_SNAPSHOT_INTERVAL"]) >= 1, name
        assert int(env["BYTEWAX_RECOVERY_BACKUP_INTERVAL"]) >= 0, name


def test_recovery_off_unsets_the_recovery_directory() -> None:
    """RECOVERY=off leaves BYTEWAX_RECOVERY_DIRECTORY unset, which is what turns recovery off."""
    for name, env in dataflow_processes(load_compose(RECOVERY="off")).items():
        assert "BYTEWAX_RECOVERY_DIRECTORY" not in env, name


def test_recovery_partitions_are_created_once_in_the_shared_volume(
    compose: dict[str, Any],
) -> None:
    """recovery-init makes RECOVERY_PARTITIONS partitions in the directory all processes mount."""
    init = compose["services"]["recovery-init"]
    init_env = container_env(init)
    directory = init_env["BYTEWAX_RECOVERY_DIRECTORY"]
    script = init["command"][-1]
    assert re.findall(r"python -m bytewax\.recovery \S+ (\d+)", script) == [
        str(dotenv_int("RECOVERY_PARTITIONS"))]
    assert 'ls -A "$dir"' in script  # only into an empty directory
    mounts = {f"recovery:{directory}"}
    assert set(init["volumes"]) == mounts
    assert "recovery" in compose["volumes"]
    for name, env in dataflow_processes(compose).items():
        assert env["BYTEWAX_RECOVERY_DIRECTORY"] == directory, name
        assert set(compose["services"][name]["volumes"]) == mounts, name
        assert compose["services"][name]["depends_on"]["recovery-init"] == {
            "condition": "service_completed_successfully"}, name


def test_processes_start_after_kafka_and_topics_and_restart(compose: dict[str, Any]) -> None:
    """Each process waits for a healthy broker and the topics, and restarts unless stopped."""
    for name in dataflow_processes(compose):
        svc = compose["services"][name]
        assert svc["depends_on"]["kafka"] == {"condition": "service_healthy"}, name
        assert svc["depends_on"]["topics"] == {
            "condition": "service_completed_successfully"}, name
        assert svc["restart"] == "unless-stopped", name
        assert svc["command"] == ["python", "-m", "dataflow.worker", "dataflow.flow"], name


def test_each_process_publishes_its_metrics_on_its_own_host_port(
    compose: dict[str, Any],
) -> None:
    """The Bytewax API is on in every process, each published on a different host port."""
    host_ports = []
    for name, env in dataflow_processes(compose).items():
        assert env["BYTEWAX_DATAFLOW_API_ENABLED"] == "true", name
        api_port = int(env.get("BYTEWAX_DATAFLOW_API_PORT", "3030"))
        mapped = [host for host, target in published_ports(compose["services"][name])
                  if target == api_port]
        assert len(mapped) == 1, name
        host_ports += mapped
    everything = [host for svc in compose["services"].values()
                  for host, _ in published_ports(svc)]
    assert len(set(host_ports)) == len(host_ports)
    assert len(set(everything)) == len(everything)


def test_every_build_uses_the_dockerfile_at_the_repository_root(compose: dict[str, Any]) -> None:
    """Services that build use the root Dockerfile and all tag the one project image."""
    images = set()
    for name, svc in our_services(compose).items():
        build = svc["build"]
        context = build if isinstance(build, str) else build.get("context", ".")
        assert (ROOT / context).resolve() == ROOT, name
        assert isinstance(build, str) or build.get("dockerfile", "Dockerfile") == "Dockerfile"
        images.add(svc.get("image"))
    assert (ROOT / "Dockerfile").is_file()
    assert len(images) == 1


def test_images_from_registries_are_pinned(compose: dict[str, Any]) -> None:
    """Every pulled image names an exact tag (or digest), never latest or nothing."""
    for name, svc in compose["services"].items():
        if "build" in svc:
            continue
        image = svc["image"]
        repository, _, tag = image.partition("@")[0].rpartition(":")
        assert repository and tag and tag != "latest", f"{name}: {image}"
        assert re.fullmatch(r"\d+\.\d+\.\d+", tag) or "@sha256:" in image, f"{name}: {image}"


def test_kafka_runs_in_kraft_mode_without_zookeeper(compose: dict[str, Any]) -> None:
    """Kafka is the official image, combined broker+controller, no auto topic creation."""
    services = compose["services"]
    kafka = services["kafka"]
    env = container_env(kafka)
    assert kafka["image"].startswith("apache/kafka:4.")
    assert services["topics"]["image"] == kafka["image"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert env["CLUSTER_ID"]
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "healthcheck" in kafka
    assert f"kafka-data:{env['KAFKA_LOG_DIRS']}" in kafka["volumes"]
    assert not any("zookeeper" in name.lower() for name in services)
    assert not any("ZOOKEEPER" in var for var in env)


def test_dlq_is_a_one_off_tool_behind_a_profile(compose: dict[str, Any]) -> None:
    """`docker compose run --rm dlq summary` runs `python -m dataflow dlq summary`, not on `up`."""
    dlq = compose["services"]["dlq"]
    assert dlq["profiles"] == ["tools"]
    assert dlq["entrypoint"] == ["python", "-m", "dataflow", "dlq"]
    assert "restart" not in dlq
