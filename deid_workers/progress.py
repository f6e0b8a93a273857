"""The progress bar ``deid-submit`` draws on stderr while it waits, fed from the store's counters.

The producer never sees files, only the counters workers commit per batch, so the bar advances
batch by batch. It shows every stage of the run with done/total, a bar for the stage now
running, that stage's rate (files/s since it started, not since the run started, so a put stage
is not dragged down by the time get took), an ETA once the total is known, and how many
warnings about files the workers gave so far (:mod:`deid_workers.run.notices`).

Where it goes: redrawn in place on a terminal (the CLI's log lines are written above it,
:class:`~deid_workers.logs.CliHandler`); a line every few seconds elsewhere; with
``--log-json``, a JSON log record (``progress``: the stages' counts) every few seconds, so
stderr stays one JSON object per line.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Mapping
from typing import IO, Any

from .run.notices import counts_of
from .run.totals import StageTotal, stage_totals

__all__ = ["Progress", "current", "render"]

BAR_WIDTH = 24
POLL_SECONDS = 0.5


def current(all_stages: list[StageTotal]) -> StageTotal:
    """The stage the run is in: the last one that has started, else the first."""
    started = [s for s in all_stages if s.done]
    # ocr and clean trail put (clean trails ocr): follow the stage before them until every
    # one of its batches is in
    while (len(started) > 1 and started[-1].name in ("ocr", "clean")
           and not started[-1].final):
        started.pop()
    return started[-1] if started else all_stages[0]


def render(all_stages: list[StageTotal], stage_elapsed: float, warnings: int = 0) -> str:
    """``get 1003/1003  put [######------] 347/1000  131.7 files/s  ETA 0:00:04``, then
    ``  3 warnings`` once the workers gave some."""
    now = current(all_stages)
    parts = []
    for s in all_stages:
        total = "?" if s.total is None else f"{s.total}{'' if s.final else '+'}"
        text = f"{s.name} {s.done}/{total}"
        if s is now and s.total:
            filled = min(BAR_WIDTH, BAR_WIDTH * s.done // s.total)
            text = f"{s.name} [{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {s.done}/{total}"
        parts.append(text)
    rate = now.done / stage_elapsed if stage_elapsed > 0 else 0.0
    eta = ""
    if rate > 0 and now.final and now.total is not None and now.total >= now.done:
        eta = f"  ETA {_hms((now.total - now.done) / rate)}"
    said = f"  {warnings} warning{'' if warnings == 1 else 's'}" if warnings else ""
    return f"{'  '.join(parts)}  {rate:.1f} {now.unit}/s{eta}{said}"


class Progress:
    """Draws :func:`render` on ``stream``: redrawn in place on a terminal; elsewhere (CI logs)
    a line at most every ``interval`` seconds, so logs stay readable; with ``log_json``, a log
    record of the ``deid_workers.progress`` logger instead of a line (same pace). ``clock``
    gives the time in seconds (monotonic)."""

    def __init__(self, stream: IO[str] | None = None, *, interval: float = 10.0,
                 log_json: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.log_json = log_json
        self.tty = not log_json and bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval
        self.clock = clock
        self._stage = ""
        self._stage_start = clock()
        self._last_print = float("-inf")
        self._drawn = False
        self._text = ""
        self._last_poll = float("-inf")

    def update(self, rec: Mapping[str, Any], counters: Mapping[str, int]) -> None:
        now = self.clock()
        all_stages = stage_totals(rec, counters)
        name = current(all_stages).name
        if name != self._stage:
            self._stage, self._stage_start = name, now
        warnings = sum(counts_of(counters).values())
        text = render(all_stages, now - self._stage_start, warnings)
        if self.tty:
            self._text = text
            self.redraw()
        elif now - self._last_print >= self.interval:
            self._last_print = now
            if self.log_json:
                data = {s.name: {"done": s.done, "total": s.total, "final": s.final}
                        for s in all_stages}
                logging.getLogger("deid_workers.progress").info(
                    "%s", text, extra={"progress": dict(data, warnings=warnings)})
            else:
                self.stream.write(text + "\n")
                self.stream.flush()

    def clear(self) -> None:
        """Wipe the bar from its line (a log line is about to be written there)."""
        if self._drawn:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self._drawn = False

    def redraw(self) -> None:
        """Draw the bar again, in place (on a terminal only)."""
        if self.tty and self._text:
            self.stream.write("\r\x1b[2K" + self._text)
            self.stream.flush()
            self._drawn = True

    def poll(self, store: Any) -> None:
        """:meth:`update` from ``store`` (a RunStore), at most every :data:`POLL_SECONDS`.

        For a caller busy with other work between calls: the producer walking the input or
        reading an ids file, which for an archive takes minutes before it can wait on the run.
        """
        now = self.clock()
        if now - self._last_poll >= POLL_SECONDS:
            self._last_poll = now
            self.update(store.record(), store.counters())

    def close(self) -> None:
        """End the bar's line (it stays on screen, complete); nothing is redrawn after."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
        self._text = ""


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
