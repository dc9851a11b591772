"""Errors of the local broker manager, each mapped to one exit code by the CLI.

Every error carries a one-line reason (its message) and optionally ``details``:
lines to show after it, such as the last lines of Maven's output or of the
broker log, so a failed start explains itself without a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence

from dataflow.errors import LocalKafkaError


class LocalKafkaFailure(LocalKafkaError):
    """A LocalKafkaError with optional detail lines (log or tool output tails)."""

    def __init__(self, msg: str, details: Sequence[str] = ()) -> None:
        super().__init__(msg)
        self.details = tuple(details)


class NotInstalledError(LocalKafkaFailure):
    """Java (17 or newer) or Maven, needed to run or fetch Kafka, is missing."""


class DownloadError(LocalKafkaFailure):
    """Maven could not resolve the Kafka jars into the cache folder."""


class LayoutError(LocalKafkaFailure):
    """Options conflict with each other or with the cluster recorded in the data dir."""


class PortInUseError(LocalKafkaFailure):
    """A port the broker needs is already taken by another program."""


class BrokerStartError(LocalKafkaFailure):
    """The broker process exited or did not answer in time during start-up."""


class BrokerStopError(LocalKafkaFailure):
    """A broker process could not be ended."""


class NotRunningError(LocalKafkaFailure):
    """The command needs a running local broker and there is none."""
