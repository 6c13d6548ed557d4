"""Structured logging, configured once: JSON lines under systemd, a console renderer on a TTY."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


# The level is read at every call, not baked into the loggers: loggers bound before a
# SIGHUP keep their processors, and a new level must still reach them.
_threshold = [logging.INFO]


def _below_threshold(
    _logger: Any, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    if _LEVELS.get(method, logging.INFO) < _threshold[0]:
        raise structlog.DropEvent
    return event


def configure(level: str = "info", *, json: bool | None = None, cache: bool = True) -> None:
    """Sets up structlog on stderr; `json` defaults to "stderr is not a terminal". Calling
    it again changes the level of every logger, also those bound before."""
    _threshold[0] = _LEVELS[level]
    if json is None:
        json = not sys.stderr.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            _below_threshold,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=cache,
    )


def get_logger(**context: Any) -> Any:
    return structlog.get_logger().bind(**context)
