"""`python -m dataflow kafka start|stop|status|create-topics`: the command line.

Exit codes follow LSB init-script habits; ``EXIT_CODES_HELP`` documents them in
``--help`` and ``exit_code`` maps each error type to one of them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from dataflow.errors import PipelineError, SettingsError
from dataflow.localkafka.client import quiet_admin_config
from dataflow.localkafka.cluster import ClusterStatus, LocalKafka
from dataflow.localkafka.errors import (
    LayoutError,
    LocalKafkaFailure,
    NotInstalledError,
    NotRunningError,
)
from dataflow.localkafka.jars import MIN_JAVA
from dataflow.localkafka.layout import (
    BROKER_COUNTS,
    CONTROLLER_PORT_OFFSET,
    DEFAULT_DIR,
    DEFAULT_PORT,
    KAFKA_VERSION,
    effective_layout,
)
from dataflow.settings import Settings
from dataflow.topics import ensure_topics

DIR_ENV = "LOCAL_KAFKA_DIR"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_STATUS_STOPPED = 0, 1, 2, 3
EXIT_NOT_INSTALLED, EXIT_NOT_CONFIGURED, EXIT_NOT_RUNNING = 5, 6, 7
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = f"""\
exit codes (LSB init-script conventions):
  0  success; also `start` when already running and `stop` when nothing runs
  1  failure: port taken, broker did not start, Maven download failed, stop failed;
     for `status`: only part of the cluster runs, or a pid file outlived its broker
  2  invalid options, or options that contradict the cluster recorded in --dir
  3  `status` only: not running
  5  Java {MIN_JAVA}+ or Maven (needed once, to fetch the jars) is not installed
  6  `create-topics`: a topic setting in the environment is invalid
  7  `create-topics`: no local broker runs in --dir (and no --bootstrap given)

