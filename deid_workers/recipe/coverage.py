"""What a recipe leaves in place that a PS3.15 Annex E profile would not (``--check-recipe``).

A hand-written recipe names the attributes its author thought of; Table E.1-1 names some 650.
:func:`check_recipe` runs the recipe, as the engine runs it (precedence, KEEP, REMOVE shielded
by REPLACE, selectors of every kind), on a synthetic dataset holding every attribute of the
table with a value unlike anything a recipe writes, and reports each attribute the profile
(the Basic Profile plus the named options, :mod:`.annex_e`) would remove, empty, replace or
clean but that comes out of the recipe with its value unchanged: a gap.

How the synthetic values are chosen: each is valid for the attribute's VR and unique to it; a
text value also carries the synthetic patient's name, as leaked free text does, so a recipe
that cleans text (``deid_func:clean_text``) changes it; a date is a real date, so a shift
changes it. Attributes a profile keeps (K, an option's C that keeps, a sequence kept for its
items, overlay bitmaps it flags) are never gaps. Not checked: the command (0000) and file meta
(0002) groups, which deid-workers' own file meta replaces, and Overlay Data (only flagged).

What this cannot see: the check is made at the top level of one synthetic file, so a line
whose selection depends on values (``values:``, ``fields:``, a REMOVE whose ``func:`` decides)
is judged on the synthetic values; ``var:`` values are missing (a REPLACE with one removes
the field, as a run without ids would). With files (:func:`count_in`), the gaps are narrowed
to the attributes the files hold, at any depth, with how many files and places hold them.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from pydicom import datadict
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as DicomSequence

from .actions import deidentify
from .annex_e import Mapped, mapped_rows, row_vr
from .compiled import compiled
from .model import Recipe
from .options import profile_name
from .selectors import Field
from .standard import EDITION

__all__ = ["CHECKED_EFFECTS", "Coverage", "Gap", "check_recipe", "count_in", "render_table", "to_json"]

CHECKED_EFFECTS = frozenset({"remove", "empty", "replace", "clean", "private"})
"""Profile effects (:data:`.annex_e.EFFECTS`) whose attribute a recipe must not leave as is."""

PATIENT_NAME = "Qz^Qy"
"""The synthetic patient's name; every synthetic text value carries its family name."""
_NAME_WORD = "QZ"

_PRIVATE_CREATOR = 0x00090010
_PRIVATE_ELEMENT = 0x00091001
_MASK_TAGS = {"(50xx,xxxx)": (0x50000022, "LO"), "(60xx,4000)": (0x60004000, "LT"),
              "(60xx,3000)": (0x60003000, "OW")}
"""A tag standing for each repeating-group row (Curve Description for the curve groups)."""


@dataclass(frozen=True)
class Gap:
    """An attribute the profile would remove, empty, replace or clean, which the recipe
    leaves as it is. ``recipe`` says which of its lines select it (``KEEP deid.dicom:12``),
    or "no line"; ``files``/``places``: with :func:`count_in`, how many files hold it and
    how many times (any depth)."""

    tag: str
    name: str
    keyword: str
    code: str
    option: str | None
    expected: str
    recipe: str
    files: int | None = None
    places: int | None = None


@dataclass(frozen=True)
class Coverage:
    """The result of a check: the recipe, the profile, the gaps, what was checked."""

    recipe: str
    recipe_sha256: str
    options: tuple[str, ...]
    checked: int
    gaps: tuple[Gap, ...]
    files: int | None = None
    unreadable: int | None = None
    not_checked: tuple[str, ...] = field(default=())

    @property
    def profile(self) -> str:
        return profile_name(self.options)


def _sentinel(tag: int, vr: str) -> Any:
    """A value valid for ``vr``, unique to ``tag``, unlike any dummy a recipe writes; text
    carries the synthetic patient's name."""
    text = f"S{tag:08X}"
    if vr in ("AE", "CS", "SH"):
        return f"{text} {_NAME_WORD}"
    if vr in ("LO", "LT", "ST", "UT", "UC"):
        return f"{text} {_NAME_WORD} text"
    if vr == "PN":
        return f"SENTINEL^{text}"
    values: dict[str, Any] = {
        "AS": "042Y", "DA": "20210315", "DT": "20210315101010", "TM": "101010", "DS": "12.5",
        "IS": "42", "UR": f"http://sentinel.example/{text}", "UI": f"1.2.826.0.1.3680043.10.543.{tag}",
        "AT": 0x00100010, "FL": 12.5, "FD": 12.5,
    }
    if vr in values:
        return values[vr]
    if vr in ("SL", "SS", "UL", "US", "SV", "UV"):
        return 42
    return f"{text} {_NAME_WORD}".encode()  # OB, OW, UN...: bytes that hold the name too


