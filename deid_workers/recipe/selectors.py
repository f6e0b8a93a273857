"""Selectors x Dataset -> matching fields, at every sequence depth and in file meta (spec §2.5).

A *field* is one element of the flattened dataset, named as deid names it: ``uid`` is the tag
path ``(0040,0275)__0__(0008,0050)``, ``name`` the keyword path
``RequestAttributesSequence__AccessionNumber``. Selectors are compiled once per recipe
(:func:`compile_selector`, kept in ``Recipe.cache``); a :class:`FieldSet` is built once per file
and answers each selector once, then only filters its answer by what is still present. deid
re-expands every REPLACE/JITTER selector for each removal (quadratic); we do not.

Nothing here patches pydicom classes. A dataset changes only through :meth:`Field.assign` and
the deletions deidentify makes on the dataset it owns. Field names (never values) are shared
across files in caches bounded by :data:`.elements.CACHE_LIMIT`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydicom.datadict import dictionary_has_tag, dictionary_keyword, dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset, FileDataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag
from pydicom.valuerep import AMBIGUOUS_VR

from ..dicom import compat
from .elements import fresh_value, new_element, raw_uid, remember, set_element, shared_template
from .notes import warn
from .patterns import Pattern, PatternError, compile_pattern

__all__ = [
    "SKIP",
    "Selector",
    "Field",
    "FieldSet",
    "compile_selector",
    "add_target",
]

logger = logging.getLogger(__name__)

SKIP = frozenset(
    {
        "PixelData",
        "RedPaletteColorLookupTableData",
        "GreenPaletteColorLookupTableData",
        "BluePaletteColorLookupTableData",
        "VOILUTSequence",
        "FileMetaInformationGroupLength",
        "FileMetaInformationVersion",
        "TransferSyntaxUID",
        "ImplementationClassUID",
    }
)
"""deid's ``get.skip`` (spec §4.1): never selected, at any depth (ADD may still set them)."""

_EXPANDER_RE = re.compile(r'^([^:"]*(?:"[^"]*"[^:"]*)*):(.*)$')
_REGEX_KINDS = ("contains", "startswith", "endswith", "except")
_HEX8 = re.compile(r"[0-9A-Fa-f]{8}")


@dataclass(frozen=True)
class Selector:
    """A compiled FIELD token: ``kind`` is all, exact, contains, startswith, endswith, except,
    select, values or fields."""

    text: str
    kind: str
    arg: str = ""
    regex: Pattern | None = None  # runs in bounded time (patterns.py)

    @property
    def plain(self) -> bool:
        """True unless the selector reads a %values/%fields list (those never shield REMOVE)."""
        return self.kind not in ("values", "fields")


def compile_selector(text: str) -> Selector:
    """Compile one selector; ValueError (with a reason) when it can never work."""
    if text.lower() == "all":
        return Selector(text, "all")
    if text.startswith("values"):
        return Selector(text, "values", re.sub("^values:", "", text))
    if text.startswith("fields"):
        return Selector(text, "fields", re.sub("^fields:", "", text))
    m = _EXPANDER_RE.match(text)
    if not m:
        return Selector(text, "exact", text.lower())
    expander, expression = m.group(1).lower(), m.group(2).lower()
    if expander in _REGEX_KINDS:
        if expander == "endswith":
            expression = f"({expression})$"
        elif expander == "startswith":
            expression = f"^({expression})"
        try:
            regex = compile_pattern(expression, re.IGNORECASE)
        except re.error as exc:
            raise ValueError(f"invalid regular expression in {text!r}: {exc}") from None
        except PatternError as exc:
            raise ValueError(f"regular expression refused in {text!r}: {exc}") from None
        return Selector(text, expander, expression, regex)
    if expander == "select":
        attribute, _, value = expression.partition(":")
        attribute = attribute.upper()
        if attribute == "VR":
            return Selector(text, "select", "VR:" + value[0:2].upper())
        if attribute == "GROUP":
            try:
                group = int(value, 16)
            except ValueError:
                raise ValueError(f"select:group needs a hex group in {text!r}") from None
            return Selector(text, "select", f"GROUP:{group}")
        raise ValueError(f"select: supports VR: or group:, not {text!r}")
    # deid silently matches nothing for an unknown expander; a typo would leak PHI.
    raise ValueError(
        f"unknown expander {m.group(1)!r} in {text!r} (expected contains, startswith, "
        "endswith, except, select, values or fields)"
    )


