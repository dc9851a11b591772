"""The dead-letter review tool on the real broker: export, summary, replay, group offsets."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from dataflow.deadletters import HEADER_REPLAY_COUNT
from dataflow.dlq import main
from dataflow.dlq.export import read_export
from tests.kafka_io import consume_all, consume_committed

FAILED_AT = b"2024-09-12T08:30:00+00:00"
Headers = list[tuple[str, bytes | None]]
# (partition, key, value, original headers, reason, source offset, replay.count or None)
LETTERS: list[tuple[int, bytes | None, bytes | None, Headers, str, int, bytes | None]] = [
    (0, b"k0", b"\x00\x01\x02\xff\xfe binary", [("trace", b"\xde\xad")], "invalid_utf8", 3, None),
    (0, b"k1", b'{"user_id": "caf\xc3"}', [], "invalid_utf8", 4, None),
    (1, None, None, [("empty", None)], "empty_value", 7, None),
    (1, b"k3", b'{"ip": 42}', [("trace", b"t3")], "wrong_type", 8, b"1"),
    (2, b"k4", b"{broken", [], "malformed_json", 9, None),
    (2, b"k5", b'{"user_id": 1}', [], "wrong_type", 10, b"3"),
]


def _dlq_headers(original: Headers, reason: str, offset: int, count: bytes | None) -> Headers:
    headers = list(original)
    if count is not None:
        headers.append((HEADER_REPLAY_COUNT, count))
    return [*headers, ("dlq.reason", reason.encode()), ("dlq.detail", f"bad {reason}".encode()),
            ("dlq.source.topic", b"user-login"),
            ("dlq.source.partition", str(offset % 3).encode()),
            ("dlq.source.offset", str(offset).encode()), ("dlq.failed_at", FAILED_AT)]


def fill_dlq(bootstrap: str, topic: str) -> list[tuple[int, bytes | None, bytes | None, Headers]]:
    """Write LETTERS as the dataflow would; return (partition, key, value, headers) written."""
    errors: list[KafkaError] = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    written = []
    for partition, key, value, original, reason, offset, count in LETTERS:
        headers = _dlq_headers(original, reason, offset, count)
        as_sent: list[tuple[str, str | bytes | None]] = list(headers)
        producer.produce(topic, value, key, partition=partition, headers=as_sent,
                         on_delivery=lambda err, _msg: errors.append(err) if err else None)
        written.append((partition, key, value, headers))
    assert producer.flush(30) == 0 and not errors
    return written


@pytest.fixture
def topics(kafka_bootstrap: str, make_topic: Callable[..., str],
           monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A filled DLQ topic and an empty input topic, named in the environment."""
    names = {"dlq": make_topic(partitions=3), "input": make_topic(partitions=3)}
    fill_dlq(kafka_bootstrap, names["dlq"])
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("DLQ_TOPIC", names["dlq"])
    monkeypatch.setenv("INPUT_TOPIC", names["input"])
    return names


def _headers(msg: Message) -> Headers:
    return cast(Headers, list(msg.headers() or []))


def test_export_round_trips_every_byte(kafka_bootstrap: str, topics: dict[str, str],
                                       tmp_path: Path) -> None:
    """export then import gives back keys, values (binary, bad UTF-8, null) and headers exactly."""
    out = tmp_path / "dead.jsonl"
    assert main(["export", "--output", str(out)]) == 0
    exported = sorted(read_export(out), key=lambda r: (r.partition, r.offset))
    in_topic = sorted(consume_all(kafka_bootstrap, topics["dlq"]),
                      key=lambda m: (m.partition(), m.offset()))
    assert [(r.partition, r.offset, r.key, r.value, r.headers) for r in exported] == [
        (m.partition(), m.offset(), m.key(), m.value(), _headers(m)) for m in in_topic]
    assert {(r.key, r.value) for r in exported} == {(k, v) for _, k, v, *_ in LETTERS}


