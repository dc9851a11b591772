"""The Dockerfile and .dockerignore, checked as text (no Docker engine needed)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
APP_USER = "app"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, args = (pending + stripped).partition(" ")
        result.append((keyword.upper(), args.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return result


def index_of(keyword: str, pattern: str) -> int:
    """Position of the first ``keyword`` instruction whose arguments match ``pattern``."""
    for i, (kw, args) in enumerate(instructions()):
        if kw == keyword and re.search(pattern, args):
            return i
    raise AssertionError(f"no {keyword} matching {pattern!r}")


def args_of(keyword: str) -> list[str]:
    return [args for kw, args in instructions() if kw == keyword]


def env_values() -> dict[str, str]:
    """Every ENV key=value pair of the Dockerfile."""
    values: dict[str, str] = {}
    for args in args_of("ENV"):
        for pair in shlex.split(args):
            name, sep, value = pair.partition("=")
            assert sep, f"ENV {args!r}: use the KEY=value form"
            values[name] = value
    return values


def pip_installs() -> list[list[str]]:
    """The words of each `pip install` command in RUN instructions."""
    found = []
    for args in args_of("RUN"):
        for command in re.split(r"&&|;", args):
            words = shlex.split(command)
            if "pip" in words and "install" in words:
                found.append(words)
    return found


def test_base_image_is_a_pinned_slim_python_311() -> None:
    """The only base image is python:3.11.<patch>-slim-<debian>, no floating tag."""
    bases = args_of("FROM")
    assert len(bases) == 1
    assert re.fullmatch(r"python:3\.11\.\d+-slim-(bookworm|trixie)(@sha256:[0-9a-f]{64})?",
                        bases[0]), bases[0]


def test_python_runs_unbuffered_without_bytecode_files() -> None:
    """PYTHONUNBUFFERED and PYTHONDONTWRITEBYTECODE are set, so logs are not held back."""
    env = env_values()
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"


def test_the_package_is_compiled_to_bytecode_after_it_is_copied() -> None:
    """compileall runs on dataflow/ after COPY: no start compiles the package again."""
    assert index_of("RUN", r"python -m compileall( -q)? dataflow/?$") > index_of(
        "COPY", r"^dataflow/?\s")


def test_installs_exactly_the_production_requirements() -> None:
    """One pip install, of requirements.txt alone, without a cache; no dev tools."""
    installs = pip_installs()
    assert len(installs) == 1
    words = installs[0]
    assert words[words.index("-r") + 1] == "requirements.txt"
    assert words.count("-r") == 1
    assert "--no-cache-dir" in words
    assert not [args for _, args in instructions() if "requirements-dev" in args]


def test_tests_install_the_same_requirements_file() -> None:
    """requirements-dev.txt pulls in requirements.txt, so tests run on the image's pins."""
    lines = (ROOT / "requirements-dev.txt").read_text(encoding="utf-8").splitlines()
    assert "-r requirements.txt" in [line.strip() for line in lines]


def test_requirements_are_installed_before_the_source_is_copied() -> None:
    """COPY requirements.txt, then pip install, then COPY dataflow/: code edits keep the cache."""
    copy_requirements = index_of("COPY", r"^requirements\.txt\s")
    install = index_of("RUN", r"pip install")
    copy_source = index_of("COPY", r"^dataflow/?\s")
    assert copy_requirements < install < copy_source


def test_copies_only_the_requirements_and_the_package() -> None:
    """Nothing but requirements.txt and dataflow/ goes into the image."""
    sources = set()
    for args in args_of("COPY") + args_of("ADD"):
        words = [w for w in shlex.split(args) if not w.startswith("--")]
        sources.update(words[:-1])
    assert sources == {"requirements.txt", "dataflow/"}


def test_runs_as_a_non_root_user_with_a_fixed_uid() -> None:
    """The last USER is the app user, created with an explicit uid, not root."""
    users = args_of("USER")
    assert users and users[-1] == APP_USER
    assert index_of("USER", APP_USER) > index_of("COPY", r"^dataflow/?\s")
    uid = re.search(r"APP_UID=(\d+)", " ".join(args_of("ARG")))
    assert uid is not None and int(uid[1]) >= 1000
    index_of("RUN", rf'useradd .*--uid "?\$\{{APP_UID\}}"? .*{APP_USER}')


@pytest.mark.parametrize("directory", ["/data", "/app"])
def test_app_user_owns_its_writable_directories(directory: str) -> None:
    """/data (recovery partitions) and /app (bytewax writes dataflow.json there) are the app's."""
    index_of("RUN", rf"chown (-R )?{APP_USER}:{APP_USER} {re.escape(directory)}(\s|$)")


def test_image_makes_the_recovery_directory_and_works_in_app() -> None:
    """/data/recovery exists, so a fresh named volume mounted there takes its owner; cwd is /app."""
    index_of("RUN", r"mkdir -p .*/data/recovery")
    assert args_of("WORKDIR")[-1] == "/app"


def test_default_command_runs_the_dataflow_and_exposes_the_api_port() -> None:
    """CMD runs `python -m dataflow.worker dataflow.flow`; EXPOSE names the API port 3030."""
    assert json.loads(args_of("CMD")[-1]) == ["python", "-m", "dataflow.worker", "dataflow.flow"]
    assert "3030" in args_of("EXPOSE")


def test_dockerignore_keeps_the_build_context_to_what_is_copied() -> None:
    """.dockerignore excludes everything except requirements.txt and dataflow/."""
    rules = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert rules[0] == "*"
    assert {rule for rule in rules if rule.startswith("!")} == {"!requirements.txt", "!dataflow/"}
