"""What a job run wrote, and what it should have written: expectations and readers.

``tests/integration/jobs.py`` starts, watches and kills runs; this module builds
input streams with known outcomes and reads the outputs back to check them.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataflow.parsing import MAX_TIMESTAMP, MIN_TIMESTAMP
from dataflow.transforms import iso_utc
from tests.kafka_io import consume_all
from tests.records import login_bytes

Message = Any  # confluent_kafka.Message
Source = tuple[int, int]  # (partition, offset) of an input record
BASE = 1_694_479_500  # a minute boundary
WINDOWS = 5  # event times of login_stream spread over five 60 s windows
PARTITIONS = 3
BAD = [
    (b"{not json", "malformed_json"),
    (login_bytes(user_id=None), "missing_field"),
    (login_bytes(ip=42), "wrong_type"),
    (b'{"user_id": "\xff\xfe"}', "invalid_utf8"),
    (None, "empty_value"),
    (b"[1, 2, 3]", "not_an_object"),
    (login_bytes(ip="300.1.1.1"), "invalid_value"),
    (login_bytes(timestamp=1_694_479_551_000), "invalid_value"),
]


def summed(summaries: Path) -> dict[str, int]:
    """Counters of every process of a run, added up from its RUN_SUMMARY_DIR files."""
    total = Counter[str]()
    for path in summaries.glob("*.json"):
        snap = json.loads(path.read_text())
        total["consumed"] += snap["consumed"]
        total["processed"] += snap["processed"]
        total["filtered"] += sum(snap["filtered"].values())
        total["dead_lettered"] += sum(snap["dead_lettered"].values())
    return dict(total)


def header(msg: Message, name: str) -> bytes:
    return dict(msg.headers() or [])[name]


def processed_sources(messages: list[Message]) -> list[Source]:
    """(partition, offset) of the input record behind each processed record."""
    return [(int(header(m, "source.partition")), int(header(m, "source.offset")))
            for m in messages]


def dead_sources(messages: list[Message]) -> list[Source]:
    """(partition, offset) of the input record behind each dead letter."""
    return [(int(header(m, "dlq.source.partition")), int(header(m, "dlq.source.offset")))
            for m in messages]


def final_counts(bootstrap: str, topic: str) -> Counter[tuple[str, str, str]]:
    """Window counts keyed by (window_start, field, value), the last record of a key winning."""
    counts: Counter[tuple[str, str, str]] = Counter()
    messages = consume_all(bootstrap, topic)
    # Keys are partitioned, so within one key the offset order is the write order.
    for msg in sorted(messages, key=lambda m: (m.partition(), m.offset())):
        doc = json.loads(msg.value())
        counts[(doc["window_start"], doc["field"], doc["value"])] = doc["count"]
    return counts


@dataclass
class Expected:
    """What each input record must become."""

    good: set[Source] = field(default_factory=set)
    bad: dict[Source, tuple[bytes, bytes | None, str]] = field(default_factory=dict)
    filtered: set[Source] = field(default_factory=set)
    counts: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    late: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    @property
    def written(self) -> int:
        return len(self.good) + len(self.bad)

    @property
    def consumed(self) -> int:
        """Input records: written, or filtered."""
        return self.written + len(self.filtered)


def login_stream(n: int) -> tuple[list[tuple[bytes, bytes | None, int]], Expected]:
    """n records round-robin over 3 partitions: mostly good, 1 in 41 bad, 1 in 29 filtered."""
    records: list[tuple[bytes, bytes | None, int]] = []
    expect = Expected()
    for i in range(n):
        where = (i % PARTITIONS, i // PARTITIONS)
        key = f"user-{i % 1000}".encode()
        if i % 41 == 7:
            value, reason = BAD[i % len(BAD)]
            expect.bad[where] = (key, value, reason)
        elif i % 29 == 3:
            value = login_bytes(user_id=key.decode(), locale="BY", timestamp=BASE)
            expect.filtered.add(where)
        else:
            # Mostly in order, each event up to 12 s older than its place: out of order
            # within the default lateness (10 s), and some beyond it.
            timestamp = BASE + (i * 60 * WINDOWS) // n - (i * 7919) % 13
            device = ("android", "iOS", None)[(i // 3) % 3]
            locale = ("US", "de", "fr", "PT")[i % 4]
            value = login_bytes(user_id=key.decode(), timestamp=timestamp,
                                device_type=device, locale=locale)
            expect.good.add(where)
        records.append((key, value, where[0]))
    expect.counts, expect.late = reference_windows(
        [(partition, value, (i % PARTITIONS, i // PARTITIONS) in expect.good)
         for i, (_k, value, partition) in enumerate(records)])
    return records, expect


def event_time(value: bytes | None) -> int | None:
    """A record's valid event time as the source reads it (its ``timestamp`` alone), or None."""
    try:
        doc = json.loads(value or b"")
    except ValueError:
        return None
    raw = doc.get("timestamp") if isinstance(doc, dict) else None
    if type(raw) is str and re.fullmatch(r"[0-9]{1,12}", raw):
        raw = int(raw)
    if type(raw) is not int or not MIN_TIMESTAMP <= raw <= MAX_TIMESTAMP:
        return None
    return raw


