"""Burned-in text in the pipeline (``--ocr``): which files the ocr stage reads, what it makes
of one file, and what the clean stage does with that.

Pure like :mod:`~deid_workers.files.steps`: a dataset or a path in, an outcome out; the engine
and the policy are the caller's (:mod:`deid_workers.tasks.ocr` loads them once per worker
process). Only runs given ``--ocr`` import this module, and it imports the OCR package
(:mod:`deid_workers.ocr`) inside the functions that use it, so a run without ``--ocr`` loads
none of it.

The data flow (put/all; inspect stops after the ocr stage, whose verdicts go into the report)::

    put    ocr_selection(ds) -> a reason: the file goes to the ocr stage, nothing written
    ocr    ocr_one(path) -> OcrVerdict (counts and box geometry, never text), sealed in Redis
    clean  ocr_triage(verdict): write | clean | quarantine; clean -> black out (with the
           recipe's %filter boxes in the same decode), then verify_redacted on the result:
           any PHI box left, and the file is quarantined instead
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..config import Settings
from ..dicom.reader import read_dataset
from ..errors import InputError
from ..recipe import inspect_dataset
from ..recipe.pixels import PixelLimitError, check_pixels

__all__ = ["OcrOutcome", "Verify", "ocr_selection", "ocr_one", "ocr_triage", "verify_cleaned",
           "HELD_UNSURE", "HELD_UNREADABLE", "HELD_PHI_LEFT", "OCR_REDACT", "ALL_FILES"]

ALL_FILES = "every file with pixels (--ocr all)"
"""The reason ``--ocr all`` gives for a file it reads."""

OCR_REDACT = "ocr: burned-in PHI blacked out"
"""The run log's reason of a file whose OCR boxes were blacked out and verified."""

HELD_UNSURE = ("ocr: text that could not be read with confidence; held for a person to "
               "review")
"""Why a file is quarantined when OCR found text it could not read surely (policy
``on_unsure="quarantine"``, the default: such text may be PHI)."""

HELD_UNREADABLE = "ocr: {error}; held for a person to review"
"""Why a file is quarantined when its pixels could not be read (the verdict's ``error``, which
names a size or an exception class, never a value)."""

HELD_PHI_LEFT = ("ocr verification: {n} PHI box(es) still read after blacking out; held for a "
                 "person to review")
"""Why a file is quarantined when the cleaned image, read again, still shows PHI."""

Verify = Callable[[Any, Any], Any]
"""``verify(cleaned, identifying) -> OcrVerdict``: the worker's engine reading a cleaned
dataset again (:func:`deid_workers.ocr.verify_redacted` with its engine and policy)."""


def ocr_selection(ds: Any, mode: str, recipe: Any, verdict: Mapping[str, Any] | None = None, *,
                  headers_only: bool = False) -> str | None:
    """Why the ocr stage should read ``ds`` in ``mode`` (``all`` or ``risky``), or None.

    ``all``: every file with pixels or an overlay. ``risky``: the header's reasons first
    (:func:`deid_workers.ocr.select.ocr_reason`: BurnedInAnnotation YES, ultrasound, secondary
    capture, derived or secondary images), then the recipe's ``%filter`` groups (``verdict``
    when the caller has it, else run here on the header). ``headers_only``: ``ds`` was read
    without its pixel data (inspect), so a declared image (Rows) counts as pixels; the ocr
    stage reads the whole file and finds out. The reason names no value.
    """
    from ..ocr.select import has_pixels, ocr_reason

    pixels = has_pixels(ds) or (headers_only and "Rows" in ds)
    if not pixels:
        return None
    if mode == "all":
        return ALL_FILES
    reason = ocr_reason(ds, pixels=True)
    if reason is None:
        found = verdict if verdict is not None else inspect_dataset(ds, recipe)
        if found.get("flagged"):
            reason = ocr_reason(ds, flagged_by_recipe=True, pixels=True)
    return reason


@dataclass(frozen=True)
class OcrOutcome:
    """What the ocr stage made of one file: its verdict (an :class:`~deid_workers.ocr.OcrVerdict`),
    or why it could not read the file (``ok`` False: skipped, as put would have)."""

    path: str
    ok: bool
    reason: str | None = None
    verdict: Any = None


def ocr_one(root: str, rel: str, settings: Settings, engine: Any, policy: Any) -> OcrOutcome:
    """Read ``root/rel`` whole and judge its burned-in text (:func:`deid_workers.ocr.ocr_dataset`).

    An image over ``DEID_MAX_PIXEL_BYTES`` (or whose pixel data is shorter than its header says)
    is not decoded: its verdict is ``quarantine`` with the size as the error. An engine that
    fails raises :class:`~deid_workers.errors.OcrEngineError` (the worker's problem, not the
    file's).
    """
    from ..ocr import ocr_dataset
    from ..ocr.verdict import QUARANTINE, OcrVerdict

    try:
        ds = read_dataset(os.path.join(root, rel), headers_only=False, name=rel, root=root,
                          max_bytes=settings.max_file_bytes)
    except InputError as exc:
        return OcrOutcome(rel, False, exc.reason)
    if "PixelData" in ds:
        try:
            check_pixels(ds, settings.max_pixel_bytes)
        except PixelLimitError as exc:
            return OcrOutcome(rel, True, None, OcrVerdict(engine=engine.name, status=QUARANTINE,
                                                          error=f"pixels could not be read: {exc}"))
    return OcrOutcome(rel, True, None, ocr_dataset(ds, engine, policy))


def ocr_triage(verdict: Any) -> tuple[str, str | None]:
    """What the clean stage does with a file from its OCR verdict: ``write`` (no PHI read),
    ``clean`` (black out, then verify) or ``quarantine``, with the reason (no value)."""
    from ..ocr.verdict import QUARANTINE, REDACT

    if verdict.status == QUARANTINE:
        if verdict.error:
            return "quarantine", HELD_UNREADABLE.format(error=verdict.error)
        return "quarantine", HELD_UNSURE
    if verdict.status == REDACT:
        return "clean", OCR_REDACT
    return "write", None


def verify_cleaned(cleaned: Any, identifying: Any, verify: Verify) -> tuple[bool, int]:
    """Read the blacked-out dataset again: (passed, PHI boxes still read). It passes only
    when the pixels decode and no PHI box is left (:func:`deid_workers.ocr.verify_redacted`)."""
    from ..ocr.rules import PHI
    from ..ocr.verdict import CLEAN

    check = verify(cleaned, identifying)
    return check.status == CLEAN, check.count(PHI)
