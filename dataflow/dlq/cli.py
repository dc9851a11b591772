"""`python -m dataflow dlq summary|show|export|replay`: options and dispatch."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import BinaryIO

from confluent_kafka import KafkaException

from dataflow.cli_args import OneLineParser, at_least
from dataflow.deadletters import REASONS
from dataflow.dlq.export import write_export
from dataflow.dlq.reading import DlqReader
from dataflow.dlq.records import DeadLetter, Filters, parse_time
from dataflow.dlq.rendering import render_record, render_summary
from dataflow.dlq.replay import ReplayPlan, ReplayResult, check_destination, dry_run, replay
from dataflow.dlq.summary import summarize
from dataflow.errors import PipelineError, kafka_reason
from dataflow.logs import configure
from dataflow.settings import KAFKA_CONFIG_PREFIX, SPECS, Settings

PROG = "python -m dataflow dlq"
# The settings this tool reads (the Kafka clients' own, the topics, the logs).
USED_SETTINGS = ("KAFKA_BOOTSTRAP_SERVERS", "INPUT_TOPIC", "DLQ_TOPIC", "CONSUMER_QUEUE_KBYTES",
                 "DELIVERY_TIMEOUT_MS", "LOG_LEVEL", "LOG_FORMAT")
# An exception class as other tools write it (Kafka Connect, Streams, Spring Kafka).
_CLASS_NAME = re.compile(r"^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)+$")


def _reason(raw: str) -> str:
    if raw not in REASONS and not _CLASS_NAME.match(raw):
        msg = (f"unknown reason {raw!r}; choose from {', '.join(REASONS)}, or give an "
               "exception class such as org.apache.kafka.common.errors.SerializationException")
        raise argparse.ArgumentTypeError(msg)
    return raw


def describe_used_settings() -> str:
    """The --help table of the environment variables the tool reads."""
    rows = [f"  {spec.env:<24} default {spec.default!r:<18} {spec.help}"
            for spec in SPECS if spec.env in USED_SETTINGS]
    rows.append(f"  {KAFKA_CONFIG_PREFIX + '<PROPERTY>':<24} {'':<26} any librdkafka property "
                "for its clients (secret values are never printed)")
    return "\n".join(rows)


def _common() -> OneLineParser:
    common = OneLineParser(add_help=False)
    add = common.add_argument
    add("--topic", help="dead-letter topic to read (default: DLQ_TOPIC)")
    add("--commit-group", metavar="NAME",
        help="start at NAME's committed offsets and commit what was read (default: no group "
             "offsets are read or moved)")
    add("--reason", action="append", type=_reason, default=[],
        help="only this reason code or exception class (repeatable)")
    add("--since", help="only failures at or after this ISO-8601 time (naive = UTC)")
    add("--until", help="only failures at or before this ISO-8601 time (naive = UTC)")
    add("--source-partition", type=at_least(int, 0), help="only this source partition")
    add("--offset-from", type=at_least(int, 0), help="only source offsets >= this")
    add("--offset-to", type=at_least(int, 0), help="only source offsets <= this")
    return common


def build_parser() -> argparse.ArgumentParser:
    """The review tool's command line."""
    parser = OneLineParser(prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
                     description="Summarise, show, export and replay dead letters.",
                     epilog="environment:\n" + describe_used_settings())
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=OneLineParser)
    common = [_common()]
    summary = commands.add_parser("summary", parents=common, help="counts by reason and source")
    summary.add_argument("--json", action="store_true", help="machine-readable output")
    summary.add_argument("--top", type=at_least(int, 1), default=5,
                         help="how many frequent details to list (default 5)")
    show = commands.add_parser("show", parents=common, help="records, decoded")
    show.add_argument("--full", action="store_true", help="do not shorten values")
    export = commands.add_parser("export", parents=common, help="JSON Lines, nothing lost")
    export.add_argument("--output", type=Path, help="file to write (default: stdout)")
    again = commands.add_parser("replay", parents=common, help="send records back, byte-exact")
    where = again.add_mutually_exclusive_group()
    where.add_argument("--to", metavar="TOPIC", help="destination (default: INPUT_TOPIC)")
    where.add_argument("--to-original", action="store_true",
                       help="send each record to the topic its headers name as its source")
    again.add_argument("--max-replays", type=at_least(int, 1), default=3,
                       help="skip records replayed this many times already (default 3)")
    again.add_argument("--dry-run", action="store_true", help="list, send nothing")
    for sub in (show, export, again):
        sub.add_argument("--limit", type=at_least(int, 1), help="at most this many records")
    return parser


