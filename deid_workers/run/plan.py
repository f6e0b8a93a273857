"""The stages a run goes through: the one statement of a run's plan.

The tasks, the producer, the progress bar and ``--status`` all read it here, so a new stage or
action changes one table.
"""

from __future__ import annotations

__all__ = ["CLIENT_ACTIONS", "STAGES", "STAGE_ORDER", "OCR_MODES", "stages_of", "first_stage",
           "final_stage"]

CLIENT_ACTIONS = ("get", "put", "all", "inspect")
"""What a run does, as deid's client names it (``--action``)."""

STAGES = ("get", "inspect", "put", "ocr", "clean")
"""The stages that run batches of files."""

STAGE_ORDER = ("load", "get", "inspect", "finalize", "put", "ocr", "clean")
"""Every stage in the order a put/all run goes through them (``--status`` rows; an inspect
run with ``--ocr`` reads its files by OCR before finalize writes the report)."""

OCR_MODES = ("risky", "all")
"""``--ocr``: the files whose header says burned-in text is likely, or every file with pixels
(:func:`deid_workers.ocr.select.ocr_reason`)."""

_PLANS = {"get": ("get", "finalize"), "inspect": ("inspect", "finalize"),
          "all": ("get", "finalize", "put"), "put": ("put",)}


def stages_of(action: str, *, clean_pixels: bool = False, finalize: bool = True,
              ids: bool = False, ocr: str | None = None) -> tuple[str, ...]:
    """The stages a run of ``action`` goes through, in order (none for an unknown action).

    The one statement of a run's plan: the tasks, the progress bar and ``--status`` read it.
    With ``clean_pixels`` put is followed by clean; with ``ocr`` (a mode of
    :data:`OCR_MODES`) put is followed by ocr then clean (the ocr stage decides, the clean
    stage blacks out and writes), and inspect by ocr before finalize writes the report;
    ``finalize=False`` leaves out the stage that has no files of its own; ``ids`` (a put run
    given ``--ids``) puts first the ``load`` of the ids file, whose counts are items, not files.
    """
    plan = _PLANS.get(action, ())
    if ocr and "put" in plan:
        plan += ("ocr", "clean")
    elif ocr and action == "inspect":
        plan = ("inspect", "ocr", "finalize")
    elif clean_pixels and "put" in plan:
        plan += ("clean",)
    if ids and action == "put":
        plan = ("load",) + plan
    return plan if finalize else tuple(s for s in plan if s != "finalize")


def first_stage(action: str) -> str:
    """The stage a run of ``action`` starts with: get for get/all, else the action itself."""
    plan = stages_of(action)
    return plan[0] if plan else action


def final_stage(clean_pixels: bool, ocr: str | None = None) -> str:
    """The stage whose completion ends a put/all run. Every put batch also commits a clean
    batch (empty when it had nothing to clean; with --ocr the ocr batch of the same number
    commits it), so with --clean-pixels or --ocr the clean stage completing means the whole
    run is done."""
    return "clean" if clean_pixels or ocr else "put"
