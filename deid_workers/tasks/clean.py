"""``deid.clean``: black out burned-in pixels of the files a put batch left to clean.

Why a stage of its own (queue ``clean``): decoding and re-writing pixel data is the heavy part
of a run and only some files need it; operators scale this queue separately, and the put
stage, which never decodes pixels, is not held up by it. Clean batch ``n`` holds the files of
put batch ``n`` whose %filter verdict gives boxes; put commits an empty clean batch itself
when there are none, so the clean stage completing means the run is done.

With ``--ocr`` clean batch ``n`` is every file ocr batch ``n`` read: each is written as the
OCR verdict (sealed in the store by the ocr stage) says, blacked out and read again
(:mod:`deid_workers.files.ocrstep`), or quarantined.
"""

from __future__ import annotations

from typing import Any

from celery.utils.log import get_task_logger

from ..app import deid_task
from ..errors import OcrEngineError
from ..run.lifecycle import finish_run
from . import faults
from .context import RunContext, run_context
from .guard import BatchGuard
from .put import batch_step, tally_outcome
from .tally import BatchTally

__all__ = ["clean_batch", "run_clean"]

log = get_task_logger(__name__)


def run_clean(run_id: str, batch_no: int, retry: int = 0) -> dict[str, int]:
    """The task body, callable without Celery; idempotent like put (see tasks.put)."""
    ctx = run_context(run_id)
    store = ctx.store
    if batch_no in store.done_batches("clean"):
        return {"files": 0, "already_done": 1}
    paths = store.clean_batch(batch_no)
    if paths is None:  # put has not decided yet; it will send us again
        return {"files": 0, "not_ready": 1}
    first_time = store.mark_started("clean", batch_no)
    policy = ctx.pixel_policy(now=True)
    try:
        verdicts, verify = ocr_verdicts(ctx, batch_no) if ctx.record.ocr else ({}, None)
    except OcrEngineError as exc:  # verification needs the engine: this worker lacks it
        from .ocr import ocr_unavailable

        return ocr_unavailable(ctx, "clean", exc)
    guard = BatchGuard(ctx, "clean", batch_no, retry)
    tally = BatchTally(guard, paths)
    step = batch_step(ctx, paths, {}, first_time=first_time, policy=policy,
                      careful=guard.careful, notices=tally.notices, ocr=verdicts,
                      verify=verify)
    for rel, out in tally.run(step):
        tally_outcome(tally, ctx, rel, out)  # cleaned, or written when nothing was left to clean
        if out.ocr is not None and "verified" in out.ocr:
            tally.count("ocr_verified" if out.ocr["verified"] else "ocr_phi_left")
            tally.count("ocr_boxes_cleaned", int(out.ocr.get("cleaned") or 0))
    finish_run(store, "clean", tally.commit())
    return tally.result()


def ocr_verdicts(ctx: RunContext, batch_no: int) -> tuple[dict[str, Any], Any]:
    """The OCR verdicts of the batch's files (sealed by the ocr stage), and this worker's
    verifier; the engine is loaded first when a file is to be blacked out and verified
    (:class:`~deid_workers.errors.OcrEngineError` when this worker cannot).
    ``DEID_TEST_OCR_MISS`` (tests only) drops the boxes of the files it names, as a redaction
    that missed its text would, so verification must catch them."""
    from ..ocr.verdict import REDACT, OcrVerdict
    from .ocr import verifier, worker_ocr

    verdicts = {rel: OcrVerdict.from_dict(v) for rel, v in ctx.store.ocr_verdicts(batch_no).items()}
    if any(v.status == REDACT for v in verdicts.values()):
        worker_ocr(ctx)
    miss = ctx.settings.test_ocr_miss
    if miss:
        verdicts = {rel: faults.missed(v) if miss in rel else v for rel, v in verdicts.items()}
    return verdicts, verifier(ctx)


@deid_task("deid.clean")
def clean_batch(self: Any, run_id: str, batch_no: int) -> dict[str, int]:
    """Clean the pixels of clean batch ``batch_no``; progress is read from the store."""
    return run_clean(run_id, batch_no, self.request.retries or 0)
