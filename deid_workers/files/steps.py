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

from ..config import Settings
from ..dicom.overlays import high_bit_overlays, standardize_high_bit_overlays
from ..dicom.reader import read_dataset
from ..dicom.writer import write_atomic
from ..errors import InputError, OutputExistsError
from ..fs.paths import output_path
from ..reasons import NO_PIXEL_SYNTAX
from ..recipe import clean_pixels, deidentify, entity_item, get_identifiers, inspect_dataset
from ..recipe.identifiers import cap_identifiers, cap_key, peek_entity_item
from ..recipe.pixels import PixelLimitError, check_pixels
from .filemeta import NoPixelSyntax, complete_meta, original_of
from .layout import Layout, run_layout
from .provenance import Provenance, stamp
from .triage import PixelPolicy, Triage, triage

__all__ = [
    "MISSING_ENTITY",
    "GetOutcome",
    "InspectOutcome",
    "PutOutcome",
    "PendingPut",
    "ids_keys",
    "get_one",
    "inspect_one",
    "put_one",
    "open_put",
    "finish_put",
]

log = logging.getLogger(__name__)

MISSING_ENTITY = ""
"""Entity key for files without an entity value (PatientID): they are processed, never dropped,
and their identifiers sit under this key in the export so a user can still edit them."""

IdsLookup = Callable[[str, str], "Mapping[str, Any] | None"]

Overwrite = bool | Callable[[str], bool]
"""Whether an existing output may be replaced: a flag, or a function of the output's
absolute path (the put task's: an output this run wrote before its worker died may be)."""

Known = tuple[tuple[str, str], tuple[str, ...]]
"""What get already noted of a file: its ids keys (:func:`ids_keys`) and missing fields."""


def ids_keys(entity: str | None, item: str | None, rel: str) -> tuple[str, str]:
    """The (entity, item) keys of a file in the ids mapping.

    A missing entity becomes :data:`MISSING_ENTITY`; a missing item becomes the file's relative
    path, unique within a run, so two such files never share (and overwrite) one record. A key
    longer than :data:`~deid_workers.recipe.identifiers.KEY_MAX` (a hostile header) is cut
    with a digest of the whole (:func:`~deid_workers.recipe.identifiers.cap_key`).
    """
    return (cap_key(entity) if entity else MISSING_ENTITY, cap_key(item) if item else rel)


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
    """Header-filter verdict of one file (results hold group, reason, coordinates); ``ocr``:
    why the ocr stage should read it (``--ocr``), None when it need not."""

    path: str
    ok: bool
    reason: str | None = None
    flagged: bool = False
    results: list[dict[str, Any]] = field(default_factory=list)
    ocr: str | None = None


@dataclass(frozen=True)
class PutOutcome:
    """``status`` is ``written``, ``refused`` (output exists) or ``skipped`` (bad input); with a
    :class:`PixelPolicy` also ``cleaned``, ``quarantined`` (``dest`` in the quarantine folder)
    or ``clean`` (pixels to be cleaned by the clean stage; nothing was written).

    With ``--ocr``, put gives ``ocr`` (the file goes to the ocr stage; nothing was written)
    for the files :func:`~deid_workers.files.ocrstep.ocr_selection` picks.

    ``output`` is the output's path relative to its folder (the output folder, or the
    quarantine folder), as the run's :class:`~deid_workers.files.layout.Layout` made it; ``dest``
    is the absolute path. Both are None when the file was not read. ``ocr`` (the clean stage,
    for a file the ocr stage read) is what the run log says of it: the verdict's counts
    (:meth:`~deid_workers.ocr.verdict.OcrVerdict.summary`), the boxes blacked out and whether
    the verification passed; never text."""

    path: str
    status: str
    reason: str | None = None
    dest: str | None = None
    missing: tuple[str, ...] = ()
    has_ids: bool = False
    output: str | None = None
    ocr: dict[str, Any] | None = None


def _abs(root: str, rel: str) -> str:
    return os.path.join(root, rel)


def get_one(root: str, rel: str, settings: Settings) -> GetOutcome:
    """Read the headers of ``root/rel`` (no pixels) and collect its identifiers."""
    try:
        ds = read_dataset(_abs(root, rel), headers_only=True, name=rel, root=root,
                          max_bytes=settings.max_file_bytes)
    except InputError as exc:
        return GetOutcome(rel, False, exc.reason)
    # Read without converting: this dataset is dropped once its identifiers are taken.
    entity, item = peek_entity_item(ds, settings.entity_field, settings.item_field)
    e, i = ids_keys(entity, item, rel)
    # Each value capped (VALUE_MAX characters, the cut ones noted): what get stores in Redis
    # and exports is bounded per field, whatever a file holds.
    return GetOutcome(rel, True, None, e, i, cap_identifiers(dict(get_identifiers(ds))),
                      _missing(entity, item, settings))


