"""Structured logs: JSON in containers, readable on a terminal (structlog).

A log call may pass ``readable="..."``: on a console that text is the line
(``starting``, ``progress``: words a person reads), in JSON it is dropped and the
line keeps its fields (what a machine reads). Lines go to whatever ``sys.stderr``
is when they are written, so a progress bar that holds the last line of a
terminal (``dataflow.terminal``) sees every line before it is printed.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


_json = True  # what configure() chose


def configure(level: str = "info", fmt: str = "auto") -> None:
    """Set up structlog once for the process; ``fmt`` is json, console or auto."""
    global _json  # one log format per process
    _json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (structlog.processors.JSONRenderer() if _json
                     else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _drop_readable if _json else _only_readable,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )


def json_logs() -> bool:
    """Whether this process logs JSON (else readable console lines)."""
    return _json


def _stderr_logger(*_args: Any) -> structlog.PrintLogger:
    return structlog.PrintLogger(sys.stderr)  # the current one: see the module docstring


def _drop_readable(logger: Any, method: str,
                   event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    event.pop("readable", None)
    return event


def _only_readable(logger: Any, method: str,
                   event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    text = event.pop("readable", None)
    if text is None:
        return event
    return {"timestamp": event.get("timestamp"), "level": event.get("level"),
            "event": f"{event.get('event')}: {text}"}


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
