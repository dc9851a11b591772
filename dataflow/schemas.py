"""The shapes of the data: msgspec Structs for input, output and window counts.

Input (``Login``) is read tolerantly: unknown extra fields are ignored because
producers evolve. What we write (``ProcessedLogin``, ``WindowCount``) is strict.
Decoders and encoders are built once here and reused.
"""

from __future__ import annotations

from typing import Annotated, Any, Protocol

import msgspec
from msgspec import Meta

Text = Annotated[str, Meta(min_length=1, max_length=256)]
Locale = Annotated[str, Meta(min_length=1, max_length=35)]
IpText = Annotated[str, Meta(min_length=2, max_length=45)]
EpochSeconds = Annotated[int, Meta(ge=0)]
EpochSecondsText = Annotated[str, Meta(pattern=r"^[0-9]{1,12}\Z")]  # \Z: "$" allows a final "\n"

Headers = list[tuple[str, bytes]]
# What the job writes: (topic, key, value, headers, timestamp in ms or None).
OutRecord = tuple[str, bytes | None, bytes | None, Headers | None, int | None]
# What the sink of the window counts is given: (shard, records).
SinkBatch = tuple[str, list[OutRecord]]


class KafkaRecord(Protocol):
    """What the flow needs of a consumed record (confluent_kafka.Message has it)."""

    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> Any: ...  # list of (name, bytes) pairs, or None
    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def timestamp(self) -> tuple[int, int]: ...


class Login(msgspec.Struct, frozen=True, gc=False):
    """A login event as producers send it.

    ``timestamp`` is epoch seconds, as an integer (the reference generator) or
    a string of digits (the documented sample). ``device_type`` is optional:
    the reference generator leaves it out of about 5% of its events.
    """

    user_id: Text
    app_version: Text
    ip: IpText
    locale: Locale
    device_id: Text
    timestamp: EpochSeconds | EpochSecondsText
    device_type: Text | None = None


class Accepted(msgspec.Struct, frozen=True, gc=False):
    """A login that passed parsing and validation, with its source record; ``late`` when
    its partition's clock had passed it (``dataflow.event_time``)."""

    login: Login
    timestamp: int
    ip_version: int
    source: Any  # KafkaRecord; Any because msgspec Structs cannot hold a Protocol type
    late: bool = False


class Rejected(msgspec.Struct, frozen=True, gc=False):
    """A record that could not be parsed or validated: becomes a dead letter."""

    source: Any  # KafkaRecord
    reason: str
    detail: str


class ProcessedLogin(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """What the job writes to OUTPUT_TOPIC for every accepted, unfiltered login."""

    user_id: str
    app_version: str
    app_version_major: int | None
    app_version_minor: int | None
    app_version_patch: int | None
    device_type: str | None
    device_id: str
    ip: str
    ip_version: int
    locale: str
    timestamp: int
    login_at: str
    processed_at: str


class WindowCount(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """Logins counted in one window for one value of one field.

    ``final`` is false for a window written because a finite run ended before the
    watermark passed its end; a later record for the same window supersedes it.
    """

    window_start: str
    window_end: str
    field: str
    value: str
    count: int
    final: bool


class LateCount(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """Late logins of one window, field value and batch: not counted in the window."""

    window_start: str
    window_end: str
    field: str
    value: str
    count: int


LOGIN_DECODER = msgspec.json.Decoder(Login)
ENCODER = msgspec.json.Encoder()
