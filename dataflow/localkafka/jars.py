"""Find Java and the Kafka jars; fetch the jars with Maven once into a cache folder.

The first start copies ``pom.xml`` (beside this module) into the cache folder and
runs ``mvn -q -B dependency:copy-dependencies`` there. A marker file listing the
jars is written only after Maven succeeded, so every later start finds the jars
without the network and without calling ``mvn`` at all.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

from dataflow.localkafka.errors import DownloadError, NotInstalledError
from dataflow.localkafka.layout import KAFKA_VERSION

CACHE_ENV = "LOCAL_KAFKA_CACHE"
MIN_JAVA = 17
MARKER = "resolved.txt"
LIBS = "libs"
POM = Path(__file__).with_name("pom.xml")
LOG4J_CONFIG = Path(__file__).with_name("log4j2.xml")
_VERSION_RE = re.compile(r'version "(\d+)(?:\.(\d+))?')
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_MVN_TIMEOUT_S = 900


def default_cache_dir(environ: Mapping[str, str]) -> Path:
    """``$LOCAL_KAFKA_CACHE``, else ``~/.cache/login-dataflow/kafka-<version>``."""
    if environ.get(CACHE_ENV):
        return Path(environ[CACHE_ENV]).expanduser()
    base = Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "login-dataflow" / f"kafka-{KAFKA_VERSION}"


def parse_java_major(version_output: str) -> int | None:
    """The major version in ``java -version`` output (``1.8`` counts as 8), or None."""
    match = _VERSION_RE.search(version_output)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def find_java() -> str:
    """Path of a ``java`` of version 17 or newer; NotInstalledError otherwise."""
    java = shutil.which("java")
    if java is None:
        msg = f"Java is not installed: `java` (version {MIN_JAVA} or newer) is not on PATH"
        raise NotInstalledError(msg)
    try:
        done = subprocess.run([java, "-version"], capture_output=True, text=True,
                              timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        msg = f"could not run `{java} -version`: {exc}"
        raise NotInstalledError(msg) from exc
    major = parse_java_major(done.stderr + done.stdout)
    if major is None or major < MIN_JAVA:
        found = done.stderr.strip().splitlines()[:1] or ["unknown version"]
        msg = f"Kafka {KAFKA_VERSION} needs Java {MIN_JAVA} or newer; {java} is {found[0]}"
        raise NotInstalledError(msg)
    return java


def cached_jars(cache_dir: Path) -> list[Path] | None:
    """The jars of a completed download, or None when the cache is missing or partial."""
    try:
        names = (cache_dir / MARKER).read_text(encoding="utf-8").split()
    except FileNotFoundError:
        return None
    jars = [cache_dir / LIBS / name for name in names]
    return jars if jars and all(jar.is_file() for jar in jars) else None


Notify = Callable[[str], None]


def ensure_jars(cache_dir: Path, notify: Notify = lambda _: None) -> list[Path]:
    """The Kafka jars in ``cache_dir``, fetched with Maven first if not complete there."""
    jars = cached_jars(cache_dir)
    if jars is not None:
        return jars
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be downloading right now
        jars = cached_jars(cache_dir)
        if jars is not None:
            return jars
        return _download(cache_dir, notify)


def _download(cache_dir: Path, notify: Notify) -> list[Path]:
    mvn = shutil.which("mvn")
    if mvn is None:
        msg = (f"Maven is not installed: `mvn` is needed once to fetch Kafka {KAFKA_VERSION} "
               f"into {cache_dir}")
        raise NotInstalledError(msg)
    notify(f"fetching Kafka {KAFKA_VERSION} with Maven into {cache_dir} (first use only)")
    partial = cache_dir / f"{LIBS}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copyfile(POM, cache_dir / "pom.xml")
    command = [mvn, "-q", "-B", "-Dstyle.color=never", "dependency:copy-dependencies",
               "-DincludeScope=runtime",
               f"-DoutputDirectory={partial}"]
    try:
        done = subprocess.run(command, cwd=cache_dir, capture_output=True, text=True,
                              timeout=_MVN_TIMEOUT_S, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        msg = f"Maven download of Kafka {KAFKA_VERSION} failed: {exc}"
        raise DownloadError(msg) from exc
    jars = sorted(partial.glob("*.jar")) if partial.is_dir() else []
    if done.returncode != 0 or not any(j.name.startswith("kafka_2.13-") for j in jars):
        output = _ANSI_RE.sub("", done.stdout + done.stderr).splitlines()
        msg = (f"Maven download of Kafka {KAFKA_VERSION} failed (mvn exit code "
               f"{done.returncode}); last lines of its output follow")
        raise DownloadError(msg, [line for line in output if line.strip()][-15:])
    shutil.rmtree(cache_dir / LIBS, ignore_errors=True)
    os.replace(partial, cache_dir / LIBS)
    marker = cache_dir / MARKER
    marker.with_suffix(".tmp").write_text("\n".join(j.name for j in jars) + "\n", "utf-8")
    marker.with_suffix(".tmp").replace(marker)
    return [cache_dir / LIBS / j.name for j in jars]


def classpath(jars: list[Path]) -> str:
    """A class path naming the jars' folder with a wildcard (short command lines)."""
    folders = dict.fromkeys(str(jar.parent) for jar in jars)
    return os.pathsep.join(f"{folder}/*" for folder in folders)
