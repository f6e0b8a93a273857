"""The parsed form of a recipe: frozen values that every worker can share.

A recipe is data, parsed once per process; the engine (selectors, actions, filters) reads it
and never changes it. Each entry keeps the file and line it came from, so any error raised
later can still point at the recipe line that caused it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ACTIONS", "Action", "Coordinates", "Label", "FilterGroup", "Recipe"]

ACTIONS = ("ADD", "BLANK", "JITTER", "KEEP", "REPLACE", "REMOVE")
"""The %header actions, in deid's spelling (upper case only)."""


@dataclass(frozen=True)
class Action:
    """One line ``ACTION FIELD [VALUE]`` of %header, or ``FIELD``/``SPLIT`` of %values/%fields."""

    action: str
    field: str
    value: str | None = None
    path: str | None = None
    line: int = 0

    @property
    def where(self) -> str:
        return f"{self.path or '<recipe>'}:{self.line}"


@dataclass(frozen=True)
class Coordinates:
    """A box of a %filter label: ``keep`` is True for keepcoordinates (mask 1), else scrub (0).

    ``spec`` is ``"x0,y0,x1,y1"``, ``"all"`` or ``"from:<SequenceKeyword>"`` (ctp forms are
    converted to x0,y0,x1,y1 by the parser).
    """

    keep: bool
    spec: str
    line: int = 0


@dataclass(frozen=True)
class Label:
    """A LABEL of a %filter group: criteria lines (AND-ed) and the boxes to scrub or keep."""

    name: str
    criteria: tuple[tuple[str, int], ...] = ()  # (criteria line text, line number)
    coordinates: tuple[Coordinates, ...] = ()
    path: str | None = None
    line: int = 0
    text: str = ""  # deid's stored form of the LABEL line (reason of criteria-less labels)


@dataclass(frozen=True)
class FilterGroup:
    """A named %filter section (whitelist, graylist, blacklist, ...); order is file order."""

    name: str
    labels: tuple[Label, ...] = ()


@dataclass(frozen=True)
class Recipe:
    """A whole (possibly merged) recipe.

    ``cache`` holds what the engine compiles from the recipe (selectors, filter criteria), so
    the work is done once per recipe and process, and dies with the recipe: nothing grows with
    the number of files.
    """

    header: tuple[Action, ...] = ()
    format: str = "dicom"
    filters: tuple[FilterGroup, ...] = ()
    values: Mapping[str, tuple[Action, ...]] = field(default_factory=dict)
    fields: Mapping[str, tuple[Action, ...]] = field(default_factory=dict)
    labels: tuple[Action, ...] = ()
    sources: tuple[str, ...] = ()  # paths, or "<text>" for a recipe given as a string
    sha256: str = ""  # of the source texts in merge order; names the recipe in provenance
    cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False, hash=False)

    @property
    def name(self) -> str:
        """A short human name: the file names of the sources, joined by '+'."""
        import os

        return "+".join(os.path.basename(s) for s in self.sources) or "<empty>"
