"""The recovery state's fingerprint (what is compared, the one-line refusals, the part files)
and the directory's lock per process index."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from bytewax.recovery import init_db_dir

from dataflow.errors import InstanceConflictError, RecoveryStateError
from dataflow.recovery_guard import (
    PARTITIONS,
    STATE_LAYOUT_VERSION,
    TABLE,
    check_recovery_state,
    fingerprint,
    judge,
    lock_recovery_directory,
    recovery_directory,
)
from dataflow.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = Settings(input_topic="logins")
NEW_DIRECTORY = ("start with a new recovery directory (-r or BYTEWAX_RECOVERY_DIRECTORY; the "
                 "job then starts from STARTING_OFFSET)")


def saved_by(settings: Settings = SETTINGS, partitions: int = 3) -> dict[str, str]:
    """The fingerprint a job with these settings and partitions wrote."""
    return fingerprint(settings, partitions)


def test_a_new_part_file_gets_the_whole_fingerprint() -> None:
    """No fingerprint and no snapshots: every row is written, no partition is new."""
    verdict = judge({}, False, saved_by(), "rec")
    assert verdict.write == {
        "STATE_LAYOUT_VERSION": str(STATE_LAYOUT_VERSION), "WINDOW_SECONDS": "60",
        "ALLOWED_LATENESS_SECONDS": "10", "COUNT_FIELDS": "device_type,locale",
        "INPUT_TOPIC": "logins", "INPUT_PARTITIONS_WRITTEN": "3", "INPUT_PARTITIONS": "3"}
    assert verdict.new_partitions == frozenset()


def test_the_same_settings_change_nothing_and_count_fields_order_does_not_matter() -> None:
    """Equal fingerprints write nothing; COUNT_FIELDS in another order is the same state."""
    reordered = Settings(input_topic="logins", count_fields=("locale", "device_type"))
    verdict = judge(saved_by(), True, saved_by(reordered), "rec")
    assert (verdict.write, verdict.new_partitions) == ({}, frozenset())


def test_a_changed_window_length_is_one_line_with_both_values_and_what_to_do() -> None:
    """WINDOW_SECONDS 60 -> 300: the setting, the saved and the new value, the two ways out."""
    with pytest.raises(RecoveryStateError) as caught:
        judge(saved_by(), True, saved_by(Settings(input_topic="logins", window_seconds=300)),
              "/data/rec")
    assert str(caught.value) == (
        "WINDOW_SECONDS: the recovery state in /data/rec was written with WINDOW_SECONDS=60, "
        "this job has WINDOW_SECONDS=300, and the saved state is only valid with the values it "
        f"was written with; {NEW_DIRECTORY}, or set WINDOW_SECONDS=60 again")


def test_every_changed_setting_is_named() -> None:
    """Lateness, count fields and input topic changed together: all three, in one line."""
    changed = Settings(input_topic="other", allowed_lateness_seconds=0, count_fields=("locale",))
    with pytest.raises(RecoveryStateError) as caught:
        judge(saved_by(), True, saved_by(changed), "rec")
    assert str(caught.value).startswith(
        "ALLOWED_LATENESS_SECONDS, COUNT_FIELDS, INPUT_TOPIC: the recovery state in rec was "
        "written with ALLOWED_LATENESS_SECONDS=10 COUNT_FIELDS=device_type,locale "
        "INPUT_TOPIC=logins, this job has ALLOWED_LATENESS_SECONDS=0 COUNT_FIELDS=locale "
        "INPUT_TOPIC=other, ")
    assert str(caught.value).endswith(
        ", or set ALLOWED_LATENESS_SECONDS=10 COUNT_FIELDS=device_type,locale "
        "INPUT_TOPIC=logins again")


def test_snapshots_without_a_fingerprint_are_an_older_layout() -> None:
    """State written before fingerprints existed is refused, saying what to do."""
    with pytest.raises(RecoveryStateError) as caught:
        judge({}, True, saved_by(), "rec")
    assert str(caught.value) == (
        "the recovery state in rec was written by an older version of the job (it has "
        "snapshots but no fingerprint of the settings they depend on, state layout before "
        f"{STATE_LAYOUT_VERSION}); {NEW_DIRECTORY}, or finish it with the version that wrote it")


def test_another_layout_version_is_refused_before_the_settings_are_compared() -> None:
    """A saved layout other than STATE_LAYOUT_VERSION: refused, whatever the settings."""
    older = {**saved_by(Settings(window_seconds=5)), "STATE_LAYOUT_VERSION": "0"}
    with pytest.raises(RecoveryStateError) as caught:
        judge(older, True, saved_by(), "rec")
    assert str(caught.value) == (
        f"the recovery state in rec has state layout 0, this version of the job reads layout "
        f"{STATE_LAYOUT_VERSION}; {NEW_DIRECTORY}, or finish it with the version that wrote it")


def test_a_grown_topic_is_recorded_and_its_new_partitions_returned_on_every_start() -> None:
    """3 -> 5 partitions: the count is updated and 3, 4 are new, also for the next reader."""
    first = judge(saved_by(partitions=3), True, saved_by(partitions=5), "rec")
    assert first.write == {PARTITIONS: "5"}
    assert first.new_partitions == frozenset({3, 4})
    after = {**saved_by(partitions=3), **first.write}
    again = judge(after, True, saved_by(partitions=5), "rec")
    assert (again.write, again.new_partitions) == ({}, frozenset({3, 4}))


def test_a_shrunk_topic_is_refused() -> None:
    """Fewer partitions than the state has seen (deleted and created again): exit 2."""
    grown = {**saved_by(partitions=3), PARTITIONS: "5"}
    with pytest.raises(RecoveryStateError) as caught:
        judge(grown, True, saved_by(partitions=4), "rec")
    assert str(caught.value) == (
        "INPUT_TOPIC 'logins' has 4 partitions, but the recovery state in rec was written when "
        "it had 5 (was the topic deleted and created again?), so its saved offsets are not "
        f"this topic's; {NEW_DIRECTORY}")


@pytest.mark.parametrize(
    ("argv", "environ", "expected"),
    [
        (["dataflow.flow", "-r", "/a", "-s", "1"], {}, "/a"),
        (["dataflow.flow", "-r/b"], {"BYTEWAX_RECOVERY_DIRECTORY": "/env"}, "/b"),
        (["dataflow.flow", "--recovery-directory", "/c"], {}, "/c"),
        (["dataflow.flow", "--recovery-directory=/d"], {}, "/d"),
        (["dataflow.flow", "-w", "2"], {"BYTEWAX_RECOVERY_DIRECTORY": "/env"}, "/env"),
        (["dataflow.flow", "-w", "2"], {}, None),
    ],
    ids=["short", "attached-over-env", "long", "long-equals", "env", "none"],
)
def test_recovery_directory_is_found_like_bytewax_run_finds_it(
    argv: list[str], environ: dict[str, str], expected: str | None,
) -> None:
    """-r/--recovery-directory in any argparse form, else BYTEWAX_RECOVERY_DIRECTORY."""
    found = recovery_directory(argv, environ)
    assert (str(found) if found else None) == expected


def rows(part: Path) -> dict[str, str]:
    """The fingerprint rows of one part file."""
    with contextlib.closing(sqlite3.connect(part)) as connection:
        return dict(connection.execute(f"SELECT name, value FROM {TABLE}").fetchall())


def test_part_files_get_the_fingerprint_and_are_checked_against_it(tmp_path: Path) -> None:
    """Bytewax's own part files: written on the first start, refused with other settings."""
    init_db_dir(tmp_path, 2)
    assert check_recovery_state(SETTINGS, [0, 1, 2], tmp_path) == frozenset()
    assert rows(tmp_path / "part-0.sqlite3") == rows(tmp_path / "part-1.sqlite3") == saved_by()
    assert check_recovery_state(SETTINGS, [0, 1, 2], tmp_path) == frozenset()
    with pytest.raises(RecoveryStateError, match=r"^WINDOW_SECONDS: "):
        check_recovery_state(Settings(input_topic="logins", window_seconds=300), [0, 1, 2],
                             tmp_path)
    assert check_recovery_state(SETTINGS, [0, 1, 2, 3], tmp_path) == frozenset({3})
    assert rows(tmp_path / "part-1.sqlite3")[PARTITIONS] == "4"