def _guess_vr(item: Mapped) -> str:
    """The VR of an attribute pydicom 3.0 does not know, from its name: enough to hold a
    value of the right kind (the engine reads what the element holds)."""
    vr = row_vr(item.row)
    if vr is not None:
        return vr
    name = item.row.name
    for suffix, guess in (("DateTime", "DT"), ("Date", "DA"), ("Time", "TM")):
        if name.endswith(suffix):
            return guess
    return "LO"


def _tag_of(item: Mapped) -> tuple[int, str] | None:
    """(tag, VR) the synthetic dataset holds for a row; None for rows not checked."""
    row = item.row
    if row.private:
        return _PRIVATE_ELEMENT, "LO"
    if row.tag in _MASK_TAGS:
        return _MASK_TAGS[row.tag]
    tag = row.tag_int
    if tag is None or tag >> 16 in (0x0000, 0x0002):
        return None
    return tag, _guess_vr(item)


def synthetic(options: Sequence[str] = ()) -> tuple[Dataset, dict[int, Mapped]]:
    """The synthetic dataset of the check: every checked row's attribute, with its value, and
    the rows by tag."""
    ds = Dataset()
    rows: dict[int, Mapped] = {}
    for item in mapped_rows(options):
        found = _tag_of(item)
        if found is None or item.effect not in CHECKED_EFFECTS:
            continue
        tag, vr = found
        if vr == "SQ":
            inner = Dataset()
            inner.CodeMeaning = f"S{tag:08X} {_NAME_WORD}"
            value: Any = DicomSequence([inner])
        else:
            value = _sentinel(tag, vr)
        if item.row.private:
            ds.add_new(_PRIVATE_CREATOR, "LO", "SENTINEL CREATOR")
        ds.add(DataElement(tag, vr, value))
        rows[tag] = item
    ds.PatientName = PATIENT_NAME
    return ds, rows


def _unchanged(element: DataElement | None, original: DataElement) -> bool:
    if element is None:
        return False
    value, before = element.value, original.value
    if isinstance(before, DicomSequence):
        return isinstance(value, DicomSequence) and len(value) > 0
    if isinstance(value, MultiValue):
        value = list(value)
    if isinstance(before, MultiValue):
        before = list(before)
    return bool(value == before) and value not in (None, "", b"", [])


def _selecting(recipe: Recipe, ds: Dataset, tag: int) -> str:
    """The recipe's lines (action and place) whose selector matches the top-level ``tag``."""
    c = compiled(recipe)
    element = ds[tag]
    f = Field(element, element.keyword, f"({tag >> 16:04X},{tag & 0xFFFF:04X})", False, ds)
    found = []
    for action in recipe.header:
        if action.action == "ADD":
            continue
        sel = c.sel(action.field)
        if sel.plain and f.matches(sel):
            found.append(f"{action.action} {action.where.rsplit('/', 1)[-1]}")
    return ", ".join(found) if found else "no line"


@contextmanager
def _quiet() -> Iterator[None]:
    """The engine's per-field warnings (a REPLACE without its var:) say nothing here."""
    log = logging.getLogger("deid_workers.recipe")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


class _Settings:
    """What the keyed built-ins need, with a throwaway key: a check must not create the
    user's key file, and nothing it derives leaves the process."""

    def __init__(self) -> None:
        import os

        self._key = os.urandom(32)
        self.date_shift_min, self.date_shift_max = -365, -1
        self.entity_field = "PatientID"

    def resolve_secret(self) -> tuple[bytes, None]:
        return self._key, None


