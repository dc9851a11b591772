"""Finding Java and fetching the Kafka jars once, with a stand-in `mvn` (no network)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dataflow.localkafka import jars
from dataflow.localkafka.errors import DownloadError, NotInstalledError

# A stand-in for Maven: logs each call, then writes two jars or fails as told.
FAKE_MVN = """#!/bin/sh
echo "$@" >> "{calls}"
if [ -f "{fail}" ]; then
  printf '\\033[1;31m[ERROR]\\033[m Could not resolve dependencies\\n[ERROR] -> [Help 1]\\n'
  exit 1
fi
for arg in "$@"; do
  case "$arg" in -DoutputDirectory=*) out="${{arg#-DoutputDirectory=}}";; esac
done
mkdir -p "$out" && touch "$out/kafka_2.13-4.4.0.jar" "$out/kafka-clients-4.4.0.jar"
"""


@pytest.fixture
def fake_mvn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put a stand-in `mvn` first on PATH; returns the file that logs its calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "mvn-calls.txt"
    script = bin_dir / "mvn"
    script.write_text(FAKE_MVN.format(calls=calls, fail=tmp_path / "fail"))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


@pytest.mark.parametrize(("output", "major"), [
    ('openjdk version "17.0.15" 2025-04-15', 17),
    ('openjdk version "21" 2023-09-19', 21),
    ('java version "1.8.0_401"', 8),
    ("no version here", None),
])
def test_java_major_version_is_parsed(output: str, major: int | None) -> None:
    """`java -version` output gives the major version; 1.8 counts as 8."""
    assert jars.parse_java_major(output) == major


def test_cache_dir_comes_from_the_environment_or_home() -> None:
    """LOCAL_KAFKA_CACHE wins; otherwise ~/.cache/login-dataflow/kafka-4.4.0."""
    assert jars.default_cache_dir({"LOCAL_KAFKA_CACHE": "/x/y"}) == Path("/x/y")
    assert jars.default_cache_dir({"XDG_CACHE_HOME": "/c"}) == Path(
        "/c/login-dataflow/kafka-4.4.0")
    assert jars.default_cache_dir({}) == Path.home() / ".cache/login-dataflow/kafka-4.4.0"


def test_first_use_runs_maven_once_and_later_uses_the_cache(tmp_path: Path,
                                                             fake_mvn: Path) -> None:
    """Maven runs on first use only; the marker then lists the jars for every later call."""
    cache = tmp_path / "cache"
    notes: list[str] = []
    first = jars.ensure_jars(cache, notes.append)
    assert sorted(j.name for j in first) == ["kafka-clients-4.4.0.jar", "kafka_2.13-4.4.0.jar"]
    assert all(j.parent == cache / "libs" for j in first)
    assert notes == [f"fetching Kafka 4.4.0 with Maven into {cache} (first use only)"]
    assert len(fake_mvn.read_text().splitlines()) == 1
    assert "dependency:copy-dependencies" in fake_mvn.read_text()
    assert (cache / "pom.xml").read_text() == jars.POM.read_text()

    assert jars.ensure_jars(cache, notes.append) == first
    assert len(fake_mvn.read_text().splitlines()) == 1  # no second Maven call
    assert jars.classpath(first) == f"{cache / 'libs'}/*"


def test_failed_download_reports_mavens_last_lines_and_writes_no_marker(
        tmp_path: Path, fake_mvn: Path) -> None:
    """A Maven failure names its exit code, shows its output without colours, marks nothing."""
    (tmp_path / "fail").touch()
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError) as caught:
        jars.ensure_jars(cache)
    assert str(caught.value) == ("Maven download of Kafka 4.4.0 failed (mvn exit code 1); "
                                 "last lines of its output follow")
    assert caught.value.details == ("[ERROR] Could not resolve dependencies",
                                    "[ERROR] -> [Help 1]")
    assert not (cache / jars.MARKER).exists()
    assert jars.cached_jars(cache) is None


def test_missing_maven_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a cache and without `mvn`, the error says Maven is needed once."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(NotInstalledError) as caught:
        jars.ensure_jars(tmp_path / "cache")
    assert str(caught.value) == ("Maven is not installed: `mvn` is needed once to fetch "
                                 f"Kafka 4.4.0 into {tmp_path / 'cache'}")


def test_missing_java_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without `java` on PATH the error names Java 17."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(NotInstalledError) as caught:
        jars.find_java()
    assert str(caught.value) == ("Java is not installed: `java` (version 17 or newer) "
                                 "is not on PATH")


def test_too_old_java_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Java 11 on PATH is refused with the version it reported."""
    java = tmp_path / "java"
    java.write_text('#!/bin/sh\necho \'openjdk version "11.0.2" 2019-01-15\' >&2\n')
    java.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(NotInstalledError) as caught:
        jars.find_java()
    assert str(caught.value) == (f"Kafka 4.4.0 needs Java 17 or newer; {java} is openjdk "
                                 'version "11.0.2" 2019-01-15')


def test_cache_with_a_missing_jar_is_not_complete(tmp_path: Path) -> None:
    """A marker whose jars are not all there does not count as a finished download."""
    (tmp_path / "libs").mkdir()
    (tmp_path / "libs" / "a.jar").touch()
    (tmp_path / jars.MARKER).write_text("a.jar\nb.jar\n")
    assert jars.cached_jars(tmp_path) is None
    (tmp_path / "libs" / "b.jar").touch()
    assert jars.cached_jars(tmp_path) == [tmp_path / "libs/a.jar", tmp_path / "libs/b.jar"]
