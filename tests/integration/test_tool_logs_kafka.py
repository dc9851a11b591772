"""librdkafka's own log lines from the tools go through the project's logs, never raw."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

import pytest


@pytest.mark.parametrize("command", [["generate", "--count", "5", "--rate", "0"],
                                     ["dlq", "summary"]])
def test_librdkafka_lines_follow_log_level_and_format(
    kafka_bootstrap: str, make_topic: Callable[..., str], command: list[str]
) -> None:
    """KAFKA_CONFIG_DEBUG=broker: no raw %7| line; JSON events at debug level, none at warning."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "INPUT_TOPIC": make_topic(),
           "DLQ_TOPIC": make_topic(), "KAFKA_CONFIG_DEBUG": "broker", "LOG_FORMAT": "json"}

    def stderr_lines(level: str) -> list[str]:
        done = subprocess.run([sys.executable, "-m", "dataflow", *command], env={
            **env, "LOG_LEVEL": level}, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        return done.stderr.splitlines()

    quiet = stderr_lines("warning")
    assert not [line for line in quiet if line.startswith("%")]
    assert not [line for line in quiet if '"facility"' in line]
    loud = stderr_lines("debug")
    assert not [line for line in loud if line.startswith("%")]
    events = [json.loads(line) for line in loud if line.startswith("{")]
    assert any(e.get("facility") == "BROKER" and e["level"] == "debug" for e in events)