ports: node N (1-based) listens for clients on PORT+N-1 and for its controller
on PORT+{CONTROLLER_PORT_OFFSET}+N-1, all on 127.0.0.1 (default 9092-9094 and 9192-9194).
environment: {DIR_ENV} (default --dir), LOCAL_KAFKA_CACHE (jar cache folder),
LOCAL_KAFKA_HEAP (broker heap, default 512m)."""


def exit_code(exc: PipelineError) -> int:
    """The exit code a command returns for ``exc``."""
    if isinstance(exc, NotInstalledError):
        return EXIT_NOT_INSTALLED
    if isinstance(exc, LayoutError):
        return EXIT_USAGE
    if isinstance(exc, NotRunningError):
        return EXIT_NOT_RUNNING
    if isinstance(exc, SettingsError):
        return EXIT_NOT_CONFIGURED
    return EXIT_FAILED


def status_code(status: ClusterStatus) -> int:
    """0 when every node runs, 3 when none runs and none died, 1 otherwise."""
    if status.running:
        return EXIT_OK
    return EXIT_STATUS_STOPPED if status.stopped else EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dataflow kafka", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=f"Run Apache Kafka {KAFKA_VERSION} (KRaft) on this machine for development "
        "and tests.", epilog=EXIT_CODES_HELP)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", type=Path, default=Path(os.environ.get(DIR_ENV, DEFAULT_DIR)),
                        help=f"data, logs and pid files (default: ${DIR_ENV} or {DEFAULT_DIR})")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    start = _command(commands, common, "start", "start the broker(s)")
    start.add_argument("--port", type=int, help=f"first client port (default {DEFAULT_PORT}, "
                       "or the one recorded in --dir)")
    start.add_argument("--brokers", type=int, choices=BROKER_COUNTS,
                       help="1 broker, or a 3-node cluster (default 1, or as recorded)")
    start.add_argument("--node", type=int, help="start only this node of the cluster")
    start.add_argument("--timeout", type=float, default=90.0,
                       help="seconds to wait for the broker to answer (default 90)")
    stop = _command(commands, common, "stop", "stop the broker(s)")
    stop.add_argument("--node", type=int, help="stop only this node of the cluster")
    stop.add_argument("--timeout", type=float, default=30.0,
                      help="seconds between SIGTERM and SIGKILL (default 30)")
    _command(commands, common, "status", "say whether the broker(s) run")
    topics = _command(commands, common, "create-topics",
                      "create the project's topics (named by the environment) if missing")
    topics.add_argument("--partitions", type=int, default=3, help="default 3")
    topics.add_argument("--replication", type=int,
                        help="default: 1 on one broker, 3 on the 3-node cluster")
    topics.add_argument("--bootstrap", help="another cluster's bootstrap servers instead of "
                        "the local broker in --dir")
    return parser


def _command(commands: argparse._SubParsersAction[argparse.ArgumentParser],
             common: argparse.ArgumentParser, name: str, about: str) -> argparse.ArgumentParser:
    return commands.add_parser(name, parents=[common], help=about, description=about,
                               epilog=EXIT_CODES_HELP,
                               formatter_class=argparse.RawDescriptionHelpFormatter)


def _start(args: argparse.Namespace) -> int:
    layout = effective_layout(args.dir.resolve(), args.port, args.brokers)
    kafka = LocalKafka(args.dir, layout.port, layout.brokers, start_timeout=args.timeout,
                       notify=lambda line: print(line, flush=True))
    began = time.monotonic()
    if args.node is not None:
        if not kafka.start_node(args.node):
            print(f"node {args.node} already running at {layout.node_bootstrap(args.node)}")
            return EXIT_OK
        print(f"node {args.node} running at {layout.node_bootstrap(args.node)} "
              f"(started in {time.monotonic() - began:.1f} s)")
        return EXIT_OK
    if not kafka.start():
        print(f"already running at {kafka.bootstrap}")
        return EXIT_OK
    print(f"Kafka {KAFKA_VERSION} running at {kafka.bootstrap} ({layout.describe()}, started in "
          f"{time.monotonic() - began:.1f} s; data and logs in {kafka.state_dir})")
    return EXIT_OK


def _stop(args: argparse.Namespace) -> int:
    layout = effective_layout(args.dir.resolve(), None, None)
    kafka = LocalKafka(args.dir, layout.port, layout.brokers, stop_timeout=args.timeout)
    stopped = kafka.stop(args.node)
    what = f"node {args.node}" if args.node is not None else "the broker"
    if not stopped:
        print(f"{what} was not running in {kafka.state_dir}" if args.node is not None
              else f"no broker running in {kafka.state_dir}")
    elif args.node is not None or layout.brokers == 1:
        print(f"stopped {what} at {layout.node_bootstrap(stopped[0])}")
    else:
        print(f"stopped node(s) {', '.join(map(str, stopped))} of {kafka.bootstrap}")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    layout = effective_layout(args.dir.resolve(), None, None)
    kafka = LocalKafka(args.dir, layout.port, layout.brokers)
    status = kafka.status()
    for node in status.nodes:
        label = "" if layout.brokers == 1 else f"node {node.node}: "
        if node.running:
            print(f"{label}running at {node.bootstrap} (pid {node.pid})")
        elif node.stale:
            print(f"{label}not running, but its pid file is left: the broker died; see "
                  f"{kafka.nodes[node.node].server_log}")
        else:
            print(f"{label}not running ({kafka.state_dir})")
    return status_code(status)


def _create_topics(args: argparse.Namespace) -> int:
    settings = Settings.from_env(os.environ)
    names = [settings.input_topic, settings.output_topic, settings.dlq_topic,
             settings.counts_topic, settings.late_topic]
    bootstrap, replication = args.bootstrap, args.replication
    if bootstrap is None:
        layout = effective_layout(args.dir.resolve(), None, None)
        kafka = LocalKafka(args.dir, layout.port, layout.brokers)
        if not any(node.running for node in kafka.status().nodes):
            msg = (f"no local broker runs in {kafka.state_dir}; start it with "
                   f"`python -m dataflow kafka start --dir {args.dir}` or pass --bootstrap")
            raise NotRunningError(msg)
        bootstrap, replication = kafka.bootstrap, replication or layout.replication
    report = ensure_topics(quiet_admin_config(bootstrap), names, args.partitions,
                           replication or -1)
    for name in report.created:
        print(f"created topic {name}")
    for name in report.existed:
        print(f"topic {name} existed already")
    return EXIT_OK


HANDLERS = {"start": _start, "stop": _stop, "status": _status, "create-topics": _create_topics}


def main(argv: list[str]) -> int:
    """Run one command; print a one-line reason and return an exit code on failure."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return int(exc.code or 0)
    try:
        return HANDLERS[args.command](args)
    except (LocalKafkaFailure, PipelineError) as exc:
        _report(args.command, str(exc), exc.details if isinstance(exc, LocalKafkaFailure) else ())
        return exit_code(exc)
    except OSError as exc:
        _report(args.command, str(exc), ())
        return EXIT_FAILED
    except KeyboardInterrupt:
        _report(args.command, f"interrupted; `python -m dataflow kafka stop --dir {args.dir}` "
                "ends whatever was started", ())
        return EXIT_INTERRUPTED


def _report(command: str, reason: str, details: tuple[str, ...]) -> None:
    print(f"kafka {command} failed: {reason}", file=sys.stderr)
    for line in details:
        print(f"  {line}", file=sys.stderr)
