"""The review tool against what the dataflow really writes: totals and a replay round trip."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable

import pytest
from bytewax.testing import run_main
from confluent_kafka import KafkaError, Producer

from dataflow import metrics
from dataflow.deadletters import HEADER_REPLAY_COUNT
from dataflow.dlq import main as dlq_main
from dataflow.flow import build_flow
from dataflow.generator import GeneratorOptions, Shares, run_generator
from dataflow.settings import Settings
from tests.kafka_io import consume_all
from tests.records import login_bytes

START = 1_726_129_800


@pytest.fixture
def settings(kafka_bootstrap: str, make_topic: Callable[..., str],
             monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Fresh topics for one finite run, also named in the environment for the CLI."""
    built = Settings(bootstrap_servers=kafka_bootstrap, input_topic=make_topic(3),
                     output_topic=make_topic(3), dlq_topic=make_topic(2),
                     counts_topic=make_topic(), late_topic=make_topic(), stop_at_end=True)
    for name, value in (("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap),
                        ("INPUT_TOPIC", built.input_topic), ("DLQ_TOPIC", built.dlq_topic)):
        monkeypatch.setenv(name, value)
    return built


def run_flow(settings: Settings) -> dict[str, int]:
    """Run the dataflow to the end of its input; return the dead letters it counted, by reason."""
    before = Counter(metrics.snapshot()["dead_lettered"])
    run_main(build_flow(settings))
    after = Counter(metrics.snapshot()["dead_lettered"])
    return dict(after - before)


def _summary(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    capsys.readouterr()
    assert dlq_main(["summary", "--json"]) == 0
    data: dict[str, object] = json.loads(capsys.readouterr().out)
    return data


def test_summary_totals_match_the_dataflow_dead_letter_counter(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """After a run over generated data, summary by reason equals the flow's counter delta."""
    shares = Shares(missing_field=0.04, wrong_type=0.03, malformed=0.02, late=0.01)
    generated = run_generator(settings, GeneratorOptions(
        rate=0, count=3000, seed=11, start_time=START, shares=shares))
    assert generated.failed == 0
    counted = run_flow(settings)
    assert counted == {"missing_field": generated.by_kind["missing_field"],
                       "wrong_type": generated.by_kind["wrong_type"],
                       "malformed_json": generated.by_kind["malformed"]}
    data = _summary(capsys)
    assert data["total"] == sum(counted.values())
    assert data["by_reason"] == counted


def test_replayed_fixed_records_come_out_processed(
    kafka_bootstrap: str, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """Replayed fixed dead letters are processed; a still-bad one comes back with count 1."""
    fixed = [login_bytes(user_id=f"fixed-{i}", timestamp=START + i) for i in range(4)]
    still_bad = login_bytes(user_id="still-bad", ip=42)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all"})
    errors: list[KafkaError] = []
    for n, value in enumerate([*fixed, still_bad]):
        producer.produce(settings.dlq_topic, value, f"key-{n}".encode(),
                         headers=[("trace", b"t"), ("dlq.reason", b"invalid_value"),
                                  ("dlq.source.offset", str(n).encode())],
                         on_delivery=lambda err, _m: errors.append(err) if err else None)
    assert producer.flush(30) == 0 and not errors

    assert dlq_main(["replay"]) == 0
    assert capsys.readouterr().out == (
        f"dlq: replayed 5 to {settings.input_topic}, 0 failed, skipped 0 at --max-replays 3\n")
    assert run_flow(settings) == {"wrong_type": 1}

    processed = [json.loads(m.value()) for m in consume_all(kafka_bootstrap,
                                                            settings.output_topic)]
    assert sorted(p["user_id"] for p in processed) == [f"fixed-{i}" for i in range(4)]
    again = [m for m in consume_all(kafka_bootstrap, settings.dlq_topic)
             if dict(m.headers() or []).get("dlq.reason") == b"wrong_type"]
    assert len(again) == 1 and again[0].value() == still_bad
    headers = dict(again[0].headers() or [])
    assert headers[HEADER_REPLAY_COUNT] == b"1" and headers["trace"] == b"t"
