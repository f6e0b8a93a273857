"""``deid.load``: write one chunk of a ``put --ids`` file into the run store.

Why on the workers: writing a whole item (packing its fields, sending it) costs about twice
what reading and checking it costs, and a producer doing both alone holds every put batch back
(benchmarks/measurements.md). So the producer reads, checks and cuts the file into chunks of
whole entities (:func:`~deid_workers.ids.chunks.iter_ids_chunks`), keeps each in Redis and
sends one ``deid.load`` per chunk on the put queue, ahead of the put batches; a worker writes
the chunk's ids and commits it like a batch
(``done:load``). The producer keeps only a few chunks waiting and writes one itself when they
pile up, so Redis holds little raw text and a run sent before any worker is up still gets its
ids. Each item carries only the fields the run's recipe reads
(:func:`~deid_workers.recipe.ids_fields_read`), so with the usual recipes a chunk is a few
tens of KB and writing it is cheap.

A put batch starts only once every chunk is written (:func:`ids_ready`): the queue is FIFO, so
it waits at most for the chunks other workers are still writing.
"""

from __future__ import annotations

import time
from typing import Any

from celery.exceptions import Reject
from celery.utils.log import get_task_logger

from ..app import RETRY_ON, deid_task
from ..errors import StoreError
from ..run.lifecycle import fail_run
from .context import RunContext, run_context

__all__ = ["load_chunk", "ids_ready", "await_ids", "IDS_WAIT"]

log = get_task_logger(__name__)

IDS_WAIT = 10.0
"""Seconds a put batch waits for the run's ids before it goes back to the queue."""

_ready: set[str] = set()  # runs whose ids are all in the store (per worker process)
_READY_KEPT = 64  # then forgotten, to be asked again: a long-lived worker sees many runs


def run_load(run_id: str, chunk: int) -> dict[str, int]:
    """The task body, callable without Celery."""
    try:
        store = run_context(run_id).store
    except StoreError:  # purged before this process met the run
        return _gone(run_id, chunk)
    if store.committed("load", [chunk]):
        return {"items": 0, "already_done": 1}  # a redelivery
    text = store.ids_chunk(chunk)
    items = None if text is None else store.write_ids_chunk(chunk, text)
    if items is not None:
        log.info("run %s: ids chunk %d written (%d items)", run_id, chunk, items)
        return {"items": items}
    if store.committed("load", [chunk]):
        return {"items": 0, "already_done": 1}  # the producer wrote it meanwhile
    if store.exists():
        raise StoreError(f"run {run_id}: ids chunk {chunk} is gone from Redis (expired?); "
                         "resume the run to read the ids file again")
    return _gone(run_id, chunk)


def _gone(run_id: str, chunk: int) -> dict[str, int]:
    # The producer met a bad entity further in the file and purged the run.
    log.warning("run %s is gone; ids chunk %d not written", run_id, chunk)
    return {"items": 0, "gone": 1}


def ids_ready(ctx: RunContext, *, wait: float | None = None, poll: float = 0.05) -> bool:
    """Whether every chunk of the run's ``--ids`` file is written, waiting up to ``wait``
    seconds (:data:`IDS_WAIT`); True at once for a run that loads none. A failed run is never
    ready."""
    store = ctx.store
    if store.run_id in _ready:
        return True
    deadline = time.monotonic() + (IDS_WAIT if wait is None else wait)
    while True:
        total, state = store.record_fields("ids_chunks", "state")
        if state == "failed":
            return False
        if total is None or store.done_count("load") >= int(total):
            if len(_ready) >= _READY_KEPT:
                _ready.clear()
            _ready.add(store.run_id)
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)


def await_ids(ctx: RunContext) -> bool:
    """For a put batch: True to go on, False when the run failed; requeues the batch (a
    :class:`Reject`) while its ids are still being written after :data:`IDS_WAIT` seconds."""
    if ids_ready(ctx):
        return True
    if ctx.store.record_fields("state")[0] == "failed":
        return False
    raise Reject("the run's ids are still being written", requeue=True)


@deid_task("deid.load")
def load_chunk(self: Any, run_id: str, chunk: int) -> dict[str, int]:
    """Write one chunk of the run's ``--ids`` file (see the module doc)."""
    try:
        return run_load(run_id, chunk)
    except RETRY_ON:
        raise
    except Exception as exc:
        try:
            store = run_context(run_id).store
            if store.exists():
                fail_run(store, f"ids load (chunk {chunk})", exc)
        except (StoreError, *RETRY_ON):
            pass  # the run is gone, or Redis is: nothing to mark
        raise
