"""The dataflow, wired top to bottom the way the data moves.

::

    read ─▶ parse ─▶ split_valid_invalid ─┬─ invalid ─▶ dead_letters ───────────────┐
                                           └─ valid ─▶ drop_excluded_locales        │
                                                 ├─▶ enrich ─────────────────────────┤
                                                 ├─▶ late_records ───────────────────┤
                                                 │                     to_kafka ◀────┘─▶ write
                                                 └─▶ partial_counts ─▶ window_shards
                                                        ─▶ count_records ─▶ write_counts

Each item is one input partition's batch and each step a plain function over it
(``dataflow.steps``), so the per-record work is one loop per step. The source
only reads and keeps event time (``dataflow.source``, ``dataflow.event_time``);
every Kafka write is one of the two outputs (``dataflow.kafka_sink``): ``write``
for what each input partition gives (on the worker that read it), ``write_counts``
for the window counts. Adding a step is one line here and a function, e.g. a
filter: ``valid = op.map("drop_blocked_ips", valid, filter_logins(allowed, "blocked_ip"))``.

``python -m bytewax.run dataflow.flow`` reads the settings from the environment
once, checks them and Kafka (``dataflow.entrypoint``), and runs ``build_flow``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from bytewax import operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.outputs import Sink

from dataflow.batches import (  # filter_logins: a new filter is one line (README)
    InvalidBatch,
    OutBatch,
    filter_logins,  # noqa: F401
    is_valid,
)
from dataflow.event_time import ACTIVE, NO_TIME
from dataflow.exactly_once import metadata
from dataflow.kafka_sink import counts_sink, partition_sink
from dataflow.kafka_writer import WorkerWriters
from dataflow.offsets import OffsetCommitter
from dataflow.settings import Settings
from dataflow.source import LoginSource
from dataflow.steps import (
    DeadLetters,
    Enrich,
    LateRecords,
    ParseBatches,
    PartialCounts,
    drop_excluded_locales,
)
from dataflow.windows import CountRecords, shard_logic

if TYPE_CHECKING:  # the entrypoint imports nothing of the flow: no import circle
    from dataflow.entrypoint import Started


def build_flow(settings: Settings, source: LoginSource | None = None,
               sink: Sink[tuple[str, OutBatch]] | None = None,
               counts: Sink[tuple[str, OutBatch]] | None = None,
               started: Started | None = None) -> Dataflow:
    """The job's graph; tests pass their own source and sinks. ``started``: what start-up
    found (the input partitions, new ones, and in exactly-once mode the plan)."""
    flow = Dataflow("login-dataflow")
    committer = OffsetCommitter(settings)
    plan = None if started is None else started.plan
    source = source or LoginSource(
        settings, partitions=None if started is None else started.partitions,
        new_partitions=() if started is None else started.new_partitions, plan=plan,
        opened=_first_commit(committer))
    batches = op.input("read", flow, source)
    parsed = op.flat_map("parse", batches, ParseBatches(settings))
    split = op.branch("split_valid_invalid", parsed, is_valid)
    invalid = cast("Stream[InvalidBatch]", split.falses)  # whatever is not valid
    dead_letters = op.map("dead_letters", invalid, DeadLetters(settings))
    valid = op.map("drop_excluded_locales", split.trues, drop_excluded_locales(settings))
    processed = op.map("enrich", valid, Enrich(settings))
    late = op.map("late_records", valid, LateRecords(settings))
    partials = op.flat_map("partial_counts", valid, PartialCounts(settings))
    windows = op.stateful_batch("window_shards", partials,
                                shard_logic(settings, None if plan is None else plan.states))
    count_records = op.map("count_records", windows, CountRecords(settings))
    writers = WorkerWriters(settings)
    outputs = op.merge("to_kafka", processed, dead_letters, late)
    op.output("write", outputs,
              sink or partition_sink(settings, source.list_parts, writers, committer, plan))
    op.output("write_counts", count_records, counts or counts_sink(settings, writers))
    return flow


def _first_commit(committer: OffsetCommitter) -> Callable[[int, int], None]:
    """Exactly-once: a partition that never committed commits where it begins first."""
    return lambda partition, offset: committer.commit_now(
        partition, offset, metadata(offset, NO_TIME, ACTIVE))


def __getattr__(name: str) -> Dataflow:
    """``flow``, built on first access (by bytewax.run) from the environment."""
    if name == "flow":
        from dataflow.entrypoint import (
            drawing_only,
            settings_from_environment,
            start_from_environment,
        )

        if drawing_only():  # python -m bytewax.visualize: the graph, no Kafka needed
            return build_flow(settings_from_environment())
        job = start_from_environment()
        flow = build_flow(job.settings, started=job)
        job.ready()
        return flow
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
