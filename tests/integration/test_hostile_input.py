"""Hostile input on the real broker: the job never stops early and accounts for every record."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.integration.jobs import (
    Job,
    job_env,
    job_topics,
)
from tests.integration.outcomes import (
    dead_sources,
    header,
    processed_sources,
    summed,
)
from tests.kafka_io import consume_all, produce_all
from tests.records import login_bytes

BIG = 900_000
GOOD = login_bytes(timestamp=1_694_479_551)
DEEP_ARRAY = b"[" * 10_000 + b"]" * 10_000
DEEP_OBJECT = b'{"a":' * 10_000 + b"1" + b"}" * 10_000


def with_extra(raw: bytes) -> bytes:
    """The sample login with one more field whose JSON text is ``raw``."""
    return GOOD[:-1] + b', "extra": ' + raw + b"}"


# (name, value, expected outcome: "processed" or the dead-letter reason)
CORPUS: list[tuple[str, bytes | None, str]] = [
    ("invalid-utf8", b'{"user_id": "\xff\xfe"}', "invalid_utf8"),
    ("invalid-utf8-in-extra", with_extra(b'"\xc3\x28"'), "invalid_utf8"),
    ("empty", b"", "empty_value"),
    ("null-value", None, "empty_value"),
    ("big-valid", with_extra(json.dumps("x" * BIG).encode()), "processed"),
    ("big-malformed", with_extra(json.dumps("x" * BIG).encode())[:-2], "malformed_json"),
    ("deep-in-extra", with_extra(DEEP_ARRAY), "malformed_json"),
    ("deep-array", DEEP_ARRAY, "not_an_object"),
    ("deep-object", DEEP_OBJECT, "malformed_json"),
    ("nan-extra", with_extra(b"NaN"), "malformed_json"),
    ("nan-timestamp", GOOD.replace(b"1694479551", b"NaN"), "malformed_json"),
    ("infinity", with_extra(b"Infinity"), "malformed_json"),
    ("bom", b"\xef\xbb\xbf" + GOOD, "malformed_json"),
    ("duplicate-keys", GOOD[:-1] + b', "user_id": "last-wins"}', "processed"),
    ("array", b'[{"user_id": "u"}]', "not_an_object"),
    ("string", b'"a login"', "not_an_object"),
    ("number", b"1694479551", "not_an_object"),
    ("json-null", b"null", "not_an_object"),
    ("timestamp-past-64-bits", login_bytes(timestamp=2**70), "invalid_value"),
    ("negative-past-64-bits", login_bytes(timestamp=-(2**70)), "invalid_value"),
    ("extra-past-64-bits", with_extra(str(2**70).encode()), "processed"),
    ("float-overflow-extra", with_extra(b"1e400"), "processed"),
    ("nul-in-ip", login_bytes(ip="1.2.3.4\x00"), "invalid_value"),
    ("truncated", GOOD[:-1], "malformed_json"),
    ("trailing-data", GOOD + b"{}", "malformed_json"),
]
GOOD_EACH_SIDE = 5


def corpus_records() -> list[tuple[bytes, bytes | None, int]]:
    """Good records, the hostile corpus, good records again; all in partition 0, in order."""
    good = [(f"good-{i}".encode(), login_bytes(user_id=f"good-{i}"), 0)
            for i in range(2 * GOOD_EACH_SIDE)]
    hostile = [(name.encode(), value, 0) for name, value, _ in CORPUS]
    return good[:GOOD_EACH_SIDE] + hostile + good[GOOD_EACH_SIDE:]


def test_hostile_corpus_is_processed_or_dead_lettered_byte_exact(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path,
) -> None:
    """Each hostile record gets its expected outcome, the run ends with exit 0, none is lost."""
    records = corpus_records()
    input_topic = make_topic()
    produce_all(kafka_bootstrap, input_topic, records)
    topics = job_topics(make_topic, input_topic)
    env = job_env(kafka_bootstrap, topics, tmp_path / "summaries")
    job = Job.start(env, tmp_path / "job.log")
    assert job.wait(120) == 0, job.tail()

    outcome_of = {name.encode(): outcome for name, _, outcome in CORPUS}
    expected = {offset: (key, value, outcome_of.get(key, "processed"))
                for offset, (key, value, _) in enumerate(records)}
    processed = consume_all(kafka_bootstrap, topics["output"])
    dead = consume_all(kafka_bootstrap, topics["dlq"])
    assert sorted(o for _, o in processed_sources(processed)) == sorted(
        o for o, (_, _, outcome) in expected.items() if outcome == "processed")
    by_user = {json.loads(m.value())["user_id"] for m in processed}
    assert "last-wins" in by_user  # duplicate keys: the last value wins, as in Python's json

    dead_by_offset = dict(zip((o for _, o in dead_sources(dead)), dead, strict=True))
    assert len(dead_by_offset) == len(dead)  # no record dead-lettered twice
    wanted_dead = {o: e for o, e in expected.items() if e[2] != "processed"}
    assert set(dead_by_offset) == set(wanted_dead)
    for offset, (key, value, reason) in wanted_dead.items():
        msg = dead_by_offset[offset]
        assert (msg.key(), msg.value()) == (key, value), key
        assert header(msg, "dlq.reason") == reason.encode(), key
        assert header(msg, "dlq.source.topic") == input_topic.encode()

    assert summed(tmp_path / "summaries") == {
        "consumed": len(records), "processed": len(processed), "filtered": 0,
        "dead_lettered": len(dead)}
    assert len(processed) + len(dead) == len(records)
