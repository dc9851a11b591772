"""A secret Kafka property never shows in logs, start-up errors or the run summary."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.jobs import ROOT, Job, job_env, job_topics, stop_leftovers
from tests.kafka_io import produce_all
from tests.records import login_bytes

SECRET = "s3cr3t-Pa55w0rd-7f1c9e"


@pytest.fixture(autouse=True)
def _no_leftover_jobs() -> Iterator[None]:
    yield
    stop_leftovers()


def secret_env(bootstrap: str, tmp_path: Path, settings: dict[str, str]) -> dict[str, str]:
    """The job's environment with both secrets set, plus ``settings``."""
    topics = {name: f"secrets-{name}" for name in ("input", "output", "dlq", "counts", "late")}
    return job_env(bootstrap, topics, tmp_path / "summaries", KAFKA_CONFIG_SASL_PASSWORD=SECRET,
                   KAFKA_CONFIG_SSL_KEY_PASSWORD=SECRET, **settings)


def run_flow(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m bytewax.run dataflow.flow`, as the container runs it, output captured."""
    return subprocess.run([sys.executable, "-m", "bytewax.run", "dataflow.flow"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)


def test_secret_is_not_printed_by_a_job_that_runs(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path,
) -> None:
    """SASL, SSL key and OAuth key passphrase set, debug logs: exit 0, secret nowhere."""
    input_topic = make_topic()
    produce_all(kafka_bootstrap, input_topic, [(b"k", login_bytes(), 0), (b"k", b"{", 0)])
    topics = job_topics(make_topic, input_topic)
    env = job_env(kafka_bootstrap, topics, tmp_path / "summaries", LOG_LEVEL="debug",
                  KAFKA_CONFIG_SASL_PASSWORD=SECRET, KAFKA_CONFIG_SSL_KEY_PASSWORD=SECRET,
                  KAFKA_CONFIG_SASL_OAUTHBEARER_ASSERTION_PRIVATE_KEY_PASSPHRASE=SECRET,
                  KAFKA_CONFIG_CLIENT_ID="login-dataflow-test")
    job = Job.start(env, tmp_path / "job.log")
    assert job.wait(120) == 0, job.tail()
    text = job.text()
    assert '"sasl.password": "***"' in text  # the settings are logged, masked
    assert '"sasl.oauthbearer.assertion.private.key.passphrase": "***"' in text
    assert '"client.id": "login-dataflow-test"' in text  # an allow-listed value is shown
    assert SECRET not in text
    summaries = list((tmp_path / "summaries").glob("*.json"))
    assert len(summaries) == 1
    assert SECRET not in summaries[0].read_text()


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"WINDOW_SECONDS": "0"}, "WINDOW_SECONDS: 0 is below the minimum of 1"),
        ({"KAFKA_CONFIG_SASL_MECHANISM": "NOPE", "KAFKA_CONFIG_SECURITY_PROTOCOL": "SASL_SSL"},
         "the Kafka consumer rejects its configuration"),
        ({"KAFKA_CONFIG_SECURITY_PROTOCOL": "SSL",
          "KAFKA_CONFIG_SSL_KEY_LOCATION": "/nonexistent/key.pem",
          "KAFKA_CONFIG_SSL_CERTIFICATE_LOCATION": "/nonexistent/cert.pem"},
         "the Kafka consumer rejects its configuration"),
        ({"KAFKA_CONFIG_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
          "KAFKA_CONFIG_SASL_MECHANISM": "PLAIN", "KAFKA_CONFIG_SASL_USERNAME": "job"},
         "cannot read metadata of topic"),
    ],
    ids=["bad-setting", "bad-sasl-mechanism", "missing-ssl-key", "sasl-against-plaintext"],
)
def test_secret_is_not_printed_when_start_up_fails(
    kafka_bootstrap: str, tmp_path: Path, settings: dict[str, str], error: str,
) -> None:
    """Bad setting, config librdkafka rejects, SASL on a PLAINTEXT broker: exit 2, no secret."""
    done = run_flow(secret_env(kafka_bootstrap, tmp_path, settings))
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "login-dataflow: error: " in done.stderr
    assert error in done.stderr, output
    assert SECRET not in output
    assert not (tmp_path / "summaries").exists()  # nothing ran, nothing summarised


def test_secret_is_not_printed_when_the_runner_refuses_a_setting(
    kafka_bootstrap: str, tmp_path: Path,
) -> None:
    """`python -m dataflow run` checks the settings first: exit 2, the bad one named, no secret."""
    env = secret_env(kafka_bootstrap, tmp_path, {"STARTING_OFFSET": "middle"})
    done = subprocess.run([sys.executable, "-m", "dataflow", "run", "--processes", "2"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr == ("login-dataflow: error: STARTING_OFFSET: 'middle' is not one of "
                           "earliest, latest, committed\n")
    assert SECRET not in done.stdout + done.stderr
