"""Read a batch's files a window ahead of the one being written.

Why: put needs each file's ids from Redis, keyed by the file's (entity, item), and those are
known only once the file is read. Asking file by file costs a round trip each, a large share
of a put batch of small files (benchmarks/measurements.md). Reading a window of files first lets
the ids of the whole window come in one round trip.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from celery.exceptions import SoftTimeLimitExceeded

__all__ = ["ReadAhead", "WINDOW", "BUDGET"]

T = TypeVar("T")

WINDOW = 16
"""Files read ahead: enough to fetch a batch's ids in a few round trips, few enough to keep
a window's datasets small (chosen by measurement: benchmarks/measurements.md)."""

BUDGET = 8 << 20
"""Bytes of input read ahead at most: 16 CT slices fit, a big multi-frame file is read alone."""


@dataclass(frozen=True)
class _Failed:
    exc: Exception


class ReadAhead(Generic[T]):
    """``take(rel)`` gives ``read(rel)``, reading ``rel`` and the files after it first.

    Files are read in the order of ``paths``, ``window`` at a time, fewer when their sizes
    (``weigh(rel)``) reach ``budget`` bytes: a window's datasets are all in memory at once.
    ``then`` sees each window's results before any of them is taken (put fetches their ids
    there). A file whose read raised raises the same exception when it is taken, so the
    batch's guard blames that file, not the one that happened to start the window. With
    ``window`` 1 every file is read when it is taken: the guard's careful mode, which must know
    the file a crash happened on.
    """

    def __init__(self, paths: Sequence[str], read: Callable[[str], T], window: int = WINDOW,
                 then: Callable[[list[T]], object] | None = None,
                 weigh: Callable[[str], int] | None = None, budget: int = BUDGET) -> None:
        self._paths = list(paths)
        self._index = {rel: i for i, rel in enumerate(self._paths)}
        self._read = read
        self._window = max(1, window)
        self._then = then
        self._weigh = weigh
        self._budget = budget
        self._ready: dict[str, T | _Failed] = {}

    def take(self, rel: str) -> T:
        if rel not in self._ready:
            self._fill(self._index[rel])
        out = self._ready.pop(rel)
        if isinstance(out, _Failed):
            raise out.exc
        return out

    def _fill(self, start: int) -> None:
        read: list[T] = []
        spent = 0
        for rel in self._paths[start:start + self._window]:
            if rel in self._ready:
                continue
            if self._weigh is not None and self._window > 1:
                if spent >= self._budget:
                    break
                spent += self._weigh(rel)
            try:
                out = self._read(rel)
            except SoftTimeLimitExceeded:
                raise  # the batch is out of time: it is requeued, nothing is blamed
            except Exception as exc:
                self._ready[rel] = _Failed(exc)
                continue
            self._ready[rel] = out
            read.append(out)
        if self._then is not None and read:
            self._then(read)
