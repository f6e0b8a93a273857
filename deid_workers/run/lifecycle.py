"""A run's end: finished once its last stage is complete, or failed by work no chord reports.

Several processes may end a run (the last batches of a stage, the producer after its walk):
each of these is safe to call more than once.
"""

from __future__ import annotations

import logging

from .commit import Commit
from .memory import out_of_memory, redis_reason
from .runlog import write_run_log
from .store import RunStore

__all__ = ["finish_run", "fail_run"]

log = logging.getLogger(__name__)


def fail_run(store: RunStore, what: str, exc: BaseException) -> None:
    """Mark the run failed by ``what``'s error, in one line without paths or values (the
    error's text may quote either): for work no chord reports to the producer."""
    if out_of_memory(exc):  # said plainly, with what to do, whichever task met it
        reason = redis_reason(exc, store.run_id)
    else:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
    log.error("run %s: %s failed: %s", store.run_id, what, reason)
    store.set_state("failed", error=f"{what} failed: {reason}")


def finish_run(store: RunStore, stage: str, commit: Commit | None = None) -> bool:
    """End a put/all run once ``stage`` is complete: write ``deid-run.jsonl``, then mark the
    run finished (so a producer that sees "finished" finds the file). Several callers may get
    here at once (the last batches, the producer after its walk); each writes the same file
    atomically and marking twice is harmless. Returns True when the run is finished.

    ``commit`` (what committing a batch of ``stage`` learnt) says without another read whether
    the stage is complete: every batch but the last stops there, and the last reads only the
    record, the run log's lists and, as it marks the run finished, the plan again."""
    if commit is not None and not commit.complete:
        return False
    if commit is None and not store.stage_complete(stage):
        return False
    rec = store.record()
    if rec.get("state") in ("finished", "failed"):
        return True
    if rec.get("action") in ("put", "all"):
        path = write_run_log(store, rec)
        if store.maybe_finish(stage, run_log=path):
            return True
        store.update(run_log=path)
        return False
    return store.maybe_finish(stage)