def inspect_one(root: str, rel: str, recipe: Any, settings: Settings | None = None, *,
                ocr: str | None = None) -> InspectOutcome:
    """Run the recipe's %filter groups over the headers of ``root/rel``; with ``ocr`` (a mode
    of ``--ocr``) also say whether the ocr stage should read it.

    A file whose header declares an overlay in the high bits of its pixel data is read whole
    and that overlay moved into OverlayData first, as put does (:func:`open_put`): the
    filters judge what put's recipe will see (a ``present 0x60003000`` criterion included)."""
    settings = settings if settings is not None else Settings()
    try:
        ds = read_dataset(_abs(root, rel), headers_only=True, name=rel, root=root,
                          max_bytes=settings.max_file_bytes)
        if high_bit_overlays(ds):
            ds = read_dataset(_abs(root, rel), headers_only=False, name=rel, root=root,
                              max_bytes=settings.max_file_bytes)
            standardize_high_bit_overlays(ds)
    except InputError as exc:
        return InspectOutcome(rel, False, exc.reason)
    verdict = inspect_dataset(ds, recipe)
    why = None
    if ocr is not None:
        from .ocrstep import ocr_selection

        why = ocr_selection(ds, ocr, recipe, verdict, headers_only=True)
    return InspectOutcome(rel, True, None, bool(verdict.get("flagged")),
                          list(verdict.get("results") or []), why)


EXISTS_SAME_UID = ("already exists: with --layout uid, a file of an earlier run or another "
                   "input with the same SOP Instance UID (a duplicate, or the same image in "
                   "another transfer syntax); --overwrite replaces it, --layout mirror keeps "
                   "the inputs apart")
"""Why a file is refused when the uid layout finds its path taken."""


@dataclass
class PendingPut:
    """A file :func:`open_put` has read and triaged, waiting for its ids (:func:`finish_put`).

    Why two halves: a file's (entity, item) is only known once it is read, and the tasks fetch
    the ids of several read files in one Redis round trip before writing any of them.
    ``out_rel``/``dest`` are None while the layout waits for the de-identified data set;
    ``may_replace`` is what ``overwrite`` said of ``dest`` (None until there is one).
    ``ocr`` is the file's OCR verdict when its boxes are to be blacked out (the clean stage),
    ``identifying`` the values of its original header that verification looks for (in memory
    only), ``ocr_log`` what the run log will say of it.
    """

    rel: str
    ds: Any = field(repr=False)
    dest: str | None
    keys: tuple[str, str]
    missing: tuple[str, ...]
    overwrite: Overwrite
    may_replace: bool | None
    status: str = "written"
    reason: str | None = None
    verdict: Mapping[str, Any] | None = field(default=None, repr=False)
    out_rel: str | None = None
    layout: Layout | None = field(default=None, repr=False)
    folder: str = ""
    ocr: Any = field(default=None, repr=False)
    identifying: Any = field(default=None, repr=False)
    ocr_log: dict[str, Any] | None = None


