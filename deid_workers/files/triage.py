"""What ``--clean-pixels`` does with a file, from its %filter verdict: write, clean or hold back.

A pure function of the verdict (:func:`triage`); the put and clean steps act on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..recipe.pixels import has_boxes

__all__ = ["DEFAULT_QUARANTINE_GROUPS", "WHITELIST", "PixelPolicy", "Triage", "triage"]

DEFAULT_QUARANTINE_GROUPS = ("blacklist",)
"""%filter groups whose hits block a file (``--quarantine-groups``), as deid's default recipe
names the group of files it cannot clean."""

WHITELIST = "whitelist"
"""deid's group of files known to be clean: its hits alone never hold a file back."""

@dataclass(frozen=True)
class PixelPolicy:
    """How put treats pixels (``--clean-pixels``, ``--ocr``): where held-back files go, which
    groups hold a file back, and whether to clean now (the clean stage) or defer (the put
    stage). ``filters``: the recipe's %filter groups triage files (``--clean-pixels``);
    ``ocr``: the files :mod:`deid_workers.files.ocrstep` selects in that mode (``risky`` or
    ``all``) go through the ocr stage first (``--ocr``)."""

    quarantine: str
    quarantine_groups: tuple[str, ...] = DEFAULT_QUARANTINE_GROUPS
    now: bool = False
    filters: bool = True
    ocr: str | None = None


@dataclass(frozen=True)
class Triage:
    """``action`` is ``write`` (nothing flagged), ``clean`` (every hit gives boxes) or
    ``quarantine``; ``group``/``reason`` name the deciding hit (recipe text, no header value)."""

    action: str
    group: str | None = None
    reason: str | None = None


def triage(verdict: Mapping[str, Any], quarantine_groups: tuple[str, ...]
           = DEFAULT_QUARANTINE_GROUPS) -> Triage:
    """Decide a file's fate from its inspect verdict (a pure function of the verdict).

    A hit of a blocking group, or a hit that gives no box to clean, quarantines the file (the
    first such hit is named); otherwise, hits with boxes mean cleaning. Whitelist hits are
    ignored unless the whitelist is named blocking: deid's whitelist marks known-clean files.
    """
    hits = [r for r in verdict.get("results") or ()
            if r.get("group") != WHITELIST or WHITELIST in quarantine_groups]
    if not hits:
        return Triage("write")
    for r in hits:
        if r.get("group") in quarantine_groups:
            return Triage("quarantine", r.get("group"), _reason(r))
    for r in hits:
        if not has_boxes({"results": [r]}):
            return Triage("quarantine", r.get("group"), f"{_reason(r)} (no coordinates to clean)")
    first = hits[0]
    return Triage("clean", first.get("group"), _reason(first))


def _reason(result: Mapping[str, Any]) -> str:
    return f"{result.get('group')}: {' '.join(str(result.get('reason') or '').split())}"
