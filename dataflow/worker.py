"""`python -m dataflow.worker ARGS`: ``python -m bytewax.run ARGS``, plus crash traces.

Same arguments and environment as ``bytewax.run``; the job behaves the same under
both (``dataflow.lifecycle``: Ctrl-C and SIGTERM stop it cleanly with exit code
130 or 143, a failure of ours is one line and exit code 1, a cluster port in use one
line and exit code 2, new input partitions restart it). In addition, a hard crash (a
segfault or an abort in native code: librdkafka, Bytewax's Rust) prints the Python
stack of every thread before the process dies, instead of ending it without a word.
The runner, the compose file and the Kubernetes manifests start the job this way.
"""

from __future__ import annotations

import contextlib
import faulthandler
import runpy
import signal
import sys

from dataflow.errors import EXIT_INTERRUPTED
from dataflow.lifecycle import mark_failed, pipeline_error


def main() -> int:
    # A native crash leaves every thread's stack in the log (unless there is no real stderr).
    if sys.__stderr__ is not None:
        with contextlib.suppress(ValueError, OSError):  # e.g. a stderr without a descriptor
            faulthandler.enable(file=sys.__stderr__)
    # A process started in the background by a shell inherits SIGINT ignored: take the
    # default back until the flow installs the job's own handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.argv[0] = "python -m bytewax.run"
    try:
        runpy.run_module("bytewax.run", run_name="__main__", alter_sys=True)
    except KeyboardInterrupt:  # before the flow was built
        return EXIT_INTERRUPTED
    except Exception as exc:  # BytewaxRuntimeError, or ours unwrapped (a sink partition's)
        mark_failed()
        ours = pipeline_error(exc)
        if ours is None:
            raise
        print(f"login-dataflow: error: {type(ours).__name__}: {ours}", file=sys.stderr)
        return ours.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
