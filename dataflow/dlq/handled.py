"""What a commit group has handled, stored in its committed offset's metadata.

A replay with a filter or ``--limit`` handles some records of a partition and
not others. The group's committed offset is the first record it did not
handle; the records after it that it did handle are listed in the commit's
metadata as inclusive offset ranges (``dlq-handled:v1:7-9,12``), so the next
run with the group skips exactly those and sees every record it has not
handled yet, whatever its filters. Kafka bounds the metadata
(``offset.metadata.max.bytes``, default 4,096); ranges past ``MAX_METADATA``
characters are left out, and those records are read again by the next run.
"""

from __future__ import annotations

from collections.abc import Iterable

PREFIX = "dlq-handled:v1:"
MAX_METADATA = 3_500

Ranges = list[tuple[int, int]]


def to_ranges(offsets: Iterable[int]) -> Ranges:
    """Sorted, merged inclusive ranges of the offsets."""
    ranges: Ranges = []
    for offset in sorted(set(offsets)):
        if ranges and offset == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], offset)
        else:
            ranges.append((offset, offset))
    return ranges


def encode(ranges: Ranges) -> tuple[str, int]:
    """Metadata text of the ranges, and how many ranges did not fit."""
    parts: list[str] = []
    size = len(PREFIX)
    for index, (low, high) in enumerate(ranges):
        part = str(low) if low == high else f"{low}-{high}"
        if size + len(part) + 1 > MAX_METADATA:
            return PREFIX + ",".join(parts), len(ranges) - index
        parts.append(part)
        size += len(part) + 1
    return (PREFIX + ",".join(parts), 0) if parts else ("", 0)


def decode(metadata: str | None) -> Ranges:
    """Ranges stored by ``encode``; anything else (another tool's metadata) is none."""
    if not metadata or not metadata.startswith(PREFIX):
        return []
    ranges: Ranges = []
    for part in metadata.removeprefix(PREFIX).split(","):
        low, _, high = part.partition("-")
        try:
            ranges.append((int(low), int(high or low)))
        except ValueError:
            return []
    return ranges


def contains(ranges: Ranges, offset: int) -> bool:
    """Whether an offset lies in one of the ranges."""
    return any(low <= offset <= high for low, high in ranges)


def commit_point(position: int, held: Iterable[int],
                 earlier: Ranges) -> tuple[int, Ranges]:
    """Offset to commit and handled ranges above it, for one partition.

    ``position`` is the offset after the last record read; ``held`` the records
    read but not handled; ``earlier`` the ranges handled by earlier runs (those
    at or after ``position`` were not reached this time and stay handled).
    """
    later = [(max(low, position), high) for low, high in earlier if high >= position]
    marks = sorted(set(held))
    if not marks:
        return position, later
    gaps = zip(marks, [*marks[1:], position], strict=True)
    handled = [(low + 1, high - 1) for low, high in gaps if high - low > 1]
    return marks[0], handled + later
