"""The review tool on dead letters written the way Kafka Connect, Kafka Streams and Spring do."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from confluent_kafka import KafkaError, Producer

from dataflow.dlq import main
from tests.kafka_io import consume_all

Headers = list[tuple[str, bytes | None]]
CONNECT_ERROR = "org.apache.kafka.connect.errors.DataException"
STREAMS_ERROR = "org.apache.kafka.common.errors.SerializationException"
SPRING_ERROR = "org.springframework.kafka.listener.ListenerExecutionFailedException"


def connect_headers(topic: str, partition: int, offset: int) -> Headers:
    """Headers of Kafka Connect's DeadLetterQueueReporter (errors.deadletterqueue.context...)."""
    return [("__connect.errors.topic", topic.encode()),
            ("__connect.errors.partition", str(partition).encode()),
            ("__connect.errors.offset", str(offset).encode()),
            ("__connect.errors.connector.name", b"jdbc-sink"),
            ("__connect.errors.task.id", b"0"),
            ("__connect.errors.stage", b"VALUE_CONVERTER"),
            ("__connect.errors.class.name", b"org.apache.kafka.connect.json.JsonConverter"),
            ("__connect.errors.exception.class.name", CONNECT_ERROR.encode()),
            ("__connect.errors.exception.message", b"Converting byte[] to Kafka Connect data "
                                                   b"failed due to serialization error"),
            ("__connect.errors.exception.stacktrace", b"org.apache.kafka...\n\tat ...")]


def streams_headers(topic: str, partition: int, offset: int) -> Headers:
    """Headers of Kafka Streams' dead-letter records (KIP-1034), all UTF-8 text."""
    return [("__streams.errors.exception", STREAMS_ERROR.encode()),
            ("__streams.errors.stacktrace", b"org.apache.kafka...\n\tat ..."),
            ("__streams.errors.message", b"Size of data received by LongDeserializer is not 8"),
            ("__streams.errors.topic", topic.encode()),
            ("__streams.errors.partition", str(partition).encode()),
            ("__streams.errors.offset", str(offset).encode())]


def spring_headers(topic: str, partition: int, offset: int) -> Headers:
    """Headers of Spring Kafka's DeadLetterPublishingRecoverer: binary partition and offset."""
    return [("kafka_dlt-exception-fqcn", SPRING_ERROR.encode()),
            ("kafka_dlt-exception-cause-fqcn", b"java.lang.IllegalStateException"),
            ("kafka_dlt-exception-message", b"Listener method threw exception"),
            ("kafka_dlt-exception-stacktrace", b"org.springframework...\n\tat ..."),
            ("kafka_dlt-original-topic", topic.encode()),
            ("kafka_dlt-original-partition", partition.to_bytes(4, "big", signed=True)),
            ("kafka_dlt-original-offset", offset.to_bytes(8, "big", signed=True)),
            ("kafka_dlt-original-timestamp", (1_726_129_800_000).to_bytes(8, "big")),
            ("kafka_dlt-original-timestamp-type", b"CreateTime"),
            ("kafka_dlt-original-consumer-group", b"orders-app")]


def _write(bootstrap: str, topic: str, records: list[tuple[bytes, bytes, Headers]]) -> None:
    errors: list[KafkaError] = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for key, value, headers in records:
        as_sent: list[tuple[str, str | bytes | None]] = list(headers)
        producer.produce(topic, value, key, partition=0, headers=as_sent,
                         on_delivery=lambda err, _msg: errors.append(err) if err else None)
    assert producer.flush(30) == 0 and not errors


@pytest.fixture
def mixed(kafka_bootstrap: str, make_topic: Callable[..., str],
          monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A DLQ with one dead letter of each scheme, each from its own original topic."""
    names = {"dlq": make_topic(), "connect": make_topic(), "streams": make_topic(),
             "spring": make_topic()}
    _write(kafka_bootstrap, names["dlq"], [
        (b"c", b"connect-value", [("trace", b"c1"), *connect_headers(names["connect"], 0, 41)]),
        (b"s", b"\x00\x01", streams_headers(names["streams"], 0, 42)),
        (b"p", b'{"order": 1}', spring_headers(names["spring"], 0, 3_000_000_000)),
        (b"loop", b"x", streams_headers(names["dlq"], 0, 1)),
        (b"gone", b"y", connect_headers("no-such-topic-anywhere", 0, 2)),
    ])
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("DLQ_TOPIC", names["dlq"])
    return names


def test_summary_groups_every_scheme_by_source_and_error(
    mixed: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """summary --json reads source and error from Connect, Streams and Spring headers."""
    assert main(["summary", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total"] == 5
    assert data["by_reason"] == {CONNECT_ERROR: 2, STREAMS_ERROR: 2, SPRING_ERROR: 1}
    assert data["by_source"] == {f"{mixed['connect']}[0]": 1, f"{mixed['streams']}[0]": 1,
                                 f"{mixed['spring']}[0]": 1, f"{mixed['dlq']}[0]": 1,
                                 "no-such-topic-anywhere[0]": 1}
    assert data["by_scheme"] == {"kafka-connect": 2, "kafka-streams": 2, "spring-kafka": 1}


def test_show_gives_source_place_and_error_of_each_scheme(
    mixed: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """show prints topic[partition]@offset and the exception of every scheme (Spring binary)."""
    assert main(["show", "--reason", SPRING_ERROR]) == 0
    out = capsys.readouterr().out
    assert f"  source   {mixed['spring']}[0]@3000000000 (spring-kafka)" in out
    assert f"@2  {SPRING_ERROR}  failed_at " in out
    assert "  detail   Listener method threw exception" in out
    assert main(["show", "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert f"  source   {mixed['connect']}[0]@41 (kafka-connect)" in out
    assert f"  source   {mixed['streams']}[0]@42 (kafka-streams)" in out


def test_replay_to_original_sends_each_record_home(
    kafka_bootstrap: str, mixed: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """--to-original sends each record to its own topic, byte-exact, without error headers."""
    assert main(["replay", "--to-original", "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert f"to {mixed['spring']} with replay.count=1" in dry
    assert "the dead-letter topic being read" in dry
    assert "destination topic 'no-such-topic-anywhere' does not exist" in dry
    assert consume_all(kafka_bootstrap, mixed["spring"]) == []
    assert main(["replay", "--to-original"]) == 0
    homes = ", ".join(f"{mixed[n]} 1" for n in sorted(["connect", "streams", "spring"],
                                                       key=lambda n: mixed[n]))
    assert capsys.readouterr().out == (
        f"dlq: replayed 3 to original topics ({homes}), 0 failed, skipped 0 at --max-replays 3, "
        "2 without a usable original topic (not sent)\n")
    for name, key, value, kept in [("connect", b"c", b"connect-value", [("trace", b"c1")]),
                                   ("streams", b"s", b"\x00\x01", []),
                                   ("spring", b"p", b'{"order": 1}', [])]:
        [msg] = consume_all(kafka_bootstrap, mixed[name])
        assert (msg.key(), msg.value()) == (key, value)
        assert list(msg.headers() or []) == [*kept, ("replay.count", b"1")]
    assert len(consume_all(kafka_bootstrap, mixed["dlq"])) == 5
