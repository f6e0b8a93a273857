"""The identifying values of a file's own header, and whether a piece of OCR text holds one.

What counts as identifying (read at every sequence depth, so a request sequence's accession
number counts too):

- names: every element of VR PN (patient, other names, physicians, operators), split into
  their words (family, given, middle; prefixes and suffixes too), so a name matches in any
  order, case and punctuation ("DOE^JANE" = "Jane Doe" = "DOE, JANE");
- identifiers: :data:`ID_KEYWORDS` (patient and other IDs, accession, procedure IDs,
  institution, addresses, phone numbers), matched as whole values with punctuation and spaces
  ignored, and also when OCR splits one across boxes (a box holding a long enough piece);
- dates: every DA element, and the date part of every DT element (matched by
  :mod:`.rules`, which finds dates in any common spelling).

Matching is tolerant of OCR's usual confusions: both sides are reduced to a "skeleton" in which
O/Q/D look like 0, I/L like 1, S like 5, B like 8, Z like 2, G like 6; a value of at least
:data:`FUZZY_MIN` characters may also differ in one character.

Values are kept in memory only, for the life of one file's check: never logged, never in a
verdict (which names the matched element's keyword, never its value).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

__all__ = ["ID_KEYWORDS", "Identifying", "identifying_values", "skeleton", "words"]

ID_KEYWORDS = frozenset({
    "PatientID", "OtherPatientIDs", "IssuerOfPatientID", "AccessionNumber", "StudyID",
    "RequestedProcedureID", "ScheduledProcedureStepID", "PerformedProcedureStepID",
    "AdmissionID", "MedicalRecordLocator", "PatientAddress", "PatientTelephoneNumbers",
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName",
    "LocalNamespaceEntityID", "UniversalEntityID", "PlacerOrderNumberImagingServiceRequest",
    "FillerOrderNumberImagingServiceRequest", "MilitaryRank", "BranchOfService",
    "PatientInsurancePlanCodeSequence", "OtherPatientIDsSequence", "ResponsiblePerson",
    "ResponsibleOrganization", "DeviceSerialNumber", "StationName",
})
"""Keywords whose values identify the patient, the visit or the place (matched whole)."""

MIN_ID = 4
"""An identifier shorter than this (skeleton) is not matched: "12" would hit every ruler."""

MIN_PIECE = 5
"""A piece of an identifier (split over boxes, cut short) must be this long to match it."""

MIN_NAME_WORD = 2
"""Name words shorter than this (initials) are not matched on their own."""

FUZZY_MIN = 6
"""Values (skeletons) at least this long also match with one character misread."""

_CONFUSABLE = str.maketrans({"O": "0", "Q": "0", "D": "0", "I": "1", "L": "1", "|": "1", "!": "1",
                             "S": "5", "B": "8", "Z": "2", "G": "6"})
_NON_ALNUM = re.compile(r"[^0-9A-Z]+")
_WORD_SPLIT = re.compile(r"[^0-9A-Za-z\u00C0-\u024F]+")


def skeleton(text: str) -> str:
    """Upper case, accents kept as letters, OCR look-alikes merged, everything else dropped."""
    return _NON_ALNUM.sub("", text.upper().translate(_CONFUSABLE))


def words(text: str) -> list[str]:
    """The skeletons of ``text``'s words (split on anything that is not a letter or digit)."""
    out = []
    for w in _WORD_SPLIT.split(text):
        s = skeleton(w)
        if s:
            out.append(s)
    return out


