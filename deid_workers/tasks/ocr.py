"""``deid.ocr``: read the burned-in text of the files put (or inspect) left to it (``--ocr``).

Why a stage of its own (queue ``ocr``): OCR costs about a second per image and 0.7 GB per
process (docs/ocr.md), where put costs milliseconds; operators scale this queue apart (KEDA),
and put is never held up by it. The stage only reads: each file's verdict (counts and box
geometry, never text) is sealed in the store with the batch, and

- put/all: ocr batch ``n`` commits clean batch ``n`` (every file it read) and sends it; the
  clean stage blacks out the PHI boxes, reads the result again, and writes or quarantines;
- inspect: the verdicts go into each file's inspect record, and finalize writes the report
  once every ocr batch is in.

The engine and the policy are loaded once per worker process, on the first batch that needs
them (:func:`worker_ocr`), so a worker that never sees ``--ocr`` never loads either.
"""

from __future__ import annotations

import json
from typing import Any

from celery.utils.log import get_task_logger

from ..app import deid_task
from ..errors import OcrEngineError
from ..run.lifecycle import finish_run
from . import dispatch
from .context import RunContext, run_context
from .guard import BatchGuard
from .tally import BatchTally

__all__ = ["ocr_batch", "run_ocr", "worker_ocr", "verifier", "ocr_unavailable"]

log = get_task_logger(__name__)

_LOADED: dict[str, Any] = {}
"""This process's engine (``"engine"``) and policies by allow-list text (``"policy:..."``)."""


def worker_ocr(ctx: RunContext) -> tuple[Any, Any]:
    """(engine, policy) of this worker process for the run: the engine loaded on first use and
    kept (loading the models takes most of a second and ~190 MB); the policy with the run's
    allow-list (``--ocr-allowlist``, else the shipped one), one per distinct list.

    Raises :class:`~deid_workers.errors.OcrEngineError` when the engine cannot load here (the
    ``ocr`` extra is not installed on this worker).
    """
    from ..ocr import DEFAULT_ENGINE, OcrPolicy, load_engine, parse_allowlist

    engine = _LOADED.get("engine")
    if engine is None:
        engine = _LOADED["engine"] = load_engine(DEFAULT_ENGINE)
        log.info("OCR engine %s loaded", engine.name)
    text = ctx.record.ocr_allowlist
    key = "policy:" + (text or "")
    policy = _LOADED.get(key)
    if policy is None:
        policy = OcrPolicy() if text is None else OcrPolicy(
            allow=parse_allowlist(text, ctx.record.ocr_allowlist_name or "--ocr-allowlist"))
        _LOADED[key] = policy
    return engine, policy


def verifier(ctx: RunContext) -> Any:
    """``verify(cleaned, identifying)`` with this worker's engine and the run's policy (the
    clean stage's :data:`~deid_workers.files.ocrstep.Verify`), loaded on its first call."""

    def verify(cleaned: Any, identifying: Any) -> Any:
        from ..ocr import verify_redacted

        engine, policy = worker_ocr(ctx)
        return verify_redacted(cleaned, identifying, engine, policy)

    return verify


def ocr_unavailable(ctx: RunContext, stage: str, exc: OcrEngineError) -> dict[str, int]:
    """A worker without a usable engine got an OCR batch: the run fails with one line that says
    what to install where (its batches would fail the same way on this worker)."""
    message = f"{stage} needs OCR on the workers of queue {stage}: {exc}"
    log.error("run %s: %s", ctx.store.run_id, message)
    ctx.store.set_state("failed", error=message)
    return {"files": 0, "run_failed": 1}


def run_ocr(run_id: str, batch_no: int, retry: int = 0) -> dict[str, int]:
    """The task body, callable without Celery; idempotent (it writes no file, and a batch's
    counters commit once)."""
    ctx = run_context(run_id)
    store = ctx.store
    then_clean = ctx.record.action != "inspect"
    if batch_no in store.done_batches("ocr"):
        if then_clean:  # the first delivery may have died before sending its clean batch
            dispatch.send_clean(store, batch_no)
            finish_run(store, "clean")
        return {"files": 0, "already_done": 1}
    paths = store.ocr_batch(batch_no)
    if paths is None:  # put or inspect has not decided yet; it will send us again
        return {"files": 0, "not_ready": 1}
    try:
        engine, policy = worker_ocr(ctx)
    except OcrEngineError as exc:
        return ocr_unavailable(ctx, "ocr", exc)
    from ..files.ocrstep import ocr_one

    guard = BatchGuard(ctx, "ocr", batch_no, retry)
    tally = BatchTally(guard, paths)
    verdicts: dict[str, dict[str, Any]] = {}
    for rel, out in tally.run(lambda rel: ocr_one(ctx.record.input, rel, ctx.settings,
                                                  engine, policy)):
        if not out.ok:
            tally.skip(rel, out.reason)
            tally.log_entry(rel, ("skipped", out.reason))
            continue
        verdict = out.verdict
        summary = verdict.summary()
        tally.count("read")
        tally.count(verdict.status)
        for name in ("boxes", "phi", "unsure", "to_redact"):
            tally.count(name, summary[name])
        verdicts[rel] = verdict.to_dict()
        # Until the clean stage records it, the run log says its cleaning did not finish.
        tally.log_entry(rel, ("clean", None, None, [], summary))
        log.debug("run %s: ocr %s: %s", run_id, rel, verdict.status)
    if not then_clean:
        headers = store.outcomes("inspect", list(verdicts))
        for rel, found in verdicts.items():
            record = json.loads(headers[rel]) if rel in headers else {}
            tally.note("inspect", rel, json.dumps({**record, "ocr": found}))
        if tally.commit().complete:  # finalize, waiting on the ocr stage, need not poll
            dispatch.send("deid.finalize", run_id)
        return tally.result()
    tally.count("to_clean", len(verdicts))
    tally.commit(clean=list(verdicts), ocr_verdicts=verdicts)
    dispatch.send_clean(store, batch_no)
    finish_run(store, "clean")
    return tally.result()


@deid_task("deid.ocr")
def ocr_batch(self: Any, run_id: str, batch_no: int) -> dict[str, int]:
    """Read the burned-in text of ocr batch ``batch_no``; progress is read from the store."""
    return run_ocr(run_id, batch_no, self.request.retries or 0)
