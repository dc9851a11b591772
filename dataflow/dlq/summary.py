"""What `dlq summary` counts: reasons, sources, failure times, frequent details."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dataflow.dlq.records import DeadLetter

# Distinct detail messages kept; beyond that, new ones are counted together.
MAX_DETAILS = 10_000
OTHER_DETAILS = "(other details)"


def source_name(record: DeadLetter) -> str:
    """``topic[partition]`` the record came from, "?" where a header is missing."""
    topic = record.source_topic or "?"
    partition = record.source_partition
    return f"{topic}[{'?' if partition is None else partition}]"


@dataclass(slots=True)
class Summary:
    """Counts over a set of dead letters."""

    topic: str
    total: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    by_source: Counter[str] = field(default_factory=Counter)
    by_scheme: Counter[str] = field(default_factory=Counter)
    details: Counter[str] = field(default_factory=Counter)
    replayed: int = 0
    first_failure: datetime | None = None
    last_failure: datetime | None = None

    def add(self, record: DeadLetter) -> None:
        """Count one dead letter."""
        self.total += 1
        self.by_reason[record.reason] += 1
        self.by_source[source_name(record)] += 1
        self.by_scheme[record.scheme] += 1
        detail = record.detail
        if detail not in self.details and len(self.details) >= MAX_DETAILS:
            detail = OTHER_DETAILS
        self.details[detail] += 1
        if record.replay_count:
            self.replayed += 1
        failed_at = record.failed_at
        if failed_at is not None:
            if self.first_failure is None or failed_at < self.first_failure:
                self.first_failure = failed_at
            if self.last_failure is None or failed_at > self.last_failure:
                self.last_failure = failed_at

    def as_dict(self, top: int) -> dict[str, Any]:
        """Machine-readable form (``--json``): counts sorted by size, times ISO-8601."""
        return {
            "topic": self.topic,
            "total": self.total,
            "by_reason": dict(self.by_reason.most_common()),
            "by_source": dict(self.by_source.most_common()),
            "by_scheme": dict(self.by_scheme.most_common()),
            "first_failure": self.first_failure.isoformat() if self.first_failure else None,
            "last_failure": self.last_failure.isoformat() if self.last_failure else None,
            "replayed_before": self.replayed,
            "top_details": [{"detail": d, "count": n} for d, n in self.details.most_common(top)],
        }


def summarize(topic: str, records: Iterable[DeadLetter]) -> Summary:
    """A Summary of every record."""
    summary = Summary(topic)
    for record in records:
        summary.add(record)
    return summary
