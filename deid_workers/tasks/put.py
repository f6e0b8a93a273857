"""``deid.put``: apply the recipe to one batch and write the outputs."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from typing import Any

from celery.utils.log import get_task_logger

from ..app import app
from ..dicomio import read_dataset
from ..durable import sync_paths
from ..errors import InputError
from ..notices import BatchNotices, no_ids_text
from ..steps import PendingPut, PixelPolicy, PutOutcome, finish_put, open_put
from ..verify import recipe_literals, residual_phi
from . import RETRY_ON, BatchGuard, RunContext, finish_run, prepare_output, run_context
from .liveness import AlreadyCommitted
from .load import await_ids
from .readahead import WINDOW, ReadAhead

__all__ = ["log_entry", "put_batch", "put_step", "send_clean", "verify_output"]

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
    if ctx.action == "put" and not await_ids(ctx):
        return {"files": 0, "run_failed": 1}  # its ids could not be loaded: nothing to write
    try:
        guard = BatchGuard(ctx, "put", batch_no, retry, mark_started=True, lists=True)
    except AlreadyCommitted:
        if ctx.clean_pixels:  # the first delivery may have died before sending its clean batch
            send_clean(store, batch_no)
            finish_run(store, ctx.final_stage)
        return {"files": 0, "already_done": 1}
    first_time = bool(guard.start.first_time)
    valid = guard.start.valid
    # No get stage (action put): every file of the batch, with no (entity, item) noted.
    paths, keys = valid if valid is not None else (guard.start.paths or store.batch(batch_no), [])
    counts: Counter[str] = Counter(files=0, written=0, refused=0, skipped=0, failed=0,
                                   missing=0, no_ids=0, quarantined=0, to_clean=0)
    policy = ctx.pixel_policy(now=False)
    to_clean: list[str] = []
    quarantined: dict[str, str] = {}
    entries: dict[str, tuple[str | None, ...]] = {}  # deid-run.jsonl, see store.save_log
    refused: dict[str, str] = {}
    skipped: dict[str, str] = {}
    failed: dict[str, str] = {}
    missing: dict[str, str] = {}
    residual: dict[str, str] = {}
    outputs: list[str] = []  # made durable together before the commit (write_atomic sync=False)
    notices = BatchNotices()
    step = put_step(ctx, paths, keys, first_time=first_time, policy=policy,
                    careful=guard.careful, notices=notices)
    for rel, out in guard.run(paths, step, failed):
        if out.status in ("written", "quarantined") and not out.has_ids and ctx.ids_given:
            notices.add(rel, "no_ids", no_ids_text(rel, ctx.settings.entity_field,
                                                   ctx.settings.item_field))
            log.warning("run %s: no identifiers for %s in the ids given", run_id, rel)
        entries[rel] = log_entry(rel, out, notices.of_file(rel))
        if out.status == "clean":
            to_clean.append(rel)
        elif out.status == "refused":
            refused[rel] = out.reason or "already exists"
            log.error("%s already exists, overwrite set to False. Not writing.", rel)
        elif out.status == "skipped":
            skipped[rel] = out.reason or "unreadable"
            log.warning("run %s: skipping %s: %s", run_id, rel, out.reason)
        else:
            if out.dest:
                outputs.append(out.dest)
            if out.status == "written":
                counts["written"] += 1
            else:  # quarantined: a de-identified copy in the quarantine folder
                quarantined[rel] = out.reason or "flagged"
                log.warning("run %s: %s quarantined: %s", run_id, rel, out.reason)
            if out.missing:
                missing[rel] = ",".join(out.missing)
            if not out.has_ids:
                counts["no_ids"] += 1
            if ctx.verify and out.dest:
                found = verify_output(ctx.input, rel, out.dest, out.output,
                                      dummies=recipe_literals(ctx.recipe))
                if found:
                    residual[rel] = ",".join(found)
                    log.warning("run %s: %s: removed values survive in the output (%s)",
                                run_id, rel, residual[rel])
            log.debug("run %s: put %s", run_id, rel)
    counts.update(refused=len(refused), skipped=len(skipped), failed=len(failed),
                  missing=len(missing), poison=len(guard.poison),
                  residual=len(residual))
    counts["files"] = len(paths)
    counts.update(quarantined=len(quarantined), to_clean=len(to_clean))
    counts.update(notices.counters())
    for rel, why in (failed | guard.poison).items():
        entries[rel] = ("failed", why)
    # One fsync pass per batch, before anything says the batch is done: a crash before it
    # redelivers the batch, whose rewrite replaces any output the crash left empty.
    sync_paths(outputs)
    # The run log's entry and the clean batch go with the commit (before it, in one round
    # trip), so a redelivery or a resume finds them.
    commit = store.commit_batch(
        "put", batch_no, counts,
        outcomes={"refused": refused, "skipped": skipped, "failed": failed,
                  "missing": missing, "poison": guard.poison,
                  "residual": residual, "quarantined": quarantined},
        log=[entries.get(rel, ("failed", "not processed")) for rel in paths],
        clean=to_clean if policy is not None else None, notices=notices.encoded())
    if policy is not None:
        send_clean(store, batch_no)
    finish_run(store, ctx.final_stage, commit if ctx.final_stage == "put" else None)
    log.info("run %s put batch %d: %d files, %d written, %d refused, %d skipped, %d failed",
             run_id, batch_no, counts["files"], counts["written"], counts["refused"],
             counts["skipped"], counts["failed"])
    return dict(counts)


def put_step(ctx: RunContext, paths: list[str], keys: list[tuple[str, str]], *,
             first_time: bool, policy: PixelPolicy | None, careful: bool,
             notices: BatchNotices | None = None) -> Callable[[str], PutOutcome]:
    """The per-file step of a put (or clean) batch: :func:`~deid_workers.steps.put_one`, with
    the ids of many files fetched in one round trip.

    The get stage noted each file's (entity, item) (``keys``): their ids come before the first
    file. The others (action put with ``--ids``, a key get did not see) are fetched a read-ahead
    window at a time (:class:`~.readahead.ReadAhead`), file by file in careful mode. A batch
    whose keys are all noted reads no file ahead: it would only hold more datasets at once.
    The recipe's warnings about each file go to ``notices`` (:mod:`deid_workers.notices`).
    """
    store = ctx.store
    fetched = store.get_ids_many(keys)

    quarantine = policy.quarantine if policy else None

    def may_replace(out_rel: str) -> bool:
        return prepare_output(ctx, out_rel, first_time=first_time, quarantine=quarantine)

    def read(rel: str) -> PutOutcome | PendingPut:
        return open_put(ctx.input, rel, ctx.outfolder, ctx.recipe, ctx.settings,
                        overwrite=may_replace, pixels=policy, layout=ctx.layout)

    def fetch(window: list[PutOutcome | PendingPut]) -> None:
        fetched.update(store.get_ids_many(
            p.keys for p in window if isinstance(p, PendingPut) and p.keys not in fetched))

    def weigh(rel: str) -> int:
        try:
            return os.path.getsize(os.path.join(ctx.input, rel))
        except OSError:
            return 0  # open_put says why

    # Nothing to fetch when get noted every file's keys (action all): read as it goes.
    window = 1 if careful or len(keys) >= len(paths) else WINDOW
    ahead = ReadAhead(paths, read, window, then=fetch, weigh=weigh)

    def step(rel: str) -> PutOutcome:
        pending = ahead.take(rel)
        if isinstance(pending, PutOutcome):
            return pending
        # fetch saw every file ReadAhead read: each key is in fetched (None: no ids)
        if notices is None:
            return finish_put(pending, ctx.recipe, fetched[pending.keys], ctx.settings,
                              pixels=policy, provenance=ctx.provenance, sync=False)
        with notices.file(rel):
            return finish_put(pending, ctx.recipe, fetched[pending.keys], ctx.settings,
                              pixels=policy, provenance=ctx.provenance, sync=False)

    return step


def verify_output(root: str, rel: str, dest: str, out_rel: str | None = None, *,
                  dummies: frozenset[str] = frozenset()) -> list[str]:
    """``--verify``: element keywords of the input whose removed value survives in ``dest``
    or in its path ``out_rel`` (see :func:`~deid_workers.verify.residual_phi`).

    Headers only, on both sides: residual_phi never looks at pixel data, so decoding-free reads
    of what precedes it are all it needs (put_one edited its own copy of the input in place).
    """
    try:
        original = read_dataset(os.path.join(root, rel), headers_only=True, name=rel)
        written = read_dataset(dest, headers_only=True, name=rel)
    except InputError as exc:  # the input changed under us, or the output is damaged
        return [f"not verified: {exc.reason}"]
    return residual_phi(original, written, path=out_rel, dummies=dummies)


def log_entry(rel: str, out: PutOutcome, notes: list[str] | None = None) -> tuple[Any, ...]:
    """A file's line of the batch's outcome log (see ``store.save_log``): the output path
    only where the layout moved it, so a mirrored tree costs no more Redis than before, and
    the file's warnings (deid's words) only where it has some."""
    moved = out.output is not None and out.output != rel and out.status != "clean"
    if notes:
        return (out.status, out.reason, out.output if moved else None, notes)
    if moved:
        return (out.status, out.reason, out.output)
    return (out.status, out.reason)


def send_clean(store: Any, batch_no: int) -> bool:
    """Send clean batch ``batch_no``, or commit it at once when put left nothing to clean.

    Does nothing when put has not decided the batch yet or its clean batch is done; returns
    True when a task was sent (also used by resume).
    """
    paths = store.clean_batch(batch_no)
    if paths is None or batch_no in store.done_batches("clean"):
        return False
    if not paths:
        store.save_log("clean", batch_no, [])
        store.commit_batch("clean", batch_no, {"files": 0})
        return False
    from .clean import enqueue_clean

    enqueue_clean(store.run_id, batch_no)
    return True


@app.task(name="deid.put", bind=True, autoretry_for=RETRY_ON,
          retry_backoff=True, max_retries=3, acks_late=True, ignore_result=True)
def put_batch(self: Any, run_id: str, batch_no: int) -> dict[str, int]:
    """De-identify batch ``batch_no``; progress is read from the store, so no result is kept."""
    return run_put(run_id, batch_no, self.request.retries or 0)
