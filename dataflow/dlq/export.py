"""JSON Lines export of dead letters, and reading an export back.

One object per line: the DLQ topic, partition, offset and timestamp, and the
key, value and header values base64-encoded (null stays null), so a record
can be rebuilt byte for byte::

    {"topic":"user-login-dlq","partition":0,"offset":7,"timestamp_ms":1726129800000,
     "key":"NDI0Y2Rk...","value":"eyJ1c2VyX2lk...","headers":[["dlq.reason","bWlzc2luZ19maWVsZA=="]]}
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import msgspec

from dataflow.dlq.records import DeadLetter, DlqError

_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(DeadLetter)


def export_line(record: DeadLetter) -> bytes:
    """One JSON line (with its newline); bytes fields become base64 text."""
    return _ENCODER.encode(record) + b"\n"


def import_line(line: bytes | str) -> DeadLetter:
    """The DeadLetter of one exported line."""
    try:
        return _DECODER.decode(line)
    except msgspec.DecodeError as exc:
        msg = f"not an exported dead letter: {exc}"
        raise DlqError(msg) from exc


def write_export(records: Iterable[DeadLetter], out: BinaryIO) -> int:
    """Write every record as a line; return how many."""
    written = 0
    for record in records:
        out.write(export_line(record))
        written += 1
    out.flush()
    return written


def read_export(path: Path) -> Iterator[DeadLetter]:
    """The records of an export file, in order."""
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield import_line(line)
            except DlqError as exc:
                msg = f"{path}:{number}: {exc}"
                raise DlqError(msg) from exc
