"""``deid.inspect``: run the recipe's header filters over one batch and store the verdicts."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from celery.utils.log import get_task_logger

from ..app import RETRY_ON, app
from ..files.steps import inspect_one
from .context import run_context
from .guard import BatchGuard

__all__ = ["inspect_batch"]

log = get_task_logger(__name__)


def run_inspect(run_id: str, batch_no: int, retry: int = 0) -> dict[str, int]:
    """The task body, callable without Celery."""
    ctx = run_context(run_id)
    guard = BatchGuard(ctx, "inspect", batch_no, retry, lists=True)
    paths = guard.start.paths
    if paths is None:
        paths = ctx.store.batch(batch_no)  # raises: the batch is unknown
    counts: Counter[str] = Counter(files=0, inspected=0, flagged=0, clean=0, skipped=0, failed=0)
    verdicts: dict[str, str] = {}
    skipped: dict[str, str] = {}
    failed: dict[str, str] = {}
    for rel, out in guard.run(paths, lambda rel: inspect_one(ctx.input, rel, ctx.recipe, ctx.settings), failed):
        if not out.ok:
            skipped[rel] = out.reason or "unreadable"
            log.warning("run %s: skipping %s: %s", run_id, rel, out.reason)
            continue
        counts["inspected"] += 1
        counts["flagged" if out.flagged else "clean"] += 1
        verdicts[rel] = json.dumps({"flagged": out.flagged, "results": out.results}, default=str)
    counts["files"] = len(paths)
    counts["skipped"] = len(skipped)
    counts["poison"] = len(guard.poison)
    counts["failed"] = len(failed)
    ctx.store.commit_batch(
        "inspect", batch_no, counts,
        outcomes={"inspect": verdicts, "skipped": skipped, "failed": failed,
                  "poison": guard.poison},
    )
    log.info("run %s inspect batch %d: %d files, %d flagged, %d skipped",
             run_id, batch_no, counts["files"], counts["flagged"], counts["skipped"])
    return dict(counts)


@app.task(name="deid.inspect", bind=True, autoretry_for=RETRY_ON,
          retry_backoff=True, max_retries=3, acks_late=True)
def inspect_batch(self: Any, run_id: str, batch_no: int) -> dict[str, int]:
    """Header-filter verdicts of batch ``batch_no``; counts feed the chord to finalize."""
    return run_inspect(run_id, batch_no, self.request.retries or 0)
