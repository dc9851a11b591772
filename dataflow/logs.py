"""Structured logs: JSON in containers, readable on a terminal (structlog)."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


def configure(level: str = "info", fmt: str = "auto") -> None:
    """Set up structlog once for the process; ``fmt`` is json, console or auto."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (structlog.processors.JSONRenderer() if use_json
                     else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)


# librdkafka lines that are part of a normal start and that it retries by itself
# (a fresh broker still loading its coordinators): debug, not a warning.
_TRANSIENT = ("Coordinator load in progress", "Coordinator not available",
              "Not coordinator")


class _LibrdkafkaHandler(logging.Handler):
    """Hands librdkafka's log lines (via confluent-kafka's ``logger``) to structlog."""

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        if len(args) == 3:  # confluent-kafka logs ("%s [%s] %s", facility, client, text)
            facility, client, text = (str(a) for a in args)
        else:
            facility, client, text = "", "", record.getMessage()
        level = record.levelno
        if level >= logging.WARNING and any(t in text for t in _TRANSIENT):
            level = logging.DEBUG
        structlog.get_logger("librdkafka").log(level, text, facility=facility, client=client)


def kafka_logger() -> logging.Logger:
    """A logging.Logger for a confluent-kafka client's ``logger`` property.

    librdkafka's lines (``%4|...|GETPID|...``) then go through structlog, at
    their own level, filtered by LOG_LEVEL, instead of raw to stderr.
    """
    logger = logging.getLogger("dataflow.librdkafka")
    if not logger.handlers:
        logger.addHandler(_LibrdkafkaHandler())
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
    return logger