def test_snapshots_written_without_a_fingerprint_are_refused_and_left_unchanged(
    tmp_path: Path,
) -> None:
    """A part file holding a snapshot but no fingerprint: refused, and nothing is added."""
    init_db_dir(tmp_path, 1)
    part = tmp_path / "part-0.sqlite3"
    with contextlib.closing(sqlite3.connect(part)) as connection, connection:
        connection.execute("INSERT INTO snaps (step_id, state_key, snap_epoch, ser_change) "
                           "VALUES ('login-dataflow.read', '0', 1, NULL)")
    with pytest.raises(RecoveryStateError, match="written by an older version of the job"):
        check_recovery_state(SETTINGS, [0], tmp_path)
    with contextlib.closing(sqlite3.connect(part)) as connection:
        tables = {name for (name,) in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert TABLE not in tables


def test_without_recovery_or_part_files_there_is_nothing_to_check(tmp_path: Path) -> None:
    """No directory given, or one without part files: no check, no partition is new."""
    assert check_recovery_state(SETTINGS, [0], None) == frozenset()
    assert check_recovery_state(SETTINGS, [0], tmp_path) == frozenset()
    assert list(tmp_path.iterdir()) == []


def test_an_unreadable_part_file_is_one_line(tmp_path: Path) -> None:
    """A part file that is not a database: RecoveryStateError naming the file."""
    (tmp_path / "part-0.sqlite3").write_bytes(b"not a database, " * 64)
    with pytest.raises(RecoveryStateError) as caught:
        check_recovery_state(SETTINGS, [0], tmp_path)
    assert str(caught.value) == (f"cannot read or write the recovery partition "
                                 f"{tmp_path / 'part-0.sqlite3'}: file is not a database")


def test_processes_sharing_a_directory_write_the_first_fingerprint_safely(
    tmp_path: Path,
) -> None:
    """Six processes checking one new directory at once: all pass, one fingerprint each."""
    init_db_dir(tmp_path, 4)
    code = ("import sys; from pathlib import Path; from dataflow.settings import Settings; "
            "from dataflow.recovery_guard import check_recovery_state; "
            "print(sorted(check_recovery_state(Settings(input_topic='logins'), [0, 1, 2], "
            "Path(sys.argv[1]))))")
    processes = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(6)]
    outcomes = [(p.wait(60), *p.communicate()) for p in processes]
    assert outcomes == [(0, "[]\n", "")] * 6
    for part in sorted(tmp_path.glob("part-*.sqlite3")):
        assert rows(part) == saved_by()


