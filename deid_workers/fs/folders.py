"""The folders a run reads and writes, and the rules every one of them obeys.

Why here and checked twice: the producer checks them before anything starts (a one-line error,
exit 2), and every worker checks them again against its own configuration before it touches a
file (:func:`~deid_workers.tasks.context.run_context`), because a worker must not trust a run record
to say where it may read and write: its roots (``DEID_INPUT_ROOTS``, ``DEID_OUTPUT_ROOTS``)
come from its own environment, set by whoever deployed it.

The rules, on real paths (symlinks resolved, so a link cannot smuggle a folder in):

- the input is inside an input root; the output, records and quarantine folders are inside an
  output root (when roots are given: a worker always has them);
- the input and each folder written to never overlap (neither inside the other), so a run can
  neither rewrite its sources nor read its own outputs back;
- the records folder (identifiers, run logs) and the output tree never overlap, so a released
  tree holds no identifiers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import RunRefused

__all__ = ["FOLDER_NAMES", "records_folder", "quarantine_folder", "run_quarantine", "run_folders",
           "check_folders", "inside"]

FOLDER_NAMES = {"input": "input folder", "output": "output folder", "records": "records folder",
                "quarantine": "quarantine folder"}
"""What each folder is called in messages."""

RECORDS_SUFFIX = "-records"


def records_folder(outfolder: str) -> str:
    """The default records folder of an output folder: its private sibling
    ``<outfolder>-records`` (beside the output tree, never inside it)."""
    path = os.path.normpath(os.path.abspath(outfolder))
    parent, name = os.path.split(path)
    return os.path.join(parent, (name or "output") + RECORDS_SUFFIX)


QUARANTINE_SUFFIX = "-quarantine"


def quarantine_folder(outfolder: str) -> str:
    """The quarantine folder of an output folder: its sibling ``<name>-quarantine``.

    Beside the output tree, not inside it, so the tree holds only releasable files and an
    input folder named ``quarantine`` can never mix with it.
    """
    path = os.path.normpath(os.path.abspath(outfolder))
    parent, name = os.path.split(path)
    return os.path.join(parent, (name or "output") + QUARANTINE_SUFFIX)


def run_quarantine(record: Mapping[str, Any]) -> str:
    """A run's quarantine folder: the one its record names (``--quarantine`` or
    ``DEID_QUARANTINE``, resolved by the producer), else the output folder's sibling (a run
    submitted before the setting existed)."""
    chosen = record.get("quarantine")
    return str(chosen) if chosen else quarantine_folder(str(record.get("outfolder") or ""))


def run_folders(rec: Mapping[str, Any]) -> dict[str, str]:
    """The folders of a run record, by role: input (the one file, when ``--input`` named a
    file: nothing else of its folder is read, so only the file must lie apart from the
    folders written), output (not for get, which writes only identifiers), records (not for
    get --print, which writes nothing), quarantine (when the run cleans pixels, or reads them
    by OCR to write them: put and all with ``--ocr``)."""
    out = str(rec.get("outfolder") or "")
    folders = {"input": str(rec.get("input") or "")}
    if rec.get("input_file") and folders["input"]:
        folders["input"] = os.path.join(folders["input"], str(rec["input_file"]))
    if rec.get("action") != "get":
        folders["output"] = out
    if rec.get("records") and not rec.get("print_ids"):  # get --print writes no file
        folders["records"] = str(rec["records"])
    if rec.get("clean_pixels") or (rec.get("ocr") and rec.get("action") in ("put", "all")):
        folders["quarantine"] = run_quarantine(rec)
    return folders


def inside(path: str, root: str) -> bool:
    """Whether real path ``path`` is ``root`` or below it."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _overlap(a: str, b: str) -> bool:
    return inside(a, b) or inside(b, a)


def check_folders(folders: Mapping[str, str], *, input_roots: Sequence[str] = (),
                  output_roots: Sequence[str] = (), who: str = "this worker",
                  run_id: str | None = None) -> None:
    """Raise :class:`RunRefused` (one line saying which folder and why) unless ``folders``
    obey the rules of the module docstring; roots are checked only when given."""
    prefix = f"run {run_id}: " if run_id else ""
    real: dict[str, str] = {}
    for role, path in folders.items():
        if not path or not os.path.isabs(path):
            raise RunRefused(f"{prefix}the {FOLDER_NAMES[role]} is not an absolute path")
        real[role] = os.path.realpath(path)
    for role, path in real.items():
        roots, env = ((input_roots, "DEID_INPUT_ROOTS") if role == "input"
                      else (output_roots, "DEID_OUTPUT_ROOTS"))
        if roots and not any(inside(path, os.path.realpath(r)) for r in roots):
            raise RunRefused(f"{prefix}the {FOLDER_NAMES[role]} {path} is outside {who}'s "
                             f"{env} ({os.pathsep.join(roots)})")
    writes = [r for r in real if r != "input"]
    pairs = [("input", w) for w in writes] + [(a, b) for i, a in enumerate(writes)
                                              for b in writes[i + 1:]
                                              if "records" in (a, b)]
    for a, b in pairs:
        if a in real and _overlap(real[a], real[b]):
            raise RunRefused(f"{prefix}the {FOLDER_NAMES[a]} and the {FOLDER_NAMES[b]} overlap "
                             f"({real[a]}, {real[b]}); choose folders apart from each other")
