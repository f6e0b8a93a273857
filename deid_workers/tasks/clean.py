"""``deid.clean``: black out burned-in pixels of the files a put batch left to clean.

Why a stage of its own (queue ``clean``): decoding and re-writing pixel data is the heavy part
of a run and only some files need it; operators scale this queue separately, and the put
stage, which never decodes pixels, is not held up by it. Clean batch ``n`` holds the files of
put batch ``n`` whose %filter verdict gives boxes; put commits an empty clean batch itself
when there are none, so the clean stage completing means the run is done.
"""

from __future__ import annotations

from typing import Any

from celery.utils.log import get_task_logger

from ..app import deid_task
from ..run.lifecycle import finish_run
from ..run.notices import no_ids_text
from .context import run_context
from .guard import BatchGuard
from .put import batch_step, log_entry
from .tally import BatchTally

__all__ = ["clean_batch", "run_clean"]

log = get_task_logger(__name__)


def run_clean(run_id: str, batch_no: int, retry: int = 0) -> dict[str, int]:
    """The task body, callable without Celery; idempotent like put (see tasks.put)."""
    ctx = run_context(run_id)
    store = ctx.store
    if batch_no in store.done_batches("clean"):
        return {"files": 0, "already_done": 1}
    paths = store.clean_batch(batch_no)
    if paths is None:  # put has not decided yet; it will send us again
        return {"files": 0, "not_ready": 1}
    first_time = store.mark_started("clean", batch_no)
    policy = ctx.pixel_policy(now=True)
    guard = BatchGuard(ctx, "clean", batch_no, retry)
    tally = BatchTally(guard, paths)
    step = batch_step(ctx, paths, {}, first_time=first_time, policy=policy,
                      careful=guard.careful, notices=tally.notices)
    for rel, out in tally.run(step):
        if (out.status in ("cleaned", "written", "quarantined") and not out.has_ids
                and ctx.record.ids_given):
            tally.warn(rel, "no_ids", no_ids_text(rel, ctx.settings.entity_field,
                                                  ctx.settings.item_field))
        tally.log_entry(rel, log_entry(rel, out, tally.notices.of_file(rel)))
        if out.status == "refused":
            tally.refuse(rel, out.reason)
        elif out.status == "skipped":
            tally.skip(rel, out.reason)
        else:
            tally.wrote(out.dest)
            if out.status == "quarantined":
                tally.quarantine(rel, out.reason)
            else:  # cleaned, or written when nothing was left to clean
                tally.count(out.status)
    finish_run(store, "clean", tally.commit())
    return tally.result()


@deid_task("deid.clean")
def clean_batch(self: Any, run_id: str, batch_no: int) -> dict[str, int]:
    """Clean the pixels of clean batch ``batch_no``; progress is read from the store."""
    return run_clean(run_id, batch_no, self.request.retries or 0)
