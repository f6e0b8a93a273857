"""The one interface every OCR engine meets, and the registry that builds one by name.

An engine turns an image (a numpy array: rows x columns uint8 grey, or rows x columns x 3 uint8
RGB) into text boxes. Everything after that (what is PHI, where to black out, whether to
quarantine) is engine-agnostic and lives in the other modules of this package, so a new engine
is one class with a ``read`` method and one entry in :data:`ENGINES`.

Invariants every engine keeps:

- boxes are axis-aligned, in the input image's pixel coordinates, ``x1``/``y1`` exclusive, and
  clipped to the image; a rotated line of text gets the upright rectangle around it;
- one box is one line of text (words on one baseline), so that a date written as three words
  ("4 Apr 1987") is judged as one piece of text;
- ``confidence`` is in [0, 1]; a box that was detected but not recognised has text "" and
  confidence 0, never disappears (it may hold PHI);
- nothing is downloaded: an engine loads weights shipped with its package or the system, and
  fails with :class:`OcrEngineError` (naming what to install) rather than fetching them;
- an engine never logs what it read.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..errors import OcrEngineError

__all__ = ["ENGINES", "DEFAULT_ENGINE", "Engine", "TextBox", "load_engine", "check_image", "clip_box", "unturn_box"]


@dataclass(frozen=True)
class TextBox:
    """One line of text an engine found: where (pixels, x1/y1 exclusive), what, how sure."""

    x0: int
    y0: int
    x1: int
    y1: int
    text: str
    confidence: float


class Engine(Protocol):
    """What the rest of the package needs from an OCR engine."""

    name: str
    """Registry name ("rapidocr", "tesseract"); goes into verdicts and benchmark tables."""

    def read(self, image: np.ndarray) -> list[TextBox]:
        """Every line of text in ``image`` (uint8, rows x columns, or rows x columns x 3 RGB)."""
        ...


ENGINES: dict[str, str] = {
    "rapidocr": "deid_workers.ocr.rapid:RapidOcrEngine",
    "tesseract": "deid_workers.ocr.tess:TesseractEngine",
}
"""Engine name -> "module:class". The class takes keyword settings and raises OcrEngineError."""

DEFAULT_ENGINE = "rapidocr"
"""Chosen by measurement (docs/ocr.md): the higher recall of PHI boxes on the generated corpus."""


def load_engine(name: str = DEFAULT_ENGINE, **settings: Any) -> Engine:
    """Build the engine registered as ``name`` with its ``settings``; load its model now.

    Loading is done here, once, so a worker pays it at start and a missing package or model is
    reported before any file is read. Raises OcrEngineError for an unknown name or an engine
    that cannot load.
    """
    target = ENGINES.get(name)
    if target is None:
        raise OcrEngineError(name, f"unknown engine; choose one of {', '.join(sorted(ENGINES))}")
    module_name, _, class_name = target.partition(":")
    module = importlib.import_module(module_name)
    factory: Callable[..., Engine] = getattr(module, class_name)
    return factory(**settings)


def check_image(image: np.ndarray) -> None:
    """Raise ValueError unless ``image`` is what :meth:`Engine.read` accepts."""
    if image.dtype != np.uint8:
        raise ValueError(f"OCR input must be uint8, got {image.dtype}")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3):
        if image.shape[0] < 1 or image.shape[1] < 1:
            raise ValueError("OCR input is empty")
        return
    raise ValueError(f"OCR input must be rows x columns or rows x columns x 3, got shape {image.shape}")


def clip_box(x0: float, y0: float, x1: float, y1: float, text: str, confidence: float,
             rows: int, cols: int) -> TextBox | None:
    """A TextBox with integer corners clipped to the image; None when nothing is left."""
    bx0 = min(max(int(np.floor(x0)), 0), cols)
    by0 = min(max(int(np.floor(y0)), 0), rows)
    bx1 = min(max(int(np.ceil(x1)), 0), cols)
    by1 = min(max(int(np.ceil(y1)), 0), rows)
    if bx1 <= bx0 or by1 <= by0:
        return None
    return TextBox(bx0, by0, bx1, by1, text, float(min(max(confidence, 0.0), 1.0)))


def unturn_box(box: tuple[int, int, int, int], rot: int, w: int, h: int) -> tuple[int, int, int, int]:
    """A box found in ``np.rot90(image, k=rot // 90)`` (whose size is ``w`` x ``h``), in the
    coordinates of ``image`` itself. ``rot`` is 0, 90, 180 or 270 (counter-clockwise)."""
    x0, y0, x1, y1 = box
    if rot == 0:
        return x0, y0, x1, y1
    if rot == 90:     # turned[r, c] = image[c, h - 1 - r]
        return h - y1, x0, h - y0, x1
    if rot == 180:
        return w - x1, h - y1, w - x0, h - y0
    return y0, w - x1, y1, w - x0   # 270: turned[r, c] = image[w - 1 - c, r]
