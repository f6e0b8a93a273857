"""``deid.get``: read the headers of one batch and store each file's identifiers."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from celery.utils.log import get_task_logger

from ..app import deid_task
from ..files.steps import get_one
from ..run.notices import COUNTER, duplicate_text
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
    item_field = ctx.settings.item_field
    first_of: dict[tuple[str, str], str] = {}  # (entity, item) -> the batch's first file
    for rel, out in tally.run(lambda rel: get_one(ctx.record.input, rel, ctx.settings)):
        if not out.ok:
            tally.skip(rel, out.reason)
            continue
        valid.append(rel)
        keys.append((out.entity, out.item))
        if (out.entity, out.item) in first_of:
            tally.warn(rel, "duplicate_uid",
                       duplicate_text(rel, item_field, first_of[(out.entity, out.item)]))
        else:
            first_of[(out.entity, out.item)] = rel
        missing.append(out.missing)
        ids[out.entity][out.item] = out.fields
        if out.missing:
            tally.note("missing", rel, ",".join(out.missing))
            log.warning("run %s: %s has no %s", run_id, rel, " or ".join(out.missing))
        log.debug("run %s: get %s", run_id, rel)
    tally.count("valid", len(valid))
    # Only a batch's first start can tell another batch's items from its own earlier writes.
    first_start = guard.retry == 0 and guard.starts == 1
    commit = tally.commit(ids=ids, valid=valid, valid_keys=keys, valid_missing=missing,
                          check_items=first_start)
    if commit.existing and commit.first:
        _shared_items(tally, commit.existing, valid, keys, first_of, item_field)
    return tally.result()


def _shared_items(tally: BatchTally, existing: tuple[tuple[str, str], ...], valid: list[str],
                  keys: list[tuple[str, str]], first_of: dict[tuple[str, str], str],
                  item_field: str) -> None:
    """Warn about each file of the batch whose (entity, item) another batch wrote first, and
    add those warnings to the batch's committed ones (:meth:`RunStore.add_notices`)."""
    shared = set(existing)
    notices = tally.notices
    before = dict(notices.counts)
    for rel, key in zip(valid, keys):
        if key in shared and first_of.get(key) == rel:
            tally.warn(rel, "duplicate_uid", duplicate_text(rel, item_field))
    added = {COUNTER + k: n - before.get(k, 0) for k, n in notices.counts.items()}
    tally.guard.store.add_notices("get", tally.guard.batch_no, notices.encoded() or "",
                                  {k: n for k, n in added.items() if n})


@deid_task("deid.get", ignore_result=False)
def get_batch(self: Any, run_id: str, batch_no: int) -> dict[str, int]:
    """Identifiers of batch ``batch_no``; the result (counts) feeds the chord to finalize."""
    return run_get(run_id, batch_no, self.request.retries or 0)
