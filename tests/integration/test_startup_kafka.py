"""Start-up against the real broker: the topic check and the partition readers' start offsets."""

from __future__ import annotations

from collections.abc import Callable

from dataflow.kafka_source import describe_partitions
from dataflow.settings import Settings


def test_describe_partitions_lists_partitions_and_names_missing_topics_in_order(
    kafka_bootstrap: str, make_topic: Callable[..., str],
) -> None:
    """One call gives each existing topic's partition ids and the missing ones, as asked."""
    three, one = make_topic(3), make_topic(1)
    found, missing = describe_partitions(Settings(bootstrap_servers=kafka_bootstrap),
                                         [three, "no-such-b", one, "no-such-a", three])
    assert found == {three: [0, 1, 2], one: [0]}
    assert missing == ["no-such-b", "no-such-a"]
