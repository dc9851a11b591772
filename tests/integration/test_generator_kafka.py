"""The generator on the real broker: reproducible topics, the asked shares, the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from confluent_kafka.admin import AdminClient

from dataflow.generator import (
    EXPECTED_REASONS,
    EventFactory,
    GeneratorOptions,
    Shares,
    TimeShape,
    run_generator,
)
from dataflow.parsing import parse
from dataflow.schemas import Rejected
from dataflow.settings import Settings
from tests.kafka_io import consume_all
from tests.records import FakeRecord

ROOT = Path(__file__).resolve().parents[2]
START = 1_726_129_800
SHARES = Shares(missing_field=0.05, wrong_type=0.04, malformed=0.03, out_of_order=0.05,
                late=0.02, excluded_locale=0.05)


def _by_partition(bootstrap: str, topic: str) -> dict[int, list[tuple[bytes, bytes]]]:
    out: dict[int, list[tuple[bytes, bytes]]] = {}
    for msg in consume_all(bootstrap, topic):
        out.setdefault(msg.partition(), []).append((msg.key(), msg.value()))
    return out


def test_same_seed_gives_the_same_topic_content_with_the_asked_shares(
    kafka_bootstrap: str, make_topic: Callable[..., str]
) -> None:
    """Two runs at one seed and start time write identical partitions; bad kinds are rejected."""
    options = GeneratorOptions(rate=0, count=4000, seed=42, start_time=START, shares=SHARES)
    contents = []
    for _ in range(2):
        settings = Settings(bootstrap_servers=kafka_bootstrap, input_topic=make_topic(3))
        summary = run_generator(settings, options)
        assert (summary.sent, summary.failed, summary.produced) == (4000, 0, 4000)
        contents.append(_by_partition(kafka_bootstrap, settings.input_topic))
    assert contents[0] == contents[1]
    assert sum(len(p) for p in contents[0].values()) == 4000

    expected = EventFactory(42, SHARES, START, time_shape=TimeShape.from_settings(settings))
    kinds = Counter(kind for _, _, kind in expected.take(4000))
    assert kinds == summary.by_kind
    for name in ("missing_field", "wrong_type", "malformed", "out_of_order", "late",
                 "excluded_locale"):
        assert abs(kinds[name] / 4000 - getattr(SHARES, name)) < 0.015, (name, kinds)
    reasons: Counter[str] = Counter()
    for messages in contents[0].values():
        for key, value in messages:
            result = parse(FakeRecord(value, key))
            reasons[result.reason if isinstance(result, Rejected) else "accepted"] += 1
    assert reasons == {"accepted": 4000 - sum(kinds[k] for k in EXPECTED_REASONS),
                       **{EXPECTED_REASONS[k]: kinds[k] for k in EXPECTED_REASONS}}


def test_cli_creates_a_missing_topic_paces_and_summarises(
    kafka_bootstrap: str, admin: AdminClient
) -> None:
    """`generate --partitions 2 --rate 400 --count 200` creates the topic and takes ~0.5 s."""
    topic = f"test-gen-{os.getpid()}-{time.monotonic_ns()}"
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "INPUT_TOPIC": topic}
    try:
        began = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "dataflow", "generate", "--rate", "400", "--count", "200",
             "--seed", "1", "--partitions", "2", "--late", "0.1"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        took = time.monotonic() - began
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"generate: 200 sent to {topic}, 0 failed, in ")
        assert "generate: by kind: late " in done.stdout
        assert took >= 0.45
        assert len(admin.list_topics(topic, timeout=10).topics[topic].partitions) == 2
        assert len(consume_all(kafka_bootstrap, topic)) == 200
    finally:
        admin.delete_topics([topic])[topic].result(timeout=30)


def test_sigterm_stops_an_endless_run_with_a_summary(
    kafka_bootstrap: str, make_topic: Callable[..., str]
) -> None:
    """Without --count the generator runs until SIGTERM, then flushes and prints its summary."""
    topic = make_topic(partitions=3)
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "INPUT_TOPIC": topic}
    process = subprocess.Popen(
        [sys.executable, "-m", "dataflow", "generate", "--rate", "300", "--seed", "2"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    first = out.splitlines()[0]
    assert first.startswith("generate: ") and " 0 failed" in first
    sent = int(first.split()[1].replace(",", ""))
    assert sent > 100
    assert len(consume_all(kafka_bootstrap, topic)) == sent
