"""Parsing and validation: raw Kafka record -> ``Accepted`` or ``Rejected``.

Bad records are values, not exceptions: ``parse`` never raises for any input
bytes, it returns a ``Rejected`` with a stable reason code and a detail.
``parse_all`` is the same over a batch, in one loop (the flow's parse step).
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from datetime import UTC, datetime

import msgspec

from dataflow.schemas import LOGIN_DECODER, Accepted, KafkaRecord, Rejected

# A sane range for epoch seconds: 2000-01-01 to 2100-01-01 (UTC).
MIN_TIMESTAMP = 946_684_800
MAX_TIMESTAMP = 4_102_444_800


def _classify(error: msgspec.ValidationError) -> str:
    text = str(error)
    if text.startswith("Expected `object`, got") and " - at `" not in text:
        return "not_an_object"  # first: a top-level `null` is not an object, not a missing field
    if text.startswith("Object missing required field") or "got `null`" in text:
        return "missing_field"
    if text.startswith("Expected `") and "`, got `" in text:
        return "wrong_type"
    return "invalid_value"


def ip_version(text: str) -> int:
    """4 or 6 for a valid IP address, 0 for anything else (C-level checks, fast)."""
    # Only an IPv6 address has a colon, and only IPv6 may: one check, no failed attempt
    # (a raised OSError costs more than the check itself).
    v6 = ":" in text
    try:
        socket.inet_pton(socket.AF_INET6 if v6 else socket.AF_INET, text)
    except (OSError, ValueError):  # ValueError: an embedded NUL ("1.2.3.4\u0000")
        return 0
    return 6 if v6 else 4


def _check_timestamp(value: int) -> str | None:
    if MIN_TIMESTAMP <= value <= MAX_TIMESTAMP:
        return None
    hint = " (milliseconds? expected seconds)" if value > MAX_TIMESTAMP * 100 else ""
    return (
        f"timestamp {value} is outside {MIN_TIMESTAMP}..{MAX_TIMESTAMP} epoch seconds"
        f"{hint} - at `$.timestamp`"
    )


def parse(record: KafkaRecord) -> Accepted | Rejected:
    """Decode and validate one record; never raises."""
    raw = record.value()
    if not raw:
        return Rejected(record, "empty_value", "the record value is null or empty")
    if not raw.isascii():
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Rejected(record, "invalid_utf8", f"invalid UTF-8 at byte {exc.start}")
    try:
        login = LOGIN_DECODER.decode(raw)
    except (msgspec.DecodeError, RecursionError) as exc:  # ValidationError is a DecodeError
        return _undecodable(record, exc)
    timestamp = login.timestamp
    if type(timestamp) is str:
        timestamp = int(timestamp)
    problem = _check_timestamp(timestamp)  # type: ignore[arg-type]  # str was converted
    if problem is not None:
        return Rejected(record, "invalid_value", problem)
    version = ip_version(login.ip)
    if not version:
        return Rejected(record, "invalid_value", f"{login.ip!r} is not an IP address - at `$.ip`")
    return Accepted(login, timestamp, version, record)  # type: ignore[arg-type]


def parse_all(records: Iterable[KafkaRecord], accepted: list[Accepted],
              rejected: list[Rejected]) -> None:
    """``parse`` over a batch in one loop (the parse step's), each record appended to
    ``accepted`` or ``rejected``: a valid login's checks inlined, no call per record. A
    record that is empty or not ASCII, or fails the timestamp or IP check, goes to
    ``parse``, which says why (or accepts a valid non-ASCII login)."""
    decode, inet_pton = LOGIN_DECODER.decode, socket.inet_pton
    ipv4, ipv6 = socket.AF_INET, socket.AF_INET6
    accept, reject = accepted.append, rejected.append
    for record in records:
        raw = record.value()
        if raw and raw.isascii():
            try:
                login = decode(raw)
            except (msgspec.DecodeError, RecursionError) as exc:
                reject(_undecodable(record, exc))
                continue
            timestamp = login.timestamp
            if type(timestamp) is str:
                timestamp = int(timestamp)
            if MIN_TIMESTAMP <= timestamp <= MAX_TIMESTAMP:  # type: ignore[operator]
                ip = login.ip
                v6 = ":" in ip  # as ip_version()
                try:
                    inet_pton(ipv6 if v6 else ipv4, ip)
                except (OSError, ValueError):
                    pass
                else:
                    accept(Accepted(login, timestamp, 6 if v6 else 4, record))  # type: ignore[arg-type]
                    continue
        result = parse(record)
        if type(result) is Accepted:
            accept(result)
        else:
            reject(result)  # type: ignore[arg-type]


def _undecodable(record: KafkaRecord, exc: Exception) -> Rejected:
    if isinstance(exc, msgspec.ValidationError):
        return Rejected(record, _classify(exc), str(exc))
    if isinstance(exc, RecursionError):
        return Rejected(record, "malformed_json", "JSON nested too deeply to decode")
    return Rejected(record, "malformed_json", str(exc))


def reference_time(record: KafkaRecord, read_at: float) -> int:
    """When a record was written to Kafka (its Kafka timestamp) or read, whichever is
    earlier, in epoch seconds: what its event time is compared with (``dataflow.event_time``)."""
    kind, written_ms = record.timestamp()
    read_s = int(read_at)
    return read_s if not kind or written_ms < 0 else min(written_ms // 1000, read_s)


def future_rejection(record: KafkaRecord, ts: int, read_at: float, limit: int) -> Rejected:
    """The dead letter of an event stamped more than ``limit`` seconds ahead of its
    reference time (``future_timestamp``)."""
    reference = reference_time(record, read_at)
    stamp = datetime.fromtimestamp(ts, UTC).isoformat()
    return Rejected(record, "future_timestamp",
                    f"timestamp {ts} ({stamp}) is {ts - reference} s ahead of the time the "
                    f"record was written to Kafka (or read, if earlier), more than "
                    f"MAX_FUTURE_SECONDS={limit} - at `$.timestamp`")
