"""``deid.inspect``: run the recipe's header filters over one batch and store the verdicts.

With ``--ocr`` the files to read by OCR (:func:`~deid_workers.files.ocrstep.ocr_selection`,
from the headers) form ocr batch ``n``, sent on to the ``ocr`` queue; the report waits for it.
"""

from __future__ import annotations

import json
from typing import Any

from ..app import deid_task
from ..files.steps import inspect_one
from . import dispatch
from .context import run_context
from .guard import BatchGuard
from .tally import BatchTally

__all__ = ["inspect_batch", "run_inspect"]


def run_inspect(run_id: str, batch_no: int, retry: int = 0) -> dict[str, int]:
    """The task body, callable without Celery."""
    ctx = run_context(run_id)
    mode = ctx.record.ocr
    guard = BatchGuard(ctx, "inspect", batch_no, retry, lists=True)
    tally = BatchTally(guard, guard.paths())
    to_ocr: list[str] = []
    for rel, out in tally.run(lambda rel: inspect_one(ctx.record.input, rel, ctx.recipe,
                                                      ctx.settings, ocr=mode)):
        if not out.ok:
            tally.skip(rel, out.reason)
            continue
        tally.count("inspected")
        tally.count("flagged" if out.flagged else "clean")
        tally.note("inspect", rel, json.dumps({"flagged": out.flagged, "results": out.results},
                                              default=str))
        if out.ocr is not None:
            to_ocr.append(rel)
    tally.count("to_ocr", len(to_ocr))
    tally.commit(ocr=to_ocr if mode else None)
    if mode:
        dispatch.send_ocr(ctx.store, batch_no, then_clean=False)
    return tally.result()


@deid_task("deid.inspect", ignore_result=False)
def inspect_batch(self: Any, run_id: str, batch_no: int) -> dict[str, int]:
    """Header-filter verdicts of batch ``batch_no``; counts feed the chord to finalize."""
    return run_inspect(run_id, batch_no, self.request.retries or 0)
