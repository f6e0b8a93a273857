"""Clean free text: take a file's own identifying values out of a description or comment.

The PS3.15 Clean options (Clean Descriptors, Clean Structured Content, Clean Graphics, and
the C of Retain Patient Characteristics) ask for free text to be "cleaned": replaced with a
value of similar meaning known not to identify anyone, rather than kept or dropped blindly.
A description like ``CT head DOE John 12345 follow-up 2024-01-31`` keeps its meaning as
``CT head [name] [name] [id] follow-up [date]``.

What counts as identifying (:func:`collect`, from the file as it was read, at every depth,
before any recipe line ran):

- names: the family, given and middle names of every person name (PN) of the file, each
  word of two letters or more, found as a whole word in any order and any case -> ``[name]``;
- IDs: the values of the file's ID and number attributes (a text keyword ending in ``ID``,
  ``IDs``, ``Number``, ``Numbers``, ``Identifier``: PatientID, OtherPatientIDs,
  AccessionNumber, StudyID...) of three characters or more, as whole tokens -> ``[id]``;
- dates: every date of the file (DA, and the date of a DT) written the usual ways
  (``20240131``, ``2024-01-31``, ``31/01/2024``, ``01/31/24``, ``31.01.2024``, ``31 Jan 2024``,
  ``January 31, 2024``...), and any other text shaped like a full date with a four-digit year
  (a date the file does not hold is still a date of the patient) -> ``[date]``.

Matching ignores case; a token is whole when no letter or digit touches it. The values and
their compiled regex are kept for the next file with the same values (the files of one
patient come together): a bounded cache (256 sets) in the process's memory, never written
anywhere (Python's ``re`` keeps compiled patterns in the same way). The result is cut
to the VR's maximum length, so it stays a valid value. What the text holds beyond these
(a name the file holds nowhere, a phone number) is not found: cleaning is no reader of prose,
and ``--verify`` looks for survivors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

from pydicom import datadict

from ..dicom import compat

__all__ = ["Identifying", "MARKERS", "clean_text", "clean_value", "collect", "identifying_kind",
           "kinds_by_text", "NotPlain", "public_kinds", "texts_of"]

MARKERS = {"name": "[name]", "id": "[id]", "date": "[date]"}
"""What takes the place of each kind of identifying value."""

MIN_NAME = 2
MIN_ID = 3

_ID_SUFFIXES = ("ID", "IDs", "Number", "Numbers", "Identifier")
_ID_VRS = frozenset({"LO", "SH", "UC", "CS", "LT", "ST", "UT"})
_TEXT_VRS = frozenset({"AE", "CS", "LO", "LT", "SH", "ST", "UC", "UT"})
_MAX_LENGTH = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "ST": 1024, "LT": 10240}

_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
           "september", "october", "november", "december")
_MONTH = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|" \
         r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
_D = r"(?:0?[1-9]|[12]\d|3[01])"
_M = r"(?:0?[1-9]|1[0-2])"
_Y = r"(?:1[89]|20)\d{2}"
_GENERIC_DATES = (
    rf"{_Y}[-/.]{_M}[-/.]{_D}",
    rf"{_D}[-/.]{_M}[-/.]{_Y}",
    rf"{_M}[-/.]{_D}[-/.]{_Y}",
    rf"{_Y}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])",
    rf"{_D}[ -]?{_MONTH}\.?[ ,-]*{_Y}",
    rf"{_MONTH}\.?[ -]?{_D}(?:st|nd|rd|th)?,?[ -]*{_Y}",
)
"""Full dates with a four-digit year, however the file's own dates are written or not."""

_EDGE_L = r"(?<![^\W_])"
_PIECES = re.compile(r"[^\W_]+")
_NO_DIGITS = str.maketrans("", "", "0123456789")
_EDGE_R = r"(?![^\W_])"


def identifying_kind(tag: int, vr: str) -> str | None:
    """``name``, ``id`` or ``date`` for an element that holds an identifying value of that
    kind, else None. Public elements are judged by pydicom's dictionary (cached per tag),
    private ones by their VR alone (a private PN or DA still names a person or a day)."""
    if tag >> 16 & 1 or not datadict.dictionary_has_tag(tag):
        return _BY_VR.get(vr)
    return public_kinds().get(tag)


