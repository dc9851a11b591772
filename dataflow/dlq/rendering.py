"""Text for people: safe renderings of bytes, the summary table, `show` blocks.

Nothing raw reaches the terminal: text is shown when the bytes are UTF-8,
with control characters escaped; anything else is shown escaped like a
Python bytes literal. Long values are shortened unless asked in full.
"""

from __future__ import annotations

from datetime import datetime

from dataflow.deadletters import REASONS
from dataflow.dlq.records import DeadLetter
from dataflow.dlq.summary import Summary, source_name

VALUE_LIMIT = 200
HEADER_LIMIT = 120


def escape_text(text: str) -> str:
    """The text with every character that is not printable escaped (\\n, \\x1b, ...)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _more(hidden_bytes: int) -> str:
    return f" ... (+{hidden_bytes:,} bytes; --full shows all)" if hidden_bytes > 0 else ""


def describe_bytes(data: bytes | None) -> str:
    """What the bytes are: null, empty, text or binary, and their size."""
    if data is None:
        return "null"
    if not data:
        return "empty"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return f"binary, {len(data):,} bytes"
    return f"text, {len(data):,} bytes"


def render_bytes(data: bytes | None, *, full: bool = False, limit: int = VALUE_LIMIT) -> str:
    """Printable form: UTF-8 text escaped, other bytes as escapes; shortened unless full."""
    if data is None:
        return "null"
    if not data:
        return '""'
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        shown = data if full else data[:limit]
        return repr(shown)[2:-1] + _more(len(data) - len(shown))
    shown_text = text if full else text[:limit]
    hidden = len(data) - len(shown_text.encode("utf-8"))
    return escape_text(shown_text) + _more(hidden)


def _time(value: datetime | None) -> str:
    return value.isoformat() if value else "-"


def render_record(record: DeadLetter, *, full: bool = False) -> str:
    """One dead letter as a block of lines for `show`."""
    offset = record.source_offset
    scheme = record.scheme
    lines = [
        f"{record.topic}[{record.partition}]@{record.offset}  {escape_text(record.reason)}  "
        f"failed_at {_time(record.failed_at)}",
        f"  source   {escape_text(source_name(record))}@{'?' if offset is None else offset}"
        + ("" if scheme in ("dlq", "(none)") else f" ({scheme})"),
        f"  detail   {escape_text(record.detail) or '-'}",
        f"  key      [{describe_bytes(record.key)}] {render_bytes(record.key, full=full)}",
        f"  value    [{describe_bytes(record.value)}] {render_bytes(record.value, full=full)}",
    ]
    prefix = "  headers  "
    for name, value in record.headers:
        shown = render_bytes(value, full=full, limit=HEADER_LIMIT)
        lines.append(f"{prefix}{escape_text(name)}: {shown}")
        prefix = "           "
    if not record.headers:
        lines.append(f"{prefix}-")
    return "\n".join(lines)


def _table(title: str, rows: list[tuple[str, int]], total: int, note: dict[str, str]) -> list[str]:
    if not rows:
        return []
    shown = [(escape_text(name), name, count) for name, count in rows]  # names from headers
    width = max(len(title), *(len(text) for text, _, _ in shown))
    lines = ["", f"{title:<{width}}  {'count':>9}  {'share':>6}"]
    for text, name, count in shown:
        about = f"  {note[name]}" if name in note else ""
        lines.append(f"{text:<{width}}  {count:>9,}  {count / total:>6.1%}{about}")
    return lines


def render_summary(summary: Summary, top: int) -> str:
    """The readable `summary` report."""
    lines = [f"dead letters in {summary.topic}: {summary.total:,}"]
    if not summary.total:
        return lines[0]
    lines.append(f"first failure  {_time(summary.first_failure)}")
    lines.append(f"last failure   {_time(summary.last_failure)}")
    if summary.replayed:
        lines.append(f"already replayed at least once: {summary.replayed:,}")
    lines += _table("reason", summary.by_reason.most_common(), summary.total, dict(REASONS))
    lines += _table("source", summary.by_source.most_common(), summary.total, {})
    if set(summary.by_scheme) - {"dlq"}:
        lines += _table("header scheme", summary.by_scheme.most_common(), summary.total, {})
    details = summary.details.most_common(top)
    if details:
        lines += ["", f"most frequent details (top {len(details)})", f"{'count':>9}  detail"]
        lines += [f"{count:>9,}  {escape_text(detail) or '-'}" for detail, count in details]
    return "\n".join(lines)