def reference_windows(records: list[tuple[int, bytes | None, bool]], lateness: int = 10,
                      length: int = 60, fields: tuple[str, ...] = ("device_type", "locale"),
                      ) -> tuple[Counter[tuple[str, str, str]], Counter[tuple[str, str, str]]]:
    """The documented window semantics, written plainly: per partition in offset order, every
    record with a valid timestamp moves the partition's newest event time; a counted login
    more than ``lateness`` older than the newest before it is late; the others count.

    ``records`` are (partition, value, counted) in produce order, counted for the valid,
    not excluded logins. Returns (counts, late), keyed (window_start ISO, field, value).
    """
    newest: dict[int, int] = {}
    counts: Counter[tuple[str, str, str]] = Counter()
    late: Counter[tuple[str, str, str]] = Counter()
    for partition, value, counted in records:
        ts = event_time(value)
        if ts is None:
            continue
        tally = counts
        if partition in newest and ts < newest[partition] - lateness:
            tally = late
        else:
            newest[partition] = max(ts, newest.get(partition, ts))
        if not counted:
            continue
        doc = json.loads(value or b"")
        values = {"device_type": (doc.get("device_type") or "unknown").lower(),
                  "locale": doc["locale"].upper()}
        for name in fields:
            tally[(iso_utc(ts - ts % length), name, values[name])] += 1
    return counts, late


@dataclass
class Outputs:
    """Everything the runs wrote, each record tagged with the run that wrote it."""

    processed: list[tuple[Source, int]]
    dead: list[tuple[Source, int, Message]]

    def sources(self) -> list[tuple[Source, int]]:
        return self.processed + [(src, run) for src, run, _ in self.dead]


def run_of(msg: Message, marks: list[dict[int, int]]) -> int:
    """Index of the run that wrote ``msg``: the first whose end offsets are past it."""
    return next(k for k, ends in enumerate(marks) if msg.offset() < ends[msg.partition()])


def read_outputs(bootstrap: str, topics: dict[str, str],
                 marks: dict[str, list[dict[int, int]]]) -> Outputs:
    """The output and DLQ records, each tagged with its run (from ``Watcher.marks``)."""
    processed = consume_all(bootstrap, topics["output"])
    dead = consume_all(bootstrap, topics["dlq"])
    return Outputs(
        [(src, run_of(m, marks["output"]))
         for src, m in zip(processed_sources(processed), processed, strict=True)],
        [(src, run_of(m, marks["dlq"]), m)
         for src, m in zip(dead_sources(dead), dead, strict=True)],
    )


def check_nothing_lost(out: Outputs, expect: Expected, input_topic: str) -> None:
    """Good records processed, bad ones dead-lettered byte-exact, filtered ones nowhere."""
    assert {src for src, _ in out.processed} == expect.good
    assert {src for src, _, _ in out.dead} == set(expect.bad)
    for src, _, msg in out.dead:
        key, value, reason = expect.bad[src]
        assert (msg.key(), msg.value()) == (key, value)
        assert header(msg, "dlq.reason") == reason.encode()
        assert header(msg, "dlq.source.topic") == input_topic.encode()
