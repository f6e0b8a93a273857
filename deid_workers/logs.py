"""Logging as deid users know it: ``MESSAGELEVEL`` and the ``ERROR ``/``WARNING `` prefixes.

deid prints ``ERROR <message>``, ``WARNING <message>`` and ``DEBUG <message>``, and INFO text
bare; people grep for those words, so the CLI keeps them. Library modules only log through
``getLogger(__name__)``; handlers are added here, by the CLI and the worker start-up only.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import IO, Any

from celery.exceptions import Reject

__all__ = ["QUIET", "LEVELS", "level_for", "setup", "DeidFormatter", "JsonFormatter",
           "RequeueTracebackFilter", "QuotedValueFilter", "use_json", "CliHandler",
           "status_line"]

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
    """One JSON object per line, for log shippers (``--log-json``, ``DEID_LOG_JSON``).

    In a worker, records logged while a task runs carry ``task_id`` and ``task_name``, as
    Celery's own task format shows them; Celery's "Task deid.get[<id>] received/succeeded"
    lines get them from their arguments. An exception adds its type and the traceback's code
    lines but never its message, which may quote a header value (a pydicom error, say).
    """

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "process": record.processName,
            "message": record.getMessage(),
        }
        task_id, task_name = _task_of(record)
        if task_id:
            out["task_id"], out["task_name"] = task_id, task_name
        run_id = getattr(record, "run_id", None)
        if run_id:
            out["run_id"] = run_id
        progress = getattr(record, "progress", None)
        if progress is not None:  # deid-submit's progress, as data (progress.py)
            out["progress"] = progress
        if record.exc_info and record.exc_info[0] is not None:
            out["exc_type"] = record.exc_info[0].__name__
            out["traceback"] = "".join(traceback.format_tb(record.exc_info[2])).rstrip()
        return json.dumps(out, default=str)


def _task_of(record: logging.LogRecord) -> tuple[str | None, str | None]:
    """(task id, task name) of the record: its own attributes, its arguments, or the running
    task (looked up only where Celery is already imported, so the CLI never imports it)."""
    task_id = getattr(record, "task_id", None)
    if task_id and task_id != "???":
        return str(task_id), str(getattr(record, "task_name", "") or "")
    args = record.args
    if isinstance(args, Mapping) and "id" in args and "name" in args:
        return str(args["id"]), str(args["name"])
    if "celery" in sys.modules:
        from celery import current_task

        task = current_task if current_task else None
        request = getattr(task, "request", None)
        if request is not None and getattr(request, "id", None):
            return str(request.id), str(getattr(task, "name", "") or "")
    return None, None


class RequeueTracebackFilter(logging.Filter):
    """Drop the traceback Celery logs with a batch it requeues (``Reject(requeue=True)``).

    A batch past its time limit is requeued on purpose and the guard has already said so in
    one line; Celery's WARNING would add a traceback of its own frames to every such requeue.
    The one-line warning stays.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, Reject) and exc.requeue:
            record.exc_info = None
            record.exc_text = None
        return True


class QuotedValueFilter(logging.Filter):
    """Withhold the quoted parts of a record's message: pydicom's warnings quote element
    values (``Invalid value for VR DA: '19991399'``, a birth date), and in a worker they reach
    the log twice, through pydicom's logger and through Celery's capture of Python warnings.
    The rest of the message (which VR, which check) stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        withheld = _QUOTED.sub(_WITHHELD, message)
        if withheld != message:
            record.msg, record.args = withheld, None
        return True


_QUOTED = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"")
_WITHHELD = "'<value withheld>'"

VALUE_QUOTING_LOGGERS = ("pydicom", "py.warnings")
"""Loggers whose messages may quote header values (see :class:`QuotedValueFilter`)."""


def use_json(logger: logging.Logger) -> None:
    """Give every handler of ``logger`` the :class:`JsonFormatter` (worker logging signals)."""
    for handler in logger.handlers:
        if not isinstance(handler, logging.NullHandler):
            handler.setFormatter(JsonFormatter())


class CliHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """deid-submit's handler: a line it writes never lands on the progress bar's line.

    ``status`` is the bar drawn in place on the same terminal (an object with ``clear()`` and
    ``redraw()``, :class:`~deid_workers.progress.Progress`): it is wiped before a line is
    written and drawn again below it, so a log line and the bar never share a line.
    """

    status: Any = None

    def emit(self, record: logging.LogRecord) -> None:
        status = self.status
        if status is not None:
            status.clear()
        super().emit(record)
        if status is not None:
            status.redraw()


@contextmanager
def status_line(status: Any) -> Iterator[None]:
    """Give ``status`` (a bar drawn in place) to the CLI's handler while the block runs."""
    handlers = [h for h in logging.getLogger("deid_workers").handlers
                if isinstance(h, CliHandler)]
    saved = [h.status for h in handlers]
    for handler in handlers:
        handler.status = status
    try:
        yield
    finally:
        for handler, before in zip(handlers, saved):
            handler.status = before


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
    handler = CliHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if log_json else DeidFormatter())
    logger.handlers = [handler]
    logger.setLevel(level_for(message_level))
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.handlers, logger.level, logger.propagate = saved[0], saved[1], saved[2]


logging.getLogger("deid_workers").addHandler(logging.NullHandler())