def add_target(text: str) -> tuple[int, str]:
    """The (tag, VR) an ADD line creates: a dictionary keyword, or 8 hex digits with VR ST.

    deid gives hex tags VR ST even when the dictionary knows the tag; we do the same, so a
    recipe writes the same file with both tools.
    """
    tag = tag_for_keyword(text)
    if tag is not None:
        return int(tag), dictionary_VR(tag)
    if _HEX8.fullmatch(text):
        return int(text, 16), "ST"
    raise ValueError(f"ADD needs a DICOM keyword or an 8-digit hex tag, not {text!r}")


class Field:
    """One element of the flattened dataset, with deid's naming (element, name, uid).

    ``element`` is converted from the file's raw bytes on first use: most fields of a file are
    only matched by name (tag, keyword: known without converting) and kept or deleted, so
    converting them all cost a fifth of a put, and a raw element is also written back as is.
    """

    __slots__ = ("_element", "tag_int", "key", "is_sq", "creator", "name", "uid", "is_filemeta",
                 "parent", "_surfaces")

    def __init__(
        self, element: DataElement | None, name: str, uid: str, is_filemeta: bool,
        parent: Dataset, *, tag: int | None = None, is_sq: bool | None = None,
        creator: str | None = None,
    ) -> None:
        self._element = element
        # ``key`` is the tag object the parent holds the element under (a BaseTag): looking
        # an element up by it skips pydicom's Tag() conversion and int-vs-tag comparisons.
        key = element.tag if element is not None else tag
        self.key = key if isinstance(key, BaseTag) else Tag(key)  # type: ignore[arg-type]
        self.tag_int = int(self.key)
        self.is_sq = (element.VR == "SQ") if is_sq is None and element is not None else bool(is_sq)
        if creator is None and element is not None and self.tag_int >> 16 & 1:  # is_private
            creator = getattr(element, "private_creator", None)
        self.creator = creator
        self.name = name
        self.uid = uid
        self.is_filemeta = is_filemeta
        self.parent = parent
        self._surfaces: tuple[str, ...] | None = None

    @classmethod
    def raw(cls, key: BaseTag, name: str, uid: str, is_filemeta: bool, parent: Dataset,
            tag_int: int | None = None) -> Field:
        """A field whose public, non-sequence element is still raw (the flattening makes one
        per element of a file, so this skips the general constructor's checks)."""
        f = cls.__new__(cls)
        f._element = None
        f.key = key
        f.tag_int = int(key) if tag_int is None else tag_int
        f.is_sq = False
        f.creator = None
        f.name = name
        f.uid = uid
        f.is_filemeta = is_filemeta
        f.parent = parent
        f._surfaces = None
        return f

    @property
    def element(self) -> DataElement:
        if self._element is None:
            self._element = self.parent[self.key]
        return self._element

    def raw_vr(self) -> str | None:
        """The VR, without converting a raw element; None when only a conversion can tell
        (an implicit VR that the dictionary gives as ambiguous, ``US or SS``)."""
        if self._element is not None:
            return str(self._element.VR)
        # what get_item() returns: a raw field is never a deferred read (see _flatten)
        vr = compat.elements(self.parent)[self.key].VR
        if vr is None:
            try:
                vr = dictionary_VR(self.tag_int)
            except KeyError:
                return None
        return None if " or " in vr else str(vr)

    def assign(self, value: Any, vr: str | None = None, shared: bool = False) -> None:
        """Set the value. A field still raw gets a new element rather than being converted
        only to be overwritten (half the fields a default recipe touches are blanked or
        replaced without reading them). ``vr``: :meth:`raw_vr`, if the caller has it.
        ``shared``: the value is a recipe literal or a BLANK (the same in every file), so
        its converted form is built once per process (:func:`new_element`)."""
        if self._element is None:
            if vr is None:
                vr = self.raw_vr()
            if vr is not None:
                element = new_element(self.key, vr, value, shared)
                set_element(self.parent, self.key, element)
                self._element = element
                return
        element = self.element
        if shared and type(element) is DataElement:
            template = shared_template(element.VR, value)
            if template is not None and element.validation_mode == template["validation_mode"]:
                compat.set_stored_value(element, fresh_value(template[compat.VALUE]))
                return
        element.value = value

    def original_value(self) -> Any:
        """The element's value, as ``element.value`` gives it; a raw single UID is read from
        its bytes when converting it would neither change nor warn about it, because the
        fields a func reads the original of (hmac_uid) are replaced right after, and
        converting them was a tenth of ``deidentify``. The element stays raw."""
        if self._element is None:
            text = raw_uid(compat.elements(self.parent).get(self.key), self.tag_int)
            if text is not None:
                return text
        return self.element.value

    def __repr__(self) -> str:  # no value: reprs end up in logs
        return f"Field({self.uid} [{self.name}])"

    @property
    def tag(self) -> str:
        return str(Tag(self.tag_int))

    @property
    def stripped_tag(self) -> str:
        return re.sub(r"[(), ]", "", self.tag)

    def private_forms(self) -> tuple[str, ...]:
        if self._element is None:  # raw fields are public (see _names)
            return ()
        el = self._element
        creator = getattr(el, "private_creator", None)
        if not el.is_private or creator is None:
            return ()
        bare = f'{el.tag.group:04X},"{creator}",{el.tag.element & 0xFF:02X}'
        return (bare, f"({bare})")

    def _names(self) -> tuple[str, str]:
        """The element's (name, keyword), without converting a raw element.

        A field left raw by the flattening is public, and a public element's names depend
        only on its tag. Converting it just to name it would make the output depend on what
        the process saw before: names are cached across files, so only a first file with a
        field of that shape had it converted (and a conversion may rewrite its bytes).
        """
        if self._element is not None:
            return self._element.name, self._element.keyword
        return _public_names(self.tag_int)

    def shape(self) -> tuple[str, str, str | None]:
        """What this field's names derive from: its paths and, if private, its creator."""
        return (self.uid, self.name, self.creator)

    def surfaces(self) -> tuple[str, ...]:
        """The strings contains:/startswith:/endswith:/except: search (deid's name_contains)."""
        if self._surfaces is None:
            self._surfaces = _cached_names(self)[1]
        return self._surfaces

    def _surfaces_uncached(self) -> tuple[str, ...]:
        name, keyword = self._names()
        return (
            self.name.lower(),
            f"({self.tag_int >> 16:04X},{self.tag_int & 0xFFFF:04X})".lower(),
            self.stripped_tag,
            name,
            keyword,
        ) + self.private_forms()

    def exact_keys(self) -> frozenset[str]:
        """Lower-cased strings an exact selector must equal to select this field."""
        return _cached_names(self)[0]

    def _exact_keys_uncached(self) -> frozenset[str]:
        name, keyword = self._names()
        keys = {self.tag.lower(), self.stripped_tag.lower(), self.uid.lower()}
        if self.name:
            keys.add(self.name.lower())
        if name:
            keys.add(name.lower())
        if keyword:
            keys.add(keyword.lower())
        keys.update(k.lower() for k in self.private_forms())
        return frozenset(keys)

    def matches(self, sel: Selector) -> bool:
        """Does this field match a static selector (not values:/fields:)?"""
        kind = sel.kind
        if kind == "all":
            return True
        if kind == "exact":
            return sel.arg in self.exact_keys()
        if kind == "select":
            attribute, value = sel.arg.split(":", 1)
            if attribute == "VR":
                return self.element.VR == value
            return self.tag_int >> 16 == int(value)
        if sel.regex is not None:
            key = (kind, sel.arg, self.shape())
            hit = _MATCHES.get(key)
            if hit is None:
                hit = any(sel.regex.search(s) for s in self.surfaces())
                remember(_MATCHES, key, hit)
            return not hit if kind == "except" else hit
        return False

    def value_matches(self, regex: Pattern) -> bool:
        """deid's value_contains: str of each value (lists item-wise) searched."""
        value = self.element.value
        values = value if isinstance(value, list) else [value]
        return any(regex.search(str(v)) for v in values)


