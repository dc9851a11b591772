"""`python -m dataflow bench`: throughput against a plain-loop ceiling and a hand-written
loop, CPU per record, start-up, latency, memory.

Everything is measured in one script run against the broker at
KAFKA_BOOTSTRAP_SERVERS (start one with `python -m dataflow kafka start`), so
speeds are compared as ratios to references measured minutes apart on the same
machine. Each case runs in its own processes; the median of the repetitions
is quoted. With --baseline, the job of another checkout runs too, interleaved,
for a before/after comparison in one run.
"""

from __future__ import annotations

import argparse
import compileall
import os
import sys
from collections.abc import Callable
from pathlib import Path

from dataflow.bench.cases import (
    Run,
    Topics,
    exactly_once_env,
    preload,
    run_ceiling,
    run_handloop,
    run_pipeline,
)
from dataflow.bench.latency import run_latency
from dataflow.bench.report import BASELINE_SUFFIX, machine, table, write_json
from dataflow.errors import MissingTopicError, PipelineError
from dataflow.kafka_source import list_partitions
from dataflow.logs import configure
from dataflow.runner import PROJECT_ROOT
from dataflow.settings import Settings

CEILING = "ceiling: plain consume -> produce loop"
HANDLOOP = "hand-written loop: the same pipeline, no Bytewax"
BASELINE = "dataflow, 1 process" + BASELINE_SUFFIX
EXACTLY_ONCE = "dataflow, 1 process, exactly-once"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dataflow bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000, help="records to preload")
    parser.add_argument("--partitions", type=int, default=8, help="input partitions")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each throughput case")
    parser.add_argument("--latency-rate", type=int, default=5000, help="events/s, latency case")
    parser.add_argument("--latency-seconds", type=float, default=20.0,
                        help="measured seconds of the latency case (after a warm-up)")
    parser.add_argument("--latency-repeat", type=int, default=3,
                        help="runs of each latency case, interleaved (a single run's p99 is "
                        "decided by two or three pauses)")
    parser.add_argument("--quick", action="store_true",
                        help="100,000 records, 1 run each, 5 s of latency: under a minute")
    parser.add_argument("--baseline", type=Path, metavar="PATH",
                        help="another checkout of this project (e.g. `git worktree add /tmp/base "
                        "REV`): also run its job on 1 process, interleaved, for before/after")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/out/latest.json"),
                        help="where to write the JSON results")
    return parser


def _check_broker(settings: Settings) -> None:
    try:
        list_partitions(settings, "__bench_probe__")
    except MissingTopicError:
        return  # the broker answered
    except PipelineError as exc:
        msg = (f"no Kafka at {settings.bootstrap_servers} ({exc}); start the local "
               "broker with `python -m dataflow kafka start`")
        raise PipelineError(msg) from exc


def _check_baseline(path: Path | None) -> Path | None:
    if path is None:
        return None
    if not (path / "dataflow" / "__main__.py").is_file():
        msg = f"--baseline {path}: not a checkout of this project (no dataflow/__main__.py)"
        raise PipelineError(msg)
    return path.resolve()


def compile_package(*checkouts: Path | None) -> None:
    """Each checkout's ``dataflow`` compiled to bytecode before any run, as the image does
    (Dockerfile): with PYTHONDONTWRITEBYTECODE set, each start of the job would otherwise
    compile the package again, and start-up would measure the compiler."""
    for checkout in checkouts:
        if checkout is not None:
            compileall.compile_dir(checkout / "dataflow", quiet=1)


def _cases(settings: Settings, topics: Topics, source: str, partitions: int,
           baseline: Path | None) -> list[tuple[str, Callable[[], Run]]]:
    cases = [(CEILING, lambda: run_ceiling(settings, topics, source, partitions)),
             (HANDLOOP, lambda: run_handloop(settings, topics, source, partitions)),
             ("dataflow, 1 process", lambda: run_pipeline(settings, topics, source,
                                                          partitions, 1))]
    if baseline is not None:
        cases.append((BASELINE, lambda: run_pipeline(settings, topics, source, partitions, 1,
                                                     checkout=baseline)))
    cases.append(("dataflow, 2 processes", lambda: run_pipeline(settings, topics, source,
                                                                partitions, 2)))
    cases.append((EXACTLY_ONCE, lambda: run_pipeline(settings, topics, source, partitions, 1,
                                                     more=exactly_once_env(topics))))
    return cases


def _latency_cases(settings: Settings, topics: Topics, args: argparse.Namespace,
                   baseline: Path | None) -> list[tuple[str, Callable[[], Run]]]:
    name = f"latency at {args.latency_rate:,} events/s, 1 process"
    measure = (settings, topics, args.partitions, args.latency_rate, args.latency_seconds)
    cases = [(name, lambda: run_latency(*measure))]
    if baseline is not None:
        cases.append((name + BASELINE_SUFFIX, lambda: run_latency(*measure, checkout=baseline)))
    cases.append((f"{name}, exactly-once",
                  lambda: run_latency(*measure, more=exactly_once_env(topics))))
    return cases


def _interleave(rounds: int, cases: list[tuple[str, Callable[[], Run]]], topics: Topics,
                results: dict[str, list[Run]], figure: Callable[[Run], str]) -> None:
    """Each case once per round, so drift on a shared machine hits all of them; the rounds
    alternate between the order given and its reverse, so no case always runs right after
    the same one (a case paired with its baseline runs before it in one round and after it
    in the next); each run's topics deleted once it is done (the input is kept)."""
    for repeat in range(rounds):
        for name, case in cases if repeat % 2 == 0 else cases[::-1]:
            made = len(topics.made)
            run = case()
            topics.delete_from(made)
            results.setdefault(name, []).append(run)
            print(f"run {repeat + 1}: {name}: {figure(run)}", file=sys.stderr)


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.quick:
        args.records, args.repeat, args.latency_seconds = 100_000, 1, 5.0
        args.latency_repeat = 1
    try:
        baseline = _check_baseline(args.baseline)
        settings = Settings.from_env(os.environ)
        configure(settings.log_level, settings.log_format)
        _check_broker(settings)
    except PipelineError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    compile_package(PROJECT_ROOT, baseline)
    topics = Topics(settings)
    results: dict[str, list[Run]] = {}
    try:
        source = topics.make("in", args.partitions)
        print(f"preloading {args.records:,} records over {args.partitions} partitions ...",
              file=sys.stderr)
        preload(settings, source, args.records, args.partitions)
        _interleave(args.repeat, _cases(settings, topics, source, args.partitions, baseline),
                    topics, results, lambda run: f"{run.rate:,.0f} records/s")
        _interleave(args.latency_repeat, _latency_cases(settings, topics, args, baseline),
                    topics, results, lambda run: f"p99 {run.extra['p99_ms']:.1f} ms")
    finally:
        topics.delete_all()
    print(f"\nMachine: {machine()}; broker on the same machine; "
          f"{args.records:,} records, {args.partitions} partitions, {args.repeat} run(s) each; "
          f"{args.latency_repeat} run(s) of each latency case.\n")
    print(table(results, CEILING, HANDLOOP))
    params = vars(args) | {"json": str(args.json), "baseline": str(baseline) if baseline else None}
    write_json(args.json, results, params, CEILING, HANDLOOP)
    print(f"\nJSON: {args.json}")
    return 0
