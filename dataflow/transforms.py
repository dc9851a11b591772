"""What a valid login becomes, and the keys and shapes of what the job writes.

Plain functions: ``processed_logins`` (valid logins -> their ``ProcessedLogin``, the
``enrich`` step's loop in ``dataflow.steps``; ``enrich`` for one), ``version_parts``, the
ISO-8601 text of event times, and the keys and records of counts and late counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache

from dataflow.schemas import ENCODER, Accepted, LateCount, OutRecord, ProcessedLogin


@lru_cache(maxsize=4096)
def iso_utc(epoch_seconds: int) -> str:
    """ISO-8601 UTC text of epoch seconds, e.g. 2023-09-12T00:45:51+00:00."""
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat()


@lru_cache(maxsize=1024)
def version_parts(version: str) -> tuple[int | None, int | None, int | None]:
    """Major, minor, patch of a dotted version; None where a part is absent or not a number.

    A part is a number only when it is 1 to 18 ASCII digits 0-9. Other Unicode digits are
    not numbers (``str.isdigit()`` accepts ``"²"``, ``"①"`` and the Arabic-Indic ``"\u0661"``;
    ``int()`` refuses the first two and reads the third as 1), and neither are signs, spaces
    or underscores. A longer run of ASCII digits is None too, never an error (``int()``
    refuses more than 4,300 digits): a number of at most 18 digits fits a signed 64-bit
    integer, so every JSON reader of the output (Java ``long``, Go ``int64``) takes it.
    """
    parts: list[int | None] = [
        int(p) if len(p) <= 18 and p.isascii() and p.isdigit() else None
        for p in version.split(".")[:3]
    ]
    parts += [None] * (3 - len(parts))
    return parts[0], parts[1], parts[2]


def processed_logins(logins: Sequence[Accepted], processed_at: str) -> list[ProcessedLogin]:
    """Accepted logins as the job writes them to OUTPUT_TOPIC: one tight loop (the ``enrich``
    step's), no call per login."""
    out: list[ProcessedLogin] = []
    append, parts, iso = out.append, version_parts, iso_utc
    for accepted in logins:
        login = accepted.login
        major, minor, patch = parts(login.app_version)
        device_type = login.device_type
        ts = accepted.timestamp
        # Positional: the field order of ProcessedLogin (cheaper than keywords per record).
        append(ProcessedLogin(
            login.user_id, login.app_version, major, minor, patch,
            device_type.lower() if device_type is not None else None,
            login.device_id, login.ip, accepted.ip_version, login.locale.upper(),
            ts, iso(ts), processed_at))
    return out


def enrich(accepted: Accepted, processed_at: str) -> ProcessedLogin:
    """One accepted login as the job writes it to OUTPUT_TOPIC (``processed_logins``)."""
    return processed_logins((accepted,), processed_at)[0]


def count_key(field: str, value: str, start: int) -> bytes:
    """Key of a count record: one key per (field, value, window), so later supersedes earlier."""
    return f"{field}:{value}@{iso_utc(start)}".encode()


def late_count_record(topic: str, start: int, length: int, field: str, value: str,
                      count: int) -> OutRecord:
    """A LATE_TOPIC record: ``count`` late logins of one window and field value."""
    late = LateCount(iso_utc(start), iso_utc(start + length), field, value, count)
    return (topic, count_key(field, value, start), ENCODER.encode(late), None, None)
