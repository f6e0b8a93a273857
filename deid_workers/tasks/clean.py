"""``deid.clean``: black out burned-in pixels of the files a put batch left to clean.

Why a stage of its own (queue ``clean``): decoding and re-writing pixel data is the heavy part
of a run and only some files need it; operators scale this queue separately, and the put
stage, which never decodes pixels, is not held up by it. Clean batch ``n`` holds the files of
put batch ``n`` whose %filter verdict gives boxes; put commits an empty clean batch itself
when there are none, so the clean stage completing means the run is done.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from celery.utils.log import get_task_logger

from ..app import app
from ..durable import sync_paths
from ..notices import BatchNotices, no_ids_text
from . import RETRY_ON, BatchGuard, finish_run, run_context
from .put import log_entry, put_step

__all__ = ["clean_batch", "run_clean", "enqueue_clean"]

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
    counts: Counter[str] = Counter(files=0, cleaned=0, quarantined=0, refused=0, skipped=0,
                                   failed=0)
    kinds: dict[str, dict[str, str]] = {k: {} for k in ("refused", "skipped", "failed",
                                                        "quarantined")}
    entries: dict[str, tuple[str | None, ...]] = {}
    guard = BatchGuard(ctx, "clean", batch_no, retry)

    notices = BatchNotices()
    step = put_step(ctx, paths, [], first_time=first_time, policy=policy,
                    careful=guard.careful, notices=notices)
    outputs: list[str] = []  # made durable together before the commit, as put does
    for rel, out in guard.run(paths, step, kinds["failed"]):
        status = out.status
        if (status in ("cleaned", "written", "quarantined") and not out.has_ids
                and ctx.ids_given):
            notices.add(rel, "no_ids", no_ids_text(rel, ctx.settings.entity_field,
                                                   ctx.settings.item_field))
        entries[rel] = log_entry(rel, out, notices.of_file(rel))
        if out.dest and status in ("cleaned", "written", "quarantined"):
            outputs.append(out.dest)
        if status in kinds:
            kinds[status][rel] = out.reason or status
        if status == "refused":
            log.error("%s already exists, overwrite set to False. Not writing.", rel)
        elif status == "quarantined":
            log.warning("run %s: %s quarantined: %s", run_id, rel, out.reason)
        if status not in kinds:  # counted from their lists below
            counts[status] += 1
    for rel, why in (kinds["failed"] | guard.poison).items():
        entries[rel] = ("failed", why)
    counts.update({k: len(v) for k, v in kinds.items()})
    counts["poison"] = len(guard.poison)
    counts["files"] = len(paths)
    counts.update(notices.counters())
    sync_paths(outputs)
    commit = store.commit_batch("clean", batch_no, counts,
                                outcomes={**kinds, "poison": guard.poison},
                                log=[entries.get(rel, ("failed", "not processed"))
                                     for rel in paths], notices=notices.encoded())
    finish_run(store, "clean", commit)
    log.info("run %s clean batch %d: %d files, %d cleaned, %d quarantined, %d failed",
             run_id, batch_no, counts["files"], counts["cleaned"], counts["quarantined"],
             counts["failed"])
    return dict(counts)


def enqueue_clean(run_id: str, batch_no: int) -> None:
    clean_batch.si(run_id, batch_no).apply_async()


@app.task(name="deid.clean", bind=True, autoretry_for=RETRY_ON,
          retry_backoff=True, max_retries=3, acks_late=True, ignore_result=True)
def clean_batch(self: Any, run_id: str, batch_no: int) -> dict[str, int]:
    """Clean the pixels of clean batch ``batch_no``; progress is read from the store."""
    return run_clean(run_id, batch_no, self.request.retries or 0)
