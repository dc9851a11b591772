"""`python -m dataflow dlq summary|show|export|replay`: options and dispatch."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
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
from dataflow.dlq.replay import check_destination, dry_run, replay
from dataflow.dlq.summary import summarize
from dataflow.errors import PipelineError, kafka_reason
from dataflow.settings import Settings, describe_settings

PROG = "python -m dataflow dlq"


def _reason(raw: str) -> str:
    if raw not in REASONS:
        msg = f"unknown reason {raw!r}; choose from {', '.join(REASONS)}"
        raise argparse.ArgumentTypeError(msg)
    return raw


def _common() -> OneLineParser:
    common = OneLineParser(add_help=False)
    add = common.add_argument
    add("--topic", help="dead-letter topic to read (default: DLQ_TOPIC)")
    add("--commit-group", metavar="NAME",
        help="start at NAME's committed offsets and commit what was read (default: no group "
             "offsets are read or moved)")
    add("--reason", action="append", type=_reason, default=[],
        help="only this reason code (repeatable)")
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
                     epilog="environment:\n" + describe_settings())
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
    again.add_argument("--to", metavar="TOPIC", help="destination (default: INPUT_TOPIC)")
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


def select(records: Iterator[DeadLetter], filters: Filters,
           limit: int | None = None) -> Iterator[DeadLetter]:
    """The records that pass the filters, at most ``limit``."""
    if limit is not None and limit <= 0:
        return
    taken = 0
    for record in records:
        if filters.matches(record):
            yield record
            taken += 1
            if limit is not None and taken >= limit:
                return


def _run(args: argparse.Namespace, settings: Settings, reader: DlqReader) -> int:
    selected = select(iter(reader), filters_from_args(args), getattr(args, "limit", None))
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
    return _replay(args, settings, selected)


def _replay(args: argparse.Namespace, settings: Settings, selected: Iterator[DeadLetter]) -> int:
    to_topic = args.to or settings.input_topic
    if args.dry_run:
        result = dry_run(selected, to_topic, args.max_replays, sys.stdout)
        print(f"dlq: dry run: would send {result.sent:,} to {to_topic}, skip {result.skipped:,} "
              f"at --max-replays {args.max_replays}; nothing sent")
        return 0
    result = replay(selected, settings, to_topic, args.max_replays)
    print(f"dlq: replayed {result.sent:,} to {to_topic}, {result.failed:,} failed, skipped "
          f"{result.skipped:,} at --max-replays {args.max_replays}")
    if result.first_error:
        print(f"dlq: first delivery error: {result.first_error}", file=sys.stderr)
    return 1 if result.failed else 0


def main(argv: list[str]) -> int:
    """Entry point of `python -m dataflow dlq`."""
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env(os.environ)
        filters_from_args(args)  # bad times and ranges fail before connecting
        topic = args.topic or settings.dlq_topic
        if args.command == "replay" and not args.dry_run:
            check_destination(settings, args.to or settings.input_topic, topic)
        with DlqReader(settings, topic, args.commit_group) as reader:
            status = _run(args, settings, reader)
            if status == 0 and not getattr(args, "dry_run", False):
                reader.commit()
        return status
    except (PipelineError, KafkaException, OSError) as exc:
        reason = kafka_reason(exc) if isinstance(exc, KafkaException) else str(exc)
        print(f"{PROG} {args.command}: error: {reason}", file=sys.stderr)
        return 1
