"""A command run under a real terminal (a pty), and the screen it leaves, as a person sees it.

``PtyRun`` starts a command with a pty as its stdin, stdout and stderr (a 120x40
terminal), collects every byte it writes, and can type Ctrl-C. ``render`` turns those
bytes into the screen's lines the way a terminal does for what the job writes:
printable text, carriage return, newline, erase to the end of the line (``ESC [ K``),
and lines wrapped at the terminal's width (joined back by ``lines()``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import select
import signal
import struct
import termios
import time
from collections.abc import Callable, Mapping
from pathlib import Path

COLUMNS, ROWS = 120, 40
_ESCAPE = re.compile(r"\x1b\[([0-9;]*)([A-Za-z])")


class Screen:
    """The rows a terminal shows, and which rows continue the one before (wrapped)."""

    def __init__(self, columns: int = COLUMNS) -> None:
        self.columns = columns
        self.rows: list[list[str]] = [[]]
        self.wrapped: list[bool] = [False]
        self.unknown: list[str] = []  # escape sequences this screen does not know
        self._col = 0
        self._pending_wrap = False

    def feed(self, text: str) -> None:
        index = 0
        while index < len(text):
            escape = _ESCAPE.match(text, index)
            if escape is not None:
                self._escape(escape.group(1), escape.group(2))
                index = escape.end()
                continue
            self._char(text[index])
            index += 1

    def _escape(self, args: str, final: str) -> None:
        if final == "K" and args in ("", "0"):
            del self.rows[-1][self._col:]
            self._pending_wrap = False
        else:
            self.unknown.append(f"ESC[{args}{final}")

    def _newline(self, wrapped: bool) -> None:
        self.rows.append([])
        self.wrapped.append(wrapped)

    def _char(self, char: str) -> None:
        if char == "\r":
            self._col, self._pending_wrap = 0, False
        elif char == "\n":  # as the pty's ONLCR passes it on: \r\n
            self._newline(False)
            self._col, self._pending_wrap = 0, False
        elif char.isprintable():
            if self._pending_wrap:
                self._newline(True)
                self._col, self._pending_wrap = 0, False
            row = self.rows[-1]
            row.extend(" " * (self._col - len(row)))
            if self._col < len(row):
                row[self._col] = char
            else:
                row.append(char)
            if self._col == self.columns - 1:
                self._pending_wrap = True  # the next character starts the next row
            else:
                self._col += 1
        else:
            self.unknown.append(repr(char))

    def lines(self) -> list[str]:
        """The screen's lines, each wrapped line joined back into one (without the empty
        line the cursor may wait on at the end)."""
        joined: list[str] = []
        for row, wrapped in zip(self.rows, self.wrapped, strict=True):
            text = "".join(row)
            if wrapped and joined:
                joined[-1] += text
            else:
                joined.append(text)
        lines = [line.rstrip() for line in joined]
        while lines and not lines[-1]:
            lines.pop()
        return lines


def render(data: bytes, columns: int = COLUMNS) -> Screen:
    screen = Screen(columns)
    screen.feed(data.decode("utf-8", errors="replace"))
    return screen


class PtyRun:
    """One command on its own terminal."""

    def __init__(self, command: list[str], env: Mapping[str, str], cwd: Path) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: the pty is its controlling terminal
            try:
                os.chdir(cwd)
                os.execve(command[0], command, dict(env))
            finally:
                os._exit(127)
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        self.pid, self._fd = pid, fd
        self.output = b""
        self.code: int | None = None

    def _read(self, timeout: float) -> bool:
        """Take what the command wrote within ``timeout`` s; False once the terminal closed."""
        ready, _, _ = select.select([self._fd], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self._fd, 65536)
        except OSError:  # EIO: every process holding the terminal ended
            return False
        self.output += data
        return bool(data)

    def wait_for(self, check: Callable[[list[str]], bool], timeout: float, what: str) -> None:
        """Read until ``check`` holds for the screen's lines; fail naming ``what``."""
        deadline = time.monotonic() + timeout
        while not check(render(self.output).lines()):
            assert time.monotonic() < deadline, (
                f"timed out after {timeout:.0f} s waiting for {what}; the screen:\n"
                + "\n".join(render(self.output).lines()[-30:]))
            if not self._read(0.1):
                assert check(render(self.output).lines()), (
                    f"the command ended without {what}; the screen:\n"
                    + "\n".join(render(self.output).lines()[-30:]))

    def interrupt(self) -> None:
        """Type Ctrl-C, as a person at the terminal does."""
        os.write(self._fd, b"\x03")

    def wait(self, timeout: float) -> int:
        """Read until the command ends; its exit code (killed and failed after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while self._read(0.1):
            if time.monotonic() > deadline:
                self.kill()
                msg = f"still running after {timeout:.0f} s:\n" + "\n".join(self.lines()[-30:])
                raise AssertionError(msg)
        _, status = os.waitpid(self.pid, 0)
        os.close(self._fd)
        self.code = os.waitstatus_to_exitcode(status)
        return self.code

    def kill(self) -> None:
        """Kill the command's whole process group (cleanup after a failed test)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)

    def screen(self) -> Screen:
        return render(self.output)

    def lines(self) -> list[str]:
        return self.screen().lines()
