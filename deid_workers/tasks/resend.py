"""What a run has not done, sent again from what the store knows: the part of ``--resume``
that needs no walk, shared by the producer and by the workers' stall check.

Why the workers too: kombu's Redis transport takes a message in two steps (pop it, then note it
as taken), so a Redis that dies between them loses that message. A waiting deid-submit notices
the run standing still and resumes it; a run sent with ``--no-wait`` has nobody waiting, so the
workers' liveness thread does the same (:class:`StallWatch`). Every task is idempotent (a batch
done is not redone, finalize runs once), so sending again is always safe; the watch only acts
when nothing is queued or taken anywhere, so it never races a message in flight.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis

from ..app import QUEUES
from ..run.lifecycle import finish_run
from ..run.names import RUNS_INDEX, Keys
from ..run.plan import final_stage, first_stage
from ..run.record import RunRecord
from ..run.sealing import decode
from ..run.store import RunStore
from . import dispatch

__all__ = ["resend_after_first", "resend_after_put", "resend_ocr", "resend_stored", "StallWatch"]

log = logging.getLogger(__name__)

_ACTIVE = ("running", "finalize", "put")
"""Run states in which batches may be pending (the others: created, finished, failed)."""


def resend_after_put(store: RunStore, record: RunRecord, n_batches: int) -> int:
    """Send what follows the put batches that are done: their ocr batches with ``--ocr`` (an
    ocr batch done sends its clean batch), else their clean batches with ``--clean-pixels``;
    returns the tasks sent."""
    if record.ocr:
        return resend_ocr(store, n_batches, "put", then_clean=True)
    if not record.clean_pixels:
        return 0
    put_done = store.done_batches("put")
    return sum(dispatch.send_clean(store, n) for n in store.pending_batches("clean", n_batches)
               if n in put_done)


def resend_ocr(store: RunStore, n_batches: int, source: str, *, then_clean: bool) -> int:
    """Send the ocr batches whose ``source`` batch (put or inspect) is done but which are
    not, and (``then_clean``) the clean batches of the ocr batches done."""
    done = store.done_batches(source)
    pending = [n for n in store.pending_batches("clean" if then_clean else "ocr", n_batches)
               if n in done]
    return sum(dispatch.send_ocr(store, n, then_clean=then_clean) for n in pending)


def resend_stored(store: RunStore) -> str | None:
    """Send again what a run whose walk is done has not done; returns what was sent in words,
    None when there is nothing to send this way (the walk is not done: only a producer can
    walk, with ``--resume``)."""
    rec = store.record()
    if rec.get("state") not in _ACTIVE or not rec.get("walk_done"):
        return None
    record = RunRecord.of(rec)
    run_id, n_batches = store.run_id, int(rec.get("n_batches") or 0)
    first = first_stage(record.action)
    done_first = store.done_batches(first)
    pending_first = [n for n in range(n_batches) if n not in done_first]
    if first != "put" and pending_first:
        dispatch.send_many(f"deid.{first}", [(run_id, n) for n in pending_first])
        # The chord over the first stage waits for the lost message for ever; finalize waits
        # for the stage itself (it checks again until every batch is done).
        dispatch.send("deid.finalize", run_id)
        return f"re-sent {len(pending_first)} {first} batch(es) and finalize"
    return resend_after_first(store, record, n_batches)


def resend_after_first(store: RunStore, record: RunRecord, n_batches: int) -> str:
    """Send again what follows a first stage that is complete: finalize if it has not run,
    else the put batches not done and what follows them; returns what was sent in words."""
    run_id = store.run_id
    if record.action == "inspect" and record.ocr:
        resend_ocr(store, n_batches, "inspect", then_clean=False)
    if first_stage(record.action) != "put" and not store.done_batches("finalize"):
        dispatch.send("deid.finalize", run_id)
        return "re-sent finalize"
    pending = list(store.pending_batches("put", n_batches)) if record.action != "inspect" else []
    dispatch.send_many("deid.put", [(run_id, n) for n in pending])
    later = resend_after_put(store, record, n_batches)
    finish_run(store, final_stage(record.clean_pixels, record.ocr))
    return f"re-sent {len(pending)} put batches" + (
        f" and {later} ocr or clean batches" if later else "")


class StallWatch:
    """The workers' side of a stalled run: nothing queued or taken anywhere, and a run whose
    counters have not moved for ``after`` seconds, gets :func:`resend_stored` (by one worker:
    a lock in Redis for as long again)."""

    def __init__(self, client: redis.Redis, keys: Any, after: float) -> None:
        self.client = client
        self.keys = keys
        self.after = after
        self.seen: dict[str, tuple[Any, float]] = {}

    def idle(self) -> bool:
        """Whether no task is queued or taken on the cluster (one round trip)."""
        pipe = self.client.pipeline(transaction=False)
        for queue in QUEUES:
            pipe.llen(queue)
        pipe.hlen("unacked")
        return not any(pipe.execute())

    def check(self, now: float | None = None) -> list[str]:
        """One look (the liveness thread calls it every interval); returns the runs resent."""
        now = time.monotonic() if now is None else now
        if not self.idle():
            self.seen.clear()  # work is under way: stand-stills count from when it stops
            return []
        resent = []
        runs = [decode(r) for r in self.client.zrange(RUNS_INDEX, 0, -1)]
        pipe = self.client.pipeline(transaction=False)
        for run_id in runs:
            pipe.hget(Keys(run_id).run, "state")
        states = pipe.execute()
        for run_id, state in zip(runs, states):
            if state is None or json.loads(decode(state)) not in _ACTIVE:
                self.seen.pop(run_id, None)
                continue
            store = RunStore(self.client, run_id, expiry=0, keys=self.keys)
            counters = store.counters()
            was = self.seen.get(run_id)
            if was is None or was[0] != counters:
                self.seen[run_id] = (counters, now)
                continue
            if now - was[1] < self.after:
                continue
            self.seen[run_id] = (counters, now)
            if not self.client.set(f"{store.keys.run}:unstall", "1", nx=True,
                                   ex=max(1, int(self.after))):
                continue  # another worker has it
            loaded = RunStore.load(self.client, run_id, keys=self.keys)
            said = resend_stored(loaded)
            if said:
                log.warning("run %s: no progress for %.0f s with nothing queued or taken (a "
                            "task message lost when Redis restarted?): %s", run_id,
                            now - was[1], said)
                resent.append(run_id)
        return resent
