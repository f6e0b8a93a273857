"""Apply a recipe's %header to one dataset: deid's execution model (spec §2.8), on a copy
(or, with ``in_place=True``, on the dataset itself).

Order and precedence, as deid's 47 interaction cases require:

1. The candidate fields are every element at every depth plus file meta, minus the skip list
   and minus the tags of KEEP targets (so KEEP beats everything but ADD).
2. %values / %fields lists are computed once, from the original values.
3. %header lines run in file order; each selects among the fields still present.
4. REMOVE spares any field that a plain REPLACE/JITTER selector of the recipe selects.
5. Removing or blanking a sequence forgets its children.
6. After the last line, the conformance pass (:mod:`.conformance`) repairs what the lines
   removed or emptied where the IOD of the file's SOP Class needs it (``conform_iod=False``
   leaves deid's result as it is).

Differences from deid (spec Part A §2): a REPLACE/JITTER whose var:/func: value is missing
removes the field and logs ``REPLACE <field> not done for <file>``; JITTER leaves TM alone; a
REPLACE/ADD/JITTER of SOPInstanceUID/SOPClassUID updates the file meta to match; a value that
does not fit a numeric VR blanks the field (deid's warning says so, its code keeps PHI); the
conformance pass of point 6.

Unless ``in_place=True``, the input dataset is never modified. Outside the call only the
recipe's compiled selectors (built once, under a lock) and the selectors' bounded caches of
field names are kept, never a value, so one recipe can serve many threads; the one exception
is ``deid_func:clean_text`` (the Clean options), whose matcher of a file's names, IDs and
dates is kept for the next files of the same patient (:mod:`.cleantext`: 256 sets at most,
in the worker's memory only, like the files it processes).
"""

from __future__ import annotations

import copy
import heapq
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.tag import Tag

from ..dicom import compat
from ..errors import RecipeError
from .cleantext import NotPlain, collect, public_kinds, texts_of
from .compiled import CLEAN, compiled
from .conformance import Change, conform
from .elements import delete_element, holds_canonical_uid, new_element
from .funcs import FuncContext, fast_shift, jitter_days, jitter_value, shift_value
from .model import Action, Recipe
from .notes import warn
from .selectors import Field, FieldSet, compile_selector
from .values import MISSING, convert_value, resolve_value

__all__ = ["deidentify", "ids_fields_read"]

logger = logging.getLogger(__name__)

_SOURCES = ("var:", "func:", "deid_func:")  # value prefixes resolve_value looks up
_DATE_SHIFT = "deid_func:date_shift"
_ESC = b"\x1b"  # ISO 2022 code extensions: 7-bit bytes that only pydicom decodes right

_META_SYNC = {  # SOPInstanceUID, SOPClassUID -> their file-meta copies (tag, keyword)
    0x00080018: (0x00020003, "MediaStorageSOPInstanceUID"),
    0x00080016: (0x00020002, "MediaStorageSOPClassUID"),
}


