"""A batch's starts counted, and a file that kills or hangs its worker quarantined (poison).

See :class:`BatchGuard`; :mod:`deid_workers.tasks.limits` turns a time limit into a counted
start like a crash.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import ClassVar, TypeVar

from celery.exceptions import SoftTimeLimitExceeded

from ..reasons import explain_failure
from . import faults
from .context import RunContext
from .liveness import AlreadyCommitted, check_taken, new_taker

__all__ = ["BatchGuard", "OUTPUT_STAGES", "CRASHED", "KEPT_DYING", "TIMED_OUT", "POISON_ADVICE",
           "poison_reason"]

log = logging.getLogger(__name__)

T = TypeVar("T")

OUTPUT_STAGES = ("put", "clean")
"""Stages that write outputs: a start of theirs that another start replaced commits nothing
(its "already exists" outcomes may be the other's outputs). get and inspect record the same
values whoever reads the files, and their counters commit once, so they skip that check."""

CRASHED = "crashed its worker"
"""Quarantine reason of a file whose worker process died (or was killed) while it was on it;
the reason goes on with the stage and what to do (:data:`POISON_ADVICE`)."""

TIMED_OUT = "exceeded the task time limit"
"""Quarantine reason of a file its batch was on when the batch ran out of time (a hang); the
reason goes on with the limit and the stage: "exceeded the task time limit (30 s) in get"."""

KEPT_DYING = ("its batch kept killing its worker with no file to blame (out of memory, or "
              "Redis unreachable?); check the worker logs and run --resume")
"""Failure reason of the files left in a batch that died between files more often than its
retries and files allow (see :meth:`BatchGuard.run`)."""

POISON_ADVICE = ("held back so the run could finish; open it in a DICOM viewer to check it, "
                 "and report it if it looks sound")
"""What a poison file's reason tells a person to do."""


def poison_reason(stage: str, limit: int | None = None) -> str:
    """The reason a file is quarantined as poison: it crashed its worker in ``stage``, or
    hung it past the time limit ``limit`` (seconds)."""
    if limit:
        return f"{TIMED_OUT} ({limit} s) in {stage}: the worker hung on it; {POISON_ADVICE}"
    return f"{CRASHED} in {stage} (a fault in a decoder, or out of memory); {POISON_ADVICE}"


class BatchGuard:
    """Delivery counting and poison-file isolation for one batch.

    Why: with ``acks_late`` + ``task_reject_on_worker_lost`` a batch whose worker process dies is
    redelivered; a file that kills its worker every time (a decoder segfault, the OOM killer)
    would then be redelivered forever and its chord would never complete. So every start of a
    batch is counted in Redis (per Celery retry, so Redis blips that Celery retries do not add
    up). The first start and ``max_retries`` more run normally, at full speed. Later ones run
    *carefully*: before each file the guard notes the file in Redis; a start that finds such a
    note left behind knows that file killed the previous one, quarantines it and goes on. So
    each poison file costs one more delivery, and only poison files are quarantined.

    A file that hangs is handled the same way (:mod:`deid_workers.tasks.limits`): a batch past
    its time limit is requeued, not failed, so the start is counted; in careful mode the file
    it was on is quarantined (:meth:`on_time_limit`, or the next start when the hard limit
    killed the process).

    Use: ``for rel, out in guard.run(paths, step, failed): ...`` then commit ``guard.poison``
    (outcome kind ``poison``: quarantined, never processed) and ``failed`` with the batch.
    """

    active: ClassVar[BatchGuard | None] = None
    """The guard of the batch this process runs now (what a time limit interrupts)."""

    def __init__(self, ctx: RunContext, stage: str, batch_no: int, retry: int = 0, *,
                 mark_started: bool = False, lists: bool = False) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.stage = stage
        self.batch_no = batch_no
        self.retry = int(retry or 0)
        # liveness hook: note who took this start; a committed batch is not redone. The
        # batch's first reads ride along (store.start_batch): one round trip to begin.
        self.taker = new_taker()
        self.start = self.store.start_batch(stage, batch_no, self.retry, self.taker,
                                            mark_started=mark_started, lists=lists)
        if self.start.committed:
            raise AlreadyCommitted(f"{stage} batch {batch_no} is committed already")
        self.starts = self.start.starts
        self.careful = self.starts > ctx.settings.max_retries + 1
        self.poison: dict[str, str] = {}
        self.current: str | None = None  # the file the batch is on (for time limits)
        BatchGuard.active = self
        if self.careful:
            log.warning("run %s: %s batch %d started %d times; going file by file",
                        ctx.store.run_id, stage, batch_no, self.starts)

    def paths(self) -> list[str]:
        """The batch's paths, as its start read them (``lists=True``) or from the store;
        :class:`~deid_workers.errors.StoreError` when the batch is unknown."""
        if self.start.paths is not None:
            return self.start.paths
        return self.store.batch(self.batch_no)

    def files(self, paths: list[str]) -> Iterator[str]:
        """The batch's paths, minus poison ones; in careful mode each one is noted first."""
        crash_on = self.ctx.settings.test_crash_on
        hang_on = self.ctx.settings.test_hang_on
        if self.careful:
            known = self.store.outcomes("poison", paths)
            self.poison.update(known)
            dead = self.store.inflight(self.stage, self.batch_no, self.retry)
            limit = self.store.pop_time_limit(self.stage, self.batch_no, self.retry)
            if dead is not None and dead not in self.poison:
                self._quarantine(dead, self._reason(limit))
        for rel in paths:
            if rel in self.poison:
                continue
            self.current = rel
            if self.careful:
                self.store.set_inflight(self.stage, self.batch_no, self.retry, rel)
            if crash_on or hang_on:
                faults.inject(rel, crash_on, hang_on)
            yield rel
        self.current = None
        if self.careful:
            self.store.set_inflight(self.stage, self.batch_no, self.retry, None)
        # liveness hook: a start replaced by a later one (its worker looked dead) stops here
        # when its outcomes depend on who wrote the outputs (see liveness.check_taken).
        if self.stage in OUTPUT_STAGES:
            check_taken(self.store, self.stage, self.batch_no, self.taker)

    def on_time_limit(self) -> bool:
        """The batch passed its soft time limit; True when starting it again makes progress.

        In batch mode it always does: the next start is counted, so ``max_retries`` bounds
        them before the batch goes file by file. In careful mode the file the batch is on is
        quarantined first, so each hanging file costs one start. Out of time with no file to
        blame (careful mode, all files done: the commit is stuck) it does not: the batch fails.
        """
        limit = self.ctx.settings.task_time_limit
        log.warning("run %s: %s batch %d passed its time limit (%d s) on %s",
                    self.store.run_id, self.stage, self.batch_no, limit, self.current)
        if not self.careful:
            return True
        if self.current is None:
            return False
        self._quarantine(self.current, self._reason(limit))
        self.store.set_inflight(self.stage, self.batch_no, self.retry, None)
        self.current = None
        return True

    def _reason(self, limit: int | None) -> str:
        return poison_reason(self.stage, limit)

    def _quarantine(self, rel: str, reason: str) -> None:
        self.store.add_outcome("poison", rel, reason)
        self.poison[rel] = reason
        log.error("run %s: quarantined %s: %s", self.store.run_id, rel, reason)

    def run(self, paths: list[str], step: Callable[[str], T],
            failed: dict[str, str]) -> Iterator[tuple[str, T]]:
        """``(rel, step(rel))`` for each file :meth:`files` lets through.

        One bad file must not sink its batch: a file whose step raises unexpectedly is recorded
        in ``failed`` with a reason worded for a person (:func:`~deid_workers.reasons.
        explain_failure`: never the exception's message, which may quote element values, but
        a recipe error's own message, recipe text and line), and the batch goes on; the
        traceback goes to the DEBUG log.

        Each poison file costs one start, so a batch started more often than its retries plus
        its files dies where no file is to blame (between files): its remaining files are
        reported failed and the batch commits, so the run ends instead of looping forever.
        """
        if self.careful and self.starts > self.ctx.settings.max_retries + len(paths) + 2:
            self.poison.update(self.store.outcomes("poison", paths))
            failed.update({rel: KEPT_DYING for rel in paths if rel not in self.poison})
            log.error("run %s: %s batch %d started %d times; giving up on its %d files",
                      self.store.run_id, self.stage, self.batch_no, self.starts, len(failed))
            return
        for rel in self.files(paths):
            try:
                out = step(rel)
            except SoftTimeLimitExceeded:
                raise  # the batch is out of time, not this file: tasks.limits requeues it
            except Exception as exc:
                failed[rel] = explain_failure(exc, self.stage)
                log.warning("run %s: %s failed in %s: %s", self.store.run_id, rel, self.stage,
                            failed[rel])
                log.debug("traceback", exc_info=True)
                continue
            yield rel, out