def open_put(
    root: str,
    rel: str,
    outfolder: str,
    recipe: Any,
    settings: Settings,
    *,
    overwrite: Overwrite,
    pixels: PixelPolicy | None = None,
    layout: Layout | None = None,
    known: Known | None = None,
    ocr: Any = None,
) -> PutOutcome | PendingPut:
    """The first half of :func:`put_one`: read, place (``layout``), triage and refuse.

    An outcome when the file ends here (refused, skipped, or left to the ocr or clean stage),
    else the read dataset and its ids keys (``known``, when get noted them, else read from the
    file). The output path depends on the file's header (a mirrored path loses the names that
    hold its identifiers), so the file is read before an existing output can be refused.

    ``pixels`` says how pixels are triaged: by the recipe's %filter groups (``filters``), and
    with ``pixels.ocr`` the put stage leaves the files OCR should read to the ocr stage; the
    clean stage passes each such file's OCR verdict as ``ocr`` (an
    :class:`~deid_workers.ocr.OcrVerdict`), which may quarantine it or add boxes to black out.

    An overlay kept in the high bits of native pixel data (retired) is moved into its own
    ``(60xx,3000) OverlayData`` as soon as the file is read
    (:func:`~deid_workers.dicom.overlays.standardize_high_bit_overlays`; pixel values
    unchanged), so the recipe treats it as any Overlay Data.
    """
    if layout is None:
        layout = run_layout(settings)
    try:
        ds = read_dataset(_abs(root, rel), headers_only=False, name=rel, root=root,
                          max_bytes=settings.max_file_bytes)
    except InputError as exc:
        return PutOutcome(rel, "skipped", exc.reason)
    # A retired high-bit overlay moves into its own OverlayData before the recipe (its
    # %filter groups included) sees the file, so the recipe removes or keeps it as it does
    # Overlay Data: otherwise no line of it could reach those bits. A few dict lookups for a
    # file without (60xx,0102).
    standardize_high_bit_overlays(ds)
    out_rel = layout.before(rel, ds)
    folder = outfolder
    status, reason, verdict = "written", None, None
    identifying = ocr_log = None
    if pixels is not None:
        decision = Triage("write")
        if pixels.filters:
            # The %filter groups read the header only; PixelData is not decoded here.
            verdict = inspect_dataset(ds, recipe)
            decision = triage(verdict, pixels.quarantine_groups)
        if decision.action == "clean":
            try:  # the put read: an image too big to decode never reaches the clean stage
                check_pixels(ds, settings.max_pixel_bytes)
            except PixelLimitError as exc:
                decision = Triage("quarantine", decision.group, f"pixels could not be cleaned: {exc}")
        if pixels.ocr is not None and not pixels.now and decision.action != "quarantine":
            from .ocrstep import ocr_selection

            # A file with %filter boxes has pixels and a recipe hit: OCR reads it first too.
            why = ocr_selection(ds, pixels.ocr, recipe, verdict) or (
                decision.reason if decision.action == "clean" else None)
            if why is not None:
                return PutOutcome(rel, "ocr", why, None, output=out_rel)
        if decision.action == "clean" and not pixels.now:
            return PutOutcome(rel, "clean", decision.reason, None, output=out_rel)
        if decision.action != "clean":
            verdict = None  # only a verdict with boxes to clean is blacked out
        if decision.action == "quarantine":
            status, reason = "quarantined", decision.reason
            folder = pixels.quarantine
        else:
            if decision.action == "clean":
                status, reason = "cleaned", decision.reason
            if ocr is not None:
                from .ocrstep import ocr_triage

                action, why = ocr_triage(ocr)
                ocr_log = ocr.summary()
                if action == "quarantine":
                    status, reason, folder = "quarantined", why, pixels.quarantine
                elif action == "clean":
                    from ..ocr import identifying_values

                    status, reason = "cleaned", reason or why
                    identifying = identifying_values(ds)  # before the recipe removes them
                else:
                    ocr = None
    dest = may_replace = None
    if out_rel is not None:
        try:
            dest = output_path(folder, out_rel)
        except InputError as exc:
            return PutOutcome(rel, "skipped", exc.reason)
        may_replace = overwrite(dest) if callable(overwrite) else overwrite
        if not may_replace and os.path.lexists(dest):
            return PutOutcome(rel, "refused", "already exists", dest, output=out_rel)
    if known is None:
        entity, item = entity_item(ds, settings.entity_field, settings.item_field)
        known = ids_keys(entity, item, rel), _missing(entity, item, settings)
    return PendingPut(rel, ds, dest, known[0], known[1], overwrite, may_replace, status,
                      reason, verdict, out_rel, layout, folder,
                      ocr if identifying is not None else None, identifying, ocr_log)


