"""The dataflow, wired top to bottom the way the data moves.

``python -m bytewax.run dataflow.flow`` reads the settings from the
environment once, checks them and Kafka, and runs ``build_flow(settings)``.
"""

from __future__ import annotations

import gc
from typing import cast

from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.operators import KeyedStream
from bytewax.outputs import Sink

from dataflow.kafka_sink import ConfirmedKafkaSink, WorkerWriters
from dataflow.schemas import SinkBatch
from dataflow.settings import Settings
from dataflow.source import LoginSource
from dataflow.watermarks import ShardUpdate
from dataflow.windows import CountWriter, shard_logic

# Every record allocates a few short-lived containers (output tuples, header lists),
# which trigger a generation-0 collection every 700 allocations and, through them,
# scans of everything the process holds. Freezing what start-up built and collecting
# less often cut the enrich step from 5.0 to 2.0 us per record (measured); nothing
# in the per-record path forms reference cycles. Generation 0 counts live young
# containers, and the job holds a few batches and the records of its unconfirmed writes
# (at most dataflow.kafka_sink.CONFIRM_EVERY): at 50,000 that still meant a collection
# every few batches, 0.42-0.48 s of 1,000,000 records; at 500,000 none in 1,000,000
# records and the same peak RSS (measured, benchmarks/README.md).
GC_THRESHOLDS = (500_000, 20, 100)


def tune_garbage_collector() -> None:
    """Freeze the start-up heap and collect young objects less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def build_flow(settings: Settings, source: LoginSource | None = None,
               sink: Sink[SinkBatch] | None = None, partitions: list[int] | None = None,
               ) -> Dataflow:
    """Kafka -> per partition, one batch step: parse, dead letters, filter, enrich and write,
    lateness, partial counts -> window shards -> count records to Kafka. The source's
    partitions and the sink share each worker's producer."""
    flow = Dataflow("login-dataflow")
    writers = WorkerWriters(settings)
    source = source or LoginSource(settings, partitions=partitions, writers=writers)
    # (shard, ShardUpdate) pairs: the batches' records are written by the source itself.
    updates = cast(KeyedStream[ShardUpdate], op.input("read", flow, source))
    windows = op.stateful_batch("window_shards", updates, shard_logic(settings))
    counts = op.flat_map("count_record", windows, CountWriter(settings))
    op.output("write", counts, sink or ConfirmedKafkaSink(settings, writers))
    return flow


def __getattr__(name: str) -> Dataflow:
    """``flow``, built on first access (by bytewax.run) from the environment."""
    if name == "flow":
        from dataflow.entrypoint import flow_from_environment

        return flow_from_environment()
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