_NAMES: dict[tuple[str, str, str | None], tuple[frozenset[str], tuple[str, ...]]] = {}
_MATCHES: dict[tuple[str, str, tuple[str, str, str | None]], bool] = {}


def _cached_names(f: Field) -> tuple[frozenset[str], tuple[str, ...]]:
    """A field's exact keys and search surfaces, shared by every file with the same field.

    Why: building them (pydicom's dictionary ``name`` and ``keyword`` lookups, tag formatting)
    was the largest cost of ``deidentify`` on small files, redone for the same tags in each
    file. They depend only on the tag path, keyword path and private creator (the key).
    """
    key = f.shape()
    names = _NAMES.get(key)
    if names is None:
        names = (f._exact_keys_uncached(), f._surfaces_uncached())
        remember(_NAMES, key, names)
    return names


_TAG_INFO: dict[int, tuple[str, str, bool]] = {}
_CONVERT_VRS = ("SQ", "UN")


def _tag_info(tag: int) -> tuple[str, str, bool]:
    """(keyword, tag text, convert when the VR is implicit) of a tag: the keyword and tag
    text as ``DataElement.keyword`` and ``str(elem.tag)`` give them, without building the
    element; shared across files (bounded like the caches above). The flattening converts
    sequences, what may become one (UN, an implicit VR unknown to the dictionary: this flag)
    and private elements (their creator is part of their name)."""
    info = _TAG_INFO.get(tag)
    if info is None:
        keyword = dictionary_keyword(tag) if dictionary_has_tag(tag) else ""
        if tag >> 16 & 1:
            implicit = True
        else:
            try:
                implicit = dictionary_VR(tag) in _CONVERT_VRS
            except KeyError:
                implicit = True
        info = (keyword, str(Tag(tag)), implicit)
        remember(_TAG_INFO, tag, info)
    return info


