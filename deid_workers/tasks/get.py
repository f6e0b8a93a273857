"""``deid.get``: read the headers of one batch and store each file's identifiers."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from celery.utils.log import get_task_logger

from ..app import deid_task
from ..files.steps import get_one
from .context import run_context
from .guard import BatchGuard
from .tally import BatchTally

__all__ = ["get_batch", "run_get"]

log = get_task_logger(__name__)


def run_get(run_id: str, batch_no: int, retry: int = 0) -> dict[str, int]:
    """The task body, callable without Celery (tests call it with a fake Redis)."""
    ctx = run_context(run_id)
    guard = BatchGuard(ctx, "get", batch_no, retry, lists=True)
    tally = BatchTally(guard, guard.paths())
    ids: dict[str, dict[str, Any]] = defaultdict(dict)
    valid: list[str] = []
    keys: list[tuple[str, str]] = []
    missing: list[tuple[str, ...]] = []
    for rel, out in tally.run(lambda rel: get_one(ctx.record.input, rel, ctx.settings)):
        if not out.ok:
            tally.skip(rel, out.reason)
            continue
        valid.append(rel)
        keys.append((out.entity, out.item))
        missing.append(out.missing)
        ids[out.entity][out.item] = out.fields
        if out.missing:
            tally.note("missing", rel, ",".join(out.missing))
            log.warning("run %s: %s has no %s", run_id, rel, " or ".join(out.missing))
        log.debug("run %s: get %s", run_id, rel)
    tally.count("valid", len(valid))
    tally.commit(ids=ids, valid=valid, valid_keys=keys, valid_missing=missing)
    return tally.result()


@deid_task("deid.get", ignore_result=False)
def get_batch(self: Any, run_id: str, batch_no: int) -> dict[str, int]:
    """Identifiers of batch ``batch_no``; the result (counts) feeds the chord to finalize."""
    return run_get(run_id, batch_no, self.request.retries or 0)
