"""Residual-PHI check (``--verify``): does a value the recipe removed or replaced survive?

Why: a recipe can only act on the elements it names. A patient's name copied by a modality
into a free-text comment, a private tag or a nested sequence survives a recipe that blanks
``PatientName``. After ``put`` writes a file, :func:`residual_phi` compares the input with the
output as written on disk and reports the elements of the input whose value the recipe removed
or changed but which can still be found somewhere in the output.

What counts:

- candidates: values of the input's text elements (names, IDs, dates, ages, free text, UIDs;
  see :data:`CANDIDATE_VRS`), at any depth, that the output no longer holds unchanged at the
  same place; values shorter than :data:`MIN_LENGTH` characters are ignored (a sex, a one-digit
  count: they would match everywhere and identify no one); DICOM's own UIDs
  (``1.2.840.10008.*``, classes and transfer syntaxes) are not identifiers;
- where they are looked for: every element of the output except the pixel data, at any depth,
  including private and binary (``OB``/``UN``) values decoded as Latin-1. A UID candidate must
  equal a whole UID of the output (a UID that merely contains its digits is a different UID);
  any other candidate is searched as a substring, case-insensitively.

The result names input elements by keyword (or tag), never by value, so it can go to logs and
reports. This runs in the put task, per file, when the run asked for it: the input and output
are both at hand there and a second pass over a million files would read them all again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

__all__ = ["CANDIDATE_VRS", "MIN_LENGTH", "residual_phi"]

CANDIDATE_VRS = frozenset({"PN", "LO", "SH", "LT", "ST", "UT", "UC", "DA", "DT", "AS", "UI", "AE"})
"""Value representations that carry names, identifiers, dates and free text."""

MIN_LENGTH = 4
"""Shorter candidate values are not searched: too likely to occur by chance."""

_STANDARD_UID = "1.2.840.10008."
_PIXEL_KEYWORDS = frozenset({"PixelData", "FloatPixelData", "DoubleFloatPixelData"})

Path = tuple[Any, ...]


def _values(elem: DataElement) -> list[str]:
    value = elem.value
    if value is None:
        return []
    items = list(value) if isinstance(value, (list, MultiValue)) else [value]
    out = []
    for v in items:
        if isinstance(v, (bytes, bytearray)):
            out.append(bytes(v).decode("latin-1"))
        elif v is not None:
            out.append(str(v))
    return [s for s in (x.strip(" \0") for x in out) if s]


def _walk(ds: Dataset, prefix: Path = ()) -> Iterator[tuple[Path, DataElement]]:
    for elem in ds:
        path = (*prefix, int(elem.tag))
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value or ()):
                yield from _walk(item, (*path, i))
        else:
            yield path, elem


def _name(elem: DataElement) -> str:
    return elem.keyword or f"({elem.tag.group:04X},{elem.tag.element:04X})"


def residual_phi(original: Dataset, output: Dataset) -> list[str]:
    """Keywords of ``original``'s elements whose removed or replaced value is still in ``output``.

    Both datasets as read from disk (``output`` as written). Sorted, each name once.
    """
    out_values: dict[Path, list[str]] = {}
    uids: set[str] = set()
    text: list[str] = []
    meta = getattr(output, "file_meta", None) or Dataset()
    for path, elem in (*_walk(output), *_walk(meta, ("meta",))):
        if elem.keyword in _PIXEL_KEYWORDS:
            continue
        values = _values(elem)
        out_values[path] = values
        if elem.VR == "UI":
            uids.update(values)
        else:
            text.extend(v.casefold() for v in values)
    haystack = "\n".join(text)
    found: set[str] = set()
    for path, elem in _walk(original):
        if elem.VR not in CANDIDATE_VRS:
            continue
        values = _values(elem)
        if not values or out_values.get(path) == values:
            continue  # kept unchanged: the recipe chose to keep it
        for value in values:
            if len(value) < MIN_LENGTH or value.startswith(_STANDARD_UID):
                continue
            if elem.VR == "UI":
                hit = value in uids
            else:
                hit = value.casefold() in haystack
            if hit:
                found.add(_name(elem))
                break
    return sorted(found)
