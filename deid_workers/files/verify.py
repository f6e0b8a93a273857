"""Residual-PHI check (``--verify``): does an identifying value the recipe removed survive?

Why: a recipe can only act on the elements it names. A patient's name copied by a modality
into a free-text comment, a private tag or a nested sequence survives a recipe that blanks
``PatientName``. After ``put`` writes a file, :func:`residual_phi` compares the input with the
output as written on disk and reports the identifying elements of the input whose value the
recipe removed or changed but which can still be found in the output, or in its path.

It must be precise to be trusted: a check that cries wolf on every file is switched off. So:

- candidates are *identifying* values of the input (:func:`identifying`): person names,
  UIDs (but those naming a SOP class, a coding scheme or another definition), dates, ages,
  AE titles, IDs and numbers (``PatientID``, ``AccessionNumber``,
  ``DeviceSerialNumber``...), and the names, addresses and phone numbers of patients, staff
  and institutions (:data:`IDENTIFYING_KEYWORDS`), at any depth. A description, a code or a
  private element is searched *in* but is no candidate itself: ``CT BRAIN`` surviving in a
  kept code meaning identifies no one, while a name copied into it does.
- a candidate is skipped when the output holds it unchanged at the same place (the recipe
  kept it), when it is shorter than :data:`MIN_LENGTH` characters, when it is a DICOM
  standard UID (``1.2.840.10008.*``), and when it equals one of the recipe's own literal
  values (``dummies``: the ``ANONYMOUS`` or ``19000101`` the recipe writes everywhere).
- it is looked for in every element of the output except the pixel data, at any depth,
  private and binary (``OB``/``UN``, decoded as Latin-1) values and the file meta included,
  but not in deid-workers' own entry of ``DeidentificationMethod`` nor its own
  implementation UID and version name. A UID must equal a whole UID of the output; any other
  value must appear as whole tokens, case-insensitively: not preceded or followed by a letter,
  a digit or ``_``, so ``ANON`` is not found in ``ANONYMOUS`` nor ``TOSHIBA`` in a kept
  ``TOSHIBA_MEC``; in binary values (``OB``, ``UN``...), which have no words, as any
  substring. A value that is a single short word (:data:`SHORT_WORD`) must be a whole
  value of the output. A person name also counts when its family and given names both
  appear in one value of the output, in any order.
- the output path (relative to the output folder) is checked for the tokens the layout
  removes (:func:`deid_workers.files.layout.path_leaks`): reported as ``<keyword> (output path)``.
- overlays kept in the high bits of native pixel data (retired; names and IDs are often drawn
  there), which no recipe line can reach: where the input or the output declares one
  (:func:`~deid_workers.dicom.overlays.high_bit_overlays`, from the headers) and the output's
  pixel words still have a bit set at its position (above BitsStored and HighBit), it is
  reported as ``overlay 60xx (PixelData bit N)`` (:func:`residual_overlay_bits`). Put moves
  such overlays into OverlayData before the recipe runs, so this finds what that could not
  (an overlay whose declared size is not the image's). Unused high bits no overlay claims are
  not judged: sign extension sets them in ordinary signed images.

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

from ..dicom.overlays import high_bit_overlays, native_words
from .layout import path_leaks

__all__ = ["CANDIDATE_VRS", "IDENTIFYING_KEYWORDS", "MIN_LENGTH", "identifying",
           "recipe_literals", "residual_phi", "overlay_suspects", "residual_overlay_bits"]

CANDIDATE_VRS = frozenset({"PN", "UI", "DA", "DT", "AS", "AE"})
"""Value representations whose every value identifies (a person, an instance, a moment, an
age, a device's network name)."""

_TEXT_VRS = frozenset({"LO", "SH", "LT", "ST", "UT", "UC", "CS"})
_ID_SUFFIXES = ("ID", "IDs", "Number", "Numbers", "Identifier", "Identification")

IDENTIFYING_KEYWORDS = frozenset({
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "StationName",
    "ScheduledStationName", "PerformedStationName", "PerformedLocation",
    "ScheduledProcedureStepLocation", "PatientAddress", "PatientTelephoneNumbers",
    "PersonAddress", "PersonTelephoneNumbers", "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers", "MilitaryRank", "BranchOfService",
    "MedicalRecordLocator", "RegionOfResidence", "CountryOfResidence",
    "ResponsibleOrganization", "IssuerOfPatientID", "IssuerOfAdmissionID",
    "OtherPatientIDs", "PatientBirthName", "PatientMotherBirthName", "CurrentPatientLocation",
    "PatientInstitutionResidence", "ResponsiblePerson",
})
"""Text elements (beyond those named ``...ID``/``...Number``) that name or locate a person or
an institution."""

MIN_LENGTH = 4
"""Shorter candidate values are not searched: too likely to occur by chance."""

_STANDARD_UID = "1.2.840.10008."
_BINARY_VRS = frozenset({"OB", "OW", "UN", "OD", "OF", "OL", "OV"})
"""Values with no token boundaries: a value hidden in bytes is looked for as a substring."""
_PIXEL_KEYWORDS = frozenset({"PixelData", "FloatPixelData", "DoubleFloatPixelData"})
_METHOD_TAG = 0x00120063
_OURS_PREFIX = "deid-workers "
_IMPLEMENTATION_TAGS = (0x00020012, 0x00020013)

Path = tuple[Any, ...]


_DEFINITION_UIDS = frozenset({
    "CodingSchemeUID", "MappingResourceUID", "ContextGroupExtensionCreatorUID",
    "TemplateExtensionOrganizationUID", "TemplateExtensionCreatorUID", "ContextUID",
    "PrivateInformationCreatorUID", "TransferSyntaxUID",
})
"""UIDs that name a definition (a coding scheme, a template, a syntax), the same in every
file that uses it: like the ``...ClassUID`` ones, they identify no one."""


def identifying(elem: DataElement) -> bool:
    """Whether ``elem``'s value identifies someone or something (see the module docstring)."""
    vr = elem.VR
    if vr == "UI":
        keyword = elem.keyword
        return not (keyword.endswith("ClassUID") or keyword in _DEFINITION_UIDS)
    if vr in CANDIDATE_VRS:
        return True
    if vr not in _TEXT_VRS:
        return False
    keyword = elem.keyword
    if not keyword:
        return False  # private or unknown: its meaning is not known
    return keyword in IDENTIFYING_KEYWORDS or keyword.endswith(_ID_SUFFIXES)


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


def _name_parts(value: str) -> list[str]:
    """The family and given names of one person name (first component group), case-folded;
    empty unless both are there (a lone name is the whole value, searched as such)."""
    parts = [p.strip().casefold() for p in value.split("=")[0].split("^")[:2]]
    return parts if len(parts) == 2 and all(len(p) >= 2 for p in parts) else []


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


def _ours(tag: int, value: str) -> bool:
    """A value deid-workers itself wrote into every output (provenance, implementation)."""
    if tag == _METHOD_TAG:
        return value.startswith(_OURS_PREFIX)
    if tag in _IMPLEMENTATION_TAGS:
        from .filemeta import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

        return value in (IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME)
    return False


def _found(needle: str, haystack: str) -> bool:
    """``needle`` (case-folded) occurs in ``haystack`` as whole tokens."""
    start = haystack.find(needle)
    n = len(needle)
    while start >= 0:
        before = haystack[start - 1] if start else " "
        after = haystack[start + n] if start + n < len(haystack) else " "
        if not (before.isalnum() or before == "_" or after.isalnum() or after == "_"):
            return True
        start = haystack.find(needle, start + 1)
    return False


SHORT_WORD = 6
"""A value that is one word of letters shorter than this (``Here``, ``Test``) counts only
where it is a whole value of the output: inside text it is more likely an ordinary word."""


def _short_word(value: str) -> bool:
    return len(value) < SHORT_WORD and value.isalpha()


def recipe_literals(recipe: Any) -> frozenset[str]:
    """The literal values of a recipe's ADD and REPLACE lines, case-folded: the dummies it
    writes into every output, never a leak when an input held the same text. Computed once
    per recipe (kept in its cache)."""
    cache = getattr(recipe, "cache", None)
    if isinstance(cache, dict):
        known = cache.get("verify_literals")
        if isinstance(known, frozenset):
            return known
    out = set()
    for action in getattr(recipe, "header", ()):
        value = action.value
        if action.action in ("ADD", "REPLACE") and value and not value.startswith(
                ("var:", "func:", "deid_func:")):
            out.add(value.strip().casefold())
    literals = frozenset(out)
    if isinstance(cache, dict):
        cache["verify_literals"] = literals
    return literals


def residual_phi(original: Dataset, output: Dataset, *, path: str | None = None,
                 dummies: frozenset[str] = frozenset()) -> list[str]:
    """Keywords of ``original``'s identifying elements whose removed or replaced value is
    still in ``output`` (or in ``path``, the output's path relative to its folder).

    Both datasets as read from disk (``output`` as written). ``dummies``: the recipe's own
    literal values, case-folded (:func:`recipe_literals`). Sorted, each name once.
    """
    out_values: dict[Path, list[str]] = {}
    uids: set[str] = set()
    text: list[str] = []
    binary: list[str] = []
    meta = getattr(output, "file_meta", None) or Dataset()
    for where, elem in (*_walk(output), *_walk(meta, ("meta",))):
        if elem.keyword in _PIXEL_KEYWORDS:
            continue
        values = _values(elem)
        out_values[where] = values
        tag = int(elem.tag)
        values = [v for v in values if not _ours(tag, v)]
        if elem.VR == "UI":
            uids.update(values)
        elif elem.VR in _BINARY_VRS:
            binary.extend(v.casefold() for v in values)
        else:
            text.extend(v.casefold() for v in values)
    haystack = "\n".join(text)
    blob = "\n".join(binary)
    whole = set(text)
    found: set[str] = set()
    for where, elem in _walk(original):
        if not identifying(elem):
            continue
        values = _values(elem)
        if not values or out_values.get(where) == values:
            continue  # kept unchanged: the recipe chose to keep it
        for value in values:
            if len(value) < MIN_LENGTH or value.startswith(_STANDARD_UID):
                continue
            folded = value.casefold()
            if folded in dummies:
                continue
            if elem.VR == "UI":
                hit = value in uids
            elif _short_word(value):
                hit = folded in whole
            else:
                hit = _found(folded, haystack) or folded in blob
            if not hit and elem.VR == "PN":
                # "John Doe" in a comment holds "Doe^John": both names in one value.
                parts = _name_parts(value)
                hit = bool(parts) and any(all(_found(p, t) for p in parts) for t in text)
            if hit:
                found.add(_name(elem))
                break
    names = sorted(found)
    if path:
        names.extend(f"{keyword} (output path)" for keyword in sorted(path_leaks(path, original)))
    return names


def overlay_suspects(original: Dataset, output: Dataset) -> dict[int, int]:
    """The high-bit overlays (group -> bit) the input's or the output's header declares, the
    output's winning: where :func:`residual_overlay_bits` must look. Headers only, so the
    caller reads the output's pixel data only for these files (most have none)."""
    return {**high_bit_overlays(original), **high_bit_overlays(output)}


def residual_overlay_bits(original: Dataset, output: Dataset) -> list[str]:
    """``overlay 60xx (PixelData bit N)`` for each high-bit overlay of :func:`overlay_suspects`
    whose bit is still set somewhere in ``output``'s native pixel words (``output`` read
    whole); a position that is a pixel value's bit in the output (within its BitsStored or
    at or below its HighBit) is not judged."""
    suspects = overlay_suspects(original, output)
    if not suspects:
        return []
    words = native_words(output)
    if words is None:
        return []  # encapsulated, or not single-sample native: no high-bit overlay there
    stored = int(output.get("BitsStored", 0) or 0)
    high = int(output.get("HighBit", stored - 1) or 0)
    width = 8 * words.dtype.itemsize
    found = []
    for group, pos in sorted(suspects.items()):
        if max(stored, high + 1) <= pos < width and ((words >> pos) & 1).any():
            found.append(f"overlay {group:04X} (PixelData bit {pos})")
    return found
