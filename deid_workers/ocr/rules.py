"""The decision for one text box: PHI, allowed annotation, other text, or unsure.

In this order (the first that applies decides):

1. ``phi`` when the text holds an identifying value of the file's own header (a name word, an
   identifier, or one of its dates in any spelling): identifying.py;
2. ``allowed`` when a ``re:`` entry of the allow-list matches the whole text and the engine
   was sure of it (confidence >= the policy's minimum);
3. ``phi`` when the text holds a date in a common spelling (``1987-04-04``, ``04/04/1987``,
   ``04.04.87``, ``19870404``, ``4 Apr 1987``, ``Apr 4, 1987``, ``Apr 1987``, a month misread
   in one letter before a 4-digit year), a long number (:data:`LONG_NUMBER` digits in a row, or
   a phone-like run of digit groups), a part of a date (``03/15``, ``5/1979``), or a field
   label ("DOB", "MRN", "Name:", "Acc#", with or without its value): text of that kind should
   not be burned into an image;
4. ``unsure`` when the engine's confidence is below the policy's minimum, or a box was
   detected but nothing was recognised in it: it may be PHI we could not read;
5. ``allowed`` when each word is on the allow-list (allowlist.py);
6. ``text``: readable text of no PHI kind. Kept by default; a policy may black it out too.

Letters read among digits ("1987-O4-O4", "19B7") are read as the digits they resemble before
dates and numbers are looked for.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import NamedTuple

from .allowlist import AllowList
from .identifying import Identifying

__all__ = ["Decision", "LONG_NUMBER", "PHI", "ALLOWED", "TEXT", "UNSURE", "classify", "find_dates", "has_label",
           "has_long_number"]

PHI, ALLOWED, TEXT, UNSURE = "phi", "allowed", "text", "unsure"

LONG_NUMBER = 5
"""Digits in a row that make a number identifying (an MRN, a phone or accession number)."""

_LOOKALIKE = {"O": "0", "o": "0", "Q": "0", "D": "0", "I": "1", "l": "1", "|": "1", "S": "5", "B": "8", "Z": "2"}
_LOOKALIKE_NEAR_DIGIT = re.compile(r"(?<=\d)[OoQDIl|SBZ]|[OoQDIl|SBZ](?=\d)")

_MONTHS = {
    "JAN": 1, "FEB": 2, "MAR": 3, "APR": 4, "MAY": 5, "JUN": 6, "JUL": 7, "AUG": 8, "SEP": 9,
    "OCT": 10, "NOV": 11, "DEC": 12,
    # German and French spellings that differ in their first three letters
    "MRZ": 3, "MAI": 5, "OKT": 10, "DEZ": 12, "FEV": 2, "AVR": 4, "JUI": 7, "AOU": 8,
}
_MON = r"(JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC|MRZ|MAI|OKT|DEZ|FEV|AVR|JUI|AOU)[A-Z]*\.?"
_ANY_MON = r"([A-Z]{3})[A-Z]*\.?"   # a month misread in one letter ("JUM"), with a 4-digit year

_YMD = re.compile(r"(?<!\d)(\d{4})([-/. ])(\d{1,2})\2(\d{1,2})(?!\d)")
_DMY = re.compile(r"(?<!\d)(\d{1,2})([-/.])(\d{1,2})\2(\d{4}|\d{2})(?!\d)")
_COMPACT = re.compile(r"(?<!\d)((?:19|20)\d{6})(?!\d)")
_D_MON_Y = re.compile(r"(?<![0-9A-Z])(\d{1,2})[-/. ]*" + _MON + r"[-/.,' ]*(\d{4}|\d{2})(?!\d)")
_MON_D_Y = re.compile(r"(?<![A-Z])" + _MON + r"[-/. ]*(\d{1,2})(?:ST|ND|RD|TH)?[,. ]+'?(\d{4}|\d{2})(?!\d)")
_D_MON4_Y = re.compile(r"(?<![0-9A-Z])(\d{1,2})[-/. ]*" + _ANY_MON + r"[-/.,' ]*((?:19|20)\d{2})(?!\d)")
_PART_DM = re.compile(r"(?<![\d/])(\d{2})/(\d{2})(?![\d/])")                # 03/15: day and month
_PART_MY = re.compile(r"(?<![\d/.])(\d{1,2})[/.-]((?:19|20)\d{2})(?!\d)")      # 5/1979: month and year
_PART_Y = re.compile(r"(?:^|\s)[/.-]((?:19|20)\d{2})(?!\d)")                  # /1983: the end of one
_MON_Y = re.compile(r"(?<![A-Z])" + _MON + r"[-/.,' ]*((?:19|20)\d{2})(?!\d)")

_LABEL = re.compile(
    r"(?<![A-Z])(D[O0]B|D\.[O0]\.B\.?|BIRTH[A-Z]*|BORN|NAME|MRN|PATIENT\s*(?:ID|NAME|NO)|PAT\.?\s*(?:ID|NAME)|PID|"
    r"ACCESSION|ACC\s*(?:#|NO\b|:)|SSN)(?![A-Z])[\s:#.]*(.*)")
"""A label of an identifying field: the box is PHI (and so is the rest of its line)."""

_DIGIT_RUN = re.compile(r"\d{%d,}" % LONG_NUMBER)
_DIGIT_GROUPS = re.compile(r"\+?\d+(?:[-. ]\d+)+")


class Decision(NamedTuple):
    """What a box is (``kind``) and why (``reason``): a header keyword or a rule name, no text."""

    kind: str
    reason: str


def digitise(text: str) -> str:
    """Letters that OCR confuses with digits, read as digits where they touch a digit."""
    prev = None
    while prev != text:
        prev = text
        text = _LOOKALIKE_NEAR_DIGIT.sub(lambda m: _LOOKALIKE[m.group(0)], text)
    return text


def _year(y: str) -> int:
    n = int(y)
    if len(y) == 2:
        return 2000 + n if n <= 40 else 1900 + n
    return n


def _date(y: int, m: int, d: int) -> dt.date | None:
    if not 1900 <= y <= 2100:
        return None
    try:
        return dt.date(y, m, d)
    except ValueError:
        return None


def find_dates(text: str) -> list[dt.date | None]:
    """Dates in ``text`` (None for a month and year without a day); empty when there is none."""
    t = digitise(text).upper()
    found: list[dt.date | None] = []
    for m in _YMD.finditer(t):
        d = _date(int(m.group(1)), int(m.group(3)), int(m.group(4)))
        if d:
            found.append(d)
    for m in _DMY.finditer(t):
        a, b, y, sep = int(m.group(1)), int(m.group(3)), _year(m.group(4)), m.group(2)
        if sep == "." and (len(m.group(1)) != 2 or len(m.group(3)) != 2) and len(m.group(4)) == 2:
            continue  # "2.1.10" is a version number more often than a date
        for day, month in ((a, b), (b, a)):
            d = _date(y, month, day)
            if d:
                found.append(d)
    for m in _COMPACT.finditer(t):
        s = m.group(1)
        d = _date(int(s[:4]), int(s[4:6]), int(s[6:8]))
        if d:
            found.append(d)
    for m in _D_MON_Y.finditer(t):
        d = _date(_year(m.group(3)), _MONTHS[m.group(2)], int(m.group(1)))
        if d:
            found.append(d)
    for m in _MON_D_Y.finditer(t):
        d = _date(_year(m.group(3)), _MONTHS[m.group(1)], int(m.group(2)))
        if d:
            found.append(d)
    if not found:
        for m in _D_MON4_Y.finditer(t):
            if _near_month(m.group(2)):
                found.append(None)
    if not found:
        for m in _MON_Y.finditer(t):
            if 1900 <= int(m.group(2)) <= 2100:
                found.append(None)
        for m in _PART_MY.finditer(t):
            if 1 <= int(m.group(1)) <= 12:
                found.append(None)
        found.extend(None for _ in _PART_Y.finditer(t))
        for m in _PART_DM.finditer(t):
            a, b = int(m.group(1)), int(m.group(2))
            if (1 <= a <= 12 and 1 <= b <= 31) or (1 <= b <= 12 and 1 <= a <= 31):
                found.append(None)
    return found


def _near_month(word: str) -> bool:
    """Three letters that differ from a month's abbreviation in at most one letter."""
    return any(sum(a != b for a, b in zip(word, mon)) <= 1 for mon in _MONTHS)


