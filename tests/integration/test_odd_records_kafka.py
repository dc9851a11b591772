"""No record stops the job or the dlq tool, on the real broker: Unicode digits in a version, a
header name that is not UTF-8 (written through librdkafka's C API, as non-Java clients can)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from dataflow.deadletters import HEADER_HEADERS_UNREADABLE, HEADER_UNREADABLE_NAME
from dataflow.dlq.export import read_export
from tests.integration.jobs import ROOT, job_topics, run_job
from tests.integration.outcomes import summed
from tests.kafka_io import consume_all, produce_all
from tests.raw_produce import produce_raw
from tests.records import login_bytes

ODD_VERSIONS = {"1.\u00b2": (1, None, None), "\u0661.\u0662": (None, None, None),
                "\u2460": (None, None, None)}
BAD_NAME = b"\xff\xfeorigin"
MARKER = (b"the original headers could not be read and are not kept: a header name is not "
          b"UTF-8 ('utf-8' codec can't decode byte 0xff in position 0: invalid start byte)")
MALFORMED = b'{"user_id": "u-bad", "app_version": '


def _odd_version_records() -> list[tuple[bytes, bytes, int]]:
    """50 logins in partition 0: valid ones, with the odd versions at offsets 10, 25, 40."""
    records = [(f"u{i}".encode(), login_bytes(user_id=f"u{i}", locale="US"), 0)
               for i in range(50)]
    for offset, version in zip((10, 25, 40), ODD_VERSIONS, strict=True):
        records[offset] = (f"u{offset}".encode(),
                           login_bytes(user_id=f"u{offset}", locale="US", app_version=version), 0)
    return records


def test_versions_with_other_unicode_digits_are_processed(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path,
) -> None:
    """50 logins, 3 with versions like "1.²": the run exits 0, all 50 processed, parts null."""
    input_topic = make_topic()
    produce_all(kafka_bootstrap, input_topic, _odd_version_records())
    topics = job_topics(make_topic, input_topic)
    run_job(kafka_bootstrap, topics, 1, tmp_path / "summaries")

    processed = [json.loads(m.value()) for m in consume_all(kafka_bootstrap, topics["output"])]
    assert len(processed) == 50
    assert consume_all(kafka_bootstrap, topics["dlq"]) == []
    by_version = {p["app_version"]: (p["app_version_major"], p["app_version_minor"],
                                     p["app_version_patch"]) for p in processed}
    assert by_version == {**ODD_VERSIONS, "2.3.0": (2, 3, 0)}
    assert summed(tmp_path / "summaries") == {"consumed": 50, "processed": 50, "filtered": 0,
                                              "dead_lettered": 0}


def _fill_input(bootstrap: str, topic: str) -> None:
    """Offsets 0-2: a login, malformed JSON and a login, each with a header name not UTF-8."""
    headers = [(b"trace", b"t1"), (BAD_NAME, b"raw")]
    produce_raw(bootstrap, topic, [
        (b"u-good", login_bytes(user_id="u-good", locale="US"), headers),
        (b"u-bad", MALFORMED, headers),
        (b"u-also", login_bytes(user_id="u-also", locale="US"), [(BAD_NAME, None)]),
    ])


def _run_job_on_bad_header_names(bootstrap: str, make_topic: Callable[..., str],
                                 summaries: Path) -> dict[str, str]:
    """The input of ``_fill_input`` through a run of the job (exit 0); its topics."""
    input_topic = make_topic()
    _fill_input(bootstrap, input_topic)
    topics = job_topics(make_topic, input_topic)
    run_job(bootstrap, topics, 1, summaries)
    return topics


def test_rejected_record_with_a_header_name_not_utf8_is_dead_lettered_with_the_marker(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path,
) -> None:
    """Malformed JSON with a non-UTF-8 header name: in the DLQ, value intact, with the marker."""
    topics = _run_job_on_bad_header_names(kafka_bootstrap, make_topic, tmp_path / "summaries")

    [source] = [m for m in consume_all(kafka_bootstrap, topics["input"]) if m.offset() == 1]
    try:  # what the marker stands for: confluent-kafka cannot read these headers
        source.headers()
    except SystemError as exc:
        assert isinstance(exc.__cause__, UnicodeDecodeError)
        assert exc.__cause__.object == BAD_NAME
    else:
        raise AssertionError("confluent-kafka read a header name that is not UTF-8")

    [dead] = consume_all(kafka_bootstrap, topics["dlq"])
    assert (dead.key(), dead.value()) == (b"u-bad", MALFORMED)
    headers = dead.headers()
    assert headers[:3] == [(HEADER_HEADERS_UNREADABLE, MARKER),
                           (HEADER_UNREADABLE_NAME, BAD_NAME),
                           ("dlq.reason", b"malformed_json")]
    assert dict(headers)["dlq.source.offset"] == b"1"
    processed = consume_all(kafka_bootstrap, topics["output"])
    assert sorted(m.key() for m in processed) == [b"u-also", b"u-good"]
    assert summed(tmp_path / "summaries") == {"consumed": 3, "processed": 2, "filtered": 0,
                                              "dead_lettered": 1}


def _dlq(env: dict[str, str], *args: str) -> str:
    """`python -m dataflow dlq ARGS` as a user runs it; must exit 0; its stdout."""
    done = subprocess.run([sys.executable, "-m", "dataflow", "dlq", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, (args, done.returncode, done.stderr[-3000:])
    return done.stdout


def test_dlq_tool_reads_and_replays_dead_letters_with_unreadable_headers(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path,
) -> None:
    """summary, show, export, replay: exit 0 on the job's dead letter and on another writer's
    record whose own header name is not UTF-8; replay sends both values byte for byte."""
    topics = _run_job_on_bad_header_names(kafka_bootstrap, make_topic, tmp_path / "summaries")
    produce_raw(kafka_bootstrap, topics["dlq"], [(b"other", b"\x00odd", [(BAD_NAME, b"x")])])
    destination = make_topic()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("KAFKA_CONFIG_")},
           "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "DLQ_TOPIC": topics["dlq"],
           "INPUT_TOPIC": destination}

    summary = json.loads(_dlq(env, "summary", "--json"))
    assert (summary["total"], summary["by_reason"]) == (2, {"malformed_json": 1, "(none)": 1})
    shown = _dlq(env, "show")
    assert shown.count(f"{HEADER_HEADERS_UNREADABLE}: the original headers could not be read") \
        == 2
    assert shown.count(f"{HEADER_UNREADABLE_NAME}: \\xff\\xfeorigin") == 2
    _dlq(env, "export", "--output", str(tmp_path / "dead.jsonl"))
    exported = list(read_export(tmp_path / "dead.jsonl"))
    assert [(r.key, r.value) for r in exported] == [(b"u-bad", MALFORMED), (b"other", b"\x00odd")]
    assert all(r.headers[0] == (HEADER_HEADERS_UNREADABLE, MARKER) for r in exported)
    assert "would send" in _dlq(env, "replay", "--dry-run")
    assert _dlq(env, "replay").startswith(f"dlq: replayed 2 to {destination}, 0 failed")

    replayed = consume_all(kafka_bootstrap, destination)
    assert [(m.key(), m.value(), m.headers()) for m in replayed] == [
        (b"u-bad", MALFORMED, [("replay.count", b"1")]),
        (b"other", b"\x00odd", [("replay.count", b"1")])]
