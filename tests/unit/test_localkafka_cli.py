"""The `python -m dataflow kafka` command line without a broker: exit codes and messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataflow.errors import PipelineError, SettingsError
from dataflow.localkafka import cli
from dataflow.localkafka.cluster import ClusterStatus
from dataflow.localkafka.errors import (
    BrokerStartError,
    DownloadError,
    LayoutError,
    NotInstalledError,
    NotRunningError,
    PortInUseError,
)
from dataflow.localkafka.layout import Layout, Recorded, write_recorded
from dataflow.localkafka.node import NodeStatus


@pytest.mark.parametrize(("error", "code"), [
    (NotInstalledError("no java"), 5),
    (LayoutError("bad options"), 2),
    (NotRunningError("no broker"), 7),
    (SettingsError("INPUT_TOPIC: bad"), 6),
    (PortInUseError("port taken"), 1),
    (DownloadError("mvn failed"), 1),
    (BrokerStartError("exited"), 1),
])
def test_each_error_maps_to_its_documented_exit_code(error: PipelineError, code: int) -> None:
    """Errors map to LSB-style exit codes: 5 not installed, 2 usage, 7 not running, 6, 1."""
    assert cli.exit_code(error) == code


def _status(*states: tuple[bool, bool]) -> ClusterStatus:
    return ClusterStatus(tuple(NodeStatus(n, f"127.0.0.1:{9091 + n}", 100 + n if run else None,
                                          stale) for n, (run, stale) in enumerate(states, 1)))


@pytest.mark.parametrize(("status", "code"), [
    (_status((True, False)), 0),
    (_status((False, False)), 3),
    (_status((False, True)), 1),
    (_status((True, False), (False, False), (True, False)), 1),
    (_status((False, False), (False, False), (False, False)), 3),
])
def test_status_exit_codes(status: ClusterStatus, code: int) -> None:
    """status: 0 all running, 3 none running, 1 partly running or a broker died."""
    assert cli.status_code(status) == code


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    """`kafka --help` and `kafka start --help` exit 0 and list the exit codes and ports."""
    for argv in (["--help"], ["start", "--help"]):
        assert cli.main(argv) == 0
        out = capsys.readouterr().out
        assert "exit codes (LSB init-script conventions):" in out
        assert "3  `status` only: not running" in out
        assert "PORT+100+N-1" in out


def test_status_of_an_empty_folder_is_not_running(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """status where nothing was ever started prints `not running` and exits 3."""
    assert cli.main(["status", "--dir", str(tmp_path / "k")]) == 3
    assert capsys.readouterr().out == f"not running ({tmp_path / 'k'})\n"


def test_stop_when_nothing_runs_says_so_and_succeeds(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """stop where no broker runs prints so and exits 0, creating nothing."""
    assert cli.main(["stop", "--dir", str(tmp_path / "k")]) == 0
    assert capsys.readouterr().out == f"no broker running in {tmp_path / 'k'}\n"
    assert not (tmp_path / "k").exists()


def test_status_reports_a_broker_that_died(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A pid file whose process is gone means the broker died: exit 1 and a pointer to its log."""
    write_recorded(tmp_path, Recorded(Layout(port=39500), "abc"))
    (tmp_path / "node-1").mkdir()
    (tmp_path / "node-1" / "kafka.pid").write_text("999999999\n")
    assert cli.main(["status", "--dir", str(tmp_path)]) == 1
    assert capsys.readouterr().out == (
        "not running, but its pid file is left: the broker died; see "
        f"{tmp_path / 'node-1' / 'server.log'}\n")


def test_start_with_options_contradicting_the_folder_exits_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """start --brokers 3 on a folder formatted for one broker explains itself and exits 2."""
    write_recorded(tmp_path, Recorded(Layout(port=39500), "abc"))
    assert cli.main(["start", "--dir", str(tmp_path), "--brokers", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kafka start failed: {tmp_path} holds a cluster of 1 broker on "
                          "port 39500, not 3 brokers on port 39500;")
    assert "Traceback" not in err


def test_unsupported_broker_count_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """--brokers 2 is refused by the parser with exit code 2."""
    assert cli.main(["start", "--brokers", "2"]) == 2
    assert "invalid choice: 2" in capsys.readouterr().err


def test_create_topics_without_a_broker_exits_7(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """create-topics with no local broker running says how to start one and exits 7."""
    assert cli.main(["create-topics", "--dir", str(tmp_path)]) == 7
    assert capsys.readouterr().err == (
        f"kafka create-topics failed: no local broker runs in {tmp_path}; start it with "
        f"`python -m dataflow kafka start --dir {tmp_path}` or pass --bootstrap\n")


def test_create_topics_with_bad_settings_exits_6(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """An invalid topic name in the environment is reported by variable, exit code 6."""
    monkeypatch.setenv("INPUT_TOPIC", "bad topic")
    assert cli.main(["create-topics", "--dir", str(tmp_path)]) == 6
    assert capsys.readouterr().err.startswith("kafka create-topics failed: INPUT_TOPIC: ")
