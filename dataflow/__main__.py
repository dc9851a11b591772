"""`python -m dataflow <command>`: one entry point for every tool of the project.

Each command lives in its own module exposing ``main(argv) -> int``; modules are
imported only when their command runs, so a tool's dependencies stay its own.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "kafka": ("dataflow.localkafka", "start, stop or check the local Apache Kafka broker"),
    "run": ("dataflow.runner", "run the dataflow on N local processes forming one cluster"),
    "generate": ("dataflow.generator", "produce login events to the input topic"),
    "dlq": ("dataflow.dlq", "summarise, show, export and replay dead letters"),
    "bench": ("dataflow.bench", "measure throughput, latency and memory"),
}


def _usage() -> str:
    lines = ["usage: python -m dataflow <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {about}" for name, (_, about) in COMMANDS.items()]
    lines += ["", "`python -m dataflow <command> --help` describes each command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest))


if __name__ == "__main__":
    sys.exit(main())