def finish_put(
    pending: PendingPut,
    recipe: Any,
    ids: Mapping[str, Any] | None,
    settings: Settings,
    *,
    funcs: Mapping[str, Any] | None = None,
    pixels: PixelPolicy | None = None,
    provenance: Provenance | None = None,
    sync: bool = True,
    verify: Any = None,
) -> PutOutcome:
    """The second half of :func:`put_one`: de-identify ``pending`` with ``ids`` and write it.

    The dataset is edited in place and released: a pending file is finished once. A file
    with OCR boxes (``pending.ocr``) is blacked out, then read again with ``verify``
    (:data:`~deid_workers.files.ocrstep.Verify`): with any PHI box left it goes to the
    quarantine folder (boxes blacked out, BurnedInAnnotation YES, no 113101) instead.
    """
    rel, status, reason = pending.rel, pending.status, pending.reason
    ds, pending.ds = pending.ds, None
    original = original_of(ds)  # before the recipe: the file meta follows what it does
    # in_place: the dataset was read for this call only, so the engine's defensive copy (a
    # deepcopy, a fifth of deidentify's time) buys nothing here.
    new = deidentify(ds, recipe, ids, funcs=funcs, settings=settings, filename=rel,
                     in_place=True)
    del ds
    folder = pending.folder
    ocr_log = dict(pending.ocr_log) if pending.ocr_log is not None else None
    if status == "cleaned" and pixels is not None and (pending.verdict is not None
                                                       or pending.ocr is not None):
        try:
            if pending.ocr is not None:  # OCR's boxes, and the %filter's in the same decode
                from ..ocr.redact import redact

                new = redact(new, pending.ocr, also=pending.verdict,
                             max_bytes=settings.max_pixel_bytes)
            else:
                new = clean_pixels(new, pending.verdict, max_bytes=settings.max_pixel_bytes)
        except (ValueError, NotImplementedError, RuntimeError) as exc:
            # No decoder for this transfer syntax, or pixels that do not match the header:
            # the file cannot be made safe here, so a person gets to look at it.
            log.debug("cleaning %s failed", rel, exc_info=True)
            status = "quarantined"
            if isinstance(exc, PixelLimitError):
                reason = f"pixels could not be cleaned: {exc}"
            else:
                reason = ("pixels could not be cleaned (no decoder for their compression, or "
                          f"they do not match the header: {type(exc).__name__}); held for a "
                          "person to review")
            folder = pixels.quarantine
        if status == "cleaned" and pending.ocr is not None and ocr_log is not None:
            from .ocrstep import HELD_PHI_LEFT, verify_cleaned

            if verify is None:
                raise ValueError("a file with OCR boxes to black out needs a verifier")
            passed, left = verify_cleaned(new, pending.identifying, verify)
            ocr_log.update(cleaned=len(pending.ocr.redactions()), verified=passed, left=left)
            if not passed:
                status, reason, folder = "quarantined", HELD_PHI_LEFT.format(n=left), pixels.quarantine
                # Held with its boxes blacked out, but PHI is still burned in: say so.
                new.BurnedInAnnotation = "YES"
    pending.identifying = None
    stamp(new, provenance if provenance is not None else recipe,
          pixels_cleaned=status == "cleaned")
    layout = pending.layout if pending.layout is not None else run_layout(settings)
    try:
        lacking = complete_meta(new, original, layout.key, rel)
    except NoPixelSyntax:
        return PutOutcome(rel, "skipped", NO_PIXEL_SYNTAX)
    out_rel, dest, may_replace = pending.out_rel, pending.dest, pending.may_replace
    if out_rel is None:
        out_rel = layout.after(rel, new)
    if dest is None or folder != pending.folder:  # resolving a path costs a few syscalls
        try:
            dest = output_path(folder, out_rel)
        except InputError as exc:
            return PutOutcome(rel, "skipped", exc.reason)
        overwrite = pending.overwrite
        may_replace = overwrite(dest) if callable(overwrite) else overwrite
    try:
        write_atomic(new, dest, overwrite=bool(may_replace), sync=sync, root=folder)
    except OutputExistsError:
        why = EXISTS_SAME_UID if pending.out_rel is None else "already exists"
        return PutOutcome(rel, "refused", why, dest, output=out_rel)
    missing = pending.missing + tuple(k for k in lacking if k not in pending.missing)
    return PutOutcome(rel, status, reason, dest, missing, ids is not None, out_rel, ocr_log)


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
    pixels: PixelPolicy | None = None,
    provenance: Provenance | None = None,
    sync: bool = True,
    layout: Layout | None = None,
) -> PutOutcome:
    """Apply the recipe to ``root/rel`` with its ids as vars; write it under ``outfolder``.

    ``lookup(entity, item)`` returns the file's identifiers (``ids[entity][item]``) or None;
    without ids the recipe still runs and a ``var:`` it needs is handled as missing (the recipe
    engine removes the field and warns). An existing output is refused before any work when
    ``overwrite`` is false, and again at write time (another worker may have written it).

    Every output is stamped (:func:`~deid_workers.files.provenance.stamp`; ``provenance`` defaults to
    the recipe's own). With ``pixels`` the file is triaged by the recipe's %filter groups
    first (:func:`triage`): quarantined files go to ``pixels.quarantine`` (header
    de-identified, pixels untouched); files needing pixel work are cleaned when
    ``pixels.now``, else returned as ``clean`` for the clean stage, before any de-identifying.
    ``sync=False``: see :func:`~deid_workers.dicom.writer.write_atomic` (the caller syncs ``dest``).
    ``layout`` places the output (:mod:`deid_workers.files.layout`; default: the mirrored input
    path, with identifying names pseudonymized with the settings' key); the file meta is
    rebuilt for the output (:mod:`deid_workers.files.filemeta`).
    It is :func:`open_put` then :func:`finish_put`, for one file at a time.
    """
    pending = open_put(root, rel, outfolder, recipe, settings, overwrite=overwrite,
                       pixels=pixels, layout=layout)
    if isinstance(pending, PutOutcome):
        return pending
    return finish_put(pending, recipe, lookup(*pending.keys), settings, funcs=funcs,
                      pixels=pixels, provenance=provenance, sync=sync)