def has_label(text: str) -> bool:
    """A field label ("DOB", "MRN", "Name:", "Acc#"), alone or before its value: a detector
    often cuts the value off, or reads it as noise, and the label says what it was."""
    return _LABEL.search(text.upper()) is not None


def has_long_number(text: str) -> bool:
    """:data:`LONG_NUMBER` digits in a row, or digit groups like a phone number (two groups of
    3+ digits, 7+ digits in all: "555 0123", "+1-555-0003")."""
    t = digitise(text)
    if _DIGIT_RUN.search(t):
        return True
    for m in _DIGIT_GROUPS.finditer(t):
        groups = re.findall(r"\d+", m.group(0))
        if sum(len(g) >= 3 for g in groups) >= 2 and sum(len(g) for g in groups) >= 7:
            return True
    return False


def classify(text: str, confidence: float, identifying: Identifying, allow: AllowList, *,
             modality: str = "", min_confidence: float = 0.5) -> Decision:
    """The decision for one box (see the module docstring for the order of the rules)."""
    text = text.strip()
    keyword = identifying.match(text) if text else None
    if keyword:
        return Decision(PHI, keyword)
    dates = find_dates(text) if text else []
    for d in dates:
        if d is not None and d in identifying.dates:
            return Decision(PHI, identifying.dates[d])
    if not text:
        return Decision(UNSURE, "unread")
    sure = confidence >= min_confidence
    if sure and allow.pattern_allows(text, modality):
        return Decision(ALLOWED, "allow-list")
    if dates:
        return Decision(PHI, "date")
    if has_long_number(text):
        return Decision(PHI, "number")
    if has_label(text):
        return Decision(PHI, "label")
    if not re.search(r"[0-9A-Za-z]", text):
        return Decision(ALLOWED, "marks")   # ticks and dashes of a scale, arrows, whatever confidence
    if not sure:
        return Decision(UNSURE, "low confidence")
    if allow.words_allow(text, modality):
        return Decision(ALLOWED, "allow-list")
    return Decision(TEXT, "other text")
