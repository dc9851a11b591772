"""`python -m dataflow run`'s supervisor: exit codes, stopping the others, waking on time.

Each case runs ``supervise`` in a fresh interpreter (it blocks signals of its own
thread and may be sent SIGTERM), over small Python children.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUPERVISOR = """
import json, subprocess, sys, time
from dataflow.runner import supervise
children = [subprocess.Popen([sys.executable, "-c", code]) for code in sys.argv[1:]]
code = supervise(children)
print(json.dumps([code, [c.returncode for c in children], time.time()]))
"""
SLEEP = "import time; time.sleep(30)"


def supervised(*children: str) -> tuple[int, list[int], float]:
    """supervise()'s result, the children's exit codes and the wall-clock time it returned."""
    done = subprocess.run([sys.executable, "-c", SUPERVISOR, *children], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    code, codes, returned = json.loads(done.stdout)
    return code, codes, returned


def test_all_processes_succeed_and_supervise_returns_as_the_last_one_ends(tmp_path: Path) -> None:
    """Exit 0 once every child exited 0, within 0.1 s of the last exit (no 0.2 s poll)."""
    ended = tmp_path / "ended"
    last = ("import time; time.sleep(0.6); "
            f"open({str(ended)!r}, 'w').write(repr(time.time()))")
    code, codes, returned = supervised("pass", last)
    assert (code, codes) == (0, [0, 0])
    assert 0 <= returned - float(ended.read_text()) < 0.1


def test_first_failure_stops_the_others_and_gives_its_exit_code() -> None:
    """A child exiting 3 makes supervise send SIGINT to the rest and return 3."""
    code, codes, _ = supervised("import sys, time; time.sleep(0.2); sys.exit(3)", SLEEP)
    assert (code, codes) == (3, [3, -2])


def test_sigterm_to_the_supervisor_stops_every_process_with_exit_code_143() -> None:
    """SIGTERM to the supervisor is forwarded as SIGINT to each child; it returns 143."""
    kill_parent = ("import os, signal, time; time.sleep(0.2); "
                   "os.kill(os.getppid(), signal.SIGTERM); time.sleep(30)")
    code, codes, _ = supervised(kill_parent, SLEEP)
    assert (code, codes) == (143, [-2, -2])


def test_ctrl_c_to_the_supervisor_stops_every_process_with_exit_code_130() -> None:
    """SIGINT (Ctrl-C) to the supervisor is forwarded to each child; it returns 130."""
    interrupt_parent = ("import os, signal, time; time.sleep(0.2); "
                        "os.kill(os.getppid(), signal.SIGINT); time.sleep(30)")
    code, codes, _ = supervised(interrupt_parent, SLEEP)
    assert (code, codes) == (130, [-2, -2])


STARTER = """
import json, os, subprocess, sys
import dataflow.runner as runner
codes = sys.argv[1:]
started = []
def commands(args):
    return [([sys.executable, "-c", code], dict(os.environ)) for code in codes]
real_popen = subprocess.Popen
def popen(cmd, env=None):
    started.append(cmd[-1])
    return real_popen(cmd, env=env)
runner.process_commands = commands
runner.subprocess.Popen = popen
code = runner.main(["--processes", str(len(codes)), "--base-port", "1"])
print(json.dumps([code, len(started)]))
"""


def started(*children: str) -> tuple[int, int]:
    """``python -m dataflow run``'s exit code over these children, and how many it started."""
    done = subprocess.run([sys.executable, "-c", STARTER, *children], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    code, count = json.loads(done.stdout)
    return code, count


def test_sigterm_while_waiting_for_process_0_to_listen_stops_it_with_exit_code_143() -> None:
    """SIGTERM before process 0 listens: it is stopped, the rest never start, exit 143."""
    kill_parent = ("import os, signal, time; time.sleep(0.3); "
                   "os.kill(os.getppid(), signal.SIGTERM); time.sleep(30)")
    assert started(kill_parent, SLEEP) == (143, 1)


def test_ctrl_c_while_waiting_for_process_0_to_listen_exits_130_without_a_traceback() -> None:
    """Ctrl-C before process 0 listens: it is stopped, the rest never start, exit 130."""
    interrupt_parent = ("import os, signal, time; time.sleep(0.3); "
                        "os.kill(os.getppid(), signal.SIGINT); time.sleep(30)")
    assert started(interrupt_parent, SLEEP) == (130, 1)


def test_process_0_failing_at_start_up_is_reported_and_the_rest_never_start() -> None:
    """Process 0 exiting 2 (a bad setting) gives exit 2, and process 1 is not started."""
    assert started("import sys; sys.exit(2)", SLEEP) == (2, 1)
