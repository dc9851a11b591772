"""A terminal's last line kept for a status (the progress bar), log lines printed above it.

``StatusLine`` wraps the process's stderr while a bar is shown (``dataflow.progress``
installs it as ``sys.stderr``, so structlog's lines, ``print(file=sys.stderr)`` and
tracebacks all pass through it). The status is drawn with a carriage return and
erase-line, never with cursor movement up the screen, and every output is one write:

- a log line: erase the last line, the line and its newline, the status again (if any);
- a status: erase the line, the status, clipped to the terminal's width (a wrapped
  line would leave its first part behind on the next redraw).

So a line is never cut by a status, and several processes on one terminal (``python -m
dataflow run --processes N``) each erase whatever status is on the last line before they
print, also once their own bar is finished (the wrapper stays until the process ends): the
last line shows the most recent status, redrawn by its process within a second. Only writes
that bypass Python's ``sys.stderr`` (native code writing to file descriptor 2) can still
land after a status.
"""

from __future__ import annotations

import os
import threading
from typing import Any, TextIO

ERASE_LINE = "\r\x1b[K"  # to the start of the line, erase it (ECMA-48 EL 0)
DEFAULT_COLUMNS = 80


class StatusLine:
    """A stderr that keeps a status on the terminal's last line; see the module docstring."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.RLock()  # the worker's and the progress thread's lines
        self._pending = ""  # the start of a line not finished yet
        self._status = ""
        self._line_start = True  # the next output starts a line (after a status: erases it)

    @property
    def stream(self) -> TextIO:
        """The stream this one wraps."""
        return self._stream

    def columns(self) -> int:
        """The terminal's width (80 when it cannot be asked, or says 0 as a new pty does)."""
        try:
            return os.get_terminal_size(self._stream.fileno()).columns or DEFAULT_COLUMNS
        except (OSError, ValueError, AttributeError):
            return DEFAULT_COLUMNS

    def show(self, status: str) -> None:
        """Draw ``status`` on the last line, in place of the one before."""
        with self._lock:
            self._status = status[:max(1, self.columns() - 1)]
            self._out(ERASE_LINE + self._status)
            self._line_start = True

    def finish(self, keep: bool) -> None:
        """Stop showing a status: leave the last one as a line of its own, or erase it."""
        with self._lock:
            if self._status:
                self._out(ERASE_LINE + (self._status + "\n" if keep else ""))
            self._status = ""
            self._line_start = True
            if self._pending:
                self._emit()

    def write(self, text: str) -> int:
        """Print whole lines above the status; hold a line until its newline comes."""
        with self._lock:
            self._pending += text
            if self._pending.endswith("\n"):
                self._emit()
        return len(text)

    def flush(self) -> None:
        """Flush; without a status, a line begun and flushed on purpose is printed as it is."""
        with self._lock:
            if self._pending and not self._status:
                self._emit()
            self._stream.flush()

    def _emit(self) -> None:
        """The held text in one write: erase the last line first (a status, this process's or
        another's) when the text starts a line; then this process's status, if it has one."""
        text, self._pending = self._pending, ""
        self._out((ERASE_LINE if self._line_start else "") + text + self._status)
        self._line_start = text.endswith("\n") or bool(self._status)

    def _out(self, text: str) -> None:
        self._stream.write(text)
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        """Anything else (fileno, isatty, encoding, buffer) is the wrapped stream's."""
        return getattr(self._stream, name)
