"""The engine's warnings about one file, said in deid's words and handed to whoever collects them.

Why not only a log line: the engine runs in worker processes, whose logs a user of
``deid-submit`` does not see (an embedded worker's log is a temp file). So each warning is
logged as before *and* given, with its kind, to the sink the caller made active in this thread
(:func:`collecting`), which carries it back to the user through the store. Without a sink (the
Python API, tests) only the log line is written.

Kinds (the words a summary counts them under live in :mod:`deid_workers.run.notices`):

- ``not_done``: a REPLACE or JITTER whose value is missing, or a date JITTER cannot shift: the
  field was removed instead;
- ``unfit_vr``: a value that does not fit its field's VR: the field was blanked;
- ``kept``: an element the engine reports and leaves as it was (JITTER of a value it cannot
  read as a date);
- ``no_func``: a ``func:NAME`` value whose function the lookup does not hold (deid-submit
  has none to give: only the Python API's ``funcs`` do), so its action does nothing or, for
  REPLACE, removes the field (a ``not_done`` follows);
- ``empty_values``: a ``values:NAME`` selector whose list is empty for this file, so the
  action selects nothing.

A warning's text names the field by keyword or tag path and the file by its path relative to
the input, never a value: it is shown on terminals, in summaries and in the run log.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["KINDS", "Sink", "warn", "collecting"]

KINDS = ("not_done", "unfit_vr", "kept", "no_func", "empty_values")
"""The kinds of warning the engine gives."""

Sink = Callable[[str, str], None]
"""``sink(kind, text)``: told about one warning of the file being processed."""

_local = threading.local()


def warn(logger: logging.Logger, kind: str, message: str, *args: Any) -> None:
    """Log ``message % args`` at WARNING and hand it, with ``kind``, to this thread's sink."""
    logger.warning(message, *args)
    sink: Sink | None = getattr(_local, "sink", None)
    if sink is not None:
        sink(kind, message % args if args else message)


class collecting:  # noqa: N801 - used as a context manager, named like one
    """``with collecting(sink):`` makes ``sink`` receive this thread's warnings until the block
    ends (nests: the outer sink is back afterwards). A plain class, not a generator: it wraps
    every file a worker processes, and costs two attribute writes."""

    __slots__ = ("sink", "outer")

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.outer: Sink | None = None

    def __enter__(self) -> None:
        self.outer = getattr(_local, "sink", None)
        _local.sink = self.sink

    def __exit__(self, *exc: Any) -> None:
        _local.sink = self.outer
