"""The progress bar ``deid-submit`` draws on stderr while it waits, fed from the store's counters.

The producer never sees files, only the counters workers commit per batch, so the bar advances
batch by batch. It shows every stage of the run with done/total, a bar for the stage now
running, that stage's rate (files/s since it started, not since the run started, so a put stage
is not dragged down by the time get took) and an ETA once the total is known.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import IO, Any

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


def render(all_stages: list[StageTotal], stage_elapsed: float) -> str:
    """``get 1003/1003  put [######------] 347/1000  131.7 files/s  ETA 0:00:04``."""
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
    return f"{'  '.join(parts)}  {rate:.1f} {now.unit}/s{eta}"


class Progress:
    """Draws :func:`render` on ``stream``: redrawn in place on a terminal; elsewhere (CI logs)
    a line at most every ``interval`` seconds, so logs stay readable. ``clock`` gives the time
    in seconds (monotonic)."""

    def __init__(self, stream: IO[str] | None = None, *, interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval
        self.clock = clock
        self._stage = ""
        self._stage_start = clock()
        self._last_print = 0.0
        self._drawn = False
        self._last_poll = float("-inf")

    def update(self, rec: Mapping[str, Any], counters: Mapping[str, int]) -> None:
        now = self.clock()
        all_stages = stage_totals(rec, counters)
        name = current(all_stages).name
        if name != self._stage:
            self._stage, self._stage_start = name, now
        text = render(all_stages, now - self._stage_start)
        if self.tty:
            self.stream.write("\r\x1b[2K" + text)
            self.stream.flush()
            self._drawn = True
        elif now - self._last_print >= self.interval:
            self.stream.write(text + "\n")
            self.stream.flush()
            self._last_print = now

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
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
