"""Black out what a verdict says: pixel boxes through recipe.clean_pixels, overlay boxes here.

Pixel boxes go through the project's existing cleaner (:func:`deid_workers.recipe.clean_pixels`)
so OCR output is written exactly like a ``%filter`` clean: decoded, boxes set to zero on every
frame and sample, uncompressed, ``BurnedInAnnotation`` NO. Note that decoding drops the unused
high bits of the pixel data, so overlays stored there leave with any pixel clean. Overlay boxes
clear the overlay's own bits (overlays.py). The input dataset is never changed.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from pydicom.dataset import Dataset

from ..config import DEFAULT_MAX_PIXEL_BYTES
from ..recipe.pixels import clean_pixels
from .frames import PIXELS
from .overlays import clear_overlay_box, clear_unused_high_bits
from .verdict import OcrVerdict

__all__ = ["redact", "OCR_GROUP"]

OCR_GROUP = "ocr"
"""The group name the OCR boxes carry in the clean_pixels verdict (seen in run logs)."""


def clean_verdict(verdict: OcrVerdict) -> dict[str, object]:
    """The verdict's pixel boxes in the shape recipe.clean_pixels takes (deid's inspect result).

    The clean stage can merge these with the recipe's own ``%filter`` results: it appends
    this result to theirs and calls clean_pixels once.
    """
    coords = verdict.pixel_coordinates()
    if not coords:
        return {"flagged": False, "results": []}
    return {"flagged": True,
            "results": [{"group": OCR_GROUP, "reason": "burned-in text", "coordinates": [[0, coords]]}]}


def redact(ds: Dataset, verdict: OcrVerdict, *, also: Mapping[str, Any] | None = None,
           max_bytes: int = DEFAULT_MAX_PIXEL_BYTES) -> Dataset:
    """A copy of ``ds`` with every redaction of ``verdict`` blacked out (margin included).

    ``ds`` may be the de-identified copy of the file the verdict was made on (same pixels). An
    overlay the recipe removed needs no clearing; one read from the high bits of the pixel data
    whose 60xx elements were removed is cleared by zeroing every unused high bit. ``also``
    (a recipe ``%filter`` verdict with boxes, ``--clean-pixels``) is blacked out in the same
    decode. Raises ValueError when the pixel data cannot be decoded or is over ``max_bytes``
    (the caller quarantines the file).
    """
    redactions = verdict.redactions()
    ours = clean_verdict(verdict)["results"]
    boxes = [*(also.get("results") or () if also else ()), *(ours if isinstance(ours, list) else ())]
    if boxes:
        out = clean_pixels(ds, {"flagged": True, "results": boxes}, max_bytes=max_bytes)
    else:
        out = copy.deepcopy(ds)
    for r in redactions:
        if r.source == PIXELS:
            continue
        group = int(r.source.split()[-1], 16)
        if not clear_overlay_box(out, group, (r.x0, r.y0, r.x1, r.y1)):
            # The overlay is gone from this copy (a recipe removed its 60xx elements): nothing
            # of it is left to show, unless it lived in the pixel data's high bits.
            clear_unused_high_bits(out)
    return out
