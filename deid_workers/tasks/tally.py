"""What a batch counts and records, committed with the batch in one round trip.

Every stage's task (get, inspect, put, ocr, clean) keeps the same books: counters, the per-path
outcomes of each kind (skipped, refused, failed...), for put and clean the run log's entry of
each file and the outputs to make durable; then it commits them all at once
(:meth:`~deid_workers.run.store.RunStore.commit_batch`) and logs one line. :class:`BatchTally`
keeps them; :data:`BOOKS` says, per stage, which counters it reports. It also keeps the
batch's warnings about its files (:class:`~deid_workers.run.notices.BatchNotices`: the recipe
engine's, and those the task adds with :meth:`BatchTally.warn`), committed with the rest:
their counts by kind among the counters (``notice:<kind>``), their first ones in deid's words.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from celery.utils.log import get_task_logger

from ..fs.durable import sync_paths
from ..run.commit import Commit
from ..run.notices import BatchNotices
from .guard import BatchGuard
from .liveness import Superseded

__all__ = ["Books", "BOOKS", "BatchTally", "NOT_PROCESSED"]

log = get_task_logger(__name__)

T = TypeVar("T")

NOT_PROCESSED = "not processed"
"""Run log reason of a file its batch never reached (the batch gave up before it)."""


@dataclass(frozen=True)
class Books:
    """A stage's counters (each reported, 0 included) and those its INFO line names."""

    counters: tuple[str, ...]
    summary: tuple[str, ...]
    logged: bool = False  # put and clean keep a run log entry per file


BOOKS = {
    "get": Books(("files", "valid", "skipped", "failed", "missing", "poison"),
                 ("files", "valid", "skipped", "failed")),
    "inspect": Books(("files", "inspected", "flagged", "clean", "skipped", "failed", "poison",
                      "to_ocr"),
                     ("files", "flagged", "skipped")),
    "put": Books(("files", "written", "refused", "skipped", "failed", "missing", "no_ids",
                  "quarantined", "to_clean", "to_ocr", "poison", "residual"),
                 ("files", "written", "refused", "skipped", "failed"), logged=True),
    # ocr: files read, their verdicts (clean, redact, quarantine) and boxes (found, PHI,
    # unsure, to black out), the files passed on to the clean stage.
    "ocr": Books(("files", "read", "clean", "redact", "quarantine", "skipped", "failed", "poison",
                  "boxes", "phi", "unsure", "to_redact", "to_clean"),
                 ("files", "read", "redact", "quarantine", "skipped", "failed"), logged=True),
    # clean, for files OCR read: blacked out and verified, held because PHI was still read
    # after blacking out, and the OCR boxes blacked out.
    "clean": Books(("files", "cleaned", "quarantined", "refused", "skipped", "failed", "poison",
                    "ocr_verified", "ocr_phi_left", "ocr_boxes_cleaned"),
                   ("files", "cleaned", "quarantined", "failed"), logged=True),
}
"""Per stage: what a batch counts and reports (the counters are the wire contract of
``--status``, the progress bar and the summary: ``<stage>:<counter>``)."""


