"""What was done to an output, written into the output itself (PS3.15 E.1.1, PS3.16 CID 7050).

Why in the file: a de-identified image travels without its run log. A recipient (or an audit)
must be able to tell from the header alone that the identity was removed, by which tool and
recipe (name, version, a short recipe hash that pins the exact text) and which PS3.15 options
apply, in particular whether burned-in pixels were cleaned.

How a recipe declares its options: deid keeps ``%labels`` lines and never uses them, so the
codes go there, one line per code, in deid's ``ACTION FIELD VALUE`` form::

    %labels
    ADD DeidentificationMethodCode 113100
    ADD DeidentificationMethodCode 113108

A recipe that declares nothing gets no code but 113101 (set per file when its pixels were
cleaned). 113101 itself cannot be declared: it is a fact about one file, not about a recipe.
Unknown codes are refused when the recipe is checked (:func:`declared_codes`), so a typo never
ends up as a false claim in millions of headers. The PS3.15 Annex E profiles (``--profile``)
declare 113100 and each option's code.

Longitudinal Temporal Information Modified (0028,0303) follows from the codes
(:func:`longitudinal`): MODIFIED with the Modified Dates option (113107), UNMODIFIED with Full
Dates (113106), REMOVED with the Basic Profile (113100) alone, whose dates are removed or
replaced by dummies; a recipe that declares none of the three does not set it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydicom import config as pydicom_config
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileDataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from ..dicom import compat
from ..errors import RecipeError
from ..recipe.model import Recipe
from ..recipe.standard import cid_7050
from ..version import __version__

__all__ = [
    "CID_7050",
    "BASIC_PROFILE",
    "CLEAN_PIXEL_DATA",
    "CODE_FIELD",
    "FULL_DATES",
    "MODIFIED_DATES",
    "SCHEME",
    "longitudinal",
    "TOOL",
    "Provenance",
    "declared_codes",
    "stamp",
]

SCHEME = "DCM"
"""Coding Scheme Designator of the CID 7050 codes."""

BASIC_PROFILE = "113100"
CLEAN_PIXEL_DATA = "113101"

CID_7050: dict[str, str] = cid_7050()
"""PS3.16 CID 7050 De-identification Method: code value -> code meaning (from the shipped
copy of the standard, :mod:`deid_workers.recipe.standard`)."""

FULL_DATES = "113106"
MODIFIED_DATES = "113107"

CODE_FIELD = "DeidentificationMethodCode"
"""The ``%labels`` field whose ``ADD`` lines declare the recipe's CID 7050 codes."""

TOOL = "deid-workers"
_LO_MAX = 64  # DeidentificationMethod is LO: at most 64 characters per value
_SHA_CHARS = 12


def declared_codes(recipe: Recipe) -> tuple[str, ...]:
    """The CID 7050 codes a recipe declares in ``%labels``, in order, without repeats.

    Raises :class:`RecipeError` (with the line) for a code outside CID 7050 or for 113101.
    """
    out: list[str] = []
    for entry in recipe.labels:
        if entry.field != CODE_FIELD or entry.action != "ADD":
            continue
        code = (entry.value or "").strip()
        if code == CLEAN_PIXEL_DATA:
            raise RecipeError(f"{CODE_FIELD} {code} is set per file by --clean-pixels; "
                              "a recipe cannot declare it", entry.path, entry.line)
        if code not in CID_7050:
            raise RecipeError(f"{CODE_FIELD} {code!r} is not a CID 7050 code "
                              f"(expected one of {', '.join(sorted(CID_7050))})",
                              entry.path, entry.line)
        if code not in out:
            out.append(code)
    return tuple(out)


def longitudinal(codes: Iterable[str]) -> str | None:
    """Longitudinal Temporal Information Modified for a recipe's CID 7050 codes, or None."""
    found = set(codes)
    if MODIFIED_DATES in found:
        return "MODIFIED"
    if FULL_DATES in found:
        return "UNMODIFIED"
    if BASIC_PROFILE in found:
        return "REMOVED"
    return None




@dataclass(frozen=True)
class Provenance:
    """What every output of one run says about itself; built once per run and process."""

    method: str
    codes: tuple[str, ...]

    @property
    def longitudinal(self) -> str | None:
        return longitudinal(self.codes)

    @classmethod
    def of(cls, recipe: Recipe, *, name: str | None = None,
           version: str | None = None) -> Provenance:
        """The provenance of ``recipe``; ``name`` replaces ``recipe.name`` (workers load the
        run's recipe from temporary files, so the producer's name travels with the run)."""
        sha = (recipe.sha256 or "")[:_SHA_CHARS] or "none"
        head = f"{TOOL} {version or __version__} recipe "
        tail = f" sha256:{sha}"
        label = (name or recipe.name).replace("\\", "/")
        room = _LO_MAX - len(head) - len(tail)
        if len(label) > room:
            label = label[:max(0, room - 1)] + "~"
        return cls(head + label + tail, declared_codes(recipe))


def _new_code_item(code: str) -> Dataset:
    item = Dataset()
    item.CodeValue = code
    item.CodingSchemeDesignator = SCHEME
    item.CodeMeaning = CID_7050[code]
    return item


_ITEMS: dict[tuple[str, object, bool], Dataset | None] = {}
"""One built item per code (and pydicom settings that shape a new item), to copy per file:
``Dataset()`` and three keyword assignments were most of a stamp's time. None: the item
holds state a copy could share, so it is built each time."""
_IMMUTABLE = frozenset({type(None), bool, int, float, str, bytes, BaseTag})


