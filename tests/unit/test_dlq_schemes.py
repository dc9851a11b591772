"""Header schemes, handled-range bookkeeping and librdkafka log routing, without a broker."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
import structlog

from dataflow.deadletters import dead_letter_headers
from dataflow.dlq import handled
from dataflow.dlq.records import DeadLetter
from dataflow.dlq.schemes import Origin, read_origin
from dataflow.logs import configure, kafka_logger
from dataflow.parsing import parse
from tests.records import FakeRecord


def test_our_dead_letters_carry_kip_1034_headers_read_as_ours() -> None:
    """dead_letter_headers adds __streams.errors.* with the same context; dlq.* is read first."""
    rejected = parse(FakeRecord(b"{", _partition=2, _offset=7))
    headers = dead_letter_headers(rejected, datetime(2024, 9, 12, tzinfo=UTC))  # type: ignore[arg-type]
    named = dict(headers)
    assert named["__streams.errors.exception"] == named["dlq.reason"] == b"malformed_json"
    assert named["__streams.errors.message"] == named["dlq.detail"]
    assert (named["__streams.errors.topic"], named["__streams.errors.partition"],
            named["__streams.errors.offset"]) == (b"user-login", b"2", b"7")
    assert read_origin(headers).scheme == "dlq"
    streams_only = [(k, v) for k, v in headers if k.startswith("__streams.")]
    assert read_origin(streams_only) == Origin("kafka-streams", "user-login", 2, 7,
                                               "malformed_json", named["dlq.detail"].decode())


def test_spring_partition_and_offset_are_big_endian_binary() -> None:
    """kafka_dlt-original-partition is a 4-byte int, -offset an 8-byte long; other sizes: None."""
    origin = read_origin([("kafka_dlt-original-topic", b"orders"),
                          ("kafka_dlt-original-partition", b"\x00\x00\x01\x00"),
                          ("kafka_dlt-original-offset", (2**40).to_bytes(8, "big")),
                          ("kafka_dlt-exception-fqcn", b"java.lang.RuntimeException")])
    assert origin == Origin("spring-kafka", "orders", 256, 2**40, "java.lang.RuntimeException",
                            None)
    assert read_origin([("kafka_dlt-original-partition", b"12")]).partition is None


def test_connect_context_is_text() -> None:
    """__connect.errors.* values are read as UTF-8 text and decimal numbers."""
    origin = read_origin([("__connect.errors.topic", b"t"), ("__connect.errors.partition", b"3"),
                          ("__connect.errors.offset", b"99"),
                          ("__connect.errors.exception.class.name", b"a.B"),
                          ("__connect.errors.exception.message", b"bad")])
    assert origin == Origin("kafka-connect", "t", 3, 99, "a.B", "bad")
    assert read_origin([("trace", b"x")]) == Origin()


def test_replay_drops_every_scheme_context_and_other_schemes_fail_at_write_time() -> None:
    """replay_headers keeps only original headers; failed_at of a foreign scheme = its timestamp."""
    record = DeadLetter("dlq", 0, 5, 1_726_129_800_000, b"k", b"v", [
        ("trace", b"t"), ("__connect.errors.topic", b"a"), ("kafka_dlt-original-topic", b"b"),
        ("__streams.errors.topic", b"c"), ("dlq.reason", b"x")])
    assert record.replay_headers() == [("trace", b"t"), ("replay.count", b"1")]
    foreign = DeadLetter("dlq", 0, 5, 1_726_129_800_000, None, b"v",
                         [("__connect.errors.topic", b"a")])
    assert foreign.failed_at == datetime(2024, 9, 12, 8, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("position", "held", "earlier", "expected"),
    [
        (10, [], [], (10, [])),
        (10, [3], [], (3, [(4, 9)])),
        (10, [3, 4, 7], [], (3, [(5, 6), (8, 9)])),
        (10, [9], [], (9, [])),
        (6, [2], [(4, 5), (8, 12)], (2, [(3, 5), (8, 12)])),
        (10, [], [(8, 12), (20, 21)], (10, [(10, 12), (20, 21)])),
    ],
)
def test_commit_point_is_the_first_unhandled_record_plus_handled_ranges(
    position: int, held: list[int], earlier: handled.Ranges,
    expected: tuple[int, handled.Ranges],
) -> None:
    """The commit stops at the first held record; handled ones after it are listed as ranges."""
    assert handled.commit_point(position, held, earlier) == expected


def test_handled_metadata_round_trips_and_ignores_foreign_text() -> None:
    """encode/decode keep the ranges; other metadata or damaged text means no ranges."""
    text, left_out = handled.encode([(4, 9), (12, 12)])
    assert (text, left_out) == ("dlq-handled:v1:4-9,12", 0)
    assert handled.decode(text) == [(4, 9), (12, 12)]
    assert handled.decode("") == handled.decode("other") == handled.decode(
        "dlq-handled:v1:x") == []
    many = [(n * 10, n * 10 + 1) for n in range(1000)]
    text, left_out = handled.encode(many)
    assert len(text) <= handled.MAX_METADATA and left_out > 0
    assert handled.decode(text) == many[:1000 - left_out]


def test_librdkafka_lines_go_through_structlog_and_transient_ones_are_debug() -> None:
    """A GETPID 'Coordinator load in progress' warning becomes debug; real errors stay errors."""
    configure("debug", "json")
    with structlog.testing.capture_logs() as logs:
        logger = kafka_logger()
        logger.log(logging.WARNING, "%s [%s] %s", "GETPID", "rdkafka#producer-1",
                   "Failed to acquire idempotence PID: Broker: Coordinator load in progress: "
                   "retrying")
        logger.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#consumer-2",
                   "Connect to ipv4#127.0.0.1:1 failed: Connection refused")
    assert [(e["log_level"], e["facility"], e["client"]) for e in logs] == [
        ("debug", "GETPID", "rdkafka#producer-1"), ("error", "FAIL", "rdkafka#consumer-2")]
    assert logs[1]["event"] == "Connect to ipv4#127.0.0.1:1 failed: Connection refused"
    structlog.reset_defaults()
