"""Start-up of the job under any entry point: settings, checks, signals, summary at exit.

``dataflow.flow``'s ``flow`` (what ``python -m bytewax.run dataflow.flow`` runs, and
``python -m dataflow.worker`` and ``python -m dataflow run`` through it) calls
``start_from_environment`` once. A bad setting, an unreachable broker or a missing
topic ends the process with a one-line message and exit code 2, not a traceback.
Then it installs the job's stop handling (``dataflow.lifecycle``), serves metrics if
asked, logs what it runs (in words on a console: ``dataflow.start_line``), watches the
input topic for new partitions, and reports progress (``dataflow.progress``).
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
from pathlib import Path
from typing import NoReturn

import msgspec

from dataflow import (
    exactly_once,
    instance_group,
    lifecycle,
    logs,
    metrics,
    progress,
    recovery_guard,
)
from dataflow.errors import PipelineError
from dataflow.exactly_once import Plan
from dataflow.kafka_config import admin_config, check_client_configs
from dataflow.kafka_source import describe_partitions, list_partitions
from dataflow.runner import check_metrics_port
from dataflow.settings import Settings
from dataflow.start_line import describe_start

log = logs.get_logger(__name__)
# Every record allocates a few short-lived containers (output tuples, header lists),
# which trigger a generation-0 collection every 700 allocations and, through them,
# scans of everything the process holds. Freezing what start-up built and collecting
# less often cut the enrich step from 5.0 to 2.0 us per record (measured); nothing
# in the per-record path forms reference cycles. Generation 0 counts live young
# containers, and the job holds a few batches and the records of its unconfirmed writes
# (at most dataflow.kafka_writer.CONFIRM_EVERY): at 50,000 that still meant a collection
# every few batches, 0.42-0.48 s of 1,000,000 records; at 500,000 none in 1,000,000
# records and the same peak RSS (measured, benchmarks/README.md).
GC_THRESHOLDS = (500_000, 20, 100)


def tune_garbage_collector() -> None:
    """Freeze the start-up heap and collect young objects less often. No collection
    first: start-up leaves about 170 objects (13 KB) of cyclic garbage, and collecting
    it cost 8-10 ms of start-up (measured)."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _fail(message: str) -> NoReturn:
    print(f"login-dataflow: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def check_topics(settings: Settings) -> list[int]:
    """Every topic the job reads or writes exists (the broker does not auto-create); returns
    the input topic's partitions. One metadata request for all of them."""
    found, missing = describe_partitions(settings, (
        settings.input_topic, settings.output_topic, settings.dlq_topic,
        settings.counts_topic, settings.late_topic))
    if missing:
        msg = (f"missing topic(s) on {settings.bootstrap_servers}: {', '.join(missing)}; "
               "create them (locally: python -m dataflow kafka create-topics)")
        raise PipelineError(msg)
    return found[settings.input_topic]


def _summarise(settings: Settings) -> None:
    snap = metrics.snapshot()
    holds = metrics.accounting_holds(snap)
    text = progress.summary_text(snap, holds, metrics.process_id(), metrics.cluster_shape()[0])
    log.info("run_summary", readable=text, accounting_holds=holds, **snap)
    if settings.run_summary_dir is not None:
        metrics.write_summary(settings.run_summary_dir)


class Started(msgspec.Struct, frozen=True):
    """What start-up established: the settings, the input partitions to read and this
    process's claim on its CONSUMER_GROUP (``dataflow.instance_group``)."""

    settings: Settings
    partitions: list[int]
    claim: instance_group.Claim
    new_partitions: frozenset[int] = frozenset()
    plan: Plan | None = None  # exactly-once: where Kafka's transactions left the job

    def ready(self) -> None:
        """The flow is built: conclude the claim (exit 2 on a conflict), announce the run,
        watch for new partitions, report progress, tune the collector."""
        from confluent_kafka.admin import AdminClient

        try:
            self.claim.conclude()
        except PipelineError as exc:
            _fail(str(exc))
        _announce(self.settings, len(self.partitions))

        admin: AdminClient | None = None  # made by the watching thread, off the start-up path

        def partition_count() -> int:
            nonlocal admin
            if admin is None:
                admin = AdminClient(admin_config(self.settings))
            admin.poll(0)  # an admin client's log lines are served by poll() only
            return len(list_partitions(self.settings, self.settings.input_topic, admin))

        lifecycle.watch_partitions(partition_count, self.partitions)
        progress.start(self.settings)
        tune_garbage_collector()


def settings_from_environment() -> Settings:
    """The settings, or exit 2 with one line naming what is wrong."""
    try:
        return Settings.from_env(os.environ)
    except PipelineError as exc:
        _fail(str(exc))


def drawing_only() -> bool:
    """Whether ``python -m bytewax.visualize`` asks for the flow (to draw it, not run it)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return getattr(spec, "name", None) == "bytewax.visualize"


def start_from_environment() -> Started:
    """Read and check everything; exit 2 with a clear line on failure."""
    # First, so that its exit runs after every other exit handler (the instance claim's
    # release, the run summary, the offsets' last commit): atexit runs them in reverse.
    lifecycle.install(lifecycle.committed_restart(recovery_guard.recovery_directory() is not None))
    try:
        settings = Settings.from_env(os.environ)
        check_metrics_port(settings.metrics_address, metrics.process_id())
        logs.configure(settings.log_level, settings.log_format)
        check_client_configs(settings)
        # One running job per CONSUMER_GROUP and recovery directory: the instances group
        # is described while the topics are checked and the flow is built (``ready``).
        claim = instance_group.claim(settings).begin()
        lifecycle.at_any_exit(claim.release)  # any exit leaves the group at once
        partitions = check_topics(settings)
        new_partitions = recovery_guard.check_recovery_state(settings, partitions)
        plan = None
        if settings.exactly_once:
            claim.conclude()  # before prepare() fences the transactional ids of a running job
            plan = exactly_once.prepare(settings, partitions)
    except PipelineError as exc:
        _fail(str(exc))
    return Started(settings, partitions, claim, new_partitions, plan)


def _announce(settings: Settings, partitions: int) -> None:
    """Serve metrics if asked, log ``starting``, and log the run summary at exit."""
    served = None
    if settings.metrics_address:
        try:
            served = metrics.serve(settings.metrics_address)
        except OSError as exc:
            _fail(f"METRICS_ADDRESS: cannot listen on {settings.metrics_address}: {exc}")
    _log_start(settings, partitions, recovery_guard.recovery_directory(), served)
    atexit.register(_summarise, settings)


def _log_start(settings: Settings, partitions: int, recovery: Path | None,
               served: str | None) -> None:
    """``starting``: in words on a console (every setting at debug level), fields in JSON."""
    process, (processes, workers) = metrics.process_id(), metrics.cluster_shape()
    text = describe_start(settings, partitions, process, processes, workers, recovery, served,
                          progress.interval_seconds(settings))
    log.info("starting", readable=text, settings=settings.describe(), process_id=process,
             processes=processes, workers_per_process=workers, metrics_address=served)
    if not logs.json_logs():
        log.debug("settings", **settings.describe())