_PUBLIC_NAMES: dict[int, tuple[str, str]] = {}


def _public_names(tag: int) -> tuple[str, str]:
    """(name, keyword) of a public tag, as pydicom's DataElement gives them (shared, bounded)."""
    names = _PUBLIC_NAMES.get(tag)
    if names is None:
        el = DataElement(tag, "UN", None)
        names = (el.name, el.keyword)
        remember(_PUBLIC_NAMES, tag, names)
    return names


_ITEM_DATASETS = (Dataset, FileDataset)
_SLOW_VRS = frozenset({"SQ", "UN"}) | AMBIGUOUS_VR
_pydicom_logger = logging.getLogger("pydicom")


def _convert(dataset: Dataset, tag: BaseTag, raw: RawDataElement) -> DataElement:
    """``dataset[tag]`` for a raw element the field set must convert.

    A private element with an explicit, plain VR (most of a file's private elements, which
    are converted to learn their creator) takes the steps ``Dataset.__getitem__`` and
    ``__setitem__`` take for it, without their tag conversions and character-set lookups
    repeated per element: the same conversion call, the same creator, the same debug line.
    Anything else (sequences, UN, implicit or deferred values, subclasses, changed pydicom
    hooks) goes through pydicom itself.
    """
    vr = raw.VR
    if (vr is None or vr in _SLOW_VRS or raw.value is None or not tag >> 16 & 1
            or type(dataset) not in _ITEM_DATASETS or not compat.stock_conversion()):
        return dataset[tag]
    charset = dataset.original_character_set or compat.character_set(dataset)
    element = convert_raw_data_element(raw, encoding=charset, ds=dataset)
    # Dataset.__setitem__ for a private element
    if _pydicom_logger.isEnabledFor(logging.DEBUG):
        _pydicom_logger.debug(f"Setting private tag {tag}")
    creator_tag = Tag(tag.group, tag.element >> 8)
    if creator_tag in compat.elements(dataset) and tag != creator_tag:
        element.private_creator = dataset[creator_tag].value
    compat.elements(dataset)[tag] = element
    return element


