"""`python -m dataflow.worker ARGS`: ``python -m bytewax.run ARGS`` with clean endings.

Same arguments and environment as ``bytewax.run``. Ctrl-C or SIGTERM ends the
process with exit code 130 and no traceback; a failure of ours (a
``PipelineError`` such as a delivery that Kafka refused) ends it with exit code
1 and one line naming what failed, instead of a chained traceback. After a
finite run (``STOP_AT_END``) that succeeded, it commits the end offsets to
``CONSUMER_GROUP``. A hard crash (a segfault or an abort in native code: librdkafka,
Bytewax's Rust) prints the Python stack of every thread before the process dies,
instead of ending it without a word.
"""

from __future__ import annotations

import contextlib
import faulthandler
import runpy
import signal
import sys

from bytewax.errors import BytewaxRuntimeError

from dataflow.errors import PipelineError
from dataflow.source import commit_finished


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not s for s in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def root_pipeline_error(exc: BaseException) -> PipelineError | None:
    """The first PipelineError in an exception's cause/context chain, if any."""
    return next((e for e in _chain(exc) if isinstance(e, PipelineError)), None)


def interrupted(exc: BaseException) -> bool:
    """Whether Ctrl-C/SIGINT caused this (Bytewax wraps a KeyboardInterrupt raised in a step)."""
    return "signal received" in str(exc) or any(
        isinstance(e, KeyboardInterrupt) for e in _chain(exc))


def main() -> int:
    # A native crash leaves every thread's stack in the log (unless there is no real stderr).
    if sys.__stderr__ is not None:
        with contextlib.suppress(ValueError, OSError):  # e.g. a stderr without a descriptor
            faulthandler.enable(file=sys.__stderr__)
    # A process started in the background by a shell inherits SIGINT ignored, and then
    # the runner's forwarded Ctrl-C would do nothing: take the default handler back.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.argv[0] = "python -m bytewax.run"
    try:
        runpy.run_module("bytewax.run", run_name="__main__", alter_sys=True)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # BytewaxRuntimeError, or ours unwrapped (a sink partition's)
        if isinstance(exc, BytewaxRuntimeError) and interrupted(exc):
            return 130
        ours = root_pipeline_error(exc)
        if ours is None:
            raise
        print(f"login-dataflow: error: {type(ours).__name__}: {ours}", file=sys.stderr)
        return 1
    commit_finished()  # a finite run succeeded: its end offsets are fully written
    return 0


if __name__ == "__main__":
    sys.exit(main())
