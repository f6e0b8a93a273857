"""Boxes that continue one line of text, and which way a box's text runs.

Detectors often cut one line in pieces ("MRN" | "04119662", "08/16/1980" | ":0g"), and a piece
alone may not look like PHI. A piece that continues a PHI box's line is PHI too: same
orientation, overlapping across the line by at least half the thinner box, and separated along
it by at most :data:`LINE_GAP` line heights. Applied until nothing changes (chains of pieces).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

__all__ = ["LINE_GAP", "HORIZONTAL", "VERTICAL", "EITHER", "orientation", "same_line", "spread"]

LINE_GAP = 1.5
"""Largest gap between two pieces of one line, in line heights."""

HORIZONTAL, VERTICAL, EITHER = "h", "v", "?"


class _Box(Protocol):
    @property
    def x0(self) -> int: ...
    @property
    def y0(self) -> int: ...
    @property
    def x1(self) -> int: ...
    @property
    def y1(self) -> int: ...


def orientation(b: _Box) -> str:
    """Which way the text of a box runs: clearly wide, clearly tall, or too short to tell."""
    w, h = b.x1 - b.x0, b.y1 - b.y0
    if w >= 1.5 * h:
        return HORIZONTAL
    if h >= 1.5 * w:
        return VERTICAL
    return EITHER


def _overlap(a0: int, a1: int, b0: int, b1: int) -> int:
    return min(a1, b1) - max(a0, b0)


def same_line(a: _Box, b: _Box) -> bool:
    """``b`` continues the line of ``a`` (in either direction)."""
    oa, ob = orientation(a), orientation(b)
    for way in (HORIZONTAL, VERTICAL):
        if oa not in (way, EITHER) or ob not in (way, EITHER):
            continue
        if way == HORIZONTAL:
            ta, tb = a.y1 - a.y0, b.y1 - b.y0
            across = _overlap(a.y0, a.y1, b.y0, b.y1)
            gap = max(b.x0 - a.x1, a.x0 - b.x1)
        else:
            ta, tb = a.x1 - a.x0, b.x1 - b.x0
            across = _overlap(a.x0, a.x1, b.x0, b.x1)
            gap = max(b.y0 - a.y1, a.y0 - b.y1)
        if across >= 0.5 * min(ta, tb) and gap <= LINE_GAP * max(ta, tb):
            return True
    return False


def spread(boxes: Sequence[_Box], flagged: Sequence[bool], groups: Sequence[object]) -> list[bool]:
    """``flagged`` grown to every box on a line with a flagged box of the same group (source
    and frame); a box whose group is None is left as it is. Returns a new list."""
    out = list(flagged)
    changed = True
    while changed:
        changed = False
        for i, bi in enumerate(boxes):
            if not out[i]:
                continue
            for j, bj in enumerate(boxes):
                if not out[j] and groups[j] is not None and groups[i] == groups[j] and same_line(bi, bj):
                    out[j] = True
                    changed = True
    return out