class FieldSet:
    """The candidate fields of one dataset (deid's field set), updated as actions run.

    ``skip_tags`` are tag texts (``(0010,0020)``) excluded at every depth: the tags of KEEP
    targets, compared the way deid compares them (so a nested KEEP path protects nothing).
    """

    def __init__(self, ds: Dataset, skip_tags: frozenset[str] | set[str] = frozenset(),
                 kinds: Mapping[int, str] | None = None) -> None:
        self.dataset = ds
        self.fields: dict[str, Field] = {}
        self._exact: dict[str, list[str]] | None = None
        self._memo: dict[tuple[str, str, str], list[str]] = {}
        self.found: list[tuple[str, str, Any]] = []
        """With ``kinds`` (tag -> kind): (kind, uid, element as the file holds it, maybe raw)
        of each field whose tag has a kind, noted while flattening (``clean_text`` reads the
        file's names, IDs and dates so, at no cost to a recipe that does not clean text)."""
        self._flatten(ds, skip_tags, kinds)

    def _flatten(self, ds: Dataset, skip_tags: frozenset[str] | set[str],
                 kinds: Mapping[int, str] | None = None) -> None:
        queue: list[tuple[Dataset, str | None, str | None, bool]] = [(ds, None, None, False)]
        meta = getattr(ds, "file_meta", None)
        if meta:
            queue.append((meta, None, None, True))
        fields = self.fields
        raw_field = Field.raw
        tag_infos = _TAG_INFO
        convert_vrs = _CONVERT_VRS
        note = self.found.append
        while queue:
            dataset, prefix, uprefix, is_meta = queue.pop(0)
            # The element dict itself (as dicom.reader and get_identifiers read it): what get_item()
            # returns, minus its per-call tag conversion, and it sees the conversions below.
            elements = compat.elements(dataset)
            # sorted as ``for element in dataset`` is; ``key=int`` compares as C ints
            for tag in sorted(elements, key=int):
                t = int(tag)
                keyword, tag_text, implicit = tag_infos.get(t) or _tag_info(t)
                if keyword in SKIP or tag_text in skip_tags:
                    continue
                if prefix is None:
                    name, uid = keyword, tag_text
                else:
                    name, uid = f"{prefix}__{keyword}", f"{uprefix}__{tag_text}"
                if uid in fields:
                    continue
                element = elements[tag]
                if kinds is not None and t in kinds:
                    note((kinds[t], uid, element))
                if isinstance(element, RawDataElement):
                    # raw stays raw unless it must be converted (see _tag_info)
                    vr = element.VR
                    if element.value is not None and not (
                        t >> 16 & 1 or (implicit if vr is None else vr in convert_vrs)
                    ):
                        fields[uid] = raw_field(tag, name, uid, is_meta, dataset, t)
                        continue
                    # deferred (get_item reads those), sequences and private elements
                    element = _convert(dataset, tag, element)
                fields[uid] = Field(element, name, uid, is_meta, dataset)
                if element.VR == "SQ" and isinstance(element.value, Sequence):
                    for idx, item in enumerate(element.value):
                        if isinstance(item, Dataset):
                            queue.append((item, name, f"{uid}__{idx}", is_meta))

    def __iter__(self) -> Iterator[Field]:
        return iter(list(self.fields.values()))

    def __len__(self) -> int:
        return len(self.fields)

    def __contains__(self, uid: object) -> bool:
        return uid in self.fields

    @property
    def indexed(self) -> bool:
        """Has :meth:`exact_index` been built?"""
        return self._exact is not None

    def exact_index(self, as_of: list[Field] | None = None) -> dict[str, list[str]]:
        """Exact key -> uids, in field order, built on first use and then only extended (by
        :meth:`add`), so a field re-created after a removal keeps its first place.

        ``as_of``: the fields present (in order) when the index should have been built, for
        a caller that postponed building it while only removals happened.
        """
        if self._exact is None:
            index: dict[str, list[str]] = {}
            for f in (self.fields.values() if as_of is None else as_of):
                for key in f.exact_keys():
                    index.setdefault(key, []).append(f.uid)
            self._exact = index
        return self._exact

    def _static(self, sel: Selector) -> list[str]:
        """uids matched by a static selector, computed once and filtered by presence."""
        fields = self.fields
        if sel.kind == "exact":  # the index is the memo; most keywords match nothing
            found = self.exact_index().get(sel.arg)
            if not found:
                return []
            if len(found) > 1:
                found = list(dict.fromkeys(found))
            return [u for u in found if u in fields]
        memo_key = (sel.kind, sel.arg, sel.text)
        uids = self._memo.get(memo_key)
        if uids is None:
            uids = [uid for uid, f in fields.items() if f.matches(sel)]
            self._memo[memo_key] = uids
        return [u for u in uids if u in fields]

    def expand(self, sel: Selector, lists: Mapping[str, object] | None = None) -> list[Field]:
        """The present fields matched by ``sel``; ``lists`` holds the %values/%fields results."""
        lists = lists or {}
        if sel.kind == "values":
            return self._by_values(lists.get(sel.arg))
        if sel.kind == "fields":
            found: dict[str, Field] = {}
            stored = lists.get(sel.arg) or {}
            for f in stored.values():  # type: ignore[attr-defined]
                exact = Selector(f.stripped_tag, "exact", f.stripped_tag.lower())
                for uid in self._static(exact):
                    found[uid] = self.fields[uid]
            return list(found.values())
        return [self.fields[u] for u in self._static(sel)]

    def _by_values(self, values: object) -> list[Field]:
        items = [str(v) for v in (values or [])]  # type: ignore[attr-defined]
        if not items:
            warn(logger, "empty_values",
                 "Empty values list encountered.  No fields will be identified.")
            return []
        # The pattern is made of header values, so a file chooses it: it runs in bounded time
        # (patterns.py), and one that cannot (or that re refuses) is matched literally.
        try:
            regex = compile_pattern("(%s)" % "|".join(items), re.IGNORECASE)
        except (re.error, PatternError):
            # deid does not escape list values and dies on e.g. "(" ; match them literally.
            regex = compile_pattern("(%s)" % "|".join(re.escape(v) for v in items), re.IGNORECASE)
        return [f for f in list(self.fields.values()) if f.value_matches(regex)]

    def remove(self, f: Field) -> None:
        """Forget a field and, for a sequence, every field below it."""
        self.fields.pop(f.uid, None)
        self.forget_children(f)

    def forget_children(self, f: Field) -> None:
        """Forget every field below a sequence (BLANK empties it, REMOVE deletes it)."""
        if f.is_sq:
            prefix = f.uid + "__"
            for uid in [u for u in self.fields if u.startswith(prefix)]:
                del self.fields[uid]

    def add(self, f: Field) -> None:
        """Register a field created by ADD; answers of earlier selectors are recomputed."""
        self.fields[f.uid] = f
        if self._exact is not None:
            for key in f.exact_keys():
                self._exact.setdefault(key, []).append(f.uid)
        self._memo.clear()

    def get(self, uid: str) -> Field | None:
        return self.fields.get(uid)
