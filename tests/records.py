"""Test doubles of consumed Kafka records, and sample login documents."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FakeRecord:
    """Quacks like confluent_kafka.Message for what the flow reads."""

    _value: bytes | None
    _key: bytes | None = b"k"
    _headers: list[tuple[str, bytes]] | None = None
    _topic: str = "user-login"
    _partition: int = 0
    _offset: int = 0
    _timestamp_ms: int | None = None  # None: no Kafka timestamp, as (0, -1) says
    extra: dict[str, Any] = field(default_factory=dict)

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (0, -1) if self._timestamp_ms is None else (1, self._timestamp_ms)


class HeadersCalledAgain(BaseException):  # stands for a crash, not an error
    """``headers()`` was called again on a record whose first call failed: on a real
    confluent_kafka.Message that returns a list holding a NULL, and touching it crashes
    the process (a BaseException, so no ``except Exception`` can hide it)."""


_HEADERS_FAILED = ("<method 'headers' of 'confluent_kafka.cimpl.Message' objects> returned "
                   "a result with an exception set")


@dataclass(frozen=True)
class RawHeadersRecord(FakeRecord):
    """A FakeRecord whose header names are raw bytes, read as confluent-kafka 2.16 reads a
    real record's (established on the broker, tests/integration/test_odd_records_kafka.py):
    each name is a C string (cut at its first NUL byte) decoded as UTF-8. When a name is not
    UTF-8 the first ``headers()`` raises SystemError, caused by the UnicodeDecodeError of
    the first such name (through a second SystemError when there are more); a second call
    raises HeadersCalledAgain."""

    raw_headers: list[tuple[bytes, bytes | None]] = field(default_factory=list)
    calls: list[int] = field(default_factory=list)  # one item per headers() call

    def headers(self) -> list[tuple[str, bytes | None]] | None:  # type: ignore[override]
        self.calls.append(1)
        read: list[tuple[str, bytes | None]] = []
        errors: list[UnicodeDecodeError] = []
        for raw, value in self.raw_headers:
            try:
                read.append((raw.split(b"\0", 1)[0].decode("utf-8"), value))
            except UnicodeDecodeError as exc:
                errors.append(exc)
        if errors and len(self.calls) > 1:
            raise HeadersCalledAgain(_HEADERS_FAILED)
        if errors:
            cause: BaseException = errors[0]
            if len(errors) > 1:
                inner = SystemError("<class 'UnicodeDecodeError'> returned a result with an "
                                    "exception set")
                inner.__cause__ = cause
                cause = inner
            raise SystemError(_HEADERS_FAILED) from cause
        return read or None


SAMPLE = {
    "user_id": "424cdd21-063a-43a7-b91b-7ca1a833afae",
    "app_version": "2.3.0",
    "device_type": "android",
    "ip": "199.172.111.135",
    "locale": "RU",
    "device_id": "593-47-5928",
    "timestamp": "1694479551",
}


def login_bytes(**changes: Any) -> bytes:
    """The documented sample with some fields changed (None removes a field)."""
    doc = {**SAMPLE, **changes}
    return json.dumps({k: v for k, v in doc.items() if v is not None}).encode()


class ListReader:
    """A PartitionReader over a list of records: fixed-size batches, done at the end
    (unless ``live``: then it waits for more, like a partition without STOP_AT_END)."""

    def __init__(self, records: list[FakeRecord], batch_size: int, position: int = 0,
                 live: bool = False) -> None:
        self._records = records
        self._batch_size = batch_size
        self._live = live
        self.position = position
        self.done = not live and position >= len(records)

    def read(self) -> list[FakeRecord]:
        batch = self._records[self.position:self.position + self._batch_size]
        self.position += len(batch)
        self.done = not self._live and self.position >= len(self._records)
        return batch

    def caught_up(self) -> bool:
        return self.position >= len(self._records)

    def close(self) -> None:
        pass


def list_source(settings: Any, records: list[FakeRecord], batch_size: int = 100,
                partitions: int = 2) -> Any:
    """The job's LoginSource over FakeRecords, by their partition, in offset order."""
    from dataflow.source import LoginSource

    by_partition: dict[int, list[FakeRecord]] = {p: [] for p in range(partitions)}
    for record in records:
        by_partition[record.partition()].append(record)
    return LoginSource(
        settings, lambda _s, p, resume: ListReader(by_partition[p], batch_size, resume or 0),
        partitions=list(by_partition))


@dataclass
class Written:
    """What the flow gave its sinks, read back by topic (default topic names)."""

    processed: list[dict[str, Any]] = field(default_factory=list)
    dead: list[tuple[str, str]] = field(default_factory=list)  # (dlq.reason, dlq.detail)
    late: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (start, field, value)
    counts: list[dict[str, Any]] = field(default_factory=list)


def written(out: list[Any]) -> Written:
    """What the sinks were given (``(key, OutBatch)`` items of a TestingSink), read back."""
    result = Written()
    for _key, batch in out:
        for topic, _, value, headers, _ in batch.records:
            if topic == "processed-user-login":
                result.processed.append(json.loads(value))
            elif topic == "user-login-dlq":
                found = dict(headers)
                result.dead.append((found["dlq.reason"].decode(), found["dlq.detail"].decode()))
            elif topic == "user-login-late":
                doc = json.loads(value)
                key = (doc["window_start"], doc["field"], doc["value"])
                result.late[key] = result.late.get(key, 0) + doc["count"]
            else:
                result.counts.append(json.loads(value))
    return result