def filters_from_args(args: argparse.Namespace) -> Filters:
    """Filters from parsed arguments (DlqError on a bad time or an empty range)."""
    return Filters(
        reasons=frozenset(args.reason),
        since=parse_time(args.since, "--since") if args.since else None,
        until=parse_time(args.until, "--until") if args.until else None,
        source_partition=args.source_partition,
        offset_from=args.offset_from,
        offset_to=args.offset_to,
    )


def select(records: Iterator[DeadLetter], filters: Filters, limit: int | None = None,
           hold: Callable[[DeadLetter], None] = lambda _record: None) -> Iterator[DeadLetter]:
    """The records that pass the filters, at most ``limit``; ``hold`` gets the others read."""
    if limit is not None and limit <= 0:
        return
    taken = 0
    for record in records:
        if not filters.matches(record):
            hold(record)
            continue
        yield record
        taken += 1
        if limit is not None and taken >= limit:
            return


def _run(args: argparse.Namespace, settings: Settings, reader: DlqReader) -> int:
    selected = select(iter(reader), filters_from_args(args), getattr(args, "limit", None),
                      reader.hold)
    if args.command == "summary":
        summary = summarize(reader.topic, selected)
        text = (json.dumps(summary.as_dict(args.top), indent=2) if args.json
                else render_summary(summary, args.top))
        print(text)
        return 0
    if args.command == "show":
        shown = 0
        for record in selected:
            print(("\n" if shown else "") + render_record(record, full=args.full))
            shown += 1
        print(f"dlq: {shown:,} shown, {reader.read:,} read", file=sys.stderr)
        return 0
    if args.command == "export":
        with ExitStack() as stack:
            out: BinaryIO = (stack.enter_context(args.output.open("wb")) if args.output
                             else sys.stdout.buffer)
            written = write_export(selected, out)
        print(f"dlq: {written:,} exported, {reader.read:,} read", file=sys.stderr)
        return 0
    return _replay(args, settings, reader, selected)


def _destination(result: ReplayResult) -> str:
    if result.to_topic is not None:
        return result.to_topic
    topics = ", ".join(f"{topic} {n:,}" for topic, n in sorted(result.by_topic.items()))
    return f"original topics ({topics or 'none'})"


def _tail(result: ReplayResult, max_replays: int, verb: str = "skipped") -> str:
    text = f"{verb} {result.skipped:,} at --max-replays {max_replays}"
    if result.duplicates:
        text += f", {result.duplicates:,} duplicate{'s' if result.duplicates > 1 else ''}"
    if result.unroutable:
        text += f", {result.unroutable:,} without a usable original topic (not sent)"
    return text


def _replay(args: argparse.Namespace, settings: Settings, reader: DlqReader,
            selected: Iterator[DeadLetter]) -> int:
    plan = ReplayPlan(None if args.to_original else (args.to or settings.input_topic),
                      reader.topic, args.max_replays)
    if args.dry_run:
        result = dry_run(selected, plan, sys.stdout,
                         lambda topic: check_destination(settings, topic, reader.topic))
        print(f"dlq: dry run: would send {result.sent:,} to {_destination(result)}, "
              f"{_tail(result, args.max_replays, 'skip')}; nothing sent")
        return 0
    result = replay(selected, settings, plan, reader.hold)
    print(f"dlq: replayed {result.sent:,} to {_destination(result)}, {result.failed:,} failed, "
          f"{_tail(result, args.max_replays)}")
    if result.first_error:
        print(f"dlq: first delivery error: {result.first_error}", file=sys.stderr)
    return 1 if result.failed else 0


def main(argv: list[str]) -> int:
    """Entry point of `python -m dataflow dlq`."""
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env(os.environ)
        configure(settings.log_level, settings.log_format)
        filters_from_args(args)  # bad times and ranges fail before connecting
        topic = args.topic or settings.dlq_topic
        if args.command == "replay" and not args.dry_run and not args.to_original:
            check_destination(settings, args.to or settings.input_topic, topic)
        with DlqReader(settings, topic, args.commit_group) as reader:
            status = _run(args, settings, reader)
            if status == 0 and not getattr(args, "dry_run", False):
                reader.commit()
        if reader.unrecorded:
            print(f"dlq: {reader.unrecorded:,} ranges of handled records did not fit in the "
                  f"commit metadata of {args.commit_group}; its next run reads them again",
                  file=sys.stderr)
        return status
    except (PipelineError, KafkaException, OSError) as exc:
        reason = kafka_reason(exc) if isinstance(exc, KafkaException) else str(exc)
        print(f"{PROG} {args.command}: error: {reason}", file=sys.stderr)
        return 1
