"""A write Kafka refuses stops the job with a clear error; after the fix, recovery loses nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

from tests.integration.jobs import (
    Job,
    dead_sources,
    job_env,
    job_topics,
    processed_sources,
    stop_leftovers,
)
from tests.integration.test_flow_kafka import BAD
from tests.kafka_io import consume_all, produce_all
from tests.records import login_bytes

SMALL = "200"  # bytes: less than one processed record, so the broker refuses every one
BAD_FIRST = 3  # the first good record is at offset 3: the error must name the source offset


@pytest.fixture(autouse=True)
def _no_leftover_jobs() -> Iterator[None]:
    yield
    stop_leftovers()


def set_max_message_bytes(admin: AdminClient, topic: str, value: str) -> None:
    """Change one topic's max.message.bytes (incremental: other settings stay)."""
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("max.message.bytes", value,
                    incremental_operation=AlterConfigOpType.SET)])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)


def test_record_too_large_stops_the_job_then_recovery_after_the_fix_loses_nothing(
    kafka_bootstrap: str, admin: AdminClient, make_topic: Callable[..., str], tmp_path: Path,
) -> None:
    """RecordTooLarge: exit 1 naming topic and source offset; fixed topic + restart: all there."""
    records = [(b"bad", value, 0) for value, _ in BAD[:BAD_FIRST]]
    records += [(f"user-{i}".encode(), login_bytes(user_id=f"user-{i}"), 0) for i in range(20)]
    input_topic = make_topic()
    produce_all(kafka_bootstrap, input_topic, records)
    topics = job_topics(make_topic, input_topic, output_partitions=1,
                        output_config={"max.message.bytes": SMALL})
    env = job_env(kafka_bootstrap, topics, tmp_path / "summaries")

    job = Job.start(env, tmp_path / "job.log", recovery=tmp_path / "rec")
    assert job.wait(120) == 1, job.tail()
    expected = (f"write to topic '{topics['output']}' (source {input_topic} partition 0 "
                f"offset {BAD_FIRST}) failed: Broker: Message size too large")
    assert expected in job.text(), job.tail()
    assert "login-dataflow: error: DeliveryError: " in job.text()
    assert consume_all(kafka_bootstrap, topics["output"]) == []

    set_max_message_bytes(admin, topics["output"], "1048588")
    job = Job.start(env, tmp_path / "job.log", recovery=tmp_path / "rec")
    assert job.wait(120) == 0, job.tail()
    processed = processed_sources(consume_all(kafka_bootstrap, topics["output"]))
    assert sorted(processed) == [(0, o) for o in range(BAD_FIRST, len(records))]
    assert set(dead_sources(consume_all(kafka_bootstrap, topics["dlq"]))) == {
        (0, o) for o in range(BAD_FIRST)}
