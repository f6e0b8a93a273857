"""The images OCR reads from one dataset: its frames, windowed for display, and its overlays.

Why windowed: burned-in text is put there to be seen, so we read what a viewer would show.

- MONOCHROME1/2: the modality LUT (rescale), then the first VOI window or VOI LUT when the file
  has one, else min-max over the frame; MONOCHROME1 is inverted so text is drawn as displayed.
- RGB stays RGB; YBR_* is converted to RGB by pydicom's decoder; PALETTE COLOR goes through
  its lookup tables. More than 8 bits per sample are scaled down by min-max.
- Frames: every frame up to ``max_frames``; a longer cine loop is sampled: first, last and
  evenly spaced frames between, ``max_frames`` in all (:func:`frame_indices`). Text burned
  into a loop is nearly always on every frame; the sample bounds the cost of a 1,000-frame
  loop. A box found on any read frame is blacked out on every frame (see redact.py).
- Overlays (60xx groups) are read as their own images, white on black, in their own
  coordinates (see overlays.py).

Frames are decoded one at a time (pydicom's ``Decoder.as_array(index=...)``), so a long loop
is never held whole in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut, apply_voi_lut

from .overlays import overlay_planes

__all__ = ["Frame", "PIXELS", "frame_indices", "iter_frames", "number_of_frames", "to_display"]

PIXELS = "pixels"
"""Source name of the image's own pixel data (overlays are named "overlay 60xx")."""


@dataclass(frozen=True)
class Frame:
    """One image to read: where it comes from, which frame, and the uint8 picture itself."""

    source: str            # PIXELS or "overlay 6000"
    index: int             # 0-based frame number within its source
    image: np.ndarray      # uint8 rows x columns, or rows x columns x 3 RGB


def number_of_frames(ds: Dataset) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def frame_indices(total: int, max_frames: int) -> list[int]:
    """Which frames of ``total`` to read: all when they are at most ``max_frames``, else
    first, last and evenly spaced between (``max_frames`` of them, sorted, distinct)."""
    if max_frames < 1:
        raise ValueError("max_frames must be >= 1")
    if total <= max_frames:
        return list(range(total))
    if max_frames == 1:
        return [0]
    picks = np.linspace(0, total - 1, num=max_frames)
    return sorted({int(round(p)) for p in picks})


def _minmax(arr: np.ndarray) -> np.ndarray:
    a = arr.astype(np.float64, copy=False)
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    if hi <= lo:
        return np.zeros(arr.shape, np.uint8)
    return np.clip((a - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255).astype(np.uint8)


def to_display(ds: Dataset, arr: np.ndarray, photometric: str) -> np.ndarray:
    """One decoded frame (as the decoder returns it) -> uint8 grey or RGB, as a viewer shows it."""
    pi = photometric.upper()
    if pi in ("MONOCHROME1", "MONOCHROME2"):
        values = apply_modality_lut(arr, ds)
        window = _first_window(ds)
        if window is not None:
            out = _window(values, *window)
        elif "VOILUTSequence" in ds:
            try:
                out = _minmax(apply_voi_lut(values, ds, index=0))
            except (ValueError, TypeError, IndexError, KeyError, AttributeError):
                out = _minmax(values)  # a malformed LUT: show the range, never fail the read
        else:
            out = _minmax(values)
        return 255 - out if pi == "MONOCHROME1" else out
    if pi == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)
        return rgb if rgb.dtype == np.uint8 else _minmax(rgb)
    if arr.ndim == 3 and arr.shape[2] == 3:
        return arr if arr.dtype == np.uint8 else _minmax(arr)
    return _minmax(arr)  # anything else with one sample: show its range


def _first_window(ds: Dataset) -> tuple[float, float] | None:
    """(center, width) of the file's first VOI window, or None when absent or unusable."""
    if "WindowCenter" not in ds or "WindowWidth" not in ds:
        return None
    try:
        c = float(_first(ds.WindowCenter))
        w = float(_first(ds.WindowWidth))
    except (TypeError, ValueError, IndexError):
        return None
    if not np.isfinite(c) or not np.isfinite(w) or w < 1:
        return None
    return c, w


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, (MultiValue, list, tuple)) else value


def _window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """The linear VOI window of PS3.3 C.11.2.1.2.1, to 0-255."""
    a = values.astype(np.float64, copy=False)
    if width <= 1:
        return np.where(a > center - 0.5, 255, 0).astype(np.uint8)
    scaled = ((a - (center - 0.5)) / (width - 1) + 0.5) * 255.0
    return np.clip(scaled + 0.5, 0, 255).astype(np.uint8)


def iter_frames(ds: Dataset, *, max_frames: int = 16, overlays: bool = True) -> Iterator[Frame]:
    """Every image OCR should read in ``ds``: sampled pixel frames, then overlay frames.

    Raises whatever pydicom's decoder raises for pixel data it cannot decode (no handler for
    the transfer syntax, truncated data); the caller turns that into a quarantine.
    """
    if "PixelData" in ds:
        syntax = ds.file_meta.TransferSyntaxUID
        decoder = get_decoder(syntax)
        for i in frame_indices(number_of_frames(ds), max_frames):
            arr, meta = decoder.as_array(ds, index=i)
            pi = str(meta.get("photometric_interpretation") or ds.get("PhotometricInterpretation", "MONOCHROME2"))
            if arr.ndim == 3 and arr.shape[2] != 3:  # a single frame comes back 2-D or rows x cols x s
                arr = arr[..., 0]
            yield Frame(PIXELS, i, to_display(ds, arr, pi))
    if overlays:
        for plane in overlay_planes(ds, max_frames=max_frames):
            yield Frame(plane.source, plane.index, plane.bits.astype(np.uint8) * 255)
