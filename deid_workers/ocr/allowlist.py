"""The allow-list of harmless annotation text, per modality, read from a user-editable file.

File format (the shipped one is ``deid_workers/ocr/data/allowlist.txt``)::

    # comment
    [*]                 entries for every modality
    L
    R
    kVp
    re:W\\s*\\d+\\s*L\\s*-?\\d+      a regular expression (Python syntax)
    [US]                entries for ultrasound only (Modality value, upper case)
    Gain

- A plain entry is a word (case-insensitive); an entry with spaces adds each of its words.
- ``re:`` entries must match a box's whole text (case-insensitive, runs of spaces read as one).

How a box's text is judged (rules.py):

- a ``re:`` entry that matches the whole text makes the box allowed even if it looks like a
  date or a long number (that is what regular expressions are for: "Frame 00012");
- otherwise text is allowed when each of its words is a plain entry, a short number (up to
  :data:`SHORT_NUMBER` digits, with decimals, sign, ``%`` or ``x``), a short number glued to a
  plain entry ("10cm", "120kVp"), or punctuation (scale marks). Words are split at spaces and
  at ``: = , ; ( ) [ ] / |``.
- A header value (name, ID, the file's own dates) is PHI whatever the allow-list says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..recipe.patterns import Pattern, PatternError, compile_pattern

__all__ = ["AllowList", "SHORT_NUMBER", "load_allowlist", "parse_allowlist", "DEFAULT_ALLOWLIST"]

SHORT_NUMBER = 4
"""Digits a number may have and still count as annotation (a measurement, a frame number)."""

DEFAULT_ALLOWLIST = "allowlist.txt"
"""Name of the shipped file, in package data ``deid_workers/ocr/data/``."""

ALL = "*"

_SPLIT = re.compile(r"[\s:=,;()\[\]/|]+")
_NUMBER = re.compile(r"[+-]?\d{1,%d}(?:[.,]\d+)?(?:%%|X)?" % SHORT_NUMBER)
_NUMBER_UNIT = re.compile(r"([+-]?\d{1,%d}(?:[.,]\d+)?)([A-Z%%]+[0-9]?)" % SHORT_NUMBER)
_PUNCT = re.compile(r"[^0-9A-Z]+")


@dataclass(frozen=True)
class AllowList:
    """Words and whole-text patterns per modality (``"*"`` = every modality)."""

    words: dict[str, frozenset[str]] = field(default_factory=dict)
    patterns: dict[str, tuple[Pattern, ...]] = field(default_factory=dict)

    def _words(self, modality: str) -> frozenset[str]:
        return self.words.get(ALL, frozenset()) | self.words.get(modality.upper(), frozenset())

    def _patterns(self, modality: str) -> tuple[Pattern, ...]:
        return self.patterns.get(ALL, ()) + self.patterns.get(modality.upper(), ())

    def pattern_allows(self, text: str, modality: str = "") -> bool:
        """A ``re:`` entry matches the whole of ``text``. The text comes from pixels, so the
        entries run in bounded time like a recipe's patterns (a match past the bound raises
        :class:`~deid_workers.recipe.patterns.PatternTimeout`)."""
        norm = " ".join(text.split())
        return any(p.search(norm) for p in self._patterns(modality))

    def words_allow(self, text: str, modality: str = "") -> bool:
        """Every word of ``text`` is an entry, a short number (with a unit entry) or punctuation."""
        vocab = self._words(modality)
        for word in _SPLIT.split(text.upper()):
            if not word or not _PUNCT.sub("", word):
                continue  # empty or punctuation only: ticks, dashes, arrows of a scale
            word = word.strip(".-+*'\"")
            if not word or word in vocab or _NUMBER.fullmatch(word):
                continue
            m = _NUMBER_UNIT.fullmatch(word)
            if m and (m.group(2) in vocab or m.group(2).rstrip("0123456789") in vocab):
                continue
            return False
        return True

    def __len__(self) -> int:
        return sum(len(v) for v in self.words.values()) + sum(len(v) for v in self.patterns.values())


def parse_allowlist(text: str, source: str = "<allow-list>") -> AllowList:
    """Parse allow-list text; raises ValueError naming ``source`` and the line of a bad entry."""
    words: dict[str, set[str]] = {}
    patterns: dict[str, list[Pattern]] = {}
    section = ALL
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("re:") else raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip().upper() or ALL
            if not re.fullmatch(r"\*|[A-Z0-9]{1,16}", section):
                raise ValueError(f"{source}:{n}: a section is [*] or [MODALITY], e.g. [US]")
            continue
        if line.startswith("re:"):
            try:
                entry = re.compile(line[3:].strip()).pattern  # whole by itself, so wrapping keeps it
                whole = r"\A(?:" + entry + r")\Z"
                patterns.setdefault(section, []).append(compile_pattern(whole, re.IGNORECASE))
            except re.error as exc:
                raise ValueError(f"{source}:{n}: bad regular expression ({exc})") from None
            except PatternError as exc:
                raise ValueError(f"{source}:{n}: {exc}") from None
            continue
        for w in line.upper().split():
            words.setdefault(section, set()).add(w)
    return AllowList({k: frozenset(v) for k, v in words.items()}, {k: tuple(v) for k, v in patterns.items()})


def load_allowlist(path: str | Path | None = None) -> AllowList:
    """The allow-list in ``path``, or the shipped one when ``path`` is None."""
    if path is None:
        text = resources.files("deid_workers.ocr").joinpath("data", DEFAULT_ALLOWLIST).read_text(encoding="utf-8")
        return parse_allowlist(text, f"deid_workers/ocr/data/{DEFAULT_ALLOWLIST}")
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{p}: cannot read the allow-list ({exc.strerror})") from None
    return parse_allowlist(text, str(p))
