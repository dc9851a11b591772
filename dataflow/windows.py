"""Event-time tumbling-window counts per field value.

Counting every record through Bytewax's window operator costs a Python call
per record; instead each batch is first reduced to partial counts, one per
(field, value, window), and only those go through ``fold_window``. A partial
count carries the latest event time it covers, so the per-key watermark moves
as it would per record; a partial count for a window that has closed comes out
on ``WindowOut.late`` with the number of events it stands for.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import msgspec
from bytewax.operators import KeyedStream
from bytewax.operators import windowing as win

from dataflow import metrics
from dataflow.schemas import ENCODER, Accepted, OutRecord, WindowCount
from dataflow.settings import Settings
from dataflow.transforms import iso_utc, normal_device_type

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
UNKNOWN = "unknown"


class PartialCount(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """Logins of one batch for one field value in one window."""

    field: str
    value: str
    window_start: int
    count: int
    latest: int  # latest event time covered, epoch seconds


FIELD_GETTERS: dict[str, Callable[[Accepted], str]] = {
    "device_type": lambda a: normal_device_type(a.login.device_type) or UNKNOWN,
    "locale": lambda a: a.login.locale.upper(),
    "app_version": lambda a: a.login.app_version,
    "ip_version": lambda a: str(a.ip_version),
    "user_id": lambda a: a.login.user_id,
    "device_id": lambda a: a.login.device_id,
}


class PreCounter:
    """Batch of accepted logins -> keyed partial counts for the window operator."""

    def __init__(self, settings: Settings) -> None:
        self._length = settings.window_seconds
        self._getters = [(name, FIELD_GETTERS[name]) for name in settings.count_fields]

    def __call__(self, batch: list[Accepted]) -> list[tuple[str, PartialCount]]:
        length = self._length
        tally: dict[tuple[str, str, int], list[int]] = {}
        for accepted in batch:
            ts = accepted.timestamp
            start = ts - ts % length
            for name, getter in self._getters:
                key = (name, getter(accepted), start)
                slot = tally.get(key)
                if slot is None:
                    tally[key] = [1, ts]
                else:
                    slot[0] += 1
                    if ts > slot[1]:
                        slot[1] = ts
        return [
            (f"{name}:{value}", PartialCount(name, value, start, count, latest))
            for (name, value, start), (count, latest) in tally.items()
        ]


def _event_time(partial: PartialCount) -> datetime:
    return datetime.fromtimestamp(partial.latest, UTC)


def _fold(state: tuple[int, int], partial: PartialCount) -> tuple[int, int]:
    return partial.window_start, state[1] + partial.count


def _merge(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    return a[0], a[1] + b[1]


def count_windows(
    step_id: str, partials: KeyedStream[PartialCount], settings: Settings
) -> win.WindowOut[PartialCount, tuple[int, int]]:
    """Tumbling event-time windows aligned to the epoch; state is (window_start, count)."""
    clock = win.EventClock(
        _event_time, wait_for_system_duration=timedelta(seconds=settings.allowed_lateness_seconds)
    )
    windower = win.TumblingWindower(length=timedelta(seconds=settings.window_seconds),
                                    align_to=EPOCH)
    return win.fold_window(step_id, partials, clock, windower, lambda: (0, 0), _fold, _merge,
                           ordered=False)


def window_record(field: str, value: str, start: int, length: int, count: int) -> WindowCount:
    """The JSON record of one window count."""
    return WindowCount(
        window_start=iso_utc(start), window_end=iso_utc(start + length),
        field=field, value=value, count=count,
    )


class CountWriter:
    """Closed window (key, (window_id, (start, count))) -> record for COUNTS_TOPIC."""

    def __init__(self, settings: Settings) -> None:
        self._topic = settings.counts_topic
        self._length = settings.window_seconds

    def __call__(self, item: tuple[str, tuple[int, tuple[int, int]]]) -> OutRecord:
        key, (_window_id, (start, count)) = item
        field, _, value = key.partition(":")
        record = window_record(field, value, start, self._length, count)
        return (self._topic, key.encode(), ENCODER.encode(record), None,
                (start + self._length) * 1000)


class LateWriter:
    """Partial counts that missed their window -> records for LATE_TOPIC, counted."""

    def __init__(self, settings: Settings) -> None:
        self._topic = settings.late_topic
        self._length = settings.window_seconds

    def __call__(self, batch: list[tuple[str, tuple[int, PartialCount]]]) -> list[OutRecord]:
        out: list[OutRecord] = []
        for key, (_window_id, p) in batch:
            record = window_record(p.field, p.value, p.window_start, self._length, p.count)
            out.append((self._topic, key.encode(), ENCODER.encode(record), None, p.latest * 1000))
            metrics.LATE.labels(p.field).inc(p.count)
        return out

