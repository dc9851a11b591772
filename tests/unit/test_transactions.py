"""Which transactional producer a sink partition gets."""

from __future__ import annotations

from typing import Any

import pytest

from dataflow import transactions
from dataflow.settings import Settings


class _Producer:
    """Stands in for TransactionalWriter: counts the producers made and initialised."""

    made = 0

    def __init__(self, *args: Any) -> None:
        _Producer.made += 1
        self.ready_calls = 0

    def ready(self) -> None:
        self.ready_calls += 1


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> type[_Producer]:
    monkeypatch.setattr(transactions, "TransactionalWriter", _Producer)
    monkeypatch.setattr(transactions, "_FENCED", {})
    _Producer.made = 0
    return _Producer


def test_a_one_process_job_writes_with_the_producers_it_fenced(fake: type[_Producer]) -> None:
    """fence(keep=True): each sink partition gets its fenced, initialised producer, once."""
    settings = Settings()
    transactions.fence(settings, ["p0", "shards-0"], keep=True)
    first = transactions.writer(settings, "p0")
    assert fake.made == 2 and first.ready_calls == 1  # type: ignore[attr-defined]
    assert transactions.writer(settings, "p0") is not first  # a second build gets a new one
    assert fake.made == 3


def test_a_cluster_lets_the_fenced_producers_go(fake: type[_Producer]) -> None:
    """fence(keep=False): another process fences every id too, so none is kept."""
    settings = Settings()
    transactions.fence(settings, ["p0"])
    transactions.writer(settings, "p0")
    assert fake.made == 2
