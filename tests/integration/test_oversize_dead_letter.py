"""A dead letter too large for a Kafka record is written cut to fit; the job goes on (exit 0)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.jobs import Job, job_env, job_topics, stop_leftovers
from tests.integration.outcomes import dead_sources, header, processed_sources, summed
from tests.kafka_io import consume_all, produce_all
from tests.records import login_bytes

RECORDS = 100
HUGE_AT = 50
# Truncated JSON just under the producer's 1,000,000-byte message.max.bytes: the broker
# takes it, but its dead letter (the same bytes plus the dlq.* headers) is over the limit.
HUGE = (b'{"user_id": "' + b"u" * 999_800)[:999_800]


@pytest.fixture(autouse=True)
def _no_leftover_jobs() -> Iterator[None]:
    yield
    stop_leftovers()


def run_with_huge_record(bootstrap: str, make_topic: Callable[..., str], tmp_path: Path,
                         dlq_config: dict[str, str] | None = None) -> dict[str, str]:
    """100 records, one of them HUGE at offset 50; the job must end with exit 0."""
    records = [(b"k%d" % i, HUGE if i == HUGE_AT else login_bytes(user_id=f"user-{i}"), 0)
               for i in range(RECORDS)]
    input_topic = make_topic()
    produce_all(bootstrap, input_topic, records, headers=[("trace", b"t-1")])
    topics = job_topics(make_topic, input_topic, output_partitions=1)
    if dlq_config:
        topics["dlq"] = make_topic(config=dlq_config)
    job = Job.start(job_env(bootstrap, topics, tmp_path / "summaries"), tmp_path / "job.log")
    assert job.wait(120) == 0, job.tail()
    assert '"event": "dead_letter_truncated"' in job.text()
    return topics


def check_cut_dead_letter(bootstrap: str, topics: dict[str, str], tmp_path: Path,
                          max_bytes: int) -> None:
    """One dead letter, cut, with size and hash of HUGE; 99 processed; accounting exact."""
    dead = consume_all(bootstrap, topics["dlq"])
    assert dead_sources(dead) == [(0, HUGE_AT)]
    msg = dead[0]
    assert msg.key() == b"k%d" % HUGE_AT
    assert HUGE.startswith(msg.value())
    assert max_bytes - 20_000 < len(msg.value()) < max_bytes
    assert header(msg, "trace") == b"t-1"
    assert header(msg, "dlq.reason") == b"malformed_json"
    assert header(msg, "dlq.truncated") == b"true"
    assert header(msg, "dlq.original.size") == str(len(HUGE)).encode()
    assert header(msg, "dlq.original.sha256") == hashlib.sha256(HUGE).hexdigest().encode()
    processed = processed_sources(consume_all(bootstrap, topics["output"]))
    assert sorted(processed) == [(0, o) for o in range(RECORDS) if o != HUGE_AT]
    assert summed(tmp_path / "summaries") == {
        "consumed": RECORDS, "processed": RECORDS - 1, "filtered": 0, "dead_lettered": 1}


def test_dead_letter_over_the_producer_limit_is_cut_to_fit(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path,
) -> None:
    """produce() refuses the ~1 MB dead letter: it is written cut, headers say what was cut."""
    topics = run_with_huge_record(kafka_bootstrap, make_topic, tmp_path)
    check_cut_dead_letter(kafka_bootstrap, topics, tmp_path, 1_000_000)


def test_dead_letter_the_broker_refuses_as_too_large_is_cut_further(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path,
) -> None:
    """DLQ topic max.message.bytes 300,000: RecordTooLarge on delivery, cut again until it fits."""
    topics = run_with_huge_record(kafka_bootstrap, make_topic, tmp_path,
                                  dlq_config={"max.message.bytes": "300000"})
    check_cut_dead_letter(kafka_bootstrap, topics, tmp_path, 250_000)
