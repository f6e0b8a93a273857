"""``deid.put``: apply the recipe to one batch and write the outputs."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from celery.utils.log import get_task_logger

from ..app import deid_task
from ..dicom.reader import read_dataset
from ..errors import InputError
from ..files.steps import Known, PendingPut, PutOutcome, finish_put, open_put
from ..files.triage import PixelPolicy
from ..files.verify import overlay_suspects, recipe_literals, residual_overlay_bits, residual_phi
from ..fs.paths import remove_stale_temps
from ..run.lifecycle import finish_run
from ..run.notices import BatchNotices, no_ids_text
from . import dispatch
from .context import RunContext, run_context
from .guard import BatchGuard
from .liveness import AlreadyCommitted
from .load import await_ids
from .readahead import WINDOW, ReadAhead
from .tally import BatchTally

__all__ = ["log_entry", "put_batch", "batch_step", "tally_outcome", "prepare_output", "verify_output"]

log = get_task_logger(__name__)


def run_put(run_id: str, batch_no: int, retry: int = 0) -> dict[str, int]:
    """The task body, callable without Celery.

    A batch that already committed is not redone (its files exist and would all be refused):
    its guard says so as it notes the start (one round trip that also reads the batch).
    A batch that started before but did not commit (its worker died) is a redelivery: outputs
    newer than the run's start are this run's own partial work and are rewritten, not refused.
    With ``--ids`` it first waits for the run's ids (:mod:`deid_workers.tasks.load`).
    """
    ctx = run_context(run_id)
    store = ctx.store
    if ctx.record.action == "put" and not await_ids(ctx):
        return {"files": 0, "run_failed": 1}  # its ids could not be loaded: nothing to write
    try:
        guard = BatchGuard(ctx, "put", batch_no, retry, mark_started=True, lists=True,
                           ids=ctx.record.action == "all")
    except AlreadyCommitted:
        # The first delivery may have died before sending its ocr or clean batch.
        if ctx.record.ocr:
            dispatch.send_ocr(store, batch_no, then_clean=True)
            finish_run(store, ctx.final_stage)
        elif ctx.record.clean_pixels:
            dispatch.send_clean(store, batch_no)
            finish_run(store, ctx.final_stage)
        return {"files": 0, "already_done": 1}
    first_time = bool(guard.start.first_time)
    valid = guard.start.valid
    if valid is None:  # no get stage (action put): every file of the batch, nothing noted
        paths, known = guard.paths(), {}
    else:  # the files get found valid, with the ids keys and missing fields it noted
        paths, known = valid.paths, dict(zip(valid.paths, zip(valid.keys, valid.missing)))
    policy = ctx.pixel_policy(now=False)
    tally = BatchTally(guard, paths)
    to_clean: list[str] = []
    to_ocr: list[str] = []
    step = batch_step(ctx, paths, known, first_time=first_time, policy=policy,
                      careful=guard.careful, notices=tally.notices, read=guard.start.ids)
    for rel, out in tally.run(step):
        if out.status == "clean":
            to_clean.append(rel)
        elif out.status == "ocr":
            to_ocr.append(rel)
        if tally_outcome(tally, ctx, rel, out):  # written, or a copy in the quarantine folder
            if out.missing:
                tally.note("missing", rel, ",".join(out.missing))
            if not out.has_ids:
                tally.count("no_ids")
            if ctx.record.verify and out.dest:
                found = verify_output(ctx.record.input, rel, out.dest, out.output,
                                      dummies=recipe_literals(ctx.recipe))
                if found:
                    tally.note("residual", rel, ",".join(found))
                    log.warning("run %s: %s: removed values survive in the output (%s)",
                                run_id, rel, ",".join(found))
            log.debug("run %s: put %s", run_id, rel)
    tally.count("to_clean", len(to_clean))
    tally.count("to_ocr", len(to_ocr))
    # The clean (or, with --ocr, the ocr) batch goes with the commit (before it, in one round
    # trip), so a redelivery or a resume finds it. With --ocr the ocr batch writes the clean
    # batch; put leaves every file with pixel work to it.
    ocr = policy is not None and policy.ocr is not None
    commit = tally.commit(clean=to_clean if policy is not None and not ocr else None,
                          ocr=to_ocr if ocr else None)
    if ocr:
        dispatch.send_ocr(store, batch_no, then_clean=True)
    elif policy is not None:
        dispatch.send_clean(store, batch_no)
    finish_run(store, ctx.final_stage, commit if ctx.final_stage == "put" else None)
    return tally.result()


def tally_outcome(tally: BatchTally, ctx: RunContext, rel: str, out: PutOutcome) -> bool:
    """Record one file's outcome as put and clean both do: the warning when ``--ids`` held
    none for it, its run-log entry, then a refusal, a skip, or an output written (counted by
    its status) or quarantined. True when an output was written, either way; a file handed on
    to the clean or ocr stage is logged only (that stage records what becomes of it)."""
    if out.status in _WROTE and not out.has_ids and ctx.record.ids_given:
        tally.warn(rel, "no_ids", no_ids_text(rel, ctx.settings.entity_field,
                                              ctx.settings.item_field))
    tally.log_entry(rel, log_entry(rel, out, tally.notices.of_file(rel)))
    if out.status == "refused":
        tally.refuse(rel, out.reason)
    elif out.status == "skipped":
        tally.skip(rel, out.reason)
    elif out.status in _WROTE:
        tally.wrote(out.dest)
        if out.status == "quarantined":  # a de-identified copy in the quarantine folder
            tally.quarantine(rel, out.reason)
        else:
            tally.count(out.status)
        return True
    return False


_WROTE = ("written", "cleaned", "quarantined")


def batch_step(ctx: RunContext, paths: list[str], known: Mapping[str, Known], *,
               first_time: bool, policy: PixelPolicy | None, careful: bool,
               notices: BatchNotices | None = None, ocr: Mapping[str, Any] | None = None,
               verify: Any = None, read: Mapping[tuple[str, str], Any] | None = None
               ) -> Callable[[str], PutOutcome]:
    """The per-file step of a put (or clean) batch: :func:`~deid_workers.files.steps.put_one`,
    with the ids of many files fetched in one round trip.

    The get stage noted each file's (entity, item) and missing fields (``known``): their ids
    come before the first file (``read``: what the batch's start read of them, so usually
    without a round trip of their own), and nothing is read from a file twice. The others (action put
    with ``--ids``, the clean stage) are fetched a read-ahead window at a time
    (:class:`~.readahead.ReadAhead`), file by file in careful mode. A batch whose files are all
    known reads no file ahead: it would only hold more datasets at once.
    The recipe's warnings about each file go to ``notices`` (:mod:`deid_workers.run.notices`).
    ``ocr`` (the clean stage with ``--ocr``) maps a path to its OCR verdict, ``verify`` reads a
    cleaned file again.
    """
    store = ctx.store
    fetched = store.get_ids_many((keys for keys, _ in known.values()), read=read)

    def may_replace(dest: str) -> bool:
        return prepare_output(ctx, dest, first_time=first_time)

    def read(rel: str) -> PutOutcome | PendingPut:
        return open_put(ctx.record.input, rel, ctx.record.outfolder, ctx.recipe, ctx.settings,
                        overwrite=may_replace, pixels=policy, layout=ctx.layout,
                        known=known.get(rel), ocr=ocr.get(rel) if ocr else None)

    def fetch(window: list[PutOutcome | PendingPut]) -> None:
        fetched.update(store.get_ids_many(
            p.keys for p in window if isinstance(p, PendingPut) and p.keys not in fetched))

    def weigh(rel: str) -> int:
        try:
            return os.path.getsize(os.path.join(ctx.record.input, rel))
        except OSError:
            return 0  # open_put says why

    # Nothing to fetch when get noted every file's keys (action all): read as it goes.
    window = 1 if careful or len(known) >= len(paths) else WINDOW
    ahead = ReadAhead(paths, read, window, then=fetch, weigh=weigh)

    def step(rel: str) -> PutOutcome:
        pending = ahead.take(rel)
        if isinstance(pending, PutOutcome):
            return pending
        # fetch saw every file ReadAhead read: each key is in fetched (None: no ids)
        if notices is None:
            return finish_put(pending, ctx.recipe, fetched[pending.keys], ctx.settings,
                              pixels=policy, provenance=ctx.provenance, sync=False,
                              verify=verify)
        with notices.file(rel):
            return finish_put(pending, ctx.recipe, fetched[pending.keys], ctx.settings,
                              pixels=policy, provenance=ctx.provenance, sync=False,
                              verify=verify)

    return step


def prepare_output(ctx: RunContext, dest: str, *, first_time: bool) -> bool:
    """Before put or clean writes the output ``dest`` (its absolute path, in the output or
    the quarantine folder): may it replace an existing file there?

    Yes with ``--overwrite``, and on a redelivered batch for an output this run wrote before its
    worker died: that one is ours, half done or not, and is rewritten rather than refused. A
    redelivery also removes what a write killed mid-way left (``.<name>.<pid>-<n>.tmp``): never
    read under that name, but it should not stay behind.
    """
    if not first_time:
        remove_stale_temps(dest)
    if ctx.record.overwrite:
        return True
    if first_time:
        return False
    try:
        return os.stat(dest).st_mtime >= ctx.record.created
    except OSError:
        return False


def verify_output(root: str, rel: str, dest: str, out_rel: str | None = None, *,
                  dummies: frozenset[str] = frozenset()) -> list[str]:
    """``--verify``: element keywords of the input whose removed value survives in ``dest``
    or in its path ``out_rel`` (see :func:`~deid_workers.files.verify.residual_phi`).

    Headers only, on both sides: residual_phi never looks at pixel data, so decoding-free reads
    of what precedes it are all it needs (put_one edited its own copy of the input in place).
    Where either header declares an overlay in the pixel data's high bits, the output is read
    whole to look for its bits (:func:`~deid_workers.files.verify.residual_overlay_bits`).
    """
    try:
        original = read_dataset(os.path.join(root, rel), headers_only=True, name=rel)
        written = read_dataset(dest, headers_only=True, name=rel)
        found = residual_phi(original, written, path=out_rel, dummies=dummies)
        if overlay_suspects(original, written):
            whole = read_dataset(dest, headers_only=False, name=rel)
            found.extend(residual_overlay_bits(original, whole))
    except InputError as exc:  # the input changed under us, or the output is damaged
        return [f"not verified: {exc.reason}"]
    return found


def log_entry(rel: str, out: PutOutcome, notes: list[str] | None = None) -> tuple[Any, ...]:
    """A file's line of the batch's outcome log (see ``store.save_log``): the output path
    only where the layout moved it, so a mirrored tree costs no more Redis than before, the
    file's warnings (deid's words) only where it has some, and what OCR found (counts only)
    as a fifth item for a file it read."""
    moved = out.output is not None and out.output != rel and out.status not in ("clean", "ocr")
    if out.ocr is not None:
        return (out.status, out.reason, out.output if moved else None, notes or [], out.ocr)
    if notes:
        return (out.status, out.reason, out.output if moved else None, notes)
    if moved:
        return (out.status, out.reason, out.output)
    return (out.status, out.reason)


@deid_task("deid.put")
def put_batch(self: Any, run_id: str, batch_no: int) -> dict[str, int]:
    """De-identify batch ``batch_no``; progress is read from the store, so no result is kept."""
    return run_put(run_id, batch_no, self.request.retries or 0)
