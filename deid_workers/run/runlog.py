"""``deid-run.<run id>.jsonl``: one line per input file saying what became of it.

Why a file: the summary lists at most a few paths per category, and Redis forgets a run after
``run_expiry``; an archive that is handed over needs a durable, complete account (which files
were written, which had their pixels cleaned, which are held in quarantine for a person, which
were skipped, refused or failed, and why). It lies in the run's records folder, not in the
output tree: it maps input paths (which may name patients) to outputs. One file per run, so a
re-run (one that refuses every file, say) never replaces the log of the run that wrote them;
a resumed run rewrites its own.

Why it is written at the end and not appended to by workers: workers on many hosts cannot
append safely to one file on a shared volume. They keep per-batch entries in Redis instead
(:meth:`RunStore.save_log`: an outcome and a reason per file, aligned with the batch's path
list, so paths are not stored twice), and whoever completes the run streams them out here, a
batch at a time, to a temporary name that is then renamed.

A line never holds a header value: ``path`` is relative to ``--input``, ``output`` relative to
``--outfolder`` (where the run's layout put the file: :mod:`deid_workers.files.layout`), reasons are
worded texts (:mod:`deid_workers.reasons`) or recipe text (the %filter label that decided), and
the recipe is named by its hash. A file OCR read (``--ocr``) has an ``ocr`` object: its
verdict (``clean``, ``redact``, ``quarantine``), frames read, text boxes found, PHI and
unsure ones, those to black out and, once cleaned, blacked out (``cleaned``), whether the
verification passed (``verified``) and the PHI boxes it still read (``left``); counts only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

from ..fs.atomicfile import AtomicFile
from ..fs.folders import run_quarantine
from .notices import decode
from .store import RunStore

__all__ = ["RUN_LOG", "OUTCOMES", "iter_run_log", "write_run_log", "run_log_name"]

RUN_LOG = "deid-run.{run_id}.jsonl"
"""Name of a run's log in its records folder."""


def run_log_name(run_id: str) -> str:
    return RUN_LOG.format(run_id=run_id)

OUTCOMES = ("written", "cleaned", "quarantined", "skipped", "refused", "failed")
"""Every outcome a line can have."""

NOT_FINISHED = "pixel cleaning did not finish"
OCR_NOT_FINISHED = "reading its burned-in text (OCR) did not finish"
NOT_PROCESSED = "not processed"
_EARLY_KINDS = ("skipped", "failed", "poison")  # recorded outside the put/clean logs


def iter_run_log(store: RunStore, rec: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The lines of the run log, in walk order, one per input file, a batch at a time.

    A file that drew warnings (:mod:`deid_workers.run.notices`: put's and clean's, kept with its
    log entry; get's, kept with get's batch) has them under ``warnings``, in deid's words.
    """
    n_batches = int(rec.get("n_batches") or 0)
    outfolder = str(rec.get("outfolder") or "")
    quarantine = os.path.relpath(run_quarantine(rec), outfolder)
    sha = str(rec.get("recipe_sha") or "")
    # get's warnings of an ``all`` run (files that share an ids item): few batches have any,
    # so their numbers are read once and each such batch's notices when its turn comes.
    noted = store.notice_batches("get") if rec.get("action") == "all" else set()
    for batch in store.iter_batch_records(n_batches):
        got: dict[str, list[str]] = {}
        if batch.number in noted:
            for notice in decode(store.notices("get", [batch.number])[0][1])[1]:
                got.setdefault(notice.path, []).append(notice.line())
        paths = batch.paths
        decided: dict[str, tuple[Any, ...]] = {}
        decided.update(zip(batch.valid if batch.valid is not None else paths, batch.put_log or ()))
        decided.update(zip(batch.to_ocr or (), batch.ocr_log or ()))
        decided.update(zip(batch.to_clean or (), batch.clean_log or ()))
        rest = [p for p in paths if p not in decided]
        for kind in _EARLY_KINDS if rest else ():
            for path, reason in store.outcomes(kind, rest).items():
                decided.setdefault(path, ("failed" if kind == "poison" else kind, reason))
        for rel in paths:
            entry = decided.get(rel, ("failed", NOT_PROCESSED))
            outcome, reason = entry[0], entry[1]
            placed = entry[2] if len(entry) > 2 and entry[2] else rel
            ocr = entry[4] if len(entry) > 4 else None  # (outcome, reason, output, notes, ocr)
            if outcome == "clean":  # put left it to the clean stage, which did not record it
                outcome, reason = "failed", NOT_FINISHED
            elif outcome == "ocr":  # put left it to the ocr stage, which did not record it
                outcome, reason = "failed", OCR_NOT_FINISHED
            output = None
            if outcome in ("written", "cleaned"):
                output = placed
            elif outcome == "quarantined":
                output = os.path.join(quarantine, placed).replace(os.sep, "/")
            line = {"path": rel, "outcome": outcome, "reason": reason, "output": output,
                    "recipe_sha256": sha}
            notes = [*got.get(rel, ()), *(entry[3] if len(entry) > 3 and entry[3] else ())]
            if notes:
                line["warnings"] = notes
            if ocr is not None:
                line["ocr"] = ocr
            yield line


def write_run_log(store: RunStore, rec: Mapping[str, Any]) -> str:
    """Write ``<records>/deid-run.<run id>.jsonl`` atomically, mode 0600; returns its path."""
    from ..fs.folders import records_folder

    folder = str(rec.get("records") or records_folder(str(rec["outfolder"])))
    os.makedirs(folder, mode=0o700, exist_ok=True)
    dest = os.path.join(folder, run_log_name(store.run_id))
    with AtomicFile(dest, mode=0o600) as fh:
        for line in iter_run_log(store, rec):
            fh.write(_LINE.encode(line) + "\n")
    return dest


_LINE = json.JSONEncoder(separators=(",", ":"))
"""One encoder for every line: ``json.dumps`` with separators builds a new one per call."""
