"""Which files ``--ocr`` should read: those whose header says burned-in text is likely.

``--ocr all`` reads every file with pixels; plain ``--ocr`` only the risky ones, so a CT archive
does not pay OCR on every slice. A file is risky when (first reason that holds):

- ``BurnedInAnnotation`` is YES;
- it is ultrasound (Modality US, or an ultrasound SOP class);
- it is a secondary capture (SOP class 1.2.840.10008.5.1.4.1.1.7 and its multi-frame kinds) or
  has a ``ConversionType`` (screen grabs, scanned documents, digitised film);
- ``ImageType`` says DERIVED or SECONDARY, or names a screen save or dose report;
- the recipe's ``%filter`` groups flagged it (the caller passes that verdict's flag).

Files without PixelData and without overlays have nothing to read.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from .overlays import overlay_groups

__all__ = ["ocr_reason", "has_pixels"]

_US_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.6.1", "1.2.840.10008.5.1.4.1.1.3.1",   # US image, US multi-frame image
    "1.2.840.10008.5.1.4.1.1.6", "1.2.840.10008.5.1.4.1.1.3",       # their retired versions
    "1.2.840.10008.5.1.4.1.1.6.2",                                  # enhanced US volume
})
_SC_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.7.1", "1.2.840.10008.5.1.4.1.1.7.2",
    "1.2.840.10008.5.1.4.1.1.7.3", "1.2.840.10008.5.1.4.1.1.7.4",   # SC and its multi-frame kinds
})
_RISKY_IMAGE_TYPE = {"DERIVED", "SECONDARY", "SCREEN SAVE", "SCREENSHOT", "DOSE", "DOSE_INFO", "DOSE REPORT"}


def has_pixels(ds: Dataset) -> bool:
    """The file has something OCR could read: pixel data or an overlay."""
    return "PixelData" in ds or bool(overlay_groups(ds))


def ocr_reason(ds: Dataset, *, flagged_by_recipe: bool = False,
               pixels: bool | None = None) -> str | None:
    """Why ``--ocr`` should read this file (a short reason with no value), or None.

    ``pixels`` says whether the file has something to read when the caller knows better than
    ``ds`` (a header-only read has no PixelData); None: :func:`has_pixels`.
    """
    if not (has_pixels(ds) if pixels is None else pixels):
        return None
    if str(ds.get("BurnedInAnnotation", "") or "").strip().upper() == "YES":
        return "BurnedInAnnotation YES"
    sop = str(ds.get("SOPClassUID", "") or "")
    if str(ds.get("Modality", "") or "").upper() == "US" or sop in _US_CLASSES:
        return "ultrasound"
    if sop in _SC_CLASSES or "ConversionType" in ds:
        return "secondary capture"
    image_type = ds.get("ImageType")
    values = [image_type] if isinstance(image_type, str) else list(image_type or ())
    if any(str(v).strip().upper() in _RISKY_IMAGE_TYPE for v in values):
        return "derived or secondary image"
    if flagged_by_recipe:
        return "recipe filter"
    return None
