"""Apply a recipe's %header to one dataset: deid's execution model (spec §2.8), on a copy
(or, with ``in_place=True``, on the dataset itself).

Order and precedence, as deid's 47 interaction cases require:

1. The candidate fields are every element at every depth plus file meta, minus the skip list
   and minus the tags of KEEP targets (so KEEP beats everything but ADD).
2. %values / %fields lists are computed once, from the original values.
3. %header lines run in file order; each selects among the fields still present.
4. REMOVE spares any field that a plain REPLACE/JITTER selector of the recipe selects.
5. Removing or blanking a sequence forgets its children.

Differences from deid (spec Part A §2): a REPLACE/JITTER whose var:/func: value is missing
removes the field and logs ``REPLACE <field> not done for <file>``; JITTER leaves TM alone; a
REPLACE/ADD/JITTER of SOPInstanceUID/SOPClassUID updates the file meta to match; a value that
does not fit a numeric VR blanks the field (deid's warning says so, its code keeps PHI).

Unless ``in_place=True``, the input dataset is never modified. Outside the call only the
recipe's compiled selectors (built once, under a lock) and the selectors' bounded caches of
field names are kept, never a value, so one recipe can serve many threads.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset

from .funcs import FuncContext, jitter_days, jitter_value
from .model import Action, Recipe
from .parser import parse_split_options
from .selectors import Field, FieldSet, Selector, add_target, compile_selector
from .values import MISSING, convert_value, resolve_value

__all__ = ["deidentify", "compiled"]

logger = logging.getLogger(__name__)
_compile_lock = threading.Lock()

_META_SYNC = {
    "SOPInstanceUID": "MediaStorageSOPInstanceUID",
    "SOPClassUID": "MediaStorageSOPClassUID",
}


class _Compiled:
    """What the engine needs from a recipe, computed once and kept in Recipe.cache."""

    def __init__(self, recipe: Recipe) -> None:
        self.selectors: dict[str, Selector] = {}
        for action in recipe.header:
            if action.action != "ADD":
                self.sel(action.field)
        for rules in list(recipe.values.values()) + list(recipe.fields.values()):
            for rule in rules:
                self.sel(rule.field)
        self.keep = [self.sel(a.field) for a in recipe.header if a.action == "KEEP"]
        self.shields = [
            self.sel(a.field)
            for a in recipe.header
            if a.action in ("REPLACE", "JITTER") and self.sel(a.field).plain
        ]
        self.adds = {a.field: add_target(a.field) for a in recipe.header if a.action == "ADD"}
        # The %header lines as run() walks them, selectors resolved once per recipe; for an
        # ``exact`` selector, its key lets run() skip with one dict lookup the hundreds of
        # default-recipe lines that name a field the file does not have.
        self.plan: list[tuple[Action, Selector | None, str | None]] = []
        for a in recipe.header:
            if a.action == "KEEP":
                continue
            s = None if a.action == "ADD" else self.sel(a.field)
            self.plan.append((a, s, s.arg if s is not None and s.kind == "exact" else None))
        self.splits = {
            id(rule): parse_split_options(rule.value)
            for rules in recipe.values.values()
            for rule in rules
            if rule.action == "SPLIT"
        }

    def sel(self, text: str) -> Selector:
        s = self.selectors.get(text)
        if s is None:
            s = self.selectors[text] = compile_selector(text)
        return s


def compiled(recipe: Recipe) -> _Compiled:
    """The recipe's compiled selectors (built on first use, then shared by all threads)."""
    c = recipe.cache.get("engine")
    if c is None:
        with _compile_lock:
            c = recipe.cache.get("engine")
            if c is None:
                c = recipe.cache["engine"] = _Compiled(recipe)
    return c


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
        self.meta_sync: set[str] = set()
        full = FieldSet(ds)
        keep_tags: set[str] = set()
        for sel in self.c.keep:
            if sel.plain:
                # deid excludes by tag text at every depth; a nested uid path never matches.
                keep_tags.update(f.uid for f in full.expand(sel))
        self.fields = FieldSet(ds, frozenset(keep_tags)) if keep_tags else full

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
                    items = list(value) if isinstance(value, list) else [value]
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
        for action, sel, exact in self.c.plan:
            if sel is None:
                self.add(action)
                continue
            if exact is not None and exact not in self.fields._exact_index():
                continue  # an ADD updates the index, so this stays right after one
            for f in self.fields.expand(sel, self.lookup):
                if f.uid not in self.fields:  # gone with a parent earlier in this loop
                    continue
                getattr(self, action.action.lower())(f, action)

    def value_for(self, action: Action, field: Any) -> Any:
        assert action.value is not None
        return resolve_value(
            action.value, lookup=self.lookup, field=field, dataset=self.ds, ctx=self.ctx
        )

    def delete(self, f: Field) -> None:
        if f.tag_int in f.parent:
            del f.parent[f.tag_int]
        self.fields.remove(f)

    def not_done(self, f: Field) -> None:
        logger.warning("REPLACE %s not done for %s", f.name or f.uid, self.filename)
        self.delete(f)

    def set_value(self, f: Field, value: Any) -> None:
        ok, converted = convert_value(f.raw_vr() or f.element.VR, value, f.name or f.uid)
        f.assign(converted if ok else None)
        if f.parent is self.ds and f.element.keyword in _META_SYNC:
            self.meta_sync.add(f.element.keyword)

    def blank(self, f: Field, action: Action) -> None:
        f.assign(None)
        self.fields.forget_children(f)

    def replace(self, f: Field, action: Action) -> None:
        value = self.value_for(action, f)
        if value is MISSING:
            self.not_done(f)
            return
        self.set_value(f, value)

    def jitter(self, f: Field, action: Action) -> None:
        if not f.element.value:
            return
        assert action.value is not None
        if action.value.startswith("deid_func:"):
            name, _, extras = action.value[len("deid_func:"):].partition(" ")
            if name in ("jitter", "date_shift"):
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
            uids: set[str] = set()
            index = self.fields._exact_index()
            for sel in self.c.shields:
                if sel.kind == "exact" and sel.arg not in index:
                    continue
                uids.update(f.uid for f in self.fields.expand(sel))
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
        uid = str(DataElement(tag, vr, None).tag)
        f = self.fields.get(uid)
        if f is not None and f.parent is target:
            self.set_value(f, value)
            return
        ok, converted = convert_value(existing.VR if existing is not None else vr, value, action.field)
        element = DataElement(tag, vr, converted if ok else None)
        target[tag] = element
        f = Field(element, action.field, uid, is_meta, target)
        self.fields.add(f)
        self.shielded = None
        if not is_meta and element.keyword in _META_SYNC:
            self.meta_sync.add(element.keyword)

    def sync_meta(self) -> None:
        """Keep MediaStorageSOP* equal to the dataset's SOP UIDs after they were replaced,
        or when the recipe removed them from file meta only (the value is in the output
        anyway), so the output stays a valid Part-10 file."""
        meta = getattr(self.ds, "file_meta", None)
        if meta is None:
            return
        for keyword, meta_keyword in _META_SYNC.items():
            value = self.ds.get(keyword) if keyword in self.ds else None
            if not value:
                continue
            if keyword in self.meta_sync or not meta.get(meta_keyword):
                setattr(meta, meta_keyword, value)