class _Run:
    """The state of one deidentify call."""

    def __init__(
        self,
        ds: Dataset,
        recipe: Recipe,
        lookup: dict[str, Any],
        ctx: FuncContext,
        filename: str | None,
    ) -> None:
        self.ds = ds
        self.recipe = recipe
        self.c = compiled(recipe)
        self.lookup = lookup
        self.ctx = ctx
        self.filename = filename or "<dataset>"
        self.shielded: set[str] | None = None
        self.meta_sync: set[int] = set()  # tags of _META_SYNC set by the recipe
        self.changes: list[Change] = []  # public fields removed or emptied, for the conformance pass
        # run() state: the lines still to run (a heap of plan indices, and as a set), the
        # present uids each shape-answered line selects, the uids shape-shielded from REMOVE.
        self._lines: set[int] = set()
        self._heap: list[int] = []
        self._at = -1
        self._line_uids: dict[int, list[str]] = {}
        self._shape_shielded: list[str] = []
        self._by_shape = True
        self._index_due = False
        self._index_as_of: list[Field] | None = None
        kinds = public_kinds() if self.c.clean_lines else None  # see identifying()
        full = FieldSet(ds, kinds=kinds)
        keep_tags: set[str] = set()
        for sel in self.c.keep:
            if sel.plain:
                # deid excludes by tag text at every depth; a nested uid path never matches.
                keep_tags.update(f.uid for f in full.expand(sel))
        self.fields = FieldSet(ds, frozenset(keep_tags), kinds) if keep_tags else full

    # --- lists ---------------------------------------------------------------------------

    def build_lists(self) -> None:
        for name, rules in self.recipe.values.items():
            self.lookup[name] = self._values_list(rules)
        for name, rules in self.recipe.fields.items():
            found: dict[str, Field] = {}
            for rule in rules:
                sel = self.c.sel(rule.field)
                if sel.plain:
                    found.update((f.uid, f) for f in self.fields.expand(sel))
            self.lookup[name] = found

    def _values_list(self, rules: tuple[Action, ...]) -> list[Any]:
        values: dict[Any, None] = {}
        for rule in rules:
            sel = self.c.sel(rule.field)
            if not sel.plain:
                continue
            for f in self.fields.expand(sel):
                value = f.element.value
                if rule.action == "FIELD":
                    if value in ("", None):
                        continue
                    # A multi-valued field adds each of its values, as deid does: pydicom's
                    # MultiValue is no list, and its text ("['A', 'B']") would make the
                    # values: regex a character class that matches nearly every field.
                    items = (list(value) if isinstance(value, (list, tuple, MultiValue))
                             else [value])
                    for v in items:
                        try:
                            values[v] = None
                        except TypeError:  # unhashable (a sequence item): match by text
                            values[str(v)] = None
                else:
                    sep, minlength = self.c.splits[id(rule)]  # every SPLIT of recipe.values
                    for piece in str(value).split(sep):
                        if len(piece) >= minlength:
                            values[piece] = None
        return list(values)

    # --- actions -------------------------------------------------------------------------

    def run(self) -> None:
        """Run the %header lines, in recipe order, each on the fields it selects.

        Equivalent to visiting every line and expanding its selector on the field set (what
        deid does), only cheaper: one pass over the fields gives, through a per-recipe cache
        by shape (:meth:`.compiled.Compiled.hits`), the lines that select each field by name, so
        lines that select nothing in this file are never visited. Once an ADD creates a
        field, the rest of the run expands selectors on the field set itself
        (:meth:`_switch`), which orders re-created fields as deid does.
        """
        c = self.c
        plan = c.plan
        fields = self.fields
        line_uids = self._line_uids
        shielded = self._shape_shielded
        known = c.known_hits
        for uid, f in fields.fields.items():
            hit = known.get((uid, f.name, f.creator))  # Field.shape(), inlined
            lines, shield = hit if hit is not None else c.hits(f)
            for i in lines:
                if i in line_uids:
                    line_uids[i].append(uid)
                else:
                    line_uids[i] = [uid]
            if shield:
                shielded.append(uid)
        lines_set = self._lines = set(line_uids)
        lines_set.update(c.dynamic)
        if c.clean_lines and (c.clean_after_add or not lines_set.isdisjoint(c.clean_lines)):
            self.identifying()
        heap = self._heap = sorted(lines_set)
        present = fields.fields
        handlers = c.handlers
        while heap:
            i = heapq.heappop(heap)
            self._at = i
            action, sel = plan[i]
            if i >= c.first_exact:
                # deid's field set builds its exact index here (the first exact line); it
                # decides the order of a field that an ADD re-creates (see _switch).
                if not self._index_due:
                    self._index_due_now()
                if not self._by_shape and i <= c.last_reader:
                    fields.exact_index()
            if sel is None:
                self.add(action)
                continue
            if self._by_shape and i in line_uids:
                targets = [present[u] for u in line_uids[i] if u in present]
            else:
                targets = fields.expand(sel, self.lookup)
            handler = getattr(self, handlers[i])
            for f in targets:
                if f.uid not in present:  # gone with a parent earlier in this loop
                    continue
                handler(f, action)

    def _switch(self) -> None:
        """Before an ADD creates a field: from now on, expand selectors on the field set.

        The answers by shape keep fields in their first order; the field set puts a field
        that ADD re-creates last for every selector but an exact one whose index was built
        before, which keeps the first place. Building that index now when the old order of
        execution would have built it by now keeps both orders exact (unless no later line
        can read it).
        """
        if self._by_shape:
            self._by_shape = False
            if self._index_due and self._at < self.c.last_reader:
                self.fields.exact_index(self._index_as_of)

    def _index_due_now(self) -> None:
        """Note that visiting every line would have built the exact index by now: keep the
        fields present (in order), what it would have been built from."""
        self._index_due = True
        if self._by_shape and not self.fields.indexed:
            self._index_as_of = list(self.fields.fields.values())

    def _added(self, f: Field) -> None:
        """Schedule the later lines that select a field ADD just created."""
        for i in self.c.hits(f)[0]:
            if i > self._at and i not in self._lines:
                self._lines.add(i)
                heapq.heappush(self._heap, i)

    def value_for(self, action: Action, field: Any) -> Any:
        assert action.value is not None
        if not action.value.startswith(_SOURCES):
            return action.value  # a literal: what resolve_value returns for it
        return resolve_value(
            action.value, lookup=self.lookup, field=field, dataset=self.ds, ctx=self.ctx
        )

    def delete(self, f: Field) -> None:
        if not f.tag_int & 0x10000:  # a private field is no IOD's business (most removals)
            self.changes.append((f, _before(f)))
        delete_element(f.parent, f.key)
        self.fields.remove(f)

    def not_done(self, f: Field) -> None:
        warn(logger, "not_done", "REPLACE %s not done for %s", f.name or f.uid, self.filename)
        self.delete(f)

    def set_value(self, f: Field, value: Any, shared: bool = False,
                  action: Action | None = None) -> None:
        """``shared``: ``value`` is a recipe literal, the same in every file.

        A value pydicom refuses for the field's VR (text into a DS, say) fails the file with
        the recipe line that gave it, not with pydicom's bare ValueError.
        """
        vr = f.raw_vr()
        ok, converted = convert_value(vr or f.element.VR, value, f.name or f.uid)
        if (not ok or converted is None or (type(converted) in (str, bytes, list) and not converted)) \
                and not f.tag_int & 0x10000:
            self.changes.append((f, _before(f)))
        try:
            f.assign(converted if ok else None, vr, shared)
        except (ValueError, TypeError, OverflowError):
            if action is None:
                raise
            raise _unfit(action, vr or f.element.VR) from None
        if f.tag_int in _META_SYNC and f.parent is self.ds:
            self.meta_sync.add(f.tag_int)

    def blank(self, f: Field, action: Action) -> None:
        if not f.tag_int & 0x10000:
            self.changes.append((f, _before(f)))
        f.assign(None, shared=True)
        self.fields.forget_children(f)

    def replace(self, f: Field, action: Action) -> None:
        if action.value == CLEAN and self.clean_unchanged(f):
            return
        value = self.value_for(action, f)
        if value is MISSING:
            self.not_done(f)
            return
        self.set_value(f, value, value is action.value, action)

    def jitter(self, f: Field, action: Action) -> None:
        assert action.value is not None
        if action.value == _DATE_SHIFT or action.value.startswith(_DATE_SHIFT + " "):
            self.shift(f, jitter_days("date_shift", action.value[len(_DATE_SHIFT) + 1:], self.ctx))
            return
        if not f.element.value:
            return
        if action.value.startswith("deid_func:"):
            name, _, extras = action.value[len("deid_func:"):].partition(" ")
            if name == "jitter":
                days: Any = jitter_days(name, extras, self.ctx)
            else:
                days = self.value_for(action, f)
        else:
            days = self.value_for(action, f)
        if days is MISSING:
            self.not_done(f)
            return
        try:
            days = int(float(days))
        except (TypeError, ValueError):
            self.not_done(f)
            return
        new = jitter_value(f.element.value, f.element.VR, days, f.name or f.uid)
        if new not in (None, ""):
            self.set_value(f, new)

    def clean_unchanged(self, f: Field) -> bool:
        """Whether ``clean_text`` would leave a still-raw field as it is: its ASCII bytes hold
        nothing the cleaning takes out. Most descriptions hold nothing identifying, and then
        the field is neither converted nor rebuilt (the output keeps its bytes)."""
        if f._element is not None or self.ctx.identifying is None:
            return False
        value = compat.elements(f.parent)[f.key].value
        if type(value) is not bytes or not value.isascii() or _ESC in value:
            return False
        text = value.decode("ascii")
        found = self.ctx.identifying
        return not found.may_hold(text) or found.pattern().search(text) is None

    def shift(self, f: Field, days: int) -> None:
        """``JITTER <field> deid_func:date_shift``: the date moved by the patient's days; a
        value that cannot be read as a date is removed rather than kept (it would be the
        patient's real date), and a time of day is kept (see :func:`.funcs.shift_value`)."""
        if f._element is None:  # still raw: a plain date is shifted from its bytes
            vr = f.raw_vr()
            raw = compat.elements(f.parent)[f.key].value
            if vr in ("DA", "DT") and type(raw) is bytes and raw.isascii():
                memo = self.ctx.shifted  # a file often holds one date several times
                key = (raw, vr)
                if key in memo:
                    shifted = memo[key]
                else:
                    shifted = memo[key] = fast_shift(raw.decode("ascii").rstrip(" \0"), days, vr)
                if shifted is not None:
                    f.assign(shifted, vr)
                    return
        element = f.element
        if not element.value:
            return
        new = shift_value(element.value, str(element.VR), days, f.name or f.uid)
        if new is None:
            warn(logger, "not_done", "JITTER %s: no date deid_func:date_shift can shift, "
                 "removed in %s", f.name or f.uid, self.filename)
            self.delete(f)
        elif new is not element.value:
            self.set_value(f, new)

    def identifying(self) -> None:
        """Note the file's names, IDs and dates for ``clean_text`` (:mod:`.cleantext`), as the
        field set found them (public attributes at every depth) before any line ran: a later
        line would have blanked them. Values are taken as the file holds them, raw bytes
        mostly, and decoded once per patient (``collect`` keeps its answers); bytes that are
        not plain ASCII, and values that are lists, are converted as pydicom does first."""
        found = self.fields.found
        try:
            self.ctx.identifying = collect(tuple([(kind, e.value) for kind, _uid, e in found]))
            return
        except (NotPlain, TypeError):
            pass
        pairs: list[tuple[str, str]] = []
        for kind, uid, element in found:
            if type(element) is RawDataElement:
                field = self.fields.fields.get(uid)
                element = field.element if field is not None else None
            if element is not None:
                pairs += [(kind, v) for v in texts_of(element.value)]
        self.ctx.identifying = collect(tuple(pairs))

    def remove(self, f: Field, action: Action) -> None:
        if action.value is not None:
            if not self.value_for(action, f):
                return
        if f.uid in self.shield():
            return
        self.delete(f)

    def shield(self) -> set[str]:
        """uids selected by any plain REPLACE/JITTER line: REMOVE leaves them (deid's rule).

        The field set only shrinks between ADDs, and these selectors test fixed properties, so
        the answer is computed once and only recomputed after an ADD.
        """
        if self.shielded is None:
            fields = self.fields
            if not self._index_due:  # deid's field set builds its exact index for this
                self._index_due_now()
            uids: set[str] = set()
            if self._by_shape:
                uids.update(u for u in self._shape_shielded if u in fields)
            else:
                index = fields.exact_index()
                for key in self.c.shield_keys & index.keys():
                    uids.update(u for u in index[key] if u in fields)
                for sel in self.c.shield_shapes:
                    uids.update(f.uid for f in fields.expand(sel))
            for sel in self.c.shield_others:
                uids.update(f.uid for f in fields.expand(sel))
            self.shielded = uids
        return self.shielded

    def add(self, action: Action) -> None:
        tag, vr = self.c.adds[action.field]
        is_meta = (tag >> 16) == 0x0002
        target: Dataset | None = getattr(self.ds, "file_meta", None) if is_meta else self.ds
        if target is None:
            target = self.ds.file_meta = FileMetaDataset()
        value = self.value_for(action, action.field)
        if value is MISSING:
            return
        existing = target.get(tag) if tag in target else None
        uid = str(Tag(tag))
        f = self.fields.get(uid)
        shared = value is action.value  # a literal
        if f is not None and f.parent is target:
            self.set_value(f, value, shared, action)
            return
        ok, converted = convert_value(existing.VR if existing is not None else vr, value, action.field)
        try:
            element = new_element(Tag(tag), vr, converted if ok else None, shared)
        except (ValueError, TypeError, OverflowError):
            raise _unfit(action, vr) from None
        self._switch()
        target[tag] = element
        f = Field(element, action.field, uid, is_meta, target)
        self.fields.add(f)
        self._added(f)
        self.shielded = None
        if not is_meta and tag in _META_SYNC:
            self.meta_sync.add(tag)

    def sync_meta(self) -> None:
        """Keep MediaStorageSOP* equal to the dataset's SOP UIDs after they were replaced,
        or when the recipe removed them from file meta only (the value is in the output
        anyway), so the output stays a valid Part-10 file."""
        meta = getattr(self.ds, "file_meta", None)
        if meta is None:
            return
        ds = self.ds
        for tag, (meta_tag, meta_keyword) in _META_SYNC.items():
            value = ds[tag].value if tag in compat.elements(ds) else None  # what ds.get(keyword) reads
            if not value:
                continue
            # A raw MediaStorageSOPClassUID is left for the encoder, which converts it once
            # per process; here only whether it is empty matters.
            if tag in self.meta_sync or not (
                meta_tag in compat.elements(meta)
                and (holds_canonical_uid(meta, meta_tag) or meta[meta_tag].value)
            ):
                element = compat.elements(meta).get(meta_tag)  # type: ignore[call-overload]
                if type(meta) is FileMetaDataset and type(element) is DataElement:
                    element.value = value  # all that ``meta.<keyword> = value`` does to it
                else:
                    setattr(meta, meta_keyword, value)


