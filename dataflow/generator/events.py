"""Login events like the reference generator's, plus bad and late ones on demand.

``EventFactory`` is deterministic for a given seed: every value comes from one
``random.Random(seed)``, uuids included. Only the timestamp follows the wall
clock, unless a start time is given (then event ``i`` is stamped
``start_time + i / rate``). Valid events are encoded from a msgspec Struct
built once; the rare bad ones are built from a dict and damaged on purpose.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from itertools import islice
from typing import Any

import msgspec

from dataflow.errors import PipelineError
from dataflow.settings import Settings

# Kinds of events, in the order the share thresholds are laid out.
NORMAL = "normal"
MISSING_FIELD = "missing_field"
WRONG_TYPE = "wrong_type"
MALFORMED = "malformed"
OUT_OF_ORDER = "out_of_order"
LATE = "late"
EXCLUDED_LOCALE = "excluded_locale"
SPECIAL_KINDS = (MISSING_FIELD, WRONG_TYPE, MALFORMED, OUT_OF_ORDER, LATE, EXCLUDED_LOCALE)
KINDS = (NORMAL, *SPECIAL_KINDS)
# The reason `dataflow.parsing.parse` gives each bad kind; other kinds are valid.
EXPECTED_REASONS = {MISSING_FIELD: "missing_field", WRONG_TYPE: "wrong_type",
                    MALFORMED: "malformed_json"}

APP_VERSIONS = ("2.3.0", "2.3.1", "2.4.0", "2.4.1", "2.5.0", "3.0.0", "3.0.1", "3.1.0")
LOCALES = ("RU", "US", "DE", "FR", "GB", "ES", "IT", "NL", "PL", "BR", "IN", "JP", "CA", "AU",
           "MX", "TR", "UA", "BY", "KZ", "SE")
DEFAULT_EXCLUDED_LOCALE = "RU"
MISSING_DEVICE_TYPE_SHARE = 0.05
IPV6_SHARE = 0.05
REQUIRED_FIELDS = ("user_id", "app_version", "ip", "locale", "device_id", "timestamp")
# One wrong JSON type per field; each is rejected as wrong_type, never invalid_value.
WRONG_VALUES: tuple[tuple[str, Any], ...] = (
    ("user_id", 424242), ("app_version", 2.3), ("device_type", 7), ("ip", 3232235777),
    ("locale", ["RU"]), ("device_id", True), ("timestamp", 1694479551.5),
    ("timestamp", {"seconds": 1694479551}),
)
LATE_MINUTES = (1, 2, 3, 5)

# uuid.UUID(int=bits, version=4) for both halves of 256 random bits, without the objects.
_UUID_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_UUID_SET = (0x8000 << 48) | (4 << 76)
_LOW_CLEAR = _UUID_CLEAR & ((1 << 128) - 1)
_UUIDS_CLEAR = (_LOW_CLEAR << 128) | _LOW_CLEAR
_UUIDS_SET = (_UUID_SET << 128) | _UUID_SET
# Index False/True: the draw is below the midpoint of the remaining 95% -> android.
_DEVICE_TYPES = (',"device_type":"iOS"', ',"device_type":"android"')
_HALF_DEVICES = (1 + MISSING_DEVICE_TYPE_SHARE) / 2
_DOC_DECODER = msgspec.json.Decoder(dict[str, Any])
_ENCODER = msgspec.json.Encoder()


class GeneratorError(PipelineError):
    """The generator was asked for something it cannot do."""


def uuid4_text(bits: int) -> str:
    """The text of ``uuid.UUID(int=bits, version=4)`` for 128 random bits."""
    h = ((bits & _UUID_CLEAR) | _UUID_SET).to_bytes(16).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True, slots=True)
class Shares:
    """Share (0..1) of events of each special kind; the rest are normal."""

    missing_field: float = 0.0
    wrong_type: float = 0.0
    malformed: float = 0.0
    out_of_order: float = 0.0
    late: float = 0.0
    excluded_locale: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not 0.0 <= value <= 1.0:
                msg = f"share of {f.name} must be between 0 and 1, got {value}"
                raise GeneratorError(msg)
        if self.total() > 1.0 + 1e-9:
            msg = f"shares add up to {self.total():g}, more than 1"
            raise GeneratorError(msg)

    def total(self) -> float:
        """Sum of the special shares."""
        return sum(getattr(self, f.name) for f in fields(self))

    def thresholds(self) -> tuple[tuple[float, str], ...]:
        """Cumulative upper bounds for a uniform draw, special kinds only."""
        bounds, acc = [], 0.0
        for kind in SPECIAL_KINDS:
            share = getattr(self, kind)
            if share > 0:
                acc += share
                bounds.append((acc, kind))
        return tuple(bounds)


@dataclass(frozen=True, slots=True)
class TimeShape:
    """What the job tolerates, so out-of-order stays inside and late lands outside."""

    window_seconds: int = 60
    lateness_seconds: int = 10

    @classmethod
    def from_settings(cls, settings: Settings) -> TimeShape:
        """The window length and allowed lateness the job runs with."""
        return cls(settings.window_seconds, settings.allowed_lateness_seconds)


def excluded_locales_for(settings: Settings) -> tuple[str, ...]:
    """Locales the excluded-locale kind draws from: EXCLUDED_LOCALES, else RU."""
    return tuple(sorted(settings.excluded_locales)) or (DEFAULT_EXCLUDED_LOCALE,)


ValidMaker = Callable[[int, tuple[str, ...]], tuple[bytes, bytes]]


def valid_event_maker(rng: random.Random) -> ValidMaker:
    """A function making the key and JSON value of one valid event from ``rng``.

    The value is formatted directly (every field is plain ASCII, nothing to
    escape) and the draws are bound to locals once: this runs a million times
    when the benchmark preloads its topic.
    """
    bits, rand = rng.getrandbits, rng.random
    ntoa, ntop, inet6 = socket.inet_ntoa, socket.inet_ntop, socket.AF_INET6
    versions, n_versions = APP_VERSIONS, len(APP_VERSIONS)
    devices, no_device, half = _DEVICE_TYPES, MISSING_DEVICE_TYPE_SHARE, _HALF_DEVICES
    clear, set_bits, ipv6_share = _UUIDS_CLEAR, _UUIDS_SET, IPV6_SHARE

    def make(timestamp: int, locales: tuple[str, ...]) -> tuple[bytes, bytes]:
        h = ((bits(256) & clear) | set_bits).to_bytes(32).hex()
        user_id = f"{h[32:40]}-{h[40:44]}-{h[44:48]}-{h[48:52]}-{h[52:]}"
        draw = rand()
        device = "" if draw < no_device else devices[draw < half]
        ip = ntop(inet6, bits(128).to_bytes(16)) if rand() < ipv6_share \
            else ntoa(bits(32).to_bytes(4))
        value = (
            f'{{"user_id":"{user_id}","app_version":"{versions[int(rand() * n_versions)]}"'
            f'{device},"ip":"{ip}","locale":"{locales[int(rand() * len(locales))]}",'
            f'"device_id":"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}",'
            f'"timestamp":{timestamp}}}'
        )
        return user_id.encode(), value.encode()

    return make


class EventFactory:
    """Deterministic stream of ``(key, value, kind)`` login events.

    Iterating, ``next_event`` and ``take`` all advance the same stream.
    """

    def __init__(
        self,
        seed: int | None,
        shares: Shares,
        start_time: float | None = None,
        *,
        rate: float = 0.0,
        excluded_locales: Iterable[str] = (DEFAULT_EXCLUDED_LOCALE,),
        time_shape: TimeShape | None = None,
    ) -> None:
        self._rng = random.Random(seed)
        self._make = valid_event_maker(self._rng)
        self._thresholds = shares.thresholds()
        self._start_time = start_time
        self._rate = rate if rate > 0 else 0.0
        self._excluded = tuple(excluded_locales) or (DEFAULT_EXCLUDED_LOCALE,)
        self._locales = tuple(loc for loc in LOCALES if loc not in self._excluded) or LOCALES
        self._shape = time_shape or TimeShape()
        self._stream = self._events()

    def __iter__(self) -> Iterator[tuple[bytes, bytes, str]]:
        return self._stream

    def next_event(self) -> tuple[bytes, bytes, str]:
        """One event: Kafka key (user_id bytes), value bytes, kind."""
        return next(self._stream)

    def take(self, count: int) -> list[tuple[bytes, bytes, str]]:
        """The next ``count`` events."""
        return list(islice(self._stream, count))

    def _events(self) -> Iterator[tuple[bytes, bytes, str]]:
        make, locales, thresholds = self._make, self._locales, self._thresholds
        rand, clock, start, rate = self._rng.random, time.time, self._start_time, self._rate
        index = 0
        while True:
            kind = NORMAL
            if thresholds:
                draw = rand()
                kind = next((name for bound, name in thresholds if draw < bound), NORMAL)
            if start is None:
                timestamp = int(clock())
            else:  # index / rate, not index * (1 / rate): 3 / 3 is exactly 1
                timestamp = int(start + index / rate) if rate else int(start)
            index += 1
            if kind == NORMAL:
                key, value = make(timestamp, locales)
                yield key, value, kind
            else:
                yield self._special(kind, timestamp)

    def _special(self, kind: str, timestamp: int) -> tuple[bytes, bytes, str]:
        rng, shape = self._rng, self._shape
        if kind == OUT_OF_ORDER:
            timestamp -= rng.randint(1, max(1, shape.lateness_seconds - 1))
        elif kind == LATE:
            past = shape.window_seconds + shape.lateness_seconds
            timestamp -= past + 60 * LATE_MINUTES[int(rng.random() * len(LATE_MINUTES))]
        locales = self._excluded if kind == EXCLUDED_LOCALE else self._locales
        key, value = self._make(timestamp, locales)
        if kind in EXPECTED_REASONS:
            value = self._damage(kind, value)
        return key, value, kind

    def _damage(self, kind: str, valid: bytes) -> bytes:
        rng = self._rng
        if kind == MALFORMED:
            return _malformed(valid, rng)
        doc = _DOC_DECODER.decode(valid)
        if kind == MISSING_FIELD:
            del doc[REQUIRED_FIELDS[int(rng.random() * len(REQUIRED_FIELDS))]]
        else:
            name, value = WRONG_VALUES[int(rng.random() * len(WRONG_VALUES))]
            doc[name] = value
        return _ENCODER.encode(doc)


def _malformed(valid: bytes, rng: random.Random) -> bytes:
    """A damaged copy of a valid JSON document; always ASCII, never empty."""
    damage = int(rng.random() * 5)
    if damage == 0:
        return valid[: rng.randint(1, len(valid) - 1)]  # truncated
    if damage == 1:
        return valid[:-1] + b",}"  # trailing comma
    if damage == 2:
        return valid.replace(b'"', b"'")  # single quotes
    if damage == 3:
        return valid[:-1] + b',"score":NaN}'  # NaN is not JSON
    return valid + b"}"  # trailing data