def deidentify(
    ds: Dataset,
    recipe: Recipe,
    ids: Mapping[str, Any] | None = None,
    *,
    funcs: Mapping[str, Callable[..., Any]] | None = None,
    settings: Any = None,
    filename: str | None = None,
    in_place: bool = False,
) -> Dataset:
    """A de-identified copy of ``ds``: the recipe's %header applied as deid applies it.

    ``ids`` are this file's variables (``var:NAME`` reads ``ids[NAME]``), ``funcs`` the callables
    for ``func:NAME``; ``settings`` (default: from the environment, read only if a keyed
    deid_func runs) give the key and date-shift range; ``filename`` names the file in warnings.
    ``in_place=True`` edits and returns ``ds`` itself: for a caller that owns a dataset it just
    read and will not use again (a worker's put), the deep copy is a fifth of the work.
    """
    out = ds if in_place else copy.deepcopy(ds)
    lookup: dict[str, Any] = dict(ids or {})
    lookup.update(funcs or {})
    entity_field = getattr(settings, "entity_field", "PatientID") if settings is not None else "PatientID"
    entity = ds.get(entity_field)  # read before the run edits ``out`` (maybe ``ds`` itself)
    ctx = FuncContext(settings, None if entity is None else str(entity))
    run = _Run(out, recipe, lookup, ctx, filename)
    run.build_lists()
    run.run()
    run.sync_meta()
    return out