def test_a_recovery_directory_is_locked_per_process_index(tmp_path: Path) -> None:
    """A second lock on the same index is one line naming the directory and the holder's
    pid; another index locks fine; a missing directory is left to bytewax.run."""
    held = lock_recovery_directory(tmp_path, 0)
    assert held is not None
    try:
        with pytest.raises(InstanceConflictError) as caught:
            lock_recovery_directory(tmp_path, 0)
        assert str(caught.value) == (
            f"recovery directory {tmp_path} is in use by a running job (pid {os.getpid()} on "
            f"host {os.uname().nodename} holds .lock-process-0); stop it, or give this job its "
            "own recovery directory")
        sibling = lock_recovery_directory(tmp_path, 1)
        assert sibling is not None
        sibling.release()
    finally:
        held.release()
    assert lock_recovery_directory(tmp_path / "missing", 0) is None


def test_a_released_lock_leaves_the_directory_as_it_was(tmp_path: Path) -> None:
    """release() removes the lock file; the next lock takes a fresh one."""
    (tmp_path / "part-0.sqlite3").touch()
    first = lock_recovery_directory(tmp_path, 0)
    assert first is not None and (tmp_path / ".lock-process-0").exists()
    first.release()
    assert [p.name for p in tmp_path.iterdir()] == ["part-0.sqlite3"]
    again = lock_recovery_directory(tmp_path, 0)
    assert again is not None
    again.release()


def test_a_lock_taken_as_its_file_is_removed_is_taken_again_on_the_new_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The holder removes the file between our open and our flock: we lock the new file."""
    import dataflow.recovery_guard as guard

    opened: list[Path] = []
    real_flock = guard.fcntl.flock

    def flock_after_removal(handle: object, flags: int) -> None:
        if not opened:  # the first attempt: its holder releases (removes) the file now
            opened.append(tmp_path / ".lock-process-0")
            os.unlink(tmp_path / ".lock-process-0")
        real_flock(handle, flags)

    monkeypatch.setattr(guard.fcntl, "flock", flock_after_removal)
    lock = lock_recovery_directory(tmp_path, 0)
    assert lock is not None
    assert (tmp_path / ".lock-process-0").read_text() == (
        f"pid {os.getpid()} on host {os.uname().nodename}\n")
    lock.release()


def test_the_lock_of_a_killed_process_is_free_at_once(tmp_path: Path) -> None:
    """kill -9 of the holder: the kernel lets go of the lock, the next start takes it."""
    code = ("import sys, time; from pathlib import Path; "
            "from dataflow.recovery_guard import lock_recovery_directory; "
            "lock = lock_recovery_directory(Path(sys.argv[1]), 0); print('locked', flush=True); "
            "time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with pytest.raises(InstanceConflictError, match=f"pid {holder.pid} on host"):
            lock_recovery_directory(tmp_path, 0)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    lock = lock_recovery_directory(tmp_path, 0)
    assert lock is not None
    lock.release()
