"""One file in, one outcome out: the work of each stage, without Redis or Celery.

Why a separate layer: tasks are thin glue (read a batch from the store, call a step per file,
write the outcomes back); keeping the per-file logic here makes it testable as plain functions
on files under ``tmp_path``, and lets a future local runner reuse it unchanged.

Every outcome carries the file's path *relative to the input root* (never absolute: the store,
logs and reports show relative paths) and, for failures, a reason that names no header value.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .config import Settings
from .dicomio import enforce_inside, read_dataset, write_atomic
from .errors import InputError, OutputExistsError
from .recipe import deidentify, entity_item, get_identifiers, inspect_dataset

__all__ = [
    "MISSING_ENTITY",
    "GetOutcome",
    "InspectOutcome",
    "PutOutcome",
    "ids_keys",
    "get_one",
    "inspect_one",
    "put_one",
]

log = logging.getLogger(__name__)

MISSING_ENTITY = ""
"""Entity key for files without an entity value (PatientID): they are processed, never dropped,
and their identifiers sit under this key in the export so a user can still edit them."""

IdsLookup = Callable[[str, str], "Mapping[str, Any] | None"]


def ids_keys(entity: str | None, item: str | None, rel: str) -> tuple[str, str]:
    """The (entity, item) keys of a file in the ids mapping.

    A missing entity becomes :data:`MISSING_ENTITY`; a missing item becomes the file's relative
    path, unique within a run, so two such files never share (and overwrite) one record.
    """
    return (entity if entity else MISSING_ENTITY, item if item else rel)


def _missing(entity: str | None, item: str | None, settings: Settings) -> tuple[str, ...]:
    out = []
    if not entity:
        out.append(settings.entity_field)
    if not item:
        out.append(settings.item_field)
    return tuple(out)


@dataclass(frozen=True)
class GetOutcome:
    """What ``get`` learnt from one file: its keys and flat identifiers, or why it was skipped."""

    path: str
    ok: bool
    reason: str | None = None
    entity: str = MISSING_ENTITY
    item: str = ""
    fields: dict[str, Any] = field(default_factory=dict, repr=False)
    missing: tuple[str, ...] = ()


@dataclass(frozen=True)
class InspectOutcome:
    """Header-filter verdict of one file (results hold group, reason, coordinates)."""

    path: str
    ok: bool
    reason: str | None = None
    flagged: bool = False
    results: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class PutOutcome:
    """``status`` is ``written``, ``refused`` (output exists) or ``skipped`` (bad input)."""

    path: str
    status: str
    reason: str | None = None
    dest: str | None = None
    missing: tuple[str, ...] = ()
    has_ids: bool = False


def _abs(root: str, rel: str) -> str:
    return os.path.join(root, rel)


def get_one(root: str, rel: str, settings: Settings) -> GetOutcome:
    """Read the headers of ``root/rel`` (no pixels) and collect its identifiers."""
    try:
        ds = read_dataset(_abs(root, rel), headers_only=True, name=rel)
    except InputError as exc:
        return GetOutcome(rel, False, exc.reason)
    entity, item = entity_item(ds, settings.entity_field, settings.item_field)
    e, i = ids_keys(entity, item, rel)
    return GetOutcome(rel, True, None, e, i, dict(get_identifiers(ds)),
                      _missing(entity, item, settings))


def inspect_one(root: str, rel: str, recipe: Any) -> InspectOutcome:
    """Run the recipe's %filter groups over the headers of ``root/rel``."""
    try:
        ds = read_dataset(_abs(root, rel), headers_only=True, name=rel)
    except InputError as exc:
        return InspectOutcome(rel, False, exc.reason)
    verdict = inspect_dataset(ds, recipe)
    return InspectOutcome(rel, True, None, bool(verdict.get("flagged")),
                          list(verdict.get("results") or []))


def output_path(outfolder: str, rel: str) -> str:
    """Where ``rel`` goes: the same relative path under the output folder, never outside it."""
    return str(enforce_inside(outfolder, rel))


def put_one(
    root: str,
    rel: str,
    outfolder: str,
    recipe: Any,
    lookup: IdsLookup,
    settings: Settings,
    *,
    overwrite: bool,
    funcs: Mapping[str, Any] | None = None,
) -> PutOutcome:
    """Apply the recipe to ``root/rel`` with its ids as vars; write it under ``outfolder``.

    ``lookup(entity, item)`` returns the file's identifiers (``ids[entity][item]``) or None;
    without ids the recipe still runs and a ``var:`` it needs is handled as missing (the recipe
    engine removes the field and warns). An existing output is refused before any work when
    ``overwrite`` is false, and again at write time (another worker may have written it).
    """
    dest = output_path(outfolder, rel)
    if not overwrite and os.path.lexists(dest):
        return PutOutcome(rel, "refused", "already exists", dest)
    try:
        ds = read_dataset(_abs(root, rel), headers_only=False, name=rel)
    except InputError as exc:
        return PutOutcome(rel, "skipped", exc.reason, dest)
    entity, item = entity_item(ds, settings.entity_field, settings.item_field)
    ids = lookup(*ids_keys(entity, item, rel))
    new = deidentify(ds, recipe, ids, funcs=funcs, settings=settings, filename=rel)
    try:
        write_atomic(new, dest, overwrite=overwrite)
    except OutputExistsError:
        return PutOutcome(rel, "refused", "already exists", dest)
    return PutOutcome(rel, "written", None, dest, _missing(entity, item, settings), ids is not None)
