"""Settings that used to pass start-up and then crash or loop: one line and exit 2 at start-up.

The subprocess tests start the real entry points (`python -m dataflow run`,
`python -m bytewax.run dataflow.flow`). They fail before any Kafka client is
built, so they need no broker; the bootstrap points at a port nothing listens on.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dataflow.errors import SettingsError
from dataflow.runner import check_metrics_port

ROOT = Path(__file__).resolve().parents[2]
NO_BROKER = "127.0.0.1:9"


def test_metrics_port_plus_process_index_must_be_a_port() -> None:
    """Port + index up to 65535 passes; one more is a SettingsError naming the sum."""
    check_metrics_port("", 5)
    check_metrics_port("127.0.0.1:65533", 2)
    with pytest.raises(SettingsError) as caught:
        check_metrics_port("127.0.0.1:65535", 1)
    assert str(caught.value) == (
        "METRICS_ADDRESS: port 65535 + process index 1 = 65536 is above 65535 (process K "
        "listens on port+K); choose a lower port")


def run(command: list[str], **settings: str) -> subprocess.CompletedProcess[str]:
    """Run an entry point with the shipped defaults plus ``settings``, output captured."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KAFKA_", "BYTEWAX_")) and k not in ("METRICS_ADDRESS",)}
    env.update({"KAFKA_BOOTSTRAP_SERVERS": NO_BROKER, **settings})
    return subprocess.run([sys.executable, "-m", *command], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("settings", "line"),
    [
        ({"SOURCE_BATCH_SIZE": "2000000"},
         "SOURCE_BATCH_SIZE: 2000000 is above the maximum of 1,000,000 "
         "(librdkafka's consume() limit)"),
        ({"COUNTS_TOPIC": "user-login-dlq"},
         "COUNTS_TOPIC: must differ from DLQ_TOPIC (both 'user-login-dlq'); each kind of "
         "output needs its own topic"),
        ({"METRICS_ADDRESS": "127.0.0.1:65535"},
         "METRICS_ADDRESS: port 65535 + process index 1 = 65536 is above 65535 (process K "
         "listens on port+K); choose a lower port"),
    ],
    ids=["batch-size", "same-topics", "metrics-port"],
)
def test_runner_refuses_at_start_up(settings: dict[str, str], line: str) -> None:
    """`python -m dataflow run --processes 2`: exit 2, one line, no process started."""
    done = run(["dataflow", "run", "--processes", "2"], **settings)
    assert (done.returncode, done.stdout, done.stderr) == (
        2, "", f"login-dataflow: error: {line}\n")


@pytest.mark.parametrize(
    ("settings", "line"),
    [
        ({"SOURCE_BATCH_SIZE": "1000001"},
         "SOURCE_BATCH_SIZE: 1000001 is above the maximum of 1,000,000 "
         "(librdkafka's consume() limit)"),
        ({"OUTPUT_TOPIC": "user-login-late"},
         "LATE_TOPIC: must differ from OUTPUT_TOPIC (both 'user-login-late'); each kind of "
         "output needs its own topic"),
        ({"METRICS_ADDRESS": "127.0.0.1:65534", "BYTEWAX_PROCESS_ID": "2",
          "BYTEWAX_ADDRESSES": "127.0.0.1:2101;127.0.0.1:2102;127.0.0.1:2103"},
         "METRICS_ADDRESS: port 65534 + process index 2 = 65536 is above 65535 (process K "
         "listens on port+K); choose a lower port"),
    ],
    ids=["batch-size", "same-topics", "metrics-port"],
)
def test_bytewax_run_refuses_at_start_up(settings: dict[str, str], line: str) -> None:
    """`python -m bytewax.run dataflow.flow` (the container's command): exit 2, one line."""
    done = run(["bytewax.run", "dataflow.flow"], **settings)
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"login-dataflow: error: {line}\n"