def _code_item(code: str) -> Dataset:
    """A new item for ``code``, equal to one built with keyword assignments, sharing nothing
    mutable with any other item (callers may change what they get)."""
    key = (code, pydicom_config.settings.reading_validation_mode,
           compat.future_api())
    try:
        template = _ITEMS[key]
    except KeyError:
        template = _ITEMS[key] = _template(_new_code_item(code))
    if template is None:
        return _new_code_item(code)
    item = object.__new__(Dataset)
    state = item.__dict__
    for name, value in template.__dict__.items():
        state[name] = value.copy() if type(value) is dict else value
    elements = {}
    for tag, elem in compat.elements(template).items():
        new = object.__new__(DataElement)
        new.__dict__.update(elem.__dict__)
        elements[tag] = new
    state[compat.ELEMENTS] = elements
    return item


def _template(item: Dataset) -> Dataset | None:
    """``item`` if copying its attributes (dicts copied one level) and its elements'
    attributes gives an independent equal item; None otherwise (another pydicom's state)."""
    if type(item) is not Dataset:
        return None
    for name, value in item.__dict__.items():
        if name == compat.ELEMENTS:
            continue
        if type(value) is dict:
            if not all(type(v) in _IMMUTABLE for v in value.values()):
                return None
        elif type(value) not in _IMMUTABLE:
            return None
    for elem in compat.elements(item).values():
        if type(elem) is not DataElement or any(
                type(v) not in _IMMUTABLE for v in elem.__dict__.values()):
            return None
    return item


def _values(value: object) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [str(v) for v in value if str(v)]  # type: ignore[union-attr]
    return [str(value)]


def stamp(ds: Dataset, provenance: Provenance | Recipe, *, pixels_cleaned: bool) -> None:
    """Record the de-identification in ``ds`` (changed in place: callers pass their own copy).

    Sets PatientIdentityRemoved YES; keeps the DeidentificationMethod values the recipe left
    and appends ours (dropping an older deid-workers entry, so a re-run does not pile them up);
    sets DeidentificationMethodCodeSequence to the codes already there plus the recipe's and,
    when ``pixels_cleaned``, 113101. Codes are DCM (CID 7050); order is stable. Sets
    LongitudinalTemporalInformationModified as the codes say (:func:`longitudinal`), except
    that an input already MODIFIED stays so where this run keeps its dates (UNMODIFIED would
    say they are the real ones).
    """
    prov = provenance if isinstance(provenance, Provenance) else _of_recipe(provenance)
    _assign(ds, "PatientIdentityRemoved", _IDENTITY_REMOVED, "YES")
    dates = prov.longitudinal
    if dates is not None:
        before = str(compat.keyword_value(ds, "LongitudinalTemporalInformationModified", _LONGITUDINAL) or "")
        if not (dates == "UNMODIFIED" and before.strip().upper() == "MODIFIED"):
            _assign(ds, "LongitudinalTemporalInformationModified", _LONGITUDINAL, dates)
    kept = [v for v in _values(compat.keyword_value(ds, "DeidentificationMethod", _METHOD))
            if not (v.startswith(TOOL + " ") and "sha256:" in v)]
    _assign(ds, "DeidentificationMethod", _METHOD, kept + [prov.method] if kept else prov.method)
    wanted = list(prov.codes)
    if pixels_cleaned and CLEAN_PIXEL_DATA not in wanted:
        wanted.append(CLEAN_PIXEL_DATA)
    items: list[Dataset] = []
    seen: set[tuple[str, str]] = set()
    for item in _existing_items(ds):
        key = (str(item.get("CodeValue", "")), str(item.get("CodingSchemeDesignator", "")))
        if key not in seen:
            seen.add(key)
            items.append(item)
    for code in wanted:
        if (code, SCHEME) not in seen:
            seen.add((code, SCHEME))
            items.append(_code_item(code))
    if items:
        ds.DeidentificationMethodCodeSequence = Sequence(items)


def _of_recipe(recipe: Recipe) -> Provenance:
    """``Provenance.of(recipe)``, once per recipe (a Recipe is frozen; its cache is per recipe)."""
    cache = getattr(recipe, "cache", None)
    if not isinstance(cache, dict):
        return Provenance.of(recipe)
    prov = cache.get(_CACHE_KEY)
    if not isinstance(prov, Provenance):
        prov = cache[_CACHE_KEY] = Provenance.of(recipe)
    return prov


_CACHE_KEY = "provenance"


def _existing_items(ds: Dataset) -> Iterable[Dataset]:
    return list(compat.keyword_value(ds, "DeidentificationMethodCodeSequence", _CODE_SEQUENCE) or ())


# Keyword access by tag: Dataset's keyword lookups were a third of the stamp's time. Only for
# pydicom's own dataset classes, whose keyword attributes are exactly their elements.
_IDENTITY_REMOVED = 0x00120062
_METHOD = 0x00120063
_CODE_SEQUENCE = 0x00120064
_LONGITUDINAL = 0x00280303
_PLAIN = frozenset({Dataset, FileDataset})


def _assign(ds: Dataset, keyword: str, tag: int, value: Any) -> None:
    """``setattr(ds, keyword, value)`` for a plain (not private, pixel or sequence) element:
    a new element goes into the dataset's dict, which is all ``__setitem__`` does with it; an
    existing one gets the value, and putting it back in its place would change nothing."""
    elem = compat.elements(ds).get(tag) if type(ds) in _PLAIN else False  # type: ignore[call-overload]
    if elem is None:
        elem = DataElement(tag, dictionary_VR(tag), value)
        compat.elements(ds)[elem.tag] = elem
    elif type(elem) is DataElement and elem.tag == tag and elem.VR != "SQ":
        elem.value = value
    else:
        setattr(ds, keyword, value)  # another class, a raw element: pydicom's own steps

