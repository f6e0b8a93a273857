"""A submission checked before anything starts: what can be known wrong is said before a Redis or a worker exists.

Why a step of its own: a bad recipe, a missing or malformed ids file, an output folder that
cannot be written, or an OCR engine that is not installed must end ``deid-submit`` in one line
with exit 2, with no process started and no folder left behind (:func:`remove_made` takes back
what the checks created). :func:`prepare` gives the :class:`Prepared` submission that
:func:`~deid_workers.producer.submit` runs.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

from .config import Settings
from .errors import ConfigError, IdentifiersError, InputError, RunRefused
from .files.provenance import declared_codes
from .files.triage import DEFAULT_QUARANTINE_GROUPS
from .fs.folders import check_folders, run_folders
from .ids.chunks import iter_ids_chunks
from .ids.export import IDS_JSON, IDS_PICKLE
from .recipe import Recipe, ids_fields_read, parse_sources, recipe_sources
from .run.plan import CLIENT_ACTIONS

__all__ = ["Submission", "Prepared", "prepare", "input_path", "remove_made", "check_ocr"]


@dataclass(frozen=True)
class Submission:
    """What the user asked for, after the CLI resolved defaults (demo input, temp output)."""

    action: str
    input: str
    outfolder: str
    overwrite: bool = False
    records: str = ""  # identifiers and run logs; "" = <outfolder>-records
    recipes: tuple[str, ...] = ()
    profile: str | None = None  # --profile basic[,OPTION...]: PS3.15 Annex E, before the recipes
    ids_path: str | None = None
    print_ids: bool = False
    key_location: str | None = None
    verify: bool = False
    clean_pixels: bool = False
    quarantine_groups: tuple[str, ...] = DEFAULT_QUARANTINE_GROUPS
    layout: str = "mirror"
    quarantine: str | None = None  # None: the output folder's sibling (fs.folders.quarantine_folder)
    input_file: str | None = None  # --input named one file: its name; ``input`` is its folder
    embedded: bool = False  # a private Redis and workers that stop with deid-submit
    key_created: bool = False  # the run's key file was created for it (said in the summary)
    ocr: str | None = None  # --ocr: "risky" or "all" (run.plan.OCR_MODES); None: no OCR
    ocr_allowlist: str | None = None  # --ocr-allowlist FILE; None: the shipped allow-list


def input_path(sub: Submission) -> str:
    """What ``--input`` named: the input folder, or the one file in it."""
    return os.path.join(sub.input, sub.input_file) if sub.input_file else sub.input


def _load_recipe(paths: Sequence[str], profile: str | None = None
                 ) -> tuple[Recipe, list[tuple[str | None, str]]]:
    """Read and parse the recipe here, so a broken one stops the run before it starts;
    returns it and its texts in merge order with their names, which travel with the run and
    which workers parse as this did (a profile's recipe is rendered here, the first text)."""
    sources = recipe_sources(list(paths) if paths else None, profile=profile)
    recipe = parse_sources(sources)
    declared_codes(recipe)  # a code outside CID 7050 is a recipe error, before anything starts
    return recipe, sources


def _check_outfolder(folder: str, what: str = "output folder",
                     made: list[str] | None = None) -> None:
    """Create the output (or quarantine, or records) folder and prove we can write there,
    before anything is enqueued; the folders created are added to ``made`` (outermost last)
    so that a run stopped before it starts leaves none behind (:func:`remove_made`).

    Checked by writing, not with ``os.access``: root passes every permission check, and a
    read-only mount or a full disk only shows on a real write.
    """
    try:
        missing = _missing_parents(folder)
        os.makedirs(folder, exist_ok=True)
        if made is not None:
            made += missing
        fd, probe = tempfile.mkstemp(prefix=".deid-probe-", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        hint = (" (set --quarantine or DEID_QUARANTINE to a writable folder)"
                if what == "quarantine folder" else "")
        raise InputError(folder, f"{what} is not writable ({exc.strerror or exc}){hint}") from None


def _missing_parents(folder: str) -> list[str]:
    """``folder`` and each parent of it that does not exist yet, innermost first."""
    out = []
    path = os.path.abspath(folder)
    while not os.path.lexists(path):
        out.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return out


def remove_made(made: Sequence[str]) -> None:
    """Remove the folders :func:`prepare` (or the CLI) created, innermost first, each only if
    it is still empty: a run that stops before it starts leaves no folder behind, and never
    takes anything with it."""
    for folder in made:
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def _quarantine(sub: Submission, made: list[str] | None = None) -> str | None:
    """The run's quarantine folder (``--clean-pixels``, or put/all with ``--ocr``), checked:
    apart from the input and output trees (held-back files may still show identifiers in their
    pixels, so they must never land in the tree that is released, nor be walked as input) and
    writable, so files bound for it do not all fail at the end of the run."""
    if not (sub.clean_pixels or (sub.ocr and sub.action in ("put", "all"))):
        return None
    from .fs.folders import quarantine_folder

    folder = os.path.abspath(sub.quarantine or quarantine_folder(sub.outfolder))
    real = os.path.realpath(folder)
    for other, name in ((sub.outfolder, "output"), (input_path(sub), "input")):
        base = os.path.realpath(other)
        if os.path.commonpath([base, real]) in (base, real):
            raise InputError(folder, f"quarantine folder overlaps the {name} folder; choose "
                                     "one apart from both (--quarantine)")
    _check_outfolder(folder, "quarantine folder", made)
    return folder


def _check_ids_kept(sub: Submission) -> None:
    """Refuse, unless ``--overwrite``, to replace identifiers an earlier run left in the
    records folder: users edit ``deid-ids.json`` between get and put."""
    if sub.action in ("get", "all") and not sub.print_ids and not sub.overwrite:
        for name in (IDS_JSON, IDS_PICKLE):
            path = os.path.join(sub.records, name)
            if os.path.lexists(path):
                raise InputError(path, "identifiers of an earlier run are there; give "
                                       "--overwrite to replace them, or another --records folder")


def _check_records(sub: Submission, made: list[str] | None = None) -> None:
    """Create the records folder private (0700), check it is writable and holds no earlier
    run's identifiers (see :func:`_check_ids_kept`)."""
    folder = sub.records
    if not os.path.isdir(folder):
        try:
            missing = _missing_parents(folder)
            os.makedirs(folder, mode=0o700, exist_ok=True)
            os.chmod(folder, 0o700)
            if made is not None:
                made += missing
        except OSError as exc:
            raise InputError(folder, "records folder cannot be created "
                                     f"({exc.strerror or exc})") from None
    _check_outfolder(folder, "records folder")
    _check_ids_kept(sub)


def _check_folders(settings: Settings, sub: Submission) -> None:
    """The folder rules workers apply (:mod:`deid_workers.fs.folders`), checked here first so a
    mistake is a one-line error before anything starts; roots only if this process has them."""
    folders = run_folders({"action": sub.action, "input": os.path.abspath(sub.input),
                           "input_file": sub.input_file,
                           "outfolder": os.path.abspath(sub.outfolder),
                           "records": os.path.abspath(sub.records),
                           "quarantine": os.path.abspath(sub.quarantine) if sub.quarantine else None,
                           "print_ids": sub.print_ids, "clean_pixels": sub.clean_pixels,
                           "ocr": sub.ocr})
    try:
        check_folders(folders, input_roots=settings.input_roots,
                      output_roots=settings.output_roots, who="this producer")
    except RunRefused as exc:
        raise ConfigError(str(exc)) from None


def _with_records(sub: Submission) -> Submission:
    from .fs.folders import records_folder

    return sub if sub.records else replace(sub, records=records_folder(sub.outfolder))


@dataclass
class Prepared:
    """A submission checked before anything starts (:func:`prepare`), for :func:`submit`."""

    sub: Submission
    recipe: Recipe
    sources: list[tuple[str | None, str]]  # the recipe's texts with their names (_load_recipe)
    ids: Iterator[tuple[str, int]] | None
    ids_fields: list[str] | None
    quarantine: str | None
    made: list[str]  # folders prepare created, innermost first
    ocr_allowlist: tuple[str, str] | None = None  # --ocr-allowlist's (text, file name)

    def discard(self) -> None:
        """The run will not start: close the ids file, remove the folders made for it."""
        close = getattr(self.ids, "close", None)
        if close is not None:
            close()
        remove_made(self.made)


def _check_input(sub: Submission) -> None:
    if sub.input_file:
        path = input_path(sub)
        if not os.path.isfile(path) or os.path.islink(path):
            raise InputError(path, "input file not found (--input takes a folder or one "
                                   "DICOM file)")
    elif not os.path.isdir(sub.input):
        raise InputError(sub.input, "input not found (--input takes a folder or one DICOM "
                                    "file)")


def prepare(settings: Settings, sub: Submission) -> Prepared:
    """Check everything that can be checked before a process starts or Redis is reached: the
    input, the folder rules, identifiers an earlier run left, the recipe (and profile), the
    shape of the ``--ids`` file (its first chunk is read), then create the output, quarantine
    and records folders and prove each writable. Raises on the first fault (a one-line
    error, exit 2); a folder it created is removed again when a later check fails."""
    if sub.action not in CLIENT_ACTIONS:
        raise ValueError(f"unknown action {sub.action!r}")
    _check_input(sub)
    sub = _with_records(sub)
    _check_folders(settings, sub)
    if not sub.print_ids:
        _check_ids_kept(sub)
    recipe, sources = _load_recipe(sub.recipes, sub.profile)
    allow = _ocr_allowlist(sub)
    if sub.ocr and sub.embedded:  # the workers will be this Python: its engine must load
        check_ocr()
    ids = ids_fields = None
    if sub.action == "put":
        if not sub.ids_path:
            raise IdentifiersError("To PUT without GET you must provide a json or pkl file "
                                   "with ids (--ids).")
        # Sent in chunks once the run exists; the first chunk is read now, so a missing,
        # unreadable or non-ids file is refused before anything is created.
        # Only the fields the recipe can read are kept: the same files come out, and an
        # item is a few bytes in Redis instead of 2 KB (none at all with the default recipe).
        ids_fields = sorted(ids_fields_read(recipe))
        chunks = iter_ids_chunks(sub.ids_path, fields=ids_fields)
        first = next(chunks, None)
        ids = chunks if first is None else itertools.chain([first], chunks)
    made: list[str] = []
    try:
        if sub.action != "get":  # get writes only identifiers, into the records folder
            _check_outfolder(sub.outfolder, made=made)
        quarantine = _quarantine(sub, made)
        if not sub.print_ids:  # get --print writes nothing
            _check_records(sub, made)
    except BaseException:
        remove_made(made)
        raise
    return Prepared(sub, recipe, sources, ids, ids_fields, quarantine, made, allow)


def check_ocr() -> None:
    """``--ocr`` on workers that are this machine's Python (embedded mode): the default engine
    is loaded once here (well under a second) and dropped, so a missing extra is one line
    before any process starts, not a failed run. Raises ConfigError saying what to install."""
    from .errors import OcrEngineError

    try:
        from .ocr import DEFAULT_ENGINE, load_engine

        load_engine(DEFAULT_ENGINE)
    except (OcrEngineError, ImportError) as exc:
        raise ConfigError(f"--ocr: {exc}") from None


def _ocr_allowlist(sub: Submission) -> tuple[str, str] | None:
    """``--ocr-allowlist``: (its text, its file name), parsed here so a bad line stops the run
    before it starts (``file:line: ...``); None for the shipped list."""
    if sub.ocr_allowlist is None:
        return None
    try:
        with open(sub.ocr_allowlist, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or type(exc).__name__
        raise InputError(sub.ocr_allowlist, f"allow-list cannot be read ({why})") from None
    from .ocr.allowlist import parse_allowlist

    name = os.path.basename(sub.ocr_allowlist)
    try:
        parse_allowlist(text, name)
    except ValueError as exc:
        raise ConfigError(f"--ocr-allowlist: {exc}") from None
    return text, name