def _before(f: Field) -> Any:
    """What a field holds before the recipe removes or empties it, for the conformance pass:
    the raw element itself (never changed in place), or a converted one's (VR, value)
    (a new value replaces the value object; the element itself is reused)."""
    element = compat.elements(f.parent).get(f.key)
    if element is None or type(element) is RawDataElement:
        return element
    return (element.VR, element.value)


def _unfit(action: Action, vr: str | None) -> RecipeError:
    """The error of a value that does not fit its field, naming the recipe file by its name
    (a worker reads a copy) and line; the value itself is left out (a ``var:`` value comes
    from the identifiers)."""
    return RecipeError(f"{action.action} {action.field}: the value is not a valid {vr}",
                       os.path.basename(action.path) if action.path else None, action.line)


def ids_fields_read(recipe: Recipe) -> frozenset[str]:
    """The names of a file's ids that :func:`deidentify` can read with this recipe: those of
    its ``var:NAME`` values and its ``values:NAME`` / ``fields:NAME`` selectors.

    Why: ``put --ids`` keeps every file's ids in Redis for the run, and an ids file holds each
    file's whole header (about 2 KB an item); with the default recipe put reads none of it.
    Keeping only these names makes loading the file a fraction of the work and of the memory,
    and the result is the same: nothing else of the ids is looked up. (``func:NAME`` reads
    its callable from the lookup, and a JSON or pickle value is never one: only a caller that
    passes ``funcs`` gives a function the whole item, and workers pass none.)
    """
    names: set[str] = set()
    for action in (*recipe.header, *recipe.labels,
                   *(a for rules in (*recipe.values.values(), *recipe.fields.values()) for a in rules)):
        if action.value is not None and action.value.startswith("var:"):
            names.add(action.value[len("var:"):])
        try:
            sel = compile_selector(action.field)
        except ValueError:
            continue  # the engine refuses this line before it reads anything
        if not sel.plain:
            names.add(sel.arg)
    return frozenset(names)


