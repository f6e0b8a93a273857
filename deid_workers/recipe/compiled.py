"""A recipe compiled for the engine: its %header lines indexed by the field names they can select.

Why: most lines of a default recipe name one field that a given file does not have. Compiled
once per recipe (kept in ``Recipe.cache``, built under a lock, then shared by every thread),
the index lets :mod:`.actions` run on each file only the lines some field of it can match,
answering a line whose selector depends only on a field's names once per field shape.
"""

from __future__ import annotations

import threading

from .elements import CACHE_LIMIT
from .model import Action, Recipe
from .parser import parse_split_options
from .selectors import Field, Selector, add_target, compile_selector

__all__ = ["CLEAN", "Compiled", "by_shape", "compiled"]

CLEAN = "deid_func:clean_text"
"""The value of the Clean options' lines, whose fields' texts are collected before any line runs."""

_compile_lock = threading.Lock()


class Compiled:
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
        shields = [
            self.sel(a.field)
            for a in recipe.header
            if a.action in ("REPLACE", "JITTER") and self.sel(a.field).plain
        ]
        self.adds = {a.field: add_target(a.field) for a in recipe.header if a.action == "ADD"}
        # The %header lines as run() walks them (KEEP done up front), selectors resolved once.
        self.plan: list[tuple[Action, Selector | None]] = [
            (a, None if a.action == "ADD" else self.sel(a.field))
            for a in recipe.header
            if a.action != "KEEP"
        ]
        self.handlers = [a.action.lower() for a, _ in self.plan]  # _Run method per line
        # Most lines of a default recipe name one field that a given file does not have. A
        # line whose selector depends only on a field's names (its "shape") is answered per
        # shape, once per recipe, so a file runs only the lines some field of it has, plus
        # every line that reads values (values:, fields:, select:VR) and every ADD.
        self.by_key: dict[str, tuple[int, ...]] = {}
        self.shape_lines: list[tuple[int, Selector]] = []
        dynamic: list[int] = []
        for i, (_, s) in enumerate(self.plan):
            if s is not None and s.kind == "exact":
                self.by_key[s.arg] = self.by_key.get(s.arg, ()) + (i,)
            elif s is not None and by_shape(s):
                self.shape_lines.append((i, s))
            else:
                dynamic.append(i)
        self.dynamic = tuple(dynamic)
        self.first_exact = min((v[0] for v in self.by_key.values()), default=len(self.plan))
        # After this line only ADDs remain, and an ADD never reads the field set's index.
        self.last_reader = max((i for i, (_, s) in enumerate(self.plan) if s is not None), default=-1)
        self.shield_keys = frozenset(s.arg for s in shields if s.kind == "exact")
        self.shield_shapes = [s for s in shields if s.kind != "exact" and by_shape(s)]
        self.shield_others = [s for s in shields if s.kind != "exact" and not by_shape(s)]
        self.known_hits: dict[tuple[str, str, str | None], tuple[tuple[int, ...], bool]] = {}
        # clean_text reads the file's names, IDs and dates as they were before any line ran:
        # they are collected when a clean_text line selects a field of the file (or could
        # after an ADD made one, which the answers by shape do not foresee)
        clean = [i for i, (a, _) in enumerate(self.plan) if a.value is not None and a.value.startswith(CLEAN)]
        self.clean_lines = frozenset(clean)
        first_add = min((i for i, (a, _) in enumerate(self.plan) if a.action == "ADD"), default=len(self.plan))
        self.clean_after_add = any(i > first_add for i in clean)
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

    def hits(self, f: Field) -> tuple[tuple[int, ...], bool]:
        """(plan lines whose selector matches ``f`` by its names, whether a REPLACE/JITTER
        line shields it from REMOVE that way); shared by every field of the same shape (tag
        path, keyword path, private creator: all its names derive from them), bounded like
        the selectors' caches of names."""
        shape = f.shape()
        hit = self.known_hits.get(shape)
        if hit is None:
            keys = f.exact_keys()
            lines = {i for key in keys for i in self.by_key.get(key, ())}
            lines.update(i for i, s in self.shape_lines if f.matches(s))
            shielded = not self.shield_keys.isdisjoint(keys) or any(
                f.matches(s) for s in self.shield_shapes)
            hit = (tuple(sorted(lines)), shielded)
            if len(self.known_hits) >= CACHE_LIMIT:
                self.known_hits.clear()
            self.known_hits[shape] = hit
        return hit


def by_shape(sel: Selector) -> bool:
    """Does the selector test only a field's names (tag, keyword, paths, creator)?"""
    if not sel.plain:
        return False
    return sel.kind != "select" or sel.arg.startswith("GROUP:")


def compiled(recipe: Recipe) -> Compiled:
    """The recipe's compiled selectors (built on first use, then shared by all threads)."""
    c = recipe.cache.get("engine")
    if c is None:
        with _compile_lock:
            c = recipe.cache.get("engine")
            if c is None:
                c = recipe.cache["engine"] = Compiled(recipe)
    return c