def check_recipe(recipe: Recipe, options: Sequence[str] = ()) -> Coverage:
    """The gaps of ``recipe`` against the Basic Profile plus ``options`` (valid, in
    :data:`.options.OPTIONS` order: see :func:`.options.parse_profile`)."""
    ds, rows = synthetic(options)
    with _quiet():
        out = deidentify(copy.deepcopy(ds), recipe, settings=_Settings(), conform_iod=False)
    gaps = []
    for tag, item in rows.items():
        if _unchanged(out.get(tag), ds[tag]):
            gaps.append(Gap(item.row.tag, item.row.name, str(datadict.keyword_for_tag(tag) or ""),
                            item.code, item.option, item.effect, _selecting(recipe, ds, tag)))
    skipped = tuple(m.row.tag for m in mapped_rows(options)
                    if m.effect in CHECKED_EFFECTS and _tag_of(m) is None)
    return Coverage(recipe.name, recipe.sha256, tuple(options), len(rows), tuple(gaps),
                    not_checked=skipped)


def _walk(ds: Dataset) -> Iterator[int]:
    for element in ds:
        yield int(element.tag)
        if element.VR == "SQ" and element.value:
            for item in element.value:
                if isinstance(item, Dataset):
                    yield from _walk(item)


def _row_key(tag: int, gap_tags: dict[str, int]) -> str | None:
    """The gap (by its table tag text) an element of a file stands for, if any."""
    text = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
    if text in gap_tags:
        return text
    group = tag >> 16
    if group & 1:
        return "(gggg,eeee)" if "(gggg,eeee)" in gap_tags else None
    if group & 0xFF00 == 0x5000 and "(50xx,xxxx)" in gap_tags:
        return "(50xx,xxxx)"
    if group & 0xFF01 == 0x6000:
        mask = f"(60xx,{tag & 0xFFFF:04X})"
        return mask if mask in gap_tags else None
    return None


def count_in(coverage: Coverage, datasets: Iterable[Dataset | None]) -> Coverage:
    """``coverage`` narrowed to the gaps that occur in ``datasets`` (a file's headers; None
    for a file that could not be read), each with the files and places holding it."""
    wanted = {g.tag: i for i, g in enumerate(coverage.gaps)}
    files = [0] * len(coverage.gaps)
    places = [0] * len(coverage.gaps)
    read = unreadable = 0
    for ds in datasets:
        if ds is None:
            unreadable += 1
            continue
        read += 1
        seen: set[int] = set()
        for tag in _walk(ds):
            key = _row_key(tag, wanted)
            if key is None:
                continue
            i = wanted[key]
            places[i] += 1
            seen.add(i)
        for i in seen:
            files[i] += 1
    gaps = tuple(replace(g, files=files[i], places=places[i])
                 for i, g in enumerate(coverage.gaps) if files[i])
    return replace(coverage, gaps=gaps, files=read, unreadable=unreadable)


_EXPECTED = {"remove": "removes", "empty": "empties", "replace": "replaces", "clean": "cleans",
             "private": "removes"}


def render_table(coverage: Coverage) -> str:
    """The report as text: a line saying what was checked, then one row per gap."""
    where = "" if coverage.files is None else f" in {coverage.files} file(s)"
    head = (f"recipe {coverage.recipe} against PS3.15 E.1-1 ({EDITION}) profile {coverage.profile}: "
            f"{len(coverage.gaps)} attribute(s) left in place{where} that the profile "
            f"would remove, empty, replace or clean ({coverage.checked} checked)")
    if coverage.unreadable:
        head += f"; {coverage.unreadable} file(s) could not be read"
    if not coverage.gaps:
        return head
    columns = ["tag", "attribute", "code", "profile", "recipe"]
    if coverage.files is not None:
        columns += ["files", "places"]
    rows = []
    for g in coverage.gaps:
        code = g.code if g.option is None else f"{g.code} ({g.option})"
        row = [g.tag, g.name, code, _EXPECTED[g.expected], g.recipe]
        if coverage.files is not None:
            row += [str(g.files), str(g.places)]
        rows.append(row)
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    lines = [head, "", "  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def to_json(coverage: Coverage) -> dict[str, Any]:
    """The report as plain JSON types."""
    out: dict[str, Any] = {
        "recipe": coverage.recipe,
        "recipe_sha256": coverage.recipe_sha256,
        "profile": coverage.profile,
        "edition": EDITION,
        "checked": coverage.checked,
        "not_checked": list(coverage.not_checked),
        "gaps": [{k: v for k, v in vars(g).items() if v is not None or k == "option"} for g in coverage.gaps],
    }
    if coverage.files is not None:
        out["files"] = coverage.files
        out["unreadable"] = coverage.unreadable
    return out
