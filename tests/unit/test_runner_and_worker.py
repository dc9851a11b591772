"""The local cluster runner, the worker wrapper and the sink's failure messages."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dataflow.errors import ClusterAddressError, DeliveryError
from dataflow.kafka_writer import describe_failures
from dataflow.lifecycle import pipeline_error
from dataflow.metrics import process_id
from dataflow.runner import listening, process_commands, wait_until_listening

ROOT = Path(__file__).resolve().parents[2]


def _args(**overrides: object) -> argparse.Namespace:
    values = {"processes": 3, "workers_per_process": 2, "base_port": 4000,
              "recovery_directory": None, "snapshot_interval": None, "backup_interval": None}
    return argparse.Namespace(**{**values, **overrides})


def test_runner_gives_each_process_its_id_and_the_shared_addresses() -> None:
    """N processes get ids 0..N-1 and one address list, through Bytewax's env vars."""
    commands = process_commands(_args())
    assert [env["BYTEWAX_PROCESS_ID"] for _, env in commands] == ["0", "1", "2"]
    assert {env["BYTEWAX_ADDRESSES"] for _, env in commands} == {
        "127.0.0.1:4000;127.0.0.1:4001;127.0.0.1:4002"}
    assert commands[0][0][-6:] == ["dataflow.worker", "dataflow.flow", "-w", "2", "-s", "1"]


def test_listening_sees_a_listening_port_without_connecting_to_it() -> None:
    """A bound, listening socket is seen in /proc/net/tcp; once closed it is not."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    assert listening(port) is False  # bound, not yet listening
    server.listen()
    assert listening(port) is True
    server.close()
    assert listening(port) is False
    assert listening(port, tables=(Path("/nonexistent/tcp"),)) is None


def test_the_next_process_starts_once_the_previous_one_listens_not_after_a_fixed_pause() -> None:
    """The wait for the previous process ends when it listens (0.3 s here), not after 10 s."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    listener = (f"import socket, time; s = socket.socket(); time.sleep(0.3); "
                f"s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
                f"s.bind(('127.0.0.1', {port})); s.listen(); time.sleep(5)")
    server.close()
    first = subprocess.Popen([sys.executable, "-c", listener])
    try:
        began = time.monotonic()
        wait_until_listening(first, port, limit=10.0)
        waited = time.monotonic() - began
        assert listening(port) and 0.2 < waited < 3.0
    finally:
        first.kill()
        first.wait()


def test_the_wait_for_the_previous_process_ends_when_it_exits() -> None:
    """A process failing at start-up (a bad setting) ends the wait at once."""
    first = subprocess.Popen([sys.executable, "-c", "raise SystemExit(2)"])
    began = time.monotonic()
    wait_until_listening(first, 1, limit=10.0)
    assert first.wait() == 2 and time.monotonic() - began < 3.0


def test_runner_without_recovery_uses_one_second_epochs() -> None:
    """Without -r, epochs of 1 s: the consumer group's offsets trail the output by ~1 s."""
    [(command, _)] = process_commands(_args(processes=1))
    assert command[-2:] == ["-s", "1"] and "-r" not in command


def test_runner_passes_recovery_flags_together() -> None:
    """-r, -s and -b reach every process."""
    [(command, env)] = process_commands(_args(processes=1, recovery_directory=Path("/r"),
                                              snapshot_interval=5, backup_interval=0))
    assert command[-6:] == ["-r", "/r", "-s", "5", "-b", "0"]
    assert "BYTEWAX_PROCESS_ID" not in env


