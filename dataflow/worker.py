"""`python -m dataflow.worker ARGS`: ``python -m bytewax.run ARGS`` with clean endings.

Same arguments and environment as ``bytewax.run``. Ctrl-C or SIGTERM ends the
process with exit code 130 and no traceback; a failure of ours (a
``PipelineError`` such as a delivery that Kafka refused) ends it with exit code
1 and one line naming what failed, instead of a chained traceback.
"""

from __future__ import annotations

import runpy
import sys

from bytewax.errors import BytewaxRuntimeError

from dataflow.errors import PipelineError


def root_pipeline_error(exc: BaseException) -> PipelineError | None:
    """The first PipelineError in an exception's cause/context chain, if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, PipelineError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def main() -> int:
    sys.argv[0] = "python -m bytewax.run"
    try:
        runpy.run_module("bytewax.run", run_name="__main__", alter_sys=True)
    except KeyboardInterrupt:
        return 130
    except BytewaxRuntimeError as exc:
        if "signal received" in str(exc):
            return 130
        ours = root_pipeline_error(exc)
        if ours is None:
            raise
        print(f"login-dataflow: error: {type(ours).__name__}: {ours}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
