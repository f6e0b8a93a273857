"""%filter evaluation: a dataset's header -> inspect verdict (group, reason, coordinates).

deid's burned-in-pixel triage reads only the header, so this works on datasets read with
``stop_before_pixels=True`` and never touches PixelData. Semantics follow deid 0.4.13 (spec
Part B §2.10): criteria words contains/notcontains/equals/notequals/missing/present/empty on a
top-level keyword or ``0xGGGGEEEE`` tag; ``+``/``||`` inside a line fold strictly left to right;
the lines of a LABEL are AND-ed (a line's leading operator is ignored); a LABEL with
coordinates and no criteria is always true; every label of every group is evaluated and
``flagged`` is true when any label is (a whitelist hit too). Reason strings are built the way
deid builds them, so reports compare one to one.

Where deid is wrong in a way that changes a verdict, we do what the recipe says instead:

- deid keeps the values of a line in a list of their own, so in ``missing A || contains B x``
  the ``x`` is paired with ``missing`` and ``contains`` searches for "none"; here each
  criterion keeps its own value (also in the reason text).
- for a ``0x`` field deid compares against the text of the whole element (tag, name, VR and
  quoted value), so ``equals 0x00080060 us`` can never match; here a tag reads its value, as a
  keyword does.
- deid writes ``from:`` coordinates back into the recipe, so every later file gets the first
  file's regions; here they are read from each dataset.
- deid skips criteria lines it cannot read (with a warning) or exits the process; here they
  raise :class:`RecipeError` at load, naming the line.

The recipe is compiled once (cached in ``recipe.cache["filters"]``); evaluation keeps no state
and patches nothing onto pydicom, so threads may share a recipe.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from ..errors import RecipeError
from .model import Label, Recipe
from .patterns import Pattern, PatternError, compile_pattern

__all__ = ["CRITERIA", "compile_filters", "inspect_dataset", "region_coordinates"]

log = logging.getLogger(__name__)

CRITERIA = ("contains", "notcontains", "equals", "notequals", "missing", "present", "empty")
"""Criterion words of a %filter line, as deid spells them (matched case-insensitively)."""

_VALUE_CRITERIA = frozenset({"contains", "notcontains", "equals", "notequals"})
_REGION_KEYWORDS = (
    "RegionLocationMinX0",
    "RegionLocationMinY0",
    "RegionLocationMaxX1",
    "RegionLocationMaxY1",
)
_OPERATOR_WORDS = {"+": "and", "||": "or"}
_CACHE_KEY = "filters"


# --- compiled form ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Criterion:
    """One ``<word> <field> [<value>]`` test.

    ``tag`` is None for a keyword pydicom does not know: such a field is never present (deid
    reads it through ``getattr`` and gets nothing), so ``missing`` is true for it.
    """

    word: str
    field: str
    tag: int | None
    value: str  # as written (reason text); "" for missing/present/empty
    term: str  # lower-cased, stripped: what equals compares against
    pattern: Pattern | None  # contains/notcontains; runs in bounded time (patterns.py)

    def test(self, ds: Dataset) -> bool:
        value = _read(ds, self.tag)
        word = self.word
        if word == "missing":
            return value is None
        if word == "present":
            return value is not None
        if word == "empty":
            return _present(ds, self.tag) and not value
        if word in ("contains", "notcontains"):
            found = value is not None and self.pattern is not None and (
                self.pattern.search(str(value).lower().strip())
            )
            return found if word == "contains" else not found
        equal = value is not None and str(value).lower().strip() == self.term
        return equal if word == "equals" else not equal


@dataclass(frozen=True)
class CriteriaLine:
    """A criteria line: tests joined by inner operators ("and"/"or"), folded left to right.

    ``lead`` is the operator written at the start of the line; it does not change the result
    (lines are AND-ed) but deid puts the last line's one at the front of the reason.
    """

    criteria: tuple[Criterion, ...]
    operators: tuple[str, ...]
    lead: str

    def test(self, ds: Dataset) -> bool:
        result = self.criteria[0].test(ds)
        for op, crit in zip(self.operators, self.criteria[1:]):
            # No short cut: deid evaluates every test; they are pure, so only speed differs.
            value = crit.test(ds)
            result = (result and value) if op == "and" else (result or value)
        return result


@dataclass(frozen=True)
class CompiledLabel:
    """A LABEL ready to evaluate; ``reason`` depends only on the recipe, so it is built once."""

    group: str
    label: Label
    lines: tuple[CriteriaLine, ...]
    coordinates: tuple[tuple[int, str], ...]  # (mask, spec): 0 scrub, 1 keep
    reason: str

    def test(self, ds: Dataset) -> bool:
        if not self.lines:
            return bool(self.coordinates)
        return all(line.test(ds) for line in self.lines)


@dataclass
class CompiledFilters:
    """Every label of every group, in recipe order."""

    labels: tuple[CompiledLabel, ...]
    warned_empty: bool = False


# --- compiling -------------------------------------------------------------------------------


def compile_filters(recipe: Recipe) -> CompiledFilters:
    """Parse every criteria line of the recipe's %filter groups, once per recipe.

    Called by the loader right after parsing, so a bad line fails the load (with its file and
    line) rather than the first file inspected. Raises RecipeError.
    """
    cached = recipe.cache.get(_CACHE_KEY)
    if isinstance(cached, CompiledFilters):
        return cached
    labels: list[CompiledLabel] = []
    # deid takes the operator in front of a criteria-less label's reason from the last
    # criteria line it evaluated before (a variable left over from its loop); it is the same
    # for every dataset, so it is fixed here.
    last_lead = ""
    for group in recipe.filters:
        for label in group.labels:
            lines = tuple(
                line
                for text, line_no in label.criteria
                if (line := _compile_line(text, label, line_no)) is not None
            )
            coords = tuple((1 if c.keep else 0, c.spec) for c in label.coordinates)
            if lines:
                last_lead = lines[-1].lead
                reason = f"{lines[-1].lead} " + " ".join(
                    _describe(line) for line in lines
                )
            else:
                reason = f"{last_lead} {_label_text(label)}"
            labels.append(CompiledLabel(group.name, label, lines, coords, reason))
    compiled = CompiledFilters(tuple(labels))
    winner: CompiledFilters = recipe.cache.setdefault(_CACHE_KEY, compiled)
    return winner


def _label_text(label: Label) -> str:
    """deid's stored LABEL text: the line minus a lower-case 'label', so it keeps 'LABEL '."""
    return label.text or f"LABEL {label.name}".strip()


