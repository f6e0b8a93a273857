"""Faults on purpose, for the reliability tests: a worker process killed or hung on a file,
and an OCR redaction that misses its text.

``DEID_TEST_CRASH_ON`` / ``DEID_TEST_HANG_ON`` (a substring of a relative path; ``hard:`` in
front for a hang the soft time limit cannot interrupt) make :class:`~deid_workers.tasks.guard.
BatchGuard` call these when its batch reaches such a file, as a decoder segfault, the OOM
killer or a hang in C code would. ``DEID_TEST_OCR_MISS`` makes the clean stage take such a
file's OCR verdict through :func:`missed`. Unset, nothing here runs.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

__all__ = ["crash", "hang", "inject", "missed"]


def inject(rel: str, crash_on: str | None, hang_on: str | None) -> None:
    """Crash or hang when ``rel`` is the file the settings name (see the module docstring)."""
    if crash_on and crash_on in rel:
        crash()
    if hang_on and hang_on.removeprefix("hard:") in rel:
        hang(hard=hang_on.startswith("hard:"))


def hang(*, hard: bool) -> None:  # pragma: no cover - runs until a time limit ends it
    """Sleep forever. The soft time limit's exception ends it, unless ``hard``: then only the
    hard limit's kill does, as with a hang inside C code."""
    while True:
        try:
            time.sleep(0.5)
        except SoftTimeLimitExceeded:
            if not hard:
                raise


def crash() -> None:  # pragma: no cover - runs in a worker process that it kills
    """SIGKILL, as the OOM killer or a segfault would end the process."""
    os.kill(os.getpid(), signal.SIGKILL)


def missed(verdict: Any) -> Any:
    """``verdict`` (an :class:`~deid_workers.ocr.OcrVerdict`) with nothing to black out but
    its status kept, as a redaction that missed its text: the clean stage goes on to verify."""
    import dataclasses

    return dataclasses.replace(verdict, boxes=tuple(dataclasses.replace(b, redact=False)
                                                    for b in verdict.boxes))