_BY_VR = {"PN": "name", "DA": "date", "DT": "date"}


@lru_cache(maxsize=1)
def public_kinds() -> dict[int, str]:
    """Tag -> kind of every public attribute that holds an identifying value (built once)."""
    kinds = {}
    for tag, (vr, _vm, _name, _retired, keyword) in compat.DICTIONARY.items():
        first = vr.split(" or ")[0]
        if first in _BY_VR:
            kinds[tag] = _BY_VR[first]
        elif first in _ID_VRS and keyword.endswith(_ID_SUFFIXES):
            kinds[tag] = "id"
    return kinds


@lru_cache(maxsize=1)
def kinds_by_text() -> dict[str, str]:
    """:func:`public_kinds` keyed by tag text, ``(0010,0010)``, as field paths end."""
    return {f"({tag >> 16:04X},{tag & 0xFFFF:04X})": kind for tag, kind in public_kinds().items()}


@dataclass(frozen=True)
class Identifying:
    """The identifying values of one file: name words, IDs and dates (``YYYYMMDD``)."""

    names: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()
    dates: tuple[str, ...] = ()

    @cached_property
    def _compiled(self) -> re.Pattern[str]:
        return _pattern(self.names, self.ids, self.dates)

    @cached_property
    def _pieces(self) -> frozenset[str]:
        return frozenset(w for value in self.names + self.ids for w in _PIECES.findall(value))

    def may_hold(self, text: str) -> bool:
        """False only when ``text`` cannot hold a value :meth:`pattern` finds: it has fewer
        than three digits (every date form has three or more) and none of its words is a
        word of a name or an ID (a name or ID found whole is made of whole words). Most
        descriptions are told apart so, in a fraction of the full search."""
        if len(text) - len(text.translate(_NO_DIGITS)) >= 3:
            return True
        return not self._pieces.isdisjoint(_PIECES.findall(text.lower()))

    def pattern(self) -> re.Pattern[str]:
        """The regex of these values (and of any full date), compiled once per set of values."""
        return self._compiled


def texts_of(value: Any) -> list[str]:
    """The values of a field as text (bytes as Latin-1), without padding, empty ones left out."""
    if value is None or value == "":
        return []
    items = value if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else [value]
    out = []
    for v in items:
        if isinstance(v, (bytes, bytearray)):
            v = bytes(v).decode("latin-1")
        text = str(v).strip(" \0")
        if text:
            out.append(text)
    return out


def collect(values: tuple[tuple[str, Any], ...]) -> Identifying:
    """An :class:`Identifying` from ``(kind, value)`` pairs (kinds of :func:`identifying_kind`;
    a value is a text, a converted element's value, or the bytes of an element as read,
    values split by a backslash). The files of one patient give the same pairs: answers are
    kept. Raises :class:`NotPlain` for bytes that are not plain ASCII, TypeError for a value
    that cannot be a key (a list): convert those first."""
    return _collect(values)


@lru_cache(maxsize=256)
def _collect(values: tuple[tuple[str, Any], ...]) -> Identifying:
    names: dict[str, None] = {}
    ids: dict[str, None] = {}
    dates: dict[str, None] = {}
    for kind, raw in _split(values):
        text = raw.strip(" \0")
        if not text:
            continue
        if kind == "name":
            for group in text.split("=")[:3]:  # alphabetic, ideographic, phonetic
                for part in group.split("^")[:3]:  # family, given, middle
                    for word in _WORDS.split(part):
                        for piece in {word, *word.split("-")}:
                            if len(piece) >= MIN_NAME:
                                names[piece.lower()] = None
        elif kind == "id":
            if len(text) >= MIN_ID:
                ids[text.lower()] = None
        elif kind == "date":
            digits = text[:8]
            if len(digits) == 8 and digits.isdigit():
                dates[digits] = None
    return Identifying(tuple(sorted(names, key=lambda s: (-len(s), s))),
                       tuple(sorted(ids, key=lambda s: (-len(s), s))), tuple(sorted(dates)))


_WORDS = re.compile(r"[\s,]+")


class NotPlain(ValueError):
    """Bytes that are not plain ASCII text: only pydicom, with the file's character set,
    decodes them right (the caller converts the element and asks again)."""


