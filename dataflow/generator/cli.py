"""`python -m dataflow generate`: options, signals, the final summary."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from types import FrameType

from confluent_kafka import KafkaException

from dataflow.cli_args import OneLineParser, at_least
from dataflow.errors import PipelineError, kafka_reason
from dataflow.generator.events import Shares
from dataflow.generator.producing import (
    GeneratorOptions,
    GeneratorSummary,
    run_generator,
)
from dataflow.logs import configure
from dataflow.settings import Settings, describe_settings

PROG = "python -m dataflow generate"
SHARE_OPTIONS = (
    ("missing-field", "events missing a required field (rejected: missing_field)"),
    ("wrong-type", "events with a field of the wrong JSON type (rejected: wrong_type)"),
    ("malformed", "events that are not well-formed JSON (rejected: malformed_json)"),
    ("out-of-order", "valid events stamped a few seconds in the past, within the allowed "
                     "lateness"),
    ("late", "valid events stamped minutes in the past, beyond a window plus the lateness"),
    ("excluded-locale", "valid events whose locale is in EXCLUDED_LOCALES (RU if unset)"),
)


def _share(raw: str) -> float:
    value = at_least(float, 0)(raw)
    if value > 1:
        msg = f"{raw!r} is not a share between 0 and 1"
        raise argparse.ArgumentTypeError(msg)
    return float(value)


def build_parser() -> argparse.ArgumentParser:
    """The generator's command line."""
    parser = OneLineParser(prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
                     description="Produce login events to INPUT_TOPIC (key = user_id).",
                     epilog="environment:\n" + describe_settings())
    add = parser.add_argument
    add("--rate", type=at_least(float, 0), default=2.0,
        help="events per second (default 2; 0 = as fast as possible)")
    add("--count", type=at_least(int, 0), default=0,
        help="events to send (default 0 = until Ctrl-C or SIGTERM)")
    add("--seed", type=int, default=None, help="seed for reproducible content")
    add("--start-time", type=at_least(float, 0), default=None, metavar="EPOCH",
        help="timestamp of the first event; event i gets EPOCH + i/rate (reproducible)")
    add("--partitions", type=at_least(int, 1), default=3,
        help="partitions of the input topic if the generator creates it (default 3)")
    add("--topic", default=None, help="topic to write to (default: INPUT_TOPIC)")
    for name, about in SHARE_OPTIONS:
        add(f"--{name}", type=_share, default=0.0, metavar="SHARE",
            help=f"share (0..1) of {about}; default 0")
    return parser


def options_from_args(args: argparse.Namespace) -> GeneratorOptions:
    """GeneratorOptions from parsed arguments (raises GeneratorError on bad shares)."""
    shares = Shares(**{name.replace("-", "_"): getattr(args, name.replace("-", "_"))
                       for name, _ in SHARE_OPTIONS})
    return GeneratorOptions(rate=args.rate, count=args.count, seed=args.seed,
                            start_time=args.start_time, partitions=args.partitions,
                            shares=shares, topic=args.topic)


def format_summary(summary: GeneratorSummary) -> str:
    """The final summary: sent, failed, by kind, speed."""
    kinds = ", ".join(f"{kind} {n:,}" for kind, n in sorted(summary.by_kind.items()))
    lines = [f"generate: {summary.sent:,} sent to {summary.topic}, {summary.failed:,} failed, "
             f"in {summary.elapsed:.2f}s ({summary.rate:,.0f} events/s)",
             f"generate: by kind: {kinds or 'none'}"]
    if summary.first_error:
        lines.append(f"generate: first delivery error: {summary.first_error}")
    return "\n".join(lines)


def _install_stop(stop: threading.Event) -> None:
    def handler(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():  # second signal: stop flushing too
            raise KeyboardInterrupt
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str]) -> int:
    """Entry point of `python -m dataflow generate`; 0 when every event was confirmed."""
    args = build_parser().parse_args(argv)
    try:
        options = options_from_args(args)
        settings = Settings.from_env(os.environ)
        configure(settings.log_level, settings.log_format)
        stop = threading.Event()
        _install_stop(stop)
        summary = run_generator(settings, options, stop)
    except (PipelineError, KafkaException) as exc:
        reason = kafka_reason(exc) if isinstance(exc, KafkaException) else str(exc)
        print(f"{PROG}: error: {reason}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted while flushing; some events may be unconfirmed",
              file=sys.stderr)
        return 130
    print(format_summary(summary))
    return 1 if summary.failed else 0
