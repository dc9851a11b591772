"""Show what the job wrote, as what it is: `python -m dataflow.show processed|counts|late`.

Processed records print as their JSON; window counts as one table per field
(one row per window, one column per value, the ``final`` flag last); late
records as a table. Records that do not have the expected shape are counted
and named, never a crash.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Iterable
from datetime import datetime

import msgspec

from dataflow.cli_args import OneLineParser, at_least
from dataflow.dlq.reading import DlqReader
from dataflow.dlq.rendering import render_bytes
from dataflow.errors import PipelineError
from dataflow.logs import configure
from dataflow.settings import Settings

PROG = "python -m dataflow.show"
MAX_VALUE_COLUMNS = 10
OTHERS = "(others)"


class WindowRow(msgspec.Struct, frozen=True):
    """A window count or late record; ``final`` absent on late records (and older counts)."""

    window_start: datetime
    window_end: datetime
    field: str
    value: str
    count: int
    final: bool | None = None


_WINDOW = msgspec.json.Decoder(WindowRow)


def read_windows(values: Iterable[bytes | None]) -> tuple[list[WindowRow], int]:
    """The readable window records, and how many were not."""
    rows: list[WindowRow] = []
    bad = 0
    for value in values:
        try:
            rows.append(_WINDOW.decode(value or b""))
        except msgspec.DecodeError:
            bad += 1
    return rows, bad


def _window_label(row: WindowRow) -> str:
    start, end = row.window_start, row.window_end
    end_text = end.strftime("%H:%M:%S" if end.date() == start.date() else "%Y-%m-%d %H:%M:%S")
    return f"{start:%Y-%m-%d %H:%M:%S}-{end_text}"


def _final(flags: Iterable[bool | None]) -> str:
    seen = set(flags)
    if None in seen:
        return "-"
    return "no" if False in seen else "yes"


def _grid(header: list[str], rows: list[list[str]], left: int = 1) -> list[str]:
    """Aligned columns: the first ``left`` to the left (text), the others to the right."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "  ".join(f"{c:<{w}}" if i < left else f"{c:>{w}}"
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return [line(header), *(line(r) for r in rows)]


def render_counts(rows: list[WindowRow], windows: int = 10) -> str:
    """One table per field: a row per window (latest record of each value), columns per value."""
    latest: dict[tuple[str, datetime, str], WindowRow] = {}
    for row in rows:  # a later record of the same window and value replaces an earlier one
        latest[(row.field, row.window_start, row.value)] = row
    out: list[str] = []
    for field in sorted({f for f, _, _ in latest}):
        mine = [r for (f, _, _), r in latest.items() if f == field]
        totals = Counter[str]()
        for r in mine:
            totals[r.value] += r.count
        shown = [v for v, _ in totals.most_common(MAX_VALUE_COLUMNS)]
        starts = sorted({r.window_start for r in mine})
        header = ["window (UTC)", *shown, *([OTHERS] if len(totals) > len(shown) else []),
                  "total", "final"]
        table: list[list[str]] = []
        for start in starts[-windows:]:
            in_window = {r.value: r for r in mine if r.window_start == start}
            cells = [str(in_window[v].count) if v in in_window else "." for v in shown]
            if len(totals) > len(shown):
                cells.append(str(sum(r.count for v, r in in_window.items() if v not in shown)))
            total = sum(r.count for r in in_window.values())
            label = _window_label(next(iter(in_window.values())))
            table.append([label, *cells, str(total),
                          _final(r.final for r in in_window.values())])
        hidden = len(starts) - len(table)
        note = f", last {len(table)} of {len(starts)}" if hidden > 0 else ""
        windows_text = f"{len(starts)} window{'' if len(starts) == 1 else 's'}"
        out += ["", f"logins per window by {field} ({windows_text}{note})"]
        out += _grid(header, table)
    if not out:
        return "no window counts"
    out += ["", "final: yes = the watermark passed the window's end, its counts will not "
                "change; no = provisional (the run ended first); - = not given"]
    return "\n".join(out).lstrip("\n")


def render_late(rows: list[WindowRow], limit: int = 20) -> str:
    """Late logins as a table: one row per window, field and value, the records summed."""
    if not rows:
        return "no late records"
    summed: Counter[tuple[datetime, str, str]] = Counter()
    labels: dict[datetime, str] = {}
    for row in rows:
        summed[(row.window_start, row.field, row.value)] += row.count
        labels[row.window_start] = _window_label(row)
    ordered = sorted(summed.items())
    table = [[labels[start], field, value, str(n)] for (start, field, value), n in ordered[:limit]]
    more = len(ordered) - len(table)
    per_field = Counter[str]()
    for (_start, field, _value), n in summed.items():
        per_field[field] += n
    late_logins = max(per_field.values())  # each late login is counted once per field
    lines = [f"{len(rows):,} late records, {late_logins:,} late logins"
             + (f" (first {len(table)} of {len(ordered)} rows)" if more > 0 else "")]
    return "\n".join(lines + _grid(["window (UTC)", "field", "value", "late logins"], table,
                                   left=3))


def render_processed(values: Iterable[bytes | None]) -> str:
    """Each processed record as indented JSON (anything else shown safely)."""
    blocks = []
    for value in values:
        try:
            blocks.append(json.dumps(json.loads(value or b""), indent=2, ensure_ascii=False))
        except ValueError:
            blocks.append(f"(not JSON) {render_bytes(value)}")
    return "\n".join(blocks) if blocks else "no processed records"


def build_parser() -> argparse.ArgumentParser:
    """The command line of the output viewer."""
    parser = OneLineParser(prog=PROG, description="Show the job's output topics readably.")
    parser.add_argument("what", choices=["processed", "counts", "late"],
                        help="OUTPUT_TOPIC records, COUNTS_TOPIC windows or LATE_TOPIC records")
    parser.add_argument("--topic", help="read this topic instead")
    parser.add_argument("--limit", type=at_least(int, 1), default=None,
                        help="processed records / windows per field / late rows (default 2/10/20)")
    return parser


def main(argv: list[str]) -> int:
    """Entry point; 0 on success, 1 with one error line."""
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env(os.environ)
        configure(settings.log_level, settings.log_format)
        topic = args.topic or {"processed": settings.output_topic,
                               "counts": settings.counts_topic,
                               "late": settings.late_topic}[args.what]
        with DlqReader(settings, topic, progress_out=sys.stderr) as reader:
            if args.what == "processed":
                values = []
                for record in reader:
                    values.append(record.value)
                    if len(values) >= (args.limit or 2):
                        break
                print(render_processed(values))
                return 0
            rows, bad = read_windows(record.value for record in reader)
        text = (render_counts(rows, args.limit or 10) if args.what == "counts"
                else render_late(rows, args.limit or 20))
        print(text)
        if bad:
            print(f"({bad:,} records of {topic} were not window records)")
        return 0
    except PipelineError as exc:
        print(f"{PROG} {args.what}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
