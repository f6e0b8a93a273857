"""``deid.finalize``: the chord body after every get (or inspect) batch of a run.

It runs once, after the whole header: it streams the identifiers out of Redis into
``deid-ids.pkl`` and ``deid-ids.json`` (or the inspect report) in the output folder, then, for
``--action all``, enqueues the put batches. Doing this on a worker, not in the producer, lets
``--no-wait`` runs (and a producer that died) finish on their own.
"""

from __future__ import annotations

from typing import Any

from celery.utils.log import get_task_logger

from ..app import app
from ..idsfile import IdsWriter
from ..report import write_inspect_report
from ..store import first_stage
from . import RETRY_ON, finish_run, run_context

__all__ = ["finalize", "NotReady", "FINALIZE_POLL"]

log = get_task_logger(__name__)

FINALIZE_POLL = 5
"""Seconds between checks when finalize fires before every batch of the first stage is done."""


class NotReady(Exception):
    """The chord fired before every batch committed: a batch that ran twice (its worker died
    after storing its result, before acknowledging it) is counted twice by the chord. Finalize
    then waits for the store's own count, which counts each batch once."""


def write_ids(run_id: str) -> tuple[str, str, int]:
    """Stream the run's identifiers into the ids files; returns (pkl, json, entities)."""
    ctx = run_context(run_id)
    n = 0
    with IdsWriter(ctx.outfolder) as writer:
        for entity, items in ctx.store.iter_ids():
            writer.add_entity(entity, items, plain=True)
            n += 1
    return str(writer.pkl_path), str(writer.json_path), n


def run_finalize(run_id: str, *, enqueue: Any = None) -> dict[str, int]:
    """The task body, callable without Celery; ``enqueue(run_id, batches)`` sends put batches."""
    ctx = run_context(run_id)
    store = ctx.store
    rec = store.record()
    if rec.get("state") in ("finished", "failed") or store.done_batches("finalize"):
        return {"already_done": 1}  # a redelivered or duplicate finalize
    n_batches = int(rec.get("n_batches") or store.batch_count())
    first = first_stage(ctx.action)
    done = len(store.done_batches(first))
    if not rec.get("walk_done") or done < n_batches:
        raise NotReady(f"run {run_id}: {done} of {n_batches} {first} batches done")
    store.update(state="finalize", stage="finalize")
    result = {"batches": n_batches}
    if ctx.action in ("get", "all") and not ctx.print_ids:
        pkl, js, entities = write_ids(run_id)
        store.update(ids_pkl=pkl, ids_json=js)
        result["entities"] = entities
        log.info("run %s: identifiers of %d entities exported", run_id, entities)
    if ctx.action == "inspect":
        tsv, js = write_inspect_report(store, ctx.outfolder, n_batches)
        store.update(report_tsv=tsv, report_json=js)
    if ctx.action == "all":
        # Put is sent before finalize commits: a finalize that dies in between is redelivered
        # and sends again (put batches are idempotent), rather than leaving put never sent.
        store.update(state="put", stage="put")
        pending = list(store.pending_batches("put", n_batches))
        (enqueue or enqueue_put)(run_id, pending)
        result["put_batches"] = len(pending)
        store.commit_batch("finalize", 0, {})
        finish_run(store, ctx.final_stage)
    else:
        store.commit_batch("finalize", 0, {})
        store.set_state("finished")
    log.info("run %s finalized (%s, %d batches)", run_id, ctx.action, n_batches)
    return result


def enqueue_put(run_id: str, batches: list[int]) -> None:
    """Send one put task per batch over a single broker connection."""
    from .put import put_batch

    with app.producer_or_acquire() as producer:
        for n in batches:
            put_batch.si(run_id, n).apply_async(producer=producer)


@app.task(name="deid.finalize", bind=True, autoretry_for=RETRY_ON,
          retry_backoff=True, max_retries=3, acks_late=True, ignore_result=True)
def finalize(self: Any, run_id: str) -> dict[str, int]:
    """Export ids or the inspect report, then start put for ``--action all``."""
    try:
        return run_finalize(run_id)
    except NotReady as exc:
        log.info("%s; checking again in %d s", exc, FINALIZE_POLL)
        limit = max(1, run_context(run_id).settings.run_expiry // FINALIZE_POLL)
        raise self.retry(exc=exc, countdown=FINALIZE_POLL, max_retries=limit) from None
