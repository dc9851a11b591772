"""The offsets committer's client lives as long as the sink partitions that commit through it."""

from __future__ import annotations

from dataflow.offsets import OffsetCommitter
from dataflow.settings import Settings


def test_the_last_sink_partition_to_close_closes_the_committers_client() -> None:
    """Two partitions hold it; its consumer closes when the second lets go, not before (a
    run inside a longer process, such as pytest, leaves no client reconnecting)."""
    committer = OffsetCommitter(Settings(bootstrap_servers="127.0.0.1:9"))
    committer.hold()
    committer.hold()
    committer.group_metadata()  # opens the client, as the first commit does
    committer.release()
    assert committer._consumer is not None
    committer.release()
    assert committer._consumer is None