def test_summary_json_counts_reasons_and_sources(topics: dict[str, str],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """summary --json totals every dead letter by reason, source and failure time."""
    assert main(["summary", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total"] == 6
    assert data["by_reason"] == {"invalid_utf8": 2, "wrong_type": 2, "empty_value": 1,
                                 "malformed_json": 1}
    assert sum(data["by_source"].values()) == 6
    assert data["first_failure"] == data["last_failure"] == FAILED_AT.decode()


def test_show_filters_by_reason_and_source_offset(topics: dict[str, str],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """show --reason wrong_type --offset-from 9 lists the single matching record, decoded."""
    assert main(["show", "--reason", "wrong_type", "--offset-from", "9"]) == 0
    out = capsys.readouterr().out
    assert out.count("wrong_type  failed_at") == 1
    assert "  source   user-login[1]@10" in out
    assert '  value    [text, 14 bytes] {"user_id": 1}' in out


def test_replay_dry_run_sends_nothing(kafka_bootstrap: str, topics: dict[str, str],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """replay --dry-run lists what would go and leaves the input topic empty."""
    assert main(["replay", "--dry-run"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()[:-1]
    assert sum(line.startswith("would send ") for line in lines) == 5
    assert sum(line.startswith("skip ") for line in lines) == 1
    assert out.endswith("would send 5 to " + topics["input"] + ", skip 1 at --max-replays 3; "
                        "nothing sent\n")
    assert consume_all(kafka_bootstrap, topics["input"]) == []


def test_replay_resends_byte_exact_without_dlq_headers(
    kafka_bootstrap: str, topics: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """replay sends key and value unchanged, original headers, replay.count+1; skips at 3."""
    assert main(["replay"]) == 0
    assert capsys.readouterr().out == (
        f"dlq: replayed 5 to {topics['input']}, 0 failed, skipped 1 at --max-replays 3\n")
    replayed = {(m.key(), m.value()): _headers(m) for m in consume_all(kafka_bootstrap,
                                                                        topics["input"])}
    expected: dict[tuple[bytes | None, bytes | None], Headers] = {}
    for _, key, value, original, _, _, count in LETTERS:
        if count == b"3":
            continue
        following = str(int(count or b"0") + 1).encode()
        expected[(key, value)] = [*original, (HEADER_REPLAY_COUNT, following)]
    assert replayed == expected


def _committed(bootstrap: str, group: str, topic: str, partitions: int = 3) -> list[int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        parts = [TopicPartition(topic, p) for p in range(partitions)]
        return [tp.offset for tp in consumer.committed(parts, timeout=10)]
    finally:
        consumer.close()


def test_group_offsets_move_only_with_commit_group(
    kafka_bootstrap: str, topics: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --commit-group no offsets are stored; with it, a second read finds nothing new."""
    assert main(["summary", "--json"]) == 0
    assert _committed(kafka_bootstrap, "dataflow-dlq-review", topics["dlq"]) == [-1001] * 3
    assert main(["summary", "--json", "--commit-group", "ops"]) == 0
    assert _committed(kafka_bootstrap, "ops", topics["dlq"]) == [2, 2, 2]
    capsys.readouterr()
    assert main(["summary", "--json", "--commit-group", "ops"]) == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert data["total"] == 0


def test_missing_topic_is_a_one_line_error(topics: dict[str, str],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A dead-letter topic that does not exist gives one error line and exit status 1."""
    assert main(["summary", "--topic", "no-such-topic-here"]) == 1
    assert capsys.readouterr().err == (
        "python -m dataflow dlq summary: error: topic 'no-such-topic-here' does not exist\n")


def _write(bootstrap: str, topic: str, letters: list[tuple[int, bytes, Headers]]) -> None:
    """Write (partition, value, headers) records, key = value, every delivery confirmed."""
    errors: list[KafkaError] = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for partition, value, headers in letters:
        as_sent: list[tuple[str, str | bytes | None]] = list(headers)
        producer.produce(topic, value, value, partition=partition, headers=as_sent,
                         on_delivery=lambda err, _msg: errors.append(err) if err else None)
    assert producer.flush(30) == 0 and not errors


def test_replay_sends_a_duplicated_dead_letter_once(
    kafka_bootstrap: str, topics: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Two copies of one dead letter (same dlq.source.*, as after a crash) are replayed once."""
    _, key, value, original, reason, offset, count = LETTERS[1]
    assert key is not None and value is not None
    copy = _dlq_headers(original, reason, offset, count)
    errors: list[KafkaError] = []
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all"})
    producer.produce(topics["dlq"], value, key, partition=2, headers=list(copy),  # type: ignore[arg-type]
                     on_delivery=lambda err, _msg: errors.append(err) if err else None)
    assert producer.flush(30) == 0 and not errors
    assert main(["replay"]) == 0
    assert capsys.readouterr().out == (
        f"dlq: replayed 5 to {topics['input']}, 0 failed, skipped 1 at --max-replays 3, "
        "1 duplicate\n")
    keys = sorted(m.key() or b"" for m in consume_all(kafka_bootstrap, topics["input"]))
    assert keys == [b"", b"k0", b"k1", b"k3", b"k4"]


def test_commit_group_with_reason_leaves_other_records_for_the_next_replay(
    kafka_bootstrap: str, topics: dict[str, str]
) -> None:
    """replay --reason with a group, then without: every record is replayed exactly once."""
    assert main(["replay", "--reason", "wrong_type", "--commit-group", "ops"]) == 0
    assert main(["replay", "--commit-group", "ops"]) == 0
    assert main(["replay", "--commit-group", "ops"]) == 0
    keys = sorted(m.key() or b"" for m in consume_all(kafka_bootstrap, topics["input"]))
    assert keys == [b"", b"k0", b"k1", b"k3", b"k4"]


def test_commit_group_with_reason_and_limit_does_not_skip_unmatched_records(
    kafka_bootstrap: str, make_topic: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--reason X --limit 1 --commit-group G, then --commit-group G: the rest go, none twice."""
    dlq, target = make_topic(partitions=1), make_topic(partitions=1)
    reasons = ["wrong_type", "invalid_utf8", "wrong_type", "invalid_utf8"]
    _write(kafka_bootstrap, dlq, [
        (0, f"v{n}".encode(), _dlq_headers([], reason, n, None))
        for n, reason in enumerate(reasons)])
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("DLQ_TOPIC", dlq)
    monkeypatch.setenv("INPUT_TOPIC", target)
    assert main(["replay", "--reason", "invalid_utf8", "--limit", "1",
                 "--commit-group", "g"]) == 0
    assert [m.value() for m in consume_all(kafka_bootstrap, target)] == [b"v1"]
    assert main(["replay", "--commit-group", "g"]) == 0
    assert [m.value() for m in consume_all(kafka_bootstrap, target)] == [
        b"v1", b"v0", b"v2", b"v3"]
    assert _committed(kafka_bootstrap, "g", dlq, partitions=1) == [4]


def test_replay_in_exactly_once_mode_is_one_transaction(
    kafka_bootstrap: str, topics: dict[str, str], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With PROCESSING_GUARANTEE=exactly-once the replay is one transaction: read_committed
    consumers see all 5 records, and the topic holds one commit marker after them."""
    monkeypatch.setenv("PROCESSING_GUARANTEE", "exactly-once")
    assert main(["replay"]) == 0
    assert capsys.readouterr().out.startswith(f"dlq: replayed 5 to {topics['input']}, 0 failed")
    assert len(consume_committed(kafka_bootstrap, topics["input"])) == 5
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": "tests"})
    try:
        ends = [consumer.get_watermark_offsets(TopicPartition(topics["input"], p), 10)[1]
                for p in range(3)]
    finally:
        consumer.close()
    assert sum(ends) == 5 + sum(1 for end in ends if end)  # each partition: records + marker
