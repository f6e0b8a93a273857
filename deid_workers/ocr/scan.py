"""Read every frame of a dataset with an OCR engine and judge each box: one verdict per file.

The pure core of the OCR stage: a dataset, an engine and a policy in, an :class:`OcrVerdict`
out, nothing written and nothing logged. The verdict holds no text (see verdict.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pydicom.dataset import Dataset

from .engine import Engine, TextBox
from .frames import iter_frames, number_of_frames
from .identifying import Identifying, identifying_values
from .lines import spread
from .policy import OcrPolicy
from .rules import ALLOWED, PHI, TEXT, UNSURE, Decision, classify
from .verdict import CLEAN, QUARANTINE, REDACT, BoxVerdict, OcrVerdict

__all__ = ["ocr_dataset", "verify_redacted", "SAME_LINE"]

SAME_LINE = "same line"
"""Reason of a box made PHI because it continues a PHI box's line."""

SURE_ANNOTATION = 0.9
"""Allow-listed text read at least this surely is not made PHI by a neighbour on its line."""


def ocr_dataset(ds: Dataset, engine: Engine, policy: OcrPolicy | None = None, *,
                identifying: Identifying | None = None) -> OcrVerdict:
    """Read ``ds``'s frames and overlays with ``engine`` and judge every box by ``policy``.

    ``identifying`` defaults to the values of ``ds``'s own header; pass the *original* file's
    (:func:`identifying_values`) when ``ds`` is already de-identified, as verification does.
    Pixel data that cannot be decoded gives a ``quarantine`` verdict with ``error`` set; an
    engine that fails raises OcrEngineError (the worker's problem, not the file's: retry).
    ``ds`` is not changed.
    """
    policy = policy or OcrPolicy()
    ident = identifying if identifying is not None else identifying_values(ds)
    modality = str(ds.get("Modality", "") or "")
    shapes: dict[str, tuple[int, int]] = {}
    frames_read = 0
    total = number_of_frames(ds) if "PixelData" in ds else 0
    settings: dict[str, Any] = {"engine": engine.name, "margin": policy.margin, "margin_ratio": policy.margin_ratio,
                                "line_extend": policy.line_extend}
    found: list[tuple[str, int, TextBox, Decision]] = []
    frames = iter_frames(ds, max_frames=policy.max_frames, overlays=policy.overlays)
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            break
        except Exception as exc:  # pydicom's decoders raise many kinds; the file is quarantined
            return OcrVerdict(status=QUARANTINE, frames_read=frames_read, frames_total=total,
                              boxes=tuple(_judged(found, policy)), shapes=shapes,
                              error=f"pixels could not be decoded ({exc.__class__.__name__})", **settings)
        rows, cols = frame.image.shape[:2]
        shapes[frame.source] = (rows, cols)
        frames_read += 1
        for tb in engine.read(frame.image):       # an engine's failure is not the file's: raise
            d = classify(tb.text, tb.confidence, ident, policy.allow, modality=modality,
                         min_confidence=policy.min_confidence)
            found.append((frame.source, frame.index, tb, d))
    boxes = _judged(found, policy)
    if policy.on_unsure == "quarantine" and any(b.kind == UNSURE for b in boxes):
        status = QUARANTINE
    elif any(b.redact for b in boxes):
        status = REDACT
    else:
        status = CLEAN
    return OcrVerdict(status=status, frames_read=frames_read, frames_total=total, boxes=tuple(boxes),
                      shapes=shapes, **settings)


def _judged(found: list[tuple[str, int, TextBox, Decision]], policy: OcrPolicy) -> list[BoxVerdict]:
    """Box verdicts, with every piece of a PHI box's line made PHI too (lines.py), except
    annotation read with high confidence (``L`` next to a name stays)."""
    kept = [f[3].kind == ALLOWED and f[2].confidence >= SURE_ANNOTATION for f in found]
    flagged = spread([f[2] for f in found], [f[3].kind == PHI for f in found],
                     [None if k else (f[0], f[1]) for f, k in zip(found, kept)])
    out = []
    for (source, index, tb, d), phi in zip(found, flagged):
        if phi and d.kind != PHI:
            d = Decision(PHI, SAME_LINE)
        redact = (d.kind == PHI or (d.kind == UNSURE and policy.on_unsure == "redact")
                  or (d.kind == TEXT and policy.redact_text))
        out.append(BoxVerdict(source, index, tb.x0, tb.y0, tb.x1, tb.y1, d.kind, d.reason, tb.confidence, redact))
    return out


def verify_redacted(cleaned: Dataset, identifying: Identifying, engine: Engine,
                    policy: OcrPolicy | None = None) -> OcrVerdict:
    """Read a redacted dataset again, judged against the original header's ``identifying``
    values. The verdict's status is ``clean`` when no PHI box is left (and the pixels decoded),
    else ``quarantine``: the file must then go to a person.

    Unsure boxes are counted but do not fail the check: on a cleaned frame they are nearly
    always the blackouts' own edges read as a stray letter (measured: every verification
    failure on the generated corpus was one such box), and the first read already judged the
    text around them.
    """
    v = ocr_dataset(cleaned, engine, policy, identifying=identifying)
    passed = v.error is None and v.count(PHI) == 0
    return dataclasses.replace(v, status=CLEAN if passed else QUARANTINE)