def _describe(line: CriteriaLine) -> str:
    parts = []
    for i, crit in enumerate(line.criteria):
        piece = f"{crit.field} {crit.word} {crit.value}"
        if i < len(line.operators):
            piece = f"{piece} {line.operators[i]}"
        parts.append(piece)
    return " ".join(parts)


def _compile_line(text: str, label: Label, line_no: int) -> CriteriaLine | None:
    def error(message: str) -> RecipeError:
        return RecipeError(message, path=label.path, line=line_no)

    body = text.strip()
    lead = ""
    if body.startswith("+"):
        lead, body = "and", body[1:].strip()
    elif body.startswith("||"):
        lead, body = "or", body[2:].strip()
    if not body or body.startswith("#"):
        return None  # deid skips a comment (or nothing) after an operator
    if not body.lower().startswith(CRITERIA):
        word = body.split(None, 1)[0]
        raise error(f"unknown filter criterion {word!r} (expected one of {', '.join(CRITERIA)})")

    criteria: list[Criterion] = []
    operators: list[str] = []
    pending: str | None = body
    while pending is not None:
        piece, pending = _split_first_operator(pending.strip(), operators)
        criteria.append(_compile_criterion(piece, error, (label.path, line_no)))
    return CriteriaLine(tuple(criteria), tuple(operators), lead)


def _split_first_operator(piece: str, operators: list[str]) -> tuple[str, str | None]:
    """Split at the first ``+`` or ``||``, as deid does, if what follows names a criterion.

    Otherwise the operator is part of the value (``contains Manufacturer ge+``) and the piece
    is not split further.
    """
    plus, bar = piece.find("+"), piece.find("||")
    if plus < 0 and bar < 0:
        return piece, None
    op = "+" if bar < 0 or (0 <= plus <= bar) else "||"
    left, rest = piece.split(op, 1)
    if any(word in rest for word in CRITERIA):
        operators.append(_OPERATOR_WORDS[op])
        return left, rest
    return piece, None


