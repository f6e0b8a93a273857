"""``deid.get``: read the headers of one batch and store each file's identifiers."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from celery.utils.log import get_task_logger

from ..app import RETRY_ON, app
from ..files.steps import get_one
from .context import run_context
from .guard import BatchGuard

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
    for rel, out in guard.run(paths, lambda rel: get_one(ctx.input, rel, ctx.settings), failed):
        if not out.ok:
            skipped[rel] = out.reason or "unreadable"
            log.warning("run %s: skipping %s: %s", run_id, rel, out.reason)
            continue
        valid.append(rel)
        keys.append((out.entity, out.item))
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
    ctx.store.commit_batch(
        "get", batch_no, counts,
        outcomes={"skipped": skipped, "failed": failed, "missing": missing,
                  "poison": guard.poison},
        ids=ids, valid=valid, valid_keys=keys,
    )
    log.info("run %s get batch %d: %d files, %d valid, %d skipped, %d failed",
             run_id, batch_no, counts["files"], counts["valid"], counts["skipped"], counts["failed"])
    return dict(counts)


@app.task(name="deid.get", bind=True, autoretry_for=RETRY_ON,
          retry_backoff=True, max_retries=3, acks_late=True)
def get_batch(self: Any, run_id: str, batch_no: int) -> dict[str, int]:
    """Identifiers of batch ``batch_no``; the result (counts) feeds the chord to finalize."""
    return run_get(run_id, batch_no, self.request.retries or 0)
