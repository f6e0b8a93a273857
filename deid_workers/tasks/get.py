"""``deid.get``: read the headers of one batch and store each file's identifiers."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from celery.utils.log import get_task_logger

from ..app import app
from ..notices import COUNTER, BatchNotices, duplicate_text
from ..steps import get_one
from . import RETRY_ON, BatchGuard, run_context

__all__ = ["get_batch"]

log = get_task_logger(__name__)


def run_get(run_id: str, batch_no: int, retry: int = 0) -> dict[str, int]:
    """The task body, callable without Celery (tests call it with a fake Redis)."""
    ctx = run_context(run_id)
    guard = BatchGuard(ctx, "get", batch_no, retry, lists=True)
    paths = guard.start.paths
    if paths is None:
        paths = ctx.store.batch(batch_no)  # raises: the batch is unknown
    counts: Counter[str] = Counter(files=0, valid=0, skipped=0, failed=0, missing=0)
    ids: dict[str, dict[str, Any]] = defaultdict(dict)
    skipped: dict[str, str] = {}
    failed: dict[str, str] = {}
    missing: dict[str, str] = {}
    valid: list[str] = []
    keys: list[tuple[str, str]] = []
    notices = BatchNotices()
    item_field = ctx.settings.item_field
    first_of: dict[tuple[str, str], str] = {}  # (entity, item) -> the batch's first file
    for rel, out in guard.run(paths, lambda rel: get_one(ctx.input, rel, ctx.settings), failed):
        if not out.ok:
            skipped[rel] = out.reason or "unreadable"
            log.warning("run %s: skipping %s: %s", run_id, rel, out.reason)
            continue
        valid.append(rel)
        keys.append((out.entity, out.item))
        if (out.entity, out.item) in first_of:
            notices.add(rel, "duplicate_uid",
                        duplicate_text(rel, item_field, first_of[(out.entity, out.item)]))
        else:
            first_of[(out.entity, out.item)] = rel
        ids[out.entity][out.item] = out.fields
        if out.missing:
            missing[rel] = ",".join(out.missing)
            log.warning("run %s: %s has no %s", run_id, rel, " or ".join(out.missing))
        log.debug("run %s: get %s", run_id, rel)
    counts["files"] = len(paths)
    counts["valid"] = len(valid)
    counts["poison"] = len(guard.poison)
    counts["skipped"] = len(skipped)
    counts["failed"] = len(failed)
    counts["missing"] = len(missing)
    counts.update(notices.counters())
    # Only a batch's first start can tell another batch's items from its own earlier writes.
    first_start = guard.retry == 0 and guard.starts == 1
    commit = ctx.store.commit_batch(
        "get", batch_no, counts,
        outcomes={"skipped": skipped, "failed": failed, "missing": missing,
                  "poison": guard.poison},
        ids=ids, valid=valid, valid_keys=keys, notices=notices.encoded(),
        check_items=first_start,
    )
    if commit.existing and commit.first:
        shared = set(commit.existing)
        before = dict(notices.counts)
        for rel, key in zip(valid, keys):
            if key in shared and first_of.get(key) == rel:
                notices.add(rel, "duplicate_uid", duplicate_text(rel, item_field))
        added = {COUNTER + k: n - before.get(k, 0) for k, n in notices.counts.items()}
        ctx.store.add_notices("get", batch_no, notices.encoded() or "",
                              {k: n for k, n in added.items() if n})
    for notice in notices.first:
        log.warning("run %s: %s", run_id, notice.line())
    log.info("run %s get batch %d: %d files, %d valid, %d skipped, %d failed",
             run_id, batch_no, counts["files"], counts["valid"], counts["skipped"], counts["failed"])
    return dict(counts)


@app.task(name="deid.get", bind=True, autoretry_for=RETRY_ON,
          retry_backoff=True, max_retries=3, acks_late=True)
def get_batch(self: Any, run_id: str, batch_no: int) -> dict[str, int]:
    """Identifiers of batch ``batch_no``; the result (counts) feeds the chord to finalize."""
    return run_get(run_id, batch_no, self.request.retries or 0)
