"""Every task deid-workers sends, published by name from this one module.

Task names are the wire contract (``deid.get``, ``deid.put``...: Flower, routes, the queue each
goes to in :data:`~deid_workers.app.TASK_QUEUES`), so callers name what to run and never import
a task module: the producer does not depend on worker code, and a task module can send
another's tasks without an import cycle. Tasks carry a run id and numbers only.

Three ways out, by how many tasks and when they are known:

- :func:`send`: one task (a clean batch, a finalize that a resume re-sends);
- :func:`send_many`: tasks all known at once (finalize's put batches, the export shards), in
  as few round trips as kombu allows;
- :func:`sender` and :func:`send_chord`: tasks known one at a time as the producer walks the
  input or cuts an ids file, over one broker connection.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from celery.canvas import Signature

from ..app import app
from ..run.store import RunStore

__all__ = ["signature", "send", "send_many", "sender", "send_chord", "send_clean", "send_ocr",
           "PUBLISH_BATCH"]

log = logging.getLogger(__name__)

PUBLISH_BATCH = 1000
"""Redis commands kombu buffers before it sends them (a message is two: the task, its event)."""


def signature(name: str, *args: Any) -> Signature:
    """The immutable signature of task ``name`` with ``args``, with the options the task
    declares (its module is imported if this process has not yet)."""
    tasks = app.tasks
    if name not in tasks:
        app.loader.import_default_modules()  # the app's task modules (its include list)
    return tasks[name].si(*args)


def send(name: str, *args: Any) -> None:
    """Publish one task."""
    signature(name, *args).apply_async()


def send_many(name: str, arglists: Iterable[tuple[Any, ...]]) -> None:
    """Publish task ``name`` once per tuple of ``arglists``, in as few round trips as kombu
    allows.

    Why: each message is a push and a ``task-sent`` event, each a round trip when sent alone;
    on a cluster that was finalize's longest wait (two network latencies per put batch).
    kombu 5.7's ``Producer.batch`` pipelines them; without it, or when a batch's flush fails
    (delivery uncertain: Redis went away), they are sent one at a time with the app's publish
    retry policy. A message sent twice is a batch delivered twice, which does nothing.
    """
    signatures = [signature(name, *args) for args in arglists]
    with app.producer_or_acquire() as producer:
        batch = getattr(producer, "batch", None)
        if batch is not None:
            try:
                with batch(max_size=PUBLISH_BATCH):
                    for sig in signatures:
                        sig.apply_async(producer=producer)
                return
            except Exception as exc:  # kombu's BatchPublishError, or a connection error
                log.warning("sending %d tasks in one go failed (%s); sending them one by one",
                            len(signatures), type(exc).__name__)
        for sig in signatures:
            sig.apply_async(producer=producer)


@contextlib.contextmanager
def sender(name: str, run_id: str) -> Iterator[Callable[[int], None]]:
    """``send(n)`` publishes ``name(run_id, n)`` at once, over one broker connection (the put
    batches of a ``put`` run as the walk finds them, the chunks of an ids file)."""
    with app.producer_or_acquire() as producer:
        yield lambda n: signature(name, run_id, n).apply_async(producer=producer)


def send_chord(name: str, run_id: str, numbers: Iterator[int], body: str, body_id: str) -> None:
    """Publish ``chord(name(run_id, n) for n in numbers, body(run_id))``, the body with task id
    ``body_id``, keeping nothing per header task.

    What ``chord(header, body).apply_async(task_id=body_id)`` does on the Redis backend, minus
    its memory: each header task is frozen into the chord's group (group id, index, the body
    as its ``chord``) and published, and the backend's chord size is set just before the
    last one goes out, one task ahead as Celery does for a generator header (celery#3021);
    the join stays the backend's (``on_chord_part_return``). Celery's own path keeps every
    header signature (its ``regen`` caches what it yields, and a ``tee`` buffers a second
    copy) and one ``AsyncResult`` per task in the ``GroupResult``, so the producer grew with
    the walk (benchmarks/measurements.md); here it stays flat. ``numbers`` may be a generator
    that works between two tasks (the producer's walk).
    """
    header = (signature(name, run_id, n) for n in numbers)
    group_id = str(uuid.uuid4())
    chord_body = signature(body, run_id).clone()
    chord_body.freeze(body_id, group_id=group_id)
    # ignore_result: the join gets each header result from the task itself, not from a stored
    # result, and without it the producer subscribes to each task's result channel and never
    # reads the replies (its socket and Redis' output buffer grow with the walk).
    options = {"add_to_parent": False, "chord": chord_body, "ignore_result": True}
    size = 0
    pending: Signature | None = None
    with app.producer_or_acquire() as producer:
        for sig in header:
            if pending is not None:
                pending.apply_async(producer=producer, **options)
            sig.freeze(group_id=group_id, chord=chord_body, group_index=size)
            pending = sig
            size += 1
        if pending is None:  # nothing to do: the body runs at once, as Celery's chord does
            chord_body.apply_async(producer=producer)
            return
        app.backend.set_chord_size(group_id, size)
        pending.apply_async(producer=producer, **options)


def send_clean(store: RunStore, batch_no: int) -> bool:
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
    send("deid.clean", store.run_id, batch_no)
    return True


def send_ocr(store: RunStore, batch_no: int, *, then_clean: bool) -> bool:
    """Send ocr batch ``batch_no`` (``--ocr``), or commit it at once when put (or inspect) left
    nothing to read; ``then_clean`` (put/all) commits its clean batch with it, empty, and
    sends that on (:func:`send_clean`), since the ocr batch is what writes the clean batch.

    Does nothing when the batch is not decided yet, or is done (then its clean batch is sent,
    if not done: a resume); returns True when a task was sent.
    """
    paths = store.ocr_batch(batch_no)
    if paths is None or batch_no in store.done_batches("ocr"):
        if then_clean and paths is not None:  # a resume: the ocr batch is done, its clean may not be
            return send_clean(store, batch_no)
        return False
    if not paths:
        store.commit_batch("ocr", batch_no, {"files": 0}, log=[],
                           clean=[] if then_clean else None)
        if then_clean:
            send_clean(store, batch_no)
        return False
    send("deid.ocr", store.run_id, batch_no)
    return True
