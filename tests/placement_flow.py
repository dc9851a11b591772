"""The job's flow with list-backed input partitions and sinks that note where they run.

``python -m bytewax.run tests.placement_flow:flow`` on several processes and workers
writes one line per partition built (``source 3 <pid> <thread>`` / ``sink 3 ...``)
to $PLACEMENT_DIR/<pid>.txt, so a test can compare where the source and the sink
partition of each input partition run. Nothing here needs Kafka.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from bytewax.outputs import StatefulSinkPartition

from dataflow.flow import build_flow
from dataflow.kafka_sink import KafkaSink, counts_sink
from dataflow.settings import Settings
from dataflow.source import LoginSource
from tests.records import FakeRecord, ListReader, login_bytes

PARTITIONS = int(os.environ.get("PLACEMENT_PARTITIONS", "12"))


def _note(kind: str, partition: str) -> None:
    path = Path(os.environ["PLACEMENT_DIR"]) / f"{os.getpid()}.txt"
    with path.open("a") as out:
        out.write(f"{kind} {partition} {os.getpid()} {threading.get_ident()}\n")


class _Writer:
    """Takes what the sink gives and confirms at once (nothing to write to)."""

    def make_room(self) -> None:
        pass

    def write(self, records: Any) -> None:
        pass

    def check(self) -> None:
        pass

    def confirm(self) -> None:
        pass

    def close(self) -> None:
        pass


class _Writers:
    def get(self) -> _Writer:
        return _Writer()


class _Source(LoginSource):
    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> Any:
        _note("source", for_part)
        return super().build_part(step_id, for_part, resume_state)


def _noted(for_part: str) -> Any:
    _note("sink", for_part)
    return _Partition()


class _Partition(StatefulSinkPartition[Any, None]):
    def write_batch(self, items: list[Any]) -> None:
        pass

    def snapshot(self) -> None:
        pass


SETTINGS = Settings()
RECORDS = {p: [FakeRecord(login_bytes(), _partition=p, _offset=0)] for p in range(PARTITIONS)}
SOURCE = _Source(SETTINGS, lambda _s, p, resume: ListReader(RECORDS[p], 10, resume or 0),
                 partitions=list(RECORDS))
flow = build_flow(SETTINGS, SOURCE, KafkaSink(SOURCE.list_parts, _noted),
                  counts_sink(SETTINGS, _Writers()))  # type: ignore[arg-type]
