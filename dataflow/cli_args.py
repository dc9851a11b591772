"""Argument parsing shared by the command-line tools: one-line errors, checked numbers."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, never a usage dump."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def at_least(kind: type[int] | type[float], low: float) -> Callable[[str], int | float]:
    """An argparse ``type`` accepting numbers of ``kind`` not below ``low`` (nor NaN)."""

    def parse(raw: str) -> int | float:
        try:
            value = kind(raw)
        except ValueError:
            msg = f"{raw!r} is not a {'whole ' if kind is int else ''}number"
            raise argparse.ArgumentTypeError(msg) from None
        if not value >= low:  # also refuses nan
            msg = f"{raw!r} is below {low:g}"
            raise argparse.ArgumentTypeError(msg)
        return value

    return parse