def test_process_id_reads_the_flag_then_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`-i K` on the command line wins; else BYTEWAX_PROCESS_ID; else 0."""
    monkeypatch.setenv("BYTEWAX_PROCESS_ID", "3")
    assert process_id(["dataflow.flow", "-i", "2", "-a", "x"]) == 2
    assert process_id(["dataflow.flow", "--process-id", "4"]) == 4
    assert process_id(["dataflow.flow"]) == 3
    monkeypatch.delenv("BYTEWAX_PROCESS_ID")
    assert process_id(["dataflow.flow"]) == 0


def test_worker_leaves_a_stack_trace_when_the_process_crashes(tmp_path: Path) -> None:
    """A segfault inside the flow (native code) ends with the stack in stderr, not silently."""
    (tmp_path / "crashing_flow.py").write_text(
        "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    env.pop("PYTHONFAULTHANDLER", None)
    done = subprocess.run([sys.executable, "-m", "dataflow.worker", "crashing_flow"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGSEGV
    assert "Fatal Python error: Segmentation fault" in done.stderr
    assert "crashing_flow.py" in done.stderr


def test_worker_finds_our_error_under_bytewax_wrapping() -> None:
    """The wrapper reports the PipelineError that caused Bytewax's runtime error."""
    ours = DeliveryError("write to topic 'x' failed")
    try:
        try:
            raise ours
        except DeliveryError as exc:
            raise RuntimeError("worker crashed") from exc
    except RuntimeError as wrapped:
        assert pipeline_error(wrapped) is ours
    assert pipeline_error(ValueError("other")) is None


def test_delivery_failure_names_topic_and_source_record() -> None:
    """A failed write is reported with the source topic, partition and offset of its record."""
    batch = [("out", b"k", b"v", [("source.topic", b"in"), ("source.partition", b"2"),
                                  ("source.offset", b"41")], None),
             ("dlq", None, None, [("dlq.source.topic", b"in"), ("dlq.source.partition", b"0"),
                                  ("dlq.source.offset", b"7")], None)]
    text = describe_failures([("out", b"k", b"v", "Broker: Message size too large"),
                              ("dlq", None, None, "Local: Message timed out")], batch)
    assert text == ("write to topic 'out' (source in partition 2 offset 41) failed: "
                    "Broker: Message size too large; write to topic 'dlq' (source in partition 0 "
                    "offset 7) failed: Local: Message timed out")


def test_bytewax_failing_to_listen_is_a_cluster_address_error_naming_this_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bytewax's networking failure becomes one line with this process's own address."""
    monkeypatch.setattr("sys.argv", ["bytewax.run", "dataflow.flow"])
    monkeypatch.setenv("BYTEWAX_PROCESS_ID", "1")
    monkeypatch.setenv("BYTEWAX_ADDRESSES", "10.0.0.1:2101;10.0.0.2:2101")
    bytewax = RuntimeError("(src/run.rs:274:10) error building timely communication pipeline\n"
                           "Caused by => Exception: failed to initialize networking: Address "
                           "already in use (os error 98)")
    found = pipeline_error(bytewax)
    assert isinstance(found, ClusterAddressError)
    assert str(found).startswith(
        "process 1 could not open the cluster's connections on 10.0.0.2:2101 (Address already "
        "in use (os error 98)): another process listens on or connects to that port; ")


def test_worker_ends_with_one_line_when_our_error_comes_unwrapped(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """A sink partition's DeliveryError reaches the worker as itself: exit 1, one line."""
    import runpy

    from dataflow import worker

    def fail(*_args: object, **_kwargs: object) -> None:
        raise DeliveryError("1 of 1 writes failed")

    monkeypatch.setattr(runpy, "run_module", fail)
    monkeypatch.setattr("sys.argv", ["worker"])  # main() renames argv[0]
    assert worker.main() == 1
    assert capsys.readouterr().err == "login-dataflow: error: DeliveryError: 1 of 1 writes failed\n"


def test_an_exit_that_cannot_wait_still_runs_what_must_run_at_any_exit() -> None:
    """The grace time's exit (os._exit) still leaves the instances group: at_any_exit runs."""
    code = ("from dataflow import lifecycle\n"
            "lifecycle.at_any_exit(lambda: print('left the group', flush=True))\n"
            "lifecycle._exit_now(143)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert (done.returncode, done.stdout) == (143, "left the group\n"), done.stderr