def deidentify(
    ds: Dataset,
    recipe: Recipe,
    ids: Mapping[str, Any] | None = None,
    *,
    funcs: Mapping[str, Callable[..., Any]] | None = None,
    settings: Any = None,
    filename: str | None = None,
    in_place: bool = False,
    conform_iod: bool = True,
) -> Dataset:
    """A de-identified copy of ``ds``: the recipe's %header applied as deid applies it.

    ``ids`` are this file's variables (``var:NAME`` reads ``ids[NAME]``), ``funcs`` the callables
    for ``func:NAME``; ``settings`` (default: from the environment, read only if a keyed
    deid_func runs) give the key and date-shift range; ``filename`` names the file in warnings.
    ``in_place=True`` edits and returns ``ds`` itself: for a caller that owns a dataset it just
    read and will not use again (a worker's put), the deep copy is a fifth of the work.
    ``conform_iod=False`` skips the conformance pass (:mod:`.conformance`), leaving the
    dataset exactly as deid's execution model makes it.
    """
    out = ds if in_place else copy.deepcopy(ds)
    lookup: dict[str, Any] = dict(ids or {})
    lookup.update(funcs or {})
    entity_field = getattr(settings, "entity_field", "PatientID") if settings is not None else "PatientID"
    entity = ds.get(entity_field)  # read before the run edits ``out`` (maybe ``ds`` itself)
    sop_class = _sop_class(ds) if conform_iod else None
    ctx = FuncContext(settings, None if entity is None else str(entity))
    run = _Run(out, recipe, lookup, ctx, filename)
    run.build_lists()
    run.run()
    if sop_class:
        run.meta_sync.update(conform(out, run.changes, sop_class, ctx))
    run.sync_meta()
    return out


def _sop_class(ds: Dataset) -> str | None:
    """The SOP Class UID of the input, read before the recipe may change it; a raw element
    is read from its bytes, unconverted (only the Type table looks the text up)."""
    element = compat.elements(ds).get(0x00080016)  # type: ignore[call-overload]
    if element is None:
        return None
    value = element.value
    if type(element) is RawDataElement and type(value) is bytes:
        return value.decode("ascii", "replace").strip("\0 ") or None
    value = ds[0x00080016].value  # converted, or a deferred raw value read now
    return str(value).strip() or None if value else None
