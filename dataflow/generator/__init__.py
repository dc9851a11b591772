"""The login event generator: `python -m dataflow generate`.

``EventFactory`` makes the events (deterministic for a seed), ``run_generator``
sends them to Kafka, ``main`` is the command line.
"""

from dataflow.generator.cli import main
from dataflow.generator.events import (
    EXPECTED_REASONS,
    KINDS,
    EventFactory,
    GeneratorError,
    Shares,
    TimeShape,
)
from dataflow.generator.producing import GeneratorOptions, GeneratorSummary, run_generator

__all__ = [
    "EXPECTED_REASONS",
    "KINDS",
    "EventFactory",
    "GeneratorError",
    "GeneratorOptions",
    "GeneratorSummary",
    "Shares",
    "TimeShape",
    "main",
    "run_generator",
]