@dataclass
class Identifying:
    """What the OCR text of one file is compared with; built by :func:`identifying_values`."""

    names: dict[str, str] = field(default_factory=dict)      # name word skeleton (4+) -> keyword
    short_names: dict[str, str] = field(default_factory=dict)  # 2-3 letter name word, upper -> keyword
    ids: dict[str, str] = field(default_factory=dict)        # identifier skeleton -> keyword
    dates: dict[dt.date, str] = field(default_factory=dict)  # date -> keyword

    def __repr__(self) -> str:  # never show values, even in a traceback or a debugger's repr
        return (f"Identifying(names={len(self.names) + len(self.short_names)}, ids={len(self.ids)}, "
                f"dates={len(self.dates)})")

    def match(self, text: str) -> str | None:
        """The keyword of a header value found in ``text``, or None. Dates are left to rules."""
        box_words = words(text)
        if not box_words:
            return None
        flat = "".join(box_words)
        for value, keyword in self.ids.items():
            if _contains(flat, value):
                return keyword
            # an identifier split over two boxes, or cut short by the detector: a long enough
            # piece of it (half, at least MIN_PIECE characters, with a digit) is enough
            least = max(MIN_PIECE, (len(value) + 1) // 2)
            for piece in (flat, *box_words):
                if len(piece) >= least and piece in value and any(c.isdigit() for c in piece):
                    return keyword
        for w in box_words:
            found = self.names.get(w)
            if found is not None:
                return found
        if self.short_names:
            for w in _WORD_SPLIT.split(text.upper()):
                found = self.short_names.get(w)
                if found is not None:
                    return found
        for name, keyword in self.names.items():
            for w in box_words:
                # one letter misread in a longer name, or a name glued to another ("JANEDOE")
                if len(name) >= FUZZY_MIN - 1 and not w.isdigit() and _within_one(w, name):
                    return keyword
                if name in w:
                    return keyword
        return None


def _contains(haystack: str, needle: str) -> bool:
    """``needle`` occurs in ``haystack`` exactly, or (long needles) with one substitution,
    insertion or deletion."""
    if needle in haystack:
        return True
    if len(needle) < FUZZY_MIN:
        return False
    return _approx_find(haystack, needle, 1)


def _within_one(a: str, b: str) -> bool:
    """The edit distance of ``a`` and ``b`` is at most 1."""
    if a == b:
        return True
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    if la == lb:
        return sum(x != y for x, y in zip(a, b)) == 1
    if la > lb:
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    return a[i:] == b[i + 1:]


def _approx_find(text: str, pattern: str, k: int) -> bool:
    """Sellers' algorithm: does ``pattern`` occur in ``text`` with at most ``k`` edits?"""
    m = len(pattern)
    prev = list(range(m + 1))
    if prev[m] <= k:
        return True
    for ch in text:
        cur = [0] * (m + 1)
        for j in range(1, m + 1):
            cost = 0 if pattern[j - 1] == ch else 1
            cur[j] = min(prev[j - 1] + cost, prev[j] + 1, cur[j - 1] + 1)
        if cur[m] <= k:
            return True
        prev = cur
    return False


def _parse_date(value: str) -> dt.date | None:
    digits = value.strip()[:8]
    if len(digits) != 8 or not digits.isdigit():
        return None
    try:
        return dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return None


def _values(value: object) -> Iterable[str]:
    if value is None:
        return ()
    if isinstance(value, (list, tuple, MultiValue)):
        return [str(v) for v in value if v is not None]
    return (str(value),)


def _add_name(found: Identifying, part: str, keyword: str) -> None:
    for raw in _WORD_SPLIT.split(part):
        if len(raw) < MIN_NAME_WORD or raw.isdigit():
            continue
        if len(raw) < MIN_ID:
            found.short_names.setdefault(raw.upper(), keyword)
        else:
            found.names.setdefault(skeleton(raw), keyword)


def identifying_values(ds: Dataset) -> Identifying:
    """Collect the names, identifiers and dates of ``ds`` (all depths, file meta excluded)."""
    found = Identifying()

    def visit(d: Dataset) -> None:
        for el in d:
            if el.VR == "SQ":
                for item in el.value or ():
                    visit(item)
                continue
            keyword = el.keyword or f"({el.tag.group:04X},{el.tag.element:04X})"
            if el.VR == "PN":
                for v in _values(el.value):
                    for group in v.split("="):  # alphabetic, ideographic, phonetic
                        # family, given, middle: prefixes and suffixes (DR, JR) are not identifying
                        for part in group.split("^")[:3]:
                            _add_name(found, part, keyword)
            elif el.VR in ("DA", "DT"):
                for v in _values(el.value):
                    day = _parse_date(v)
                    if day is not None:
                        found.dates.setdefault(day, keyword)
            elif el.keyword in ID_KEYWORDS and el.VR in ("LO", "SH", "CS", "LT", "ST", "UT", "UC", "IS"):
                for v in _values(el.value):
                    s = skeleton(v)
                    if len(s) >= MIN_ID:
                        found.ids.setdefault(s, keyword)

    visit(ds)
    return found
