"""One root exception type for the project, with short subclasses.

Messages are built before raising and name the step, topic, partition and
offset where they apply, so a log line says what broke and where.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:  # imported when used: `python -m dataflow run` starts 35 ms sooner without it
    from confluent_kafka import KafkaException


# Exit codes of the job's processes: 2 a bad setting or a refused start, 3 the input topic
# gained partitions and the process could not start itself again (start it again),
# 130 and 143 a stop asked by SIGINT and SIGTERM.
EXIT_SETTINGS = 2
EXIT_PARTITIONS_ADDED = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


def kafka_reason(exc: KafkaException) -> str:
    """The text of a KafkaException's KafkaError, without its repr wrapping."""
    from confluent_kafka import KafkaError

    error = exc.args[0] if exc.args else None
    return str(error.str()) if isinstance(error, KafkaError) else str(exc)


class PipelineError(Exception):
    """Root of every error this project raises on purpose; ``exit_code``: the process's
    exit code when one ends it (printed as one line by ``dataflow.lifecycle``)."""

    exit_code: ClassVar[int] = 1


class SettingsError(PipelineError):
    """A setting read from the environment is missing or invalid."""


class DeliveryError(PipelineError):
    """Kafka did not confirm a write; the job must stop rather than lose it."""


class SourceError(PipelineError):
    """The Kafka source cannot read its topic (missing topic, fatal consumer error)."""


class MissingTopicError(SourceError):
    """A topic the job or a tool needs does not exist on the cluster."""


class TopicError(PipelineError):
    """A topic could not be created, or Kafka did not answer while creating it."""


class LocalKafkaError(PipelineError):
    """The local broker manager could not do what it was asked."""


class RecoveryStateError(PipelineError):
    """The recovery state was written with other settings, another layout or another topic."""


class ClusterAddressError(PipelineError):
    """Bytewax could not set up this process's cluster connections (its port is taken, or
    something that is no peer connected to it): a start refused."""

    exit_code = EXIT_SETTINGS


class InstanceConflictError(PipelineError):
    """Another running job uses this job's CONSUMER_GROUP or recovery directory."""
