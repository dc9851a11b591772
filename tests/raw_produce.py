"""Produce records whose header names are raw bytes, through librdkafka's C API (ctypes).

confluent-kafka's ``Producer.produce`` only takes ``str`` header names and encodes
them as UTF-8, so it cannot write a header name that is not UTF-8. librdkafka's C
API takes any bytes (as librdkafka-based and Go clients can send), so tests
reach it directly in the library the confluent-kafka wheel bundles.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from pathlib import Path

import confluent_kafka

# (key, value, headers as (raw name, value or None)). A name may hold any byte; readers
# that take names as C strings (confluent-kafka does) see them cut at the first NUL.
RawRecord = tuple[bytes | None, bytes | None, Sequence[tuple[bytes, bytes | None]]]

_PRODUCER = 0  # RD_KAFKA_PRODUCER
_CONF_OK = 0  # RD_KAFKA_CONF_OK
_MSG_F_COPY = 0x2  # RD_KAFKA_MSG_F_COPY: librdkafka copies key and value
# rd_kafka_vtype_t
_VTYPE_TOPIC, _VTYPE_VALUE, _VTYPE_KEY = 1, 4, 5
_VTYPE_MSGFLAGS, _VTYPE_HEADERS = 7, 10


class _Mem(ctypes.Structure):
    _fields_ = [("ptr", ctypes.c_void_p), ("size", ctypes.c_size_t)]


class _VuValue(ctypes.Union):
    _fields_ = [("cstr", ctypes.c_char_p), ("i", ctypes.c_int), ("mem", _Mem),
                ("ptr", ctypes.c_void_p), ("_pad", ctypes.c_char * 64)]


class _Vu(ctypes.Structure):
    """rd_kafka_vu_t: one typed argument of rd_kafka_produceva."""

    _fields_ = [("vtype", ctypes.c_int), ("u", _VuValue)]


class _Message(ctypes.Structure):
    """The first fields of rd_kafka_message_t (enough to read a delivery report)."""

    _fields_ = [("err", ctypes.c_int), ("rkt", ctypes.c_void_p),
                ("partition", ctypes.c_int32), ("payload", ctypes.c_void_p),
                ("len", ctypes.c_size_t), ("key", ctypes.c_void_p),
                ("key_len", ctypes.c_size_t), ("offset", ctypes.c_int64)]


_DeliveryCallback = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(_Message),
                                     ctypes.c_void_p)


def librdkafka() -> ctypes.CDLL:
    """The librdkafka shared library bundled with the installed confluent-kafka wheel."""
    site = Path(confluent_kafka.__file__).resolve().parents[1]
    found = sorted((site / "confluent_kafka.libs").glob("librdkafka*.so*"))
    assert found, f"no librdkafka in {site / 'confluent_kafka.libs'}"
    lib = ctypes.CDLL(str(found[0]))
    p, size = ctypes.c_void_p, ctypes.c_size_t
    lib.rd_kafka_conf_new.restype = p
    lib.rd_kafka_conf_set.argtypes = [p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, size]
    lib.rd_kafka_conf_set_dr_msg_cb.argtypes = [p, _DeliveryCallback]
    lib.rd_kafka_conf_destroy.argtypes = [p]
    lib.rd_kafka_new.argtypes = [ctypes.c_int, p, ctypes.c_char_p, size]
    lib.rd_kafka_new.restype = p
    lib.rd_kafka_headers_new.argtypes = [size]
    lib.rd_kafka_headers_new.restype = p
    lib.rd_kafka_headers_destroy.argtypes = [p]
    lib.rd_kafka_header_add.argtypes = [p, ctypes.c_char_p, ctypes.c_ssize_t, ctypes.c_char_p,
                                        ctypes.c_ssize_t]
    lib.rd_kafka_produceva.argtypes = [p, ctypes.POINTER(_Vu), size]
    lib.rd_kafka_produceva.restype = p
    lib.rd_kafka_error_string.argtypes = [p]
    lib.rd_kafka_error_string.restype = ctypes.c_char_p
    lib.rd_kafka_error_destroy.argtypes = [p]
    lib.rd_kafka_err2str.argtypes = [ctypes.c_int]
    lib.rd_kafka_err2str.restype = ctypes.c_char_p
    lib.rd_kafka_flush.argtypes = [p, ctypes.c_int]
    lib.rd_kafka_destroy.argtypes = [p]
    return lib


def _producer(lib: ctypes.CDLL, bootstrap: str, on_delivery: object) -> int:
    """A librdkafka producer handle for ``bootstrap`` with a delivery callback."""
    errstr = ctypes.create_string_buffer(512)
    conf = lib.rd_kafka_conf_new()
    for name, value in (("bootstrap.servers", bootstrap), ("acks", "all"),
                        ("enable.idempotence", "true")):
        if lib.rd_kafka_conf_set(conf, name.encode(), value.encode(), errstr,
                                 len(errstr)) != _CONF_OK:
            lib.rd_kafka_conf_destroy(conf)
            raise AssertionError(f"rd_kafka_conf_set {name}: {errstr.value.decode()}")
    lib.rd_kafka_conf_set_dr_msg_cb(conf, on_delivery)
    rk = lib.rd_kafka_new(_PRODUCER, conf, errstr, len(errstr))  # owns conf from here
    if not rk:
        lib.rd_kafka_conf_destroy(conf)
        raise AssertionError(f"rd_kafka_new: {errstr.value.decode()}")
    return int(rk)


def _headers(lib: ctypes.CDLL, headers: Sequence[tuple[bytes, bytes | None]]) -> int:
    """An rd_kafka_headers_t holding ``headers`` (raw names), for RD_KAFKA_VTYPE_HEADERS."""
    hdrs = lib.rd_kafka_headers_new(len(headers))
    for name, value in headers:
        err = lib.rd_kafka_header_add(hdrs, name, len(name), value,
                                      -1 if value is None else len(value))
        if err:
            lib.rd_kafka_headers_destroy(hdrs)
            raise AssertionError(f"rd_kafka_header_add {name!r}: {err}")
    return int(hdrs)


def _arguments(topic: str, record: RawRecord, hdrs: int) -> ctypes.Array[_Vu]:
    """The rd_kafka_vu_t array of one record: topic, flags, key, value, headers."""
    key, value, _ = record
    args = (_Vu * 5)()
    args[0].vtype, args[0].u.cstr = _VTYPE_TOPIC, topic.encode()
    args[1].vtype, args[1].u.i = _VTYPE_MSGFLAGS, _MSG_F_COPY
    args[2].vtype = _VTYPE_KEY
    args[2].u.mem = _Mem(ctypes.cast(ctypes.c_char_p(key), ctypes.c_void_p),
                         0 if key is None else len(key))
    args[3].vtype = _VTYPE_VALUE
    args[3].u.mem = _Mem(ctypes.cast(ctypes.c_char_p(value), ctypes.c_void_p),
                         0 if value is None else len(value))
    args[4].vtype, args[4].u.ptr = _VTYPE_HEADERS, hdrs
    return args


def produce_raw(bootstrap: str, topic: str, records: Sequence[RawRecord],
                timeout_s: float = 30.0) -> list[int]:
    """Write ``records`` in order, each confirmed, and return their offsets."""
    lib = librdkafka()
    reports: list[tuple[int, int]] = []

    def on_delivery(_rk: object, msg: ctypes._Pointer[_Message], _opaque: object) -> None:
        """Keep each delivery report's error code and offset."""
        reports.append((msg.contents.err, msg.contents.offset))

    callback = _DeliveryCallback(on_delivery)  # kept alive until the producer is destroyed
    rk = _producer(lib, bootstrap, callback)
    try:
        for record in records:
            hdrs = _headers(lib, record[2])
            # The Python bytes stay referenced by ``record`` while librdkafka copies them.
            error = lib.rd_kafka_produceva(rk, _arguments(topic, record, hdrs), 5)
            if error:
                text = lib.rd_kafka_error_string(error).decode()
                lib.rd_kafka_error_destroy(error)
                lib.rd_kafka_headers_destroy(hdrs)  # not taken over on failure
                raise AssertionError(f"rd_kafka_produceva: {text}")
        left = lib.rd_kafka_flush(rk, int(timeout_s * 1000))
        assert left == 0, f"rd_kafka_flush: {lib.rd_kafka_err2str(left).decode()}"
    finally:
        lib.rd_kafka_destroy(rk)
    failed = [lib.rd_kafka_err2str(err).decode() for err, _ in reports if err]
    assert not failed and len(reports) == len(records), (reports, failed)
    return [offset for _, offset in reports]