def _split(values: tuple[tuple[str, Any], ...]) -> list[tuple[str, str]]:
    out = []
    for kind, value in values:
        if isinstance(value, bytes):
            if not value.isascii() or b"\x1b" in value:
                raise NotPlain(kind)
            out += [(kind, v) for v in value.decode("ascii").split("\\")]
        else:
            out += [(kind, v) for v in texts_of(value)]
    return out


def _date_forms(date: str) -> list[str]:
    """Regexes of one ``YYYYMMDD`` date as people write it."""
    y, m, d = date[:4], int(date[4:6]), int(date[6:8])
    if not 1 <= m <= 12 or not 1 <= d <= 31:
        return [re.escape(date)]
    mm, dd = f"(?:0?{m})", f"(?:0?{d})"
    yy = f"(?:{y}|{y[2:]})"
    month = rf"(?:{_MONTHS[m - 1][:3]}{_MONTHS[m - 1][3:] and '(?:' + _MONTHS[m - 1][3:] + ')?'})"
    return [
        rf"{y}[-/.]?{mm}[-/.]?{dd}",
        rf"{dd}[-/.]{mm}[-/.]{yy}",
        rf"{mm}[-/.]{dd}[-/.]{yy}",
        rf"{dd}(?:st|nd|rd|th)?[ -]?{month}\.?[ ,-]*{yy}",
        rf"{month}\.?[ -]?{dd}(?:st|nd|rd|th)?,?[ -]*{yy}",
    ]


@lru_cache(maxsize=256)
def _pattern(names: tuple[str, ...], ids: tuple[str, ...], dates: tuple[str, ...]) -> re.Pattern[str]:
    """One regex with a named group per kind; dates first (their digits would otherwise be
    taken for IDs), then IDs, then names, each alternation longest first. The same patient's
    files give the same values, so the compiled pattern is shared (bounded cache)."""
    date_forms = [f for date in dates for f in _date_forms(date)] + list(_GENERIC_DATES)
    parts = [f"(?P<date>{'|'.join(date_forms)})"]
    if ids:
        parts.append(f"(?P<id>{'|'.join(re.escape(i) for i in ids)})")
    if names:
        parts.append(f"(?P<name>{'|'.join(re.escape(n) for n in names)})")
    return re.compile(f"{_EDGE_L}(?:{'|'.join(parts)}){_EDGE_R}", re.IGNORECASE)


def _marker(match: re.Match[str]) -> str:
    return MARKERS[match.lastgroup or "name"]


def clean_text(text: str, found: Identifying) -> str:
    """``text`` with ``found``'s names, IDs and dates (and any full date) replaced by markers."""
    if not found.may_hold(text):
        return text
    return found.pattern().sub(_marker, text)


def clean_value(value: Any, vr: str, found: Identifying) -> Any:
    """A field's value cleaned (each value of a multi-valued field; bytes of a UN element
    as Latin-1 text), cut to the VR's maximum length; values of a VR that holds no free
    text (numbers, binary data, UIDs) come back as they are."""
    if value is None or value == "" or vr not in _TEXT_VRS and vr != "UN":
        return value
    limit = _MAX_LENGTH.get(vr)

    def one(v: Any) -> Any:
        if isinstance(v, (bytes, bytearray)):
            if vr != "UN":
                return v
            return clean_text(bytes(v).decode("latin-1"), found).encode("latin-1", "replace")
        text = str(v)
        cleaned = clean_text(text, found)
        if vr == "CS" and cleaned != text:  # a code string holds capitals, digits, _ and space
            cleaned = found.pattern().sub(lambda m: _marker(m)[1:-1].upper(), text)
        return _cut(cleaned, limit)

    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [one(v) for v in value]
    return one(value)


def _cut(text: str, limit: int | None) -> str:
    """``text`` within ``limit`` characters, a marker cut in two dropped whole."""
    if limit is None or len(text) <= limit:
        return text
    cut = text[:limit]
    opened = cut.rfind("[")
    if opened > cut.rfind("]") and text[opened:].startswith(tuple(MARKERS.values())):
        cut = cut[:opened]
    return cut.rstrip()
