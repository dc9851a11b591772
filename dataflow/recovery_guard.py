"""Guards of a recovery directory: a fingerprint of what its state depends on, and one
process per process index at a time (``DirectoryLock``).

A recovery directory holds Bytewax's ``part-*.sqlite3`` files. Their snapshots mean
something only with the settings they were written with: windows of
``WINDOW_SECONDS``, watermarks that lag by ``ALLOWED_LATENESS_SECONDS``, counts by
``COUNT_FIELDS``, offsets of ``INPUT_TOPIC``'s partitions, all in the shape of
``STATE_LAYOUT_VERSION``. Each part file therefore keeps a fingerprint of those in a
table of our own (``login_dataflow_fingerprint``; Bytewax 0.21.1 reads, writes and
prunes its own tables around it), so it cannot be separated from the state it
describes. At start-up:

- a part file without a fingerprint and without snapshots (new) gets one;
- a part file with snapshots but no fingerprint was written by a version of the job
  before fingerprints: refused, like a different layout version;
- a different setting, layout version, or fewer input partitions than the state has
  seen (the topic was deleted and created again) is refused: ``RecoveryStateError``,
  one line naming the setting, the saved and the new value and what to do;
- more input partitions than the state has seen is allowed: the fingerprint records the
  new count, and ``check_recovery_state`` returns the partitions that are new since the
  state was first written.

Several processes of one cluster may share one directory: each file is checked and
written in one ``BEGIN IMMEDIATE`` transaction, so concurrent first writes serialise.
Process K of a job holds ``.lock-process-K`` there (``DirectoryLock``, taken by
``dataflow.instance_group``), so a second job on the directory is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

import msgspec

from dataflow.errors import InstanceConflictError, RecoveryStateError
from dataflow.logs import get_logger
from dataflow.settings import Settings

log = get_logger(__name__)

STATE_LAYOUT_VERSION = 2
"""Bump when the shape of any saved state changes (the source partition's
``SavedPartition``, ``dataflow.event_time.ClockState``, ``dataflow.shards.ShardState``,
``dataflow.shards.ShardUpdate``). 2: the graph redesign moved the clock and the shard
updates to other modules (pickled by their module path).
a recovery directory written with another layout is then refused at start-up instead of
being misread."""

TABLE = "login_dataflow_fingerprint"
LAYOUT = "STATE_LAYOUT_VERSION"
SETTINGS_SHOWN = ("WINDOW_SECONDS", "ALLOWED_LATENESS_SECONDS", "COUNT_FIELDS", "INPUT_TOPIC")
PARTITIONS_WRITTEN = "INPUT_PARTITIONS_WRITTEN"  # the input's partition count when first written
PARTITIONS = "INPUT_PARTITIONS"  # the highest partition count the state has seen
BUSY_TIMEOUT_S = 10.0  # other processes of the cluster may hold a part file's write lock
_NEW_DIRECTORY = ("start with a new recovery directory (-r or BYTEWAX_RECOVERY_DIRECTORY; "
                  "the job then starts from STARTING_OFFSET)")


def fingerprint(settings: Settings, partition_count: int) -> dict[str, str]:
    """What the saved state's meaning depends on, as text rows (count fields in any order
    mean the same state)."""
    return {
        LAYOUT: str(STATE_LAYOUT_VERSION),
        "WINDOW_SECONDS": str(settings.window_seconds),
        "ALLOWED_LATENESS_SECONDS": str(settings.allowed_lateness_seconds),
        "COUNT_FIELDS": ",".join(sorted(settings.count_fields)),
        "INPUT_TOPIC": settings.input_topic,
        PARTITIONS_WRITTEN: str(partition_count),
        PARTITIONS: str(partition_count),
    }


class Verdict(msgspec.Struct, frozen=True):
    """What to do with one part file: rows to write, and the partitions new since it was
    first written."""

    write: dict[str, str]
    new_partitions: frozenset[int]


def judge(saved: Mapping[str, str], has_snapshots: bool, wanted: Mapping[str, str],
          where: str) -> Verdict:
    """Compare a part file's saved fingerprint with this job's; raise RecoveryStateError
    with the one line to show when the saved state does not fit this job."""
    if not saved:
        if has_snapshots:
            msg = (f"the recovery state in {where} was written by an older version of the job "
                   "(it has snapshots but no fingerprint of the settings they depend on, state "
                   f"layout before {wanted[LAYOUT]}); {_NEW_DIRECTORY}, or finish it with the "
                   "version that wrote it")
            raise RecoveryStateError(msg)
        return Verdict(dict(wanted), frozenset())
    if saved.get(LAYOUT) != wanted[LAYOUT]:
        msg = (f"the recovery state in {where} has state layout {saved.get(LAYOUT)}, this "
               f"version of the job reads layout {wanted[LAYOUT]}; {_NEW_DIRECTORY}, or "
               "finish it with the version that wrote it")
        raise RecoveryStateError(msg)
    changed = [name for name in SETTINGS_SHOWN if saved.get(name) != wanted[name]]
    if changed:
        was = " ".join(f"{name}={saved.get(name)}" for name in changed)
        now = " ".join(f"{name}={wanted[name]}" for name in changed)
        msg = (f"{', '.join(changed)}: the recovery state in {where} was written with {was}, "
               f"this job has {now}, and the saved state is only valid with the values it was "
               f"written with; {_NEW_DIRECTORY}, or set {was} again")
        raise RecoveryStateError(msg)
    return _judge_partitions(saved, wanted, where)


def _judge_partitions(saved: Mapping[str, str], wanted: Mapping[str, str],
                      where: str) -> Verdict:
    seen, now = int(saved[PARTITIONS]), int(wanted[PARTITIONS])
    if now < seen:
        msg = (f"INPUT_TOPIC {wanted['INPUT_TOPIC']!r} has {now} partitions, but the recovery "
               f"state in {where} was written when it had {seen} (was the topic deleted and "
               f"created again?), so its saved offsets are not this topic's; {_NEW_DIRECTORY}")
        raise RecoveryStateError(msg)
    first = int(saved.get(PARTITIONS_WRITTEN, seen))
    return Verdict({PARTITIONS: str(now)} if now > seen else {},
                   frozenset(range(first, now)))


def _flag_value(argv: Sequence[str], flags: tuple[str, ...]) -> str | None:
    """The value of an option as argparse reads it: ``-r DIR``, ``-rDIR``, ``--long DIR``
    or ``--long=DIR``."""
    for index, arg in enumerate(argv):
        for flag in flags:
            if arg == flag and index + 1 < len(argv):
                return argv[index + 1]
            if flag.startswith("--") and arg.startswith(f"{flag}="):
                return arg.partition("=")[2]
            if not flag.startswith("--") and arg.startswith(flag) and len(arg) > len(flag):
                return arg[len(flag):]
    return None


def bytewax_option(flags: tuple[str, ...], env: str, argv: Sequence[str] | None = None,
                   environ: Mapping[str, str] | None = None) -> str | None:
    """An option of ``bytewax.run`` the way it reads it: from its command line, else from
    its environment variable (None when neither is set)."""
    args = sys.argv[1:] if argv is None else argv
    value = _flag_value(args, flags)
    if value is None:
        value = (os.environ if environ is None else environ).get(env, "")
    return value or None


def recovery_directory(argv: Sequence[str] | None = None,
                       environ: Mapping[str, str] | None = None) -> Path | None:
    """The recovery directory of this ``bytewax.run`` process: ``-r/--recovery-directory``
    or ``BYTEWAX_RECOVERY_DIRECTORY``; None without recovery."""
    value = bytewax_option(("-r", "--recovery-directory"), "BYTEWAX_RECOVERY_DIRECTORY",
                           argv, environ)
    return Path(value) if value else None


class DirectoryLock:
    """``.lock-process-<index>`` in a recovery directory, held with ``flock`` until
    ``release`` (or the end of the process: the kernel lets go of it even after kill -9).

    ``release`` removes the file, so a clean run leaves the directory as it found it
    (deploy/kubernetes's init container refuses a volume with files but no partitions).
    A process that locked the file just as its holder removed it sees that the path no
    longer names what it locked, and tries again.
    """

    def __init__(self, directory: Path, index: int) -> None:
        self.path = directory / f".lock-process-{index}"
        while True:
            handle = self._open()
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                handle.close()
                msg = (f"recovery directory {directory} is in use by a running job ({holder} "
                       f"holds {self.path.name}); stop it, or give this job its own recovery "
                       "directory")
                raise InstanceConflictError(msg) from exc
            if self._still_named(handle):
                break
            handle.close()
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on host {socket.gethostname()}\n")
        handle.flush()
        self._handle: TextIO | None = handle

    def _open(self) -> TextIO:
        try:
            return open(self.path, "a+")  # held open until release()
        except OSError as exc:
            msg = f"cannot open the lock file {self.path} of the recovery directory: {exc}"
            raise InstanceConflictError(msg) from exc

    def _still_named(self, handle: TextIO) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            self._handle.close()
            self._handle = None


def lock_recovery_directory(directory: Path, index: int) -> DirectoryLock | None:
    """Process ``index``'s lock of the recovery directory; None when the directory does not
    exist (bytewax.run then says what is missing)."""
    return DirectoryLock(directory, index) if directory.is_dir() else None


def _check_part(path: Path, wanted: Mapping[str, str], where: str) -> frozenset[int]:
    """Judge one part file and write what the verdict says, in one write transaction."""
    import sqlite3  # only with a recovery directory: 1.5-2 ms of start-up otherwise

    connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (name TEXT PRIMARY KEY "
                               "NOT NULL, value TEXT NOT NULL, updated_at TEXT NOT NULL "
                               "DEFAULT CURRENT_TIMESTAMP)")
            saved = dict(connection.execute(f"SELECT name, value FROM {TABLE}").fetchall())
            has_snapshots = bool(connection.execute(
                "SELECT EXISTS (SELECT 1 FROM snaps)").fetchone()[0])
            verdict = judge(saved, has_snapshots, wanted, where)
            connection.executemany(f"INSERT OR REPLACE INTO {TABLE} (name, value) VALUES (?, ?)",
                                   verdict.write.items())
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
        return verdict.new_partitions
    finally:
        connection.close()


def check_recovery_state(settings: Settings, partitions: Sequence[int],
                         directory: Path | None = None) -> frozenset[int]:
    """Check (or write) the fingerprint of every part file in the recovery directory;
    return the input partitions that are new since the state was first written.

    ``partitions`` are the input topic's partition ids (``check_topics``). Without
    recovery, or with no part file yet (Bytewax then says what is missing), there is
    nothing to check and no partition is new. A partition in the returned set that has
    a saved position resumes from it like any other; one without had no data when the
    state was written, so a source should read it from its beginning rather than from
    ``STARTING_OFFSET`` (the set stays the same on later starts, until a new directory).
    Raises RecoveryStateError with the one line to show when the state does not fit.
    """
    directory = directory if directory is not None else recovery_directory()
    if directory is None:
        return frozenset()
    import sqlite3

    wanted = fingerprint(settings, len(partitions))
    new: set[int] = set()
    for path in sorted(directory.glob("part-*.sqlite3")):
        try:
            new |= _check_part(path, wanted, str(directory))
        except sqlite3.Error as exc:
            msg = f"cannot read or write the recovery partition {path}: {exc}"
            raise RecoveryStateError(msg) from exc
    if new:
        log.info("input_partitions_new_since_state", directory=str(directory),
                 partitions=sorted(new))
    return frozenset(new)
