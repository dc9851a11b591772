"""Start-up of the job under ``python -m bytewax.run``: settings, checks, summary at exit.

A bad setting, an unreachable broker or a missing topic ends the process with
a one-line message and exit code 2, not a traceback.
"""

from __future__ import annotations

import atexit
import os
import sys
from typing import NoReturn

from bytewax.dataflow import Dataflow

from dataflow import instances, logs, metrics, recovery_guard
from dataflow.errors import PipelineError
from dataflow.kafka_config import check_client_configs
from dataflow.kafka_source import describe_partitions
from dataflow.runner import check_metrics_port
from dataflow.settings import Settings

log = logs.get_logger(__name__)


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
    log.info("run_summary", accounting_holds=metrics.accounting_holds(snap), **snap)
    if settings.run_summary_dir is not None:
        metrics.write_summary(settings.run_summary_dir)


def flow_from_environment() -> Dataflow:
    """Read and check everything, then build the flow; exit 2 with a clear line on failure."""
    from dataflow.flow import build_flow, tune_garbage_collector

    try:
        settings = Settings.from_env(os.environ)
        check_metrics_port(settings.metrics_address, metrics.process_id())
        logs.configure(settings.log_level, settings.log_format)
        check_client_configs(settings)
        # One running job per CONSUMER_GROUP and recovery directory; the instances group
        # is described while the topics are checked.
        with instances.claim(settings) as claim:
            partitions = check_topics(settings)
        atexit.register(claim.release)  # a clean exit leaves the group at once
        recovery_guard.check_recovery_state(settings, partitions)
    except PipelineError as exc:
        _fail(str(exc))
    log.info("starting", settings=settings.describe(),
             process_id=metrics.process_id())
    if settings.metrics_address:
        try:
            log.info("metrics_endpoint", address=metrics.serve(settings.metrics_address))
        except OSError as exc:
            _fail(f"METRICS_ADDRESS: cannot listen on {settings.metrics_address}: {exc}")
    atexit.register(_summarise, settings)
    flow = build_flow(settings, partitions=partitions)
    tune_garbage_collector()
    return flow
