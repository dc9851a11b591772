"""A local Apache Kafka broker (or three-node cluster) for development and tests.

``python -m dataflow kafka start|stop|status|create-topics`` on the command line
(``main``), ``LocalKafka`` from Python (test fixtures, broker-failure tests).
See docs/local-kafka.md.
"""

from dataflow.localkafka.cli import main
from dataflow.localkafka.cluster import ClusterStatus, LocalKafka
from dataflow.localkafka.layout import KAFKA_VERSION, Layout
from dataflow.localkafka.node import NodeStatus

__all__ = ["KAFKA_VERSION", "ClusterStatus", "Layout", "LocalKafka", "NodeStatus", "main"]
