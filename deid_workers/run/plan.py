"""The stages a run goes through: the one statement of a run's plan.

The tasks, the producer, the progress bar and ``--status`` all read it here, so a new stage or
action changes one table.
"""

from __future__ import annotations

__all__ = ["CLIENT_ACTIONS", "STAGES", "STAGE_ORDER", "stages_of", "first_stage", "final_stage"]

CLIENT_ACTIONS = ("get", "put", "all", "inspect")
"""What a run does, as deid's client names it (``--action``)."""

STAGES = ("get", "inspect", "put", "clean")
"""The stages that run batches of files."""

STAGE_ORDER = ("load", "get", "inspect", "finalize", "put", "clean")
"""Every stage in the order a run goes through them (``--status`` rows)."""

_PLANS = {"get": ("get", "finalize"), "inspect": ("inspect", "finalize"),
          "all": ("get", "finalize", "put"), "put": ("put",)}


def stages_of(action: str, *, clean_pixels: bool = False, finalize: bool = True,
              ids: bool = False) -> tuple[str, ...]:
    """The stages a run of ``action`` goes through, in order (none for an unknown action).

    The one statement of a run's plan: the tasks, the progress bar and ``--status`` read it.
    With ``clean_pixels`` put is followed by clean; ``finalize=False`` leaves out the stage
    that has no files of its own; ``ids`` (a put run given ``--ids``) puts first the ``load``
    of the ids file, whose counts are items, not files.
    """
    plan = _PLANS.get(action, ())
    if clean_pixels and "put" in plan:
        plan += ("clean",)
    if ids and action == "put":
        plan = ("load",) + plan
    return plan if finalize else tuple(s for s in plan if s != "finalize")


def first_stage(action: str) -> str:
    """The stage a run of ``action`` starts with: get for get/all, else the action itself."""
    plan = stages_of(action)
    return plan[0] if plan else action


def final_stage(clean_pixels: bool) -> str:
    """Every put batch also commits a clean batch (empty when it had nothing to clean), so
    with --clean-pixels the clean stage completing means the whole run is done."""
    return "clean" if clean_pixels else "put"
