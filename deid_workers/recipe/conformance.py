"""The conformance pass: after a recipe ran, repair what it removed or emptied in a way that
breaks the file's IOD, with values that carry no information.

Why a pass and not recipe syntax: deid's recipe language has one action per line and no view
of the IOD, while PS3.15's compound codes (``X/Z``, ``X/D``, ``X/Z/D``) mean "remove, unless
the IOD needs the attribute present (then empty) or with a value (then a dummy)". The default
recipe writes the first branch (``REMOVE``); this pass takes the later branch where the IOD
of the file's SOP Class needs it (:mod:`.iods`, the shipped PS3.3 Type table). Recipes stay
deid's, and a user's own recipe is protected the same way.

The rules, for each field the recipe removed (REMOVE, or a REPLACE without a value) or
emptied (BLANK, or a value that converted to nothing), at any depth:

- a sequence, removed, that must be present (Type 2): put back with zero items;
- a sequence left with zero items where zero items is not allowed (Type 1 or 3, or not
  listed): removed. Items are never invented; a Type 1 sequence the recipe removed stays
  removed (its module is often optional, and absent with it);
- any other attribute that must hold a value (Type 1): a dummy (:mod:`.dummies`); a UID
  the keyed ``hmac_uid`` of its original, so references between files stay consistent;
- any other attribute that must be present (Type 2), removed: put back empty;
- Overlay Data (60xx,3000) removed or emptied: the whole overlay group goes with it;
- Verifying Observer Sequence gone while Verification Flag says VERIFIED: UNVERIFIED.

A conditional Type (1C, 2C) counts as met, because the file held the attribute before the
recipe ran (see :mod:`.iods`). Fields below a sequence that was itself removed or emptied,
file meta, and private attributes are left alone. A field that a later recipe line set again
(ADD) is left as it is. The pass needs the file's SOP Class: a dataset without one (not a
composite object) is left exactly as the recipe made it, as deid would leave it; an unknown
SOP Class is held to what any IOD requires.

Cost: nothing but a loop over the recipe's removals and blanks (a few dozen per file), each a
dict lookup in a table merged once per SOP Class and process.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from pydicom.datadict import dictionary_keyword, dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import generate_uid

from ..dicom import compat
from .dummies import dummy_text
from .elements import CACHE_LIMIT, delete_element, new_element, set_element
from .funcs import FuncContext, hmac_uid
from .iods import OPTIONAL, PRESENT, requirements, table_key
from .selectors import Field
from .standard import e1_1
from .values import convert_value

__all__ = ["Change", "conform"]

logger = logging.getLogger(__name__)

Change = tuple[Field, Any]
"""A field the recipe removed or emptied, with what it held before: its raw element, or the
(VR, value) of a converted one, or None."""

OVERLAY_DATA = 0x60003000
VERIFYING_OBSERVER_SEQUENCE = 0x0040A073
VERIFICATION_FLAG = 0x0040A493


def conform(ds: Dataset, changes: list[Change], sop_class_uid: str | None, ctx: FuncContext) -> set[int]:
    """Apply the rules of this module to ``ds`` (edited in place), given the recipe's
    removals and blanks; return the tags of the top-level attributes given a value (the
    caller keeps the file meta's SOP UIDs in step)."""
    valued: set[int] = set()
    if not changes or not sop_class_uid:
        return valued
    req = requirements(sop_class_uid)
    top_level = req.top
    nested: list[Change] = []
    gone: list[str] = []  # uid prefixes of the sequences removed or emptied
    overlays: set[int] = set()
    observers_gone = False
    for change in changes:
        f = change[0]
        tag = f.tag_int
        if tag & 0x10000:
            continue  # private: no IOD says anything about it
        if f.is_sq:
            gone.append(f.uid + "__")
        if f.parent is not ds:
            if not f.is_filemeta:
                nested.append(change)
            continue
        if tag >> 24 == 0x60 and tag & 0xFF01FFFF == OVERLAY_DATA:
            overlays.add(tag >> 16)
            continue
        level = top_level.get(tag, OPTIONAL)
        if not f.is_sq:
            if level == OPTIONAL or (level == PRESENT and f.key in compat.elements(ds)):
                continue  # most changes: optional, or blanked where presence is all it needs
        if _repair(ds, f, change[1], level, ctx):
            valued.add(tag)
        if tag == VERIFYING_OBSERVER_SEQUENCE and f.key not in compat.elements(ds):
            observers_gone = True
    if nested:
        prefixes = tuple(gone)
        for f, old in nested:
            if prefixes and f.uid.startswith(prefixes):
                continue  # its item went with the sequence
            level = req.of(_path(f.uid))
            if level != OPTIONAL or f.is_sq:
                _repair(f.parent, f, old, level, ctx)
    for group in overlays:
        for key in [k for k in compat.elements(ds) if k >> 16 == group]:
            delete_element(ds, Tag(key))
    if observers_gone:
        _unverify(ds)
    return valued


def _repair(parent: Dataset, f: Field, old: Any, level: int, ctx: FuncContext) -> bool:
    """One field by the rules of the module docstring; True when it was given a value."""
    current = compat.elements(parent).get(f.key)
    if f.is_sq:
        if current is None:
            if level == PRESENT:
                parent[f.key] = DataElement(f.key, "SQ", Sequence())
        elif level != PRESENT and _zero_items(parent, f.key):
            delete_element(parent, f.key)
        return False
    if level == PRESENT:
        if current is None:
            parent[f.key] = DataElement(f.key, _vr_value(f.tag_int, old)[0], None)
        return False
    if current is not None and not _empty(current):
        return False  # set again by a later line (ADD)
    _put_value(parent, f, old if old is not None else current, ctx)
    return True


def _path(uid: str) -> tuple[int, ...]:
    """``(0040,A730)__0__(0040,A160)`` -> (0x0040A730, 0x0040A160); the same uids recur in
    file after file, so answers are kept (names only, bounded like the selectors' caches)."""
    path = _PATHS.get(uid)
    if path is None:
        path = tuple(int(part[1:5] + part[6:10], 16) for part in uid.split("__")[::2])
        if len(_PATHS) >= CACHE_LIMIT:
            _PATHS.clear()
        _PATHS[uid] = path
    return path


_PATHS: dict[str, tuple[int, ...]] = {}


def _empty(element: Any) -> bool:
    if isinstance(element, RawDataElement):
        return not element.value
    value = element.value
    return value is None or value == "" or (isinstance(value, (bytes, list, MultiValue)) and not value)


def _zero_items(parent: Dataset, key: Any) -> bool:
    value = parent[key].value
    return value is None or len(value) == 0


def _vr_value(tag: int, old: Any) -> tuple[str, Any]:
    """(VR, value) of what a field held (an implicit raw VR: the dictionary's, the first of
    ``US or SS``; a raw value stays bytes)."""
    if old is None:
        vr, value = None, None
    elif isinstance(old, RawDataElement):
        vr, value = old.VR, old.value
    else:
        vr, value = old
    if vr is None:
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            vr = "UN"
    return str(vr).split(" or ")[0], value


def _text(value: Any) -> str:
    """A UI value as text (raw bytes decoded, several values joined by a backslash)."""
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").rstrip("\0 ")
    if isinstance(value, (list, MultiValue)):
        return "\\".join(str(v) for v in value)
    return "" if value is None else str(value)


@lru_cache(maxsize=1)
def profile_tags() -> frozenset[int]:
    """The tags of PS3.15 table E.1-1 (the shipped copy the profiles are generated from,
    :mod:`.standard`); the overlay and curve groups are listed as group 6000 and 5000."""
    tags = set()
    for row in e1_1():
        if not row.private:
            tags.add(int((row.tag[1:5] + row.tag[6:10]).replace("x", "0"), 16))
    return frozenset(tags)


def _put_value(parent: Dataset, f: Field, old: Any, ctx: FuncContext) -> None:
    """Give a Type 1 attribute the recipe took away a value that identifies no one.

    An attribute of table E.1-1 gets a dummy (a UID: the keyed ``hmac_uid`` of each original
    UID, what ``REPLACE X deid_func:hmac_uid`` gives it elsewhere). Any other attribute gets
    its original value back: the profile does not count it as identifying, and a dummy would
    misdescribe the object (a SOP Class UID, Rows and Columns of retained pixels, Modality).
    """
    tag = f.tag_int
    vr, value = _vr_value(tag, old)
    if table_key(tag) not in profile_tags():
        if old is not None:  # as the input held it, even empty (then it was invalid before)
            parent[f.key] = old if isinstance(old, RawDataElement) else DataElement(f.key, vr, value)
        return
    if vr == "UI":
        original = _text(value)
        uids = ("\\".join(hmac_uid(ctx.key(), v) for v in original.split("\\")) if original
                else generate_uid())
        parent[f.key] = DataElement(f.key, vr, uids)
        return
    text = dummy_text(vr, _keyword(tag))
    if text is None:
        logger.debug("no dummy for VR %s: %s left as the recipe made it", vr, f.uid)
        return
    ok, converted = convert_value(vr, text, f.name or f.uid)
    # a dummy is the same in every file: its element is built from a template (new_element)
    set_element(parent, f.key, new_element(f.key, vr, converted if ok else None, shared=True))


@lru_cache(maxsize=4096)
def _keyword(tag: int) -> str:
    try:
        return str(dictionary_keyword(tag))
    except KeyError:
        return ""


def _unverify(ds: Dataset) -> None:
    """Verification Flag VERIFIED needs Verifying Observer Sequence (PS3.3 SR Document
    General, Type 1C): without it the document is UNVERIFIED."""
    element = ds.get(VERIFICATION_FLAG)
    if element is not None and str(element.value).strip().upper() == "VERIFIED":
        ds[VERIFICATION_FLAG] = DataElement(VERIFICATION_FLAG, "CS", "UNVERIFIED")