def _compile_criterion(piece: str, error: Callable[[str], RecipeError],
                       where: tuple[str | None, int | None] = (None, None)) -> Criterion:
    parts = piece.strip().split(None, 1)
    word = parts[0].lower()
    if word not in CRITERIA:
        raise error(f"unknown filter criterion {parts[0]!r} (expected one of {', '.join(CRITERIA)})")
    rest = parts[1].strip() if len(parts) > 1 else ""
    if not rest:
        raise error(f"{word} needs a field")
    value = ""
    if word in _VALUE_CRITERIA:
        field_value = rest.split(None, 1)
        if len(field_value) < 2:
            raise error(f"{word} needs a field and a value")
        field, value = field_value[0], field_value[1].strip()
    else:
        field = rest
    tag = _field_tag(field, error)
    term = value.lower().strip()
    pattern = None
    if word in ("contains", "notcontains"):
        try:
            pattern = compile_pattern(term, where=where)
        except re.error as exc:
            raise error(f"{word} {field}: bad regular expression ({exc})") from None
        except PatternError as exc:
            raise error(f"{word} {field}: regular expression refused: {exc}") from None
    return Criterion(word, field, tag, value, term, pattern)


def _field_tag(field: str, error: Callable[[str], RecipeError]) -> int | None:
    if "0x" in field:
        try:
            tag = int(field, 0)
        except ValueError:
            raise error(f"{field!r} is not a tag (expected 0xGGGGEEEE)") from None
        if not 0 <= tag <= 0xFFFFFFFF:
            raise error(f"{field!r} is not a tag (expected 0xGGGGEEEE)")
        return tag
    keyword_tag = tag_for_keyword(field)
    if keyword_tag is None:
        # deid's shipped recipe has such typos ("Manfacturer"); it must load, and deid reads
        # them as absent, so we do the same and say so.
        log.warning("%%filter field %r is not a DICOM keyword; it is never present", field)
    return keyword_tag


# --- evaluating ------------------------------------------------------------------------------


def _read(ds: Dataset, tag: int | None) -> Any:
    """The value deid compares: None when the element is absent (or has no value)."""
    if tag is None:
        return None
    elem = ds.get(tag)
    return None if elem is None else elem.value


def _present(ds: Dataset, tag: int | None) -> bool:
    return tag is not None and tag in ds


def region_coordinates(ds: Dataset, keyword: str) -> list[str]:
    """``x0,y0,x1,y1`` of each item of a region sequence (``from:<keyword>``), as deid reads
    them: items lacking one of the four RegionLocation elements are left out."""
    tag = tag_for_keyword(keyword)
    if tag is None or tag not in ds:
        return []
    seq = ds[tag].value
    if not isinstance(seq, Sequence):
        return []
    boxes = []
    for item in seq:
        if all(k in item for k in _REGION_KEYWORDS):
            boxes.append(",".join(str(getattr(item, k)) for k in _REGION_KEYWORDS))
    return boxes


def _result_coordinates(ds: Dataset, label: CompiledLabel) -> list[list[Any]]:
    out: list[list[Any]] = []
    for mask, spec in label.coordinates:
        if "from:" in spec:
            keyword = spec.replace("from:", "", 1).strip()
            out.append([mask, region_coordinates(ds, keyword)])
        else:
            out.append([mask, spec])
    return out


def inspect_dataset(ds: Dataset, recipe: Recipe) -> dict[str, Any]:
    """Evaluate every %filter label on a header: ``{"flagged", "results"}`` as deid's
    has_burned_pixels gives for one file.

    Each result is ``{"group", "reason", "coordinates": [[mask, "x0,y0,x1,y1" | "all" |
    [boxes from from:]], ...]}``; mask 0 scrubs, 1 keeps. A recipe without %filter flags
    nothing.
    """
    compiled = compile_filters(recipe)
    if not recipe.filters:
        if not compiled.warned_empty:
            compiled.warned_empty = True
            log.warning("recipe %s has no %%filter; inspect flags nothing", recipe.name)
        else:
            log.debug("recipe %s has no %%filter; not flagged", recipe.name)
        return {"flagged": False, "results": []}
    results = []
    for label in compiled.labels:
        if label.test(ds):
            results.append(
                {
                    "group": label.group,
                    "reason": label.reason,
                    "coordinates": _result_coordinates(ds, label),
                }
            )
    return {"flagged": bool(results), "results": results}