class BatchTally:
    """The books of one batch of ``guard.stage`` over ``paths``.

    Outcomes are noted by kind (:meth:`note`); a kind that is also a counter is counted as the
    number of its paths when the batch commits, as are ``files`` (the batch's paths) and
    ``poison`` (what the guard quarantined). Failures are noted by the guard itself
    (:meth:`run`).
    """

    def __init__(self, guard: BatchGuard, paths: list[str]) -> None:
        self.guard = guard
        self.paths = paths
        self.books = BOOKS[guard.stage]
        self.counts: Counter[str] = Counter(dict.fromkeys(self.books.counters, 0))
        self.outcomes: dict[str, dict[str, str]] = {"failed": {}}
        self.entries: dict[str, tuple[Any, ...]] = {}
        self.outputs: list[str] = []
        self.notices = BatchNotices()
        self.run_id = guard.store.run_id

    def run(self, step: Callable[[str], T]) -> Iterator[tuple[str, T]]:
        """``(rel, step(rel))`` of the batch's files the guard lets through (see
        :meth:`BatchGuard.run`); a file whose step failed is noted ``failed``."""
        return self.guard.run(self.paths, step, self.outcomes["failed"])

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] += n

    def note(self, kind: str, rel: str, reason: str) -> None:
        """Record ``rel`` as an outcome of ``kind`` (the store's per-path hash of that kind)."""
        self.outcomes.setdefault(kind, {})[rel] = reason

    def skip(self, rel: str, reason: str | None) -> None:
        """``rel`` could not be read: not DICOM, damaged, gone (a reason from dicom.reader)."""
        self.note("skipped", rel, reason or "unreadable")
        log.warning("run %s: skipping %s: %s", self.run_id, rel, reason)

    def refuse(self, rel: str, reason: str | None) -> None:
        """``rel``'s output exists and may not be replaced (deid's own message)."""
        self.note("refused", rel, reason or "already exists")
        log.error("%s already exists, overwrite set to False. Not writing.", rel)

    def quarantine(self, rel: str, reason: str | None) -> None:
        """``rel`` went to the quarantine folder (``--clean-pixels``)."""
        self.note("quarantined", rel, reason or "flagged")
        log.warning("run %s: %s quarantined: %s", self.run_id, rel, reason)

    def warn(self, rel: str, kind: str, text: str) -> None:
        """A warning about ``rel`` the task itself found (a file without ids, an ids item two
        files share), kept with the batch's notices and logged at WARNING like the engine's."""
        self.notices.add(rel, kind, text)
        log.warning("run %s: %s", self.run_id, text)

    def wrote(self, dest: str | None) -> None:
        """An output written without its fsync: made durable with the others before the
        commit (:func:`~deid_workers.fs.durable.sync_paths`)."""
        if dest:
            self.outputs.append(dest)

    def log_entry(self, rel: str, entry: tuple[Any, ...]) -> None:
        """``rel``'s line of the batch's run log entry (put, ocr and clean)."""
        self.entries[rel] = entry

    def commit(self, **records: Any) -> Commit:
        """Count, make the outputs durable, and commit the batch with its outcomes, its run
        log entry (put, clean) and ``records`` (ids, valid paths, the clean batch...), then
        say what it did in one line. Durable first: a crash before the sync redelivers the
        batch, whose rewrite replaces any output the crash left empty. A put or clean start
        that a later one replaced commits nothing (:class:`~.liveness.Superseded`)."""
        guard = self.guard
        poison = guard.poison
        for kind, entries in self.outcomes.items():
            if kind in self.counts:
                self.counts[kind] = len(entries)
        self.counts["poison"] = len(poison)
        self.counts["files"] = len(self.paths)
        self.counts.update(self.notices.counters())
        if self.books.logged:
            for rel, why in (self.outcomes["failed"] | poison).items():
                self.entries[rel] = ("failed", why)
            records["log"] = [self.entries.get(rel, ("failed", NOT_PROCESSED))
                              for rel in self.paths]
        if self.outputs:
            sync_paths(self.outputs)
        commit = guard.store.commit_batch(guard.stage, guard.batch_no, self.counts,
                                          outcomes={**self.outcomes, "poison": poison},
                                          taker=guard.commit_taker,
                                          notices=self.notices.encoded(), **records)
        if commit.superseded is not None:
            raise Superseded(f"{guard.stage} batch {guard.batch_no} was started again by "
                             f"{commit.superseded.partition(chr(9))[0].partition('#')[0]}")
        log.info("run %s %s batch %d: %s", self.run_id, guard.stage, guard.batch_no,
                 ", ".join(f"{self.counts[name]} {name}" for name in self.books.summary))
        return commit

    def result(self) -> dict[str, int]:
        """The task's result: counts only (nothing Flower or the result backend shows may
        carry PHI)."""
        return dict(self.counts)
