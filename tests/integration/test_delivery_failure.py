"""A write Kafka refuses stops the job with a clear error; after the fix, recovery loses nothing."""

from __future__ import annotations

import re
import time
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

from dataflow.localkafka import LocalKafka
from tests.integration.jobs import (
    Job,
    Watcher,
    create_topics,
    job_env,
    job_topics,
    own_kafka,
    stop_leftovers,
    wait_for,
)
from tests.integration.outcomes import (
    BAD,
    check_nothing_lost,
    dead_sources,
    login_stream,
    processed_sources,
    read_outputs,
)
from tests.kafka_io import consume_all, produce_all
from tests.records import login_bytes

DELIVERY_TIMEOUT_MS = 5000
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


@pytest.fixture(scope="module")
def lone_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A single broker of this module's own, which its test stops and starts again."""
    with own_kafka(tmp_path_factory.mktemp("kafka-delivery")) as kafka:
        yield kafka


@pytest.mark.slow
def test_broker_gone_past_delivery_timeout_stops_the_job_with_a_clear_error(
    lone_kafka: LocalKafka, tmp_path: Path,
) -> None:
    """Broker down past DELIVERY_TIMEOUT_MS: exit 1, 'Message timed out'; after it: none lost."""
    bootstrap = lone_kafka.bootstrap
    records, expect = login_stream(120_000)
    input_topic = create_topics(bootstrap, partitions=3)[0]
    produce_all(bootstrap, input_topic, records)

    def make(partitions: int = 1, config: dict[str, str] | None = None) -> str:
        return create_topics(bootstrap, partitions=partitions, config=config)[0]

    topics = job_topics(make, input_topic)
    env = job_env(bootstrap, topics, tmp_path / "summaries", SOURCE_BATCH_SIZE="5",
                  DELIVERY_TIMEOUT_MS=str(DELIVERY_TIMEOUT_MS))
    watcher = Watcher(bootstrap, topics)
    try:
        job = Job.start(env, tmp_path / "job.log", recovery=tmp_path / "rec")

        def under_way() -> bool:
            assert job.process.poll() is None, job.tail()
            return watcher.count() >= 0.03 * expect.written

        # At 3% most of the work remains: far more than the broker takes to stop.
        wait_for(under_way, 120, "the job to write 3% of its output", every=0.02)
        lone_kafka.stop()
        stopped_at = time.monotonic()
        assert watcher.count() < expect.written - 2000, "the job got too far before the stop"
        assert job.wait(120) == 1, job.tail()
        waited = time.monotonic() - stopped_at
        text = job.text()
        assert "login-dataflow: error: DeliveryError: " in text
        # A processed record or dead letter names its source; a count or late record has
        # none (it stands for many events), so its topic alone is named.
        source = rf"\(source {input_topic} partition [0-2] offset [0-9]+\) "
        late_or_count = "|".join((topics["counts"], topics["late"]))
        assert re.search(rf"write to topic '(test-[0-9a-f]+' {source}|({late_or_count})' )"
                         "failed: Local: Message timed out", text), text
        assert waited > DELIVERY_TIMEOUT_MS / 1000 / 2  # it waited for the broker, not at once

        lone_kafka.start()
        watcher.mark()
        job = Job.start(env, tmp_path / "job.log", recovery=tmp_path / "rec")
        assert job.wait(120) == 0, job.tail()
        watcher.mark()
    finally:
        watcher.close()
    check_nothing_lost(read_outputs(bootstrap, topics, watcher.marks), expect, input_topic)
