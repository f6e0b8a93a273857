"""Logging as deid users know it: ``MESSAGELEVEL`` and the ``ERROR ``/``WARNING `` prefixes.

deid prints ``ERROR <message>``, ``WARNING <message>`` and ``DEBUG <message>``, and INFO text
bare; people grep for those words, so the CLI keeps them. Library modules only log through
``getLogger(__name__)``; handlers are added here, by the CLI and the worker start-up only.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

__all__ = ["QUIET", "LEVELS", "level_for", "setup", "DeidFormatter", "JsonFormatter"]

QUIET = logging.CRITICAL + 10
"""A level above every message: MESSAGELEVEL=QUIET silences all logging."""

LEVELS = {
    "ABORT": logging.CRITICAL, "CRITICAL": logging.CRITICAL, "FLAG": logging.CRITICAL,
    "ERROR": logging.ERROR, "WARNING": logging.WARNING, "LOG": logging.WARNING,
    "QUIET": QUIET, "INFO": logging.INFO, "VERBOSE": logging.DEBUG, "VERBOSE1": logging.DEBUG,
    "VERBOSE2": logging.DEBUG, "VERBOSE3": logging.DEBUG, "DEBUG": logging.DEBUG,
}
"""deid's level names mapped to logging levels (VERBOSE* is more than INFO, so DEBUG)."""

_NUMERIC = {-5: "ABORT", -4: "CRITICAL", -3: "ERROR", -2: "WARNING", -1: "LOG", 0: "QUIET",
            1: "INFO", 2: "VERBOSE", 3: "VERBOSE", 4: "VERBOSE", 5: "DEBUG"}


def level_for(message_level: str | int | None) -> int:
    """A logging level for deid's ``MESSAGELEVEL`` (name or number); unknown names mean INFO."""
    if message_level is None or message_level == "":
        return logging.INFO
    text = str(message_level).strip().upper()
    try:
        number = int(text)
    except ValueError:
        if text.startswith("VERBOSE"):
            return logging.DEBUG
        return LEVELS.get(text, logging.INFO)
    number = max(-5, min(5, number))
    return LEVELS[_NUMERIC[number]]


class DeidFormatter(logging.Formatter):
    """``WARNING message`` / ``ERROR message``; INFO lines bare, as deid prints them."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info and record.levelno <= logging.DEBUG:
            message += "\n" + self.formatException(record.exc_info)
        if record.levelno == logging.INFO:
            return message
        name = "ERROR" if record.levelno >= logging.ERROR else record.levelname
        return f"{name} {message}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers (``DEID_LOG_JSON``)."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"time": record.created, "level": record.levelname,
                           "logger": record.name, "message": record.getMessage()})


@contextmanager
def setup(message_level: str | int | None, *, log_json: bool = False,
          stream: IO[str] | None = None) -> Iterator[logging.Handler]:
    """Send ``deid_workers`` logs to stderr at the level deid's ``MESSAGELEVEL`` names.

    A context manager: on exit the package logger gets back its handlers, level and
    propagation, so ``main`` called many times in one process (tests, notebooks) leaves no
    handler behind on a closed stream.
    """
    logger = logging.getLogger("deid_workers")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if log_json else DeidFormatter())
    logger.handlers = [handler]
    logger.setLevel(level_for(message_level))
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.handlers, logger.level, logger.propagate = saved[0], saved[1], saved[2]


logging.getLogger("deid_workers").addHandler(logging.NullHandler())
