"""Recipe text -> :class:`Recipe`, in deid's grammar (spec Part B §2), strict where deid is lax.

deid's own loader skips what it does not understand (lower-case actions, typos, lines before
any section) and calls ``sys.exit`` on some errors. Both hide mistakes that leak PHI, so this
parser raises :class:`RecipeError` naming the file and line for anything it cannot place
(spec Part A §2). Everything deid accepts and acts on parses to the same meaning here.

Every entry keeps its path and line, so errors found later (filter criteria, values) can still
point at the recipe line that caused them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import RecipeError
from .model import ACTIONS, Action, Coordinates, FilterGroup, Label, Recipe

__all__ = [
    "parse_recipe", "merge_recipes", "split_action_line", "parse_split_options", "FORMATS", "SECTIONS",
]

FORMATS = ("dicom",)
SECTIONS = ("header", "labels", "filter", "values", "fields")
NAMED_SECTIONS = ("filter", "values", "fields")
GROUP_ACTIONS = ("FIELD", "SPLIT")
_LINE_WORDS = ACTIONS + ("LABEL",)

# A token is a run of non-space characters where quoted parts ("..." or '...') may hold spaces,
# so private-creator selectors such as (0033,"MITRA OBJECT 1.0",1E) stay one token. This
# pattern is the definition of a token; it backtracks exponentially on a quoted part holding
# many backslashes, so it only runs on lines without any (see split_action_line).
_TOKEN_RE = re.compile(r"""(?:[^\s"']+|"(?:\\.|[^"])*"|'(?:\\.|[^'])*')+""")
_QUOTES = "\"'"
_COORD_WORDS = (  # longest first: the lower-cased line is tested with startswith
    ("ctpkeepcoordinates", True, True),
    ("ctpcoordinates", False, True),
    ("keepcoordinates", True, False),
    ("coordinates", False, False),
)


def split_action_line(line: str) -> list[str]:
    """Whitespace tokens of an action line; quoted runs stay inside one token.

    Exactly ``_TOKEN_RE.findall(line)``, in time linear in the line. Without a backslash the
    pattern cannot backtrack more than once per quote, so it runs as it is. With one, a quoted
    part has many ways to read its backslashes (an escape, or a plain character), and a part
    that never closes makes the pattern try them all, about 2**n for n backslash pairs (in the
    producer, and again in every worker that loads the recipe).
    :func:`_quoted_ends` computes, once per line, where the pattern's first successful reading
    of a quoted part ends, which is all findall keeps.
    """
    if "\\" not in line:
        return _TOKEN_RE.findall(line)
    ends = {q: _quoted_ends(line, q) for q in _QUOTES if q in line}
    tokens: list[str] = []
    n = len(line)
    start = 0
    while start < n:
        pos = start
        while pos < n:
            char = line[pos]
            if char in ends:
                close = ends[char][pos + 1]
                if close < 0:
                    break  # a quote that never closes ends the token before it
                pos = close
            elif char.isspace():  # what the pattern's \s matches in a str
                break
            else:
                pos += 1
        if pos == start:
            start += 1  # no token starts here (space, or an unclosed quote): findall moves on
        else:
            tokens.append(line[start:pos])
            start = pos
    return tokens


def _quoted_ends(line: str, quote: str) -> list[int]:
    """For each position p, where the body of a ``quote``-quoted part starting at p ends
    (just after its closing quote) as ``_TOKEN_RE`` reads it, or -1 when it never closes.

    The pattern's body is ``(?:\\.|[^"])*"``, tried in that order: at a backslash (followed
    by anything but a newline) first as an escape pair, then as a plain character; at any other
    character but the quote, as a plain one; at the quote, the end. The first reading that
    succeeds is the one the backtracking engine returns, and it depends only on p, so one pass
    from the end of the line gives every answer (each position is decided once, from the two
    after it).
    """
    n = len(line)
    ends = [-1] * (n + 2)
    for p in range(n - 1, -1, -1):
        char = line[p]
        end = -1
        if char == "\\" and p + 1 < n and line[p + 1] != "\n":
            end = ends[p + 2]
        if end < 0 and char != quote:
            end = ends[p + 1]
        if end < 0 and char == quote:
            end = p + 1
        ends[p] = end
    return ends


def _strip_comment(value: str) -> str:
    """deid cuts a value at its first ``#``: ``#`` can never be part of a value."""
    return value.split("#", 1)[0]


@dataclass
class _State:
    """What the parser has built so far for one source text."""

    path: str | None
    fmt: str | None = None
    section: str | None = None
    section_name: str | None = None
    header: list[Action] = field(default_factory=list)
    labels: list[Action] = field(default_factory=list)
    values: dict[str, list[Action]] = field(default_factory=dict)
    fields: dict[str, list[Action]] = field(default_factory=dict)
    filters: dict[str, list[Label]] = field(default_factory=dict)
    label: dict[str, Any] | None = None  # the LABEL being filled: name, text, line, criteria, coordinates

    def error(self, message: str, line: int) -> RecipeError:
        return RecipeError(message, self.path, line)


def parse_recipe(text: str, path: str | None = None) -> Recipe:
    """Parse one recipe text; ``path`` only names the source in errors and provenance.

    Raises RecipeError for every line that deid would skip, misread or die on.
    """
    st = _State(path=path)
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        _parse_line(st, line, lineno)
    _close_label(st)
    if st.fmt is None:
        raise RecipeError("missing 'FORMAT dicom' line", path, None)
    return Recipe(
        header=tuple(st.header),
        format=st.fmt,
        filters=tuple(FilterGroup(name, tuple(labels)) for name, labels in st.filters.items()),
        values={k: tuple(v) for k, v in st.values.items()},
        fields={k: tuple(v) for k, v in st.fields.items()},
        labels=tuple(st.labels),
        sources=(path or "<text>",),
        sha256=_digest([text]),
    )


def _digest(texts: Iterable[str]) -> str:
    h = hashlib.sha256()
    for i, t in enumerate(texts):
        if i:
            h.update(b"\0")
        h.update(t.encode("utf-8"))
    return h.hexdigest()


def _parse_line(st: _State, line: str, lineno: int) -> None:
    upper = line.upper()
    if re.match(r"format", line, re.IGNORECASE):
        _parse_format(st, line, lineno)
        return
    if line.startswith("%"):
        _close_label(st)
        _parse_section(st, line, lineno)
        return
    if st.section == "filter":
        _parse_filter_line(st, line, lineno)
        return
    if st.section in ("values", "fields") and upper.startswith(GROUP_ACTIONS):
        _parse_group_action(st, line, lineno)
        return
    if upper.startswith(_LINE_WORDS):
        _parse_action(st, line, lineno)
        return
    word = line.split(None, 1)[0]
    if st.section in ("values", "fields"):
        raise st.error(f"%{st.section} accepts FIELD or SPLIT lines only, found {word!r}", lineno)
    raise st.error(f"unknown action {word!r} (expected one of {', '.join(ACTIONS)})", lineno)


def _parse_format(st: _State, line: str, lineno: int) -> None:
    if not line.startswith("FORMAT"):
        raise st.error("FORMAT must be written in upper case", lineno)
    fmt = re.sub(r"\s+", "", _strip_comment(line[len("FORMAT"):])).lower()
    if fmt not in FORMATS:
        raise st.error(f"{fmt!r} is not a valid format (expected: {', '.join(FORMATS)})", lineno)
    st.fmt = fmt


def _parse_section(st: _State, line: str, lineno: int) -> None:
    line = _strip_comment(line).strip()
    parts = line.split(" ")
    name = " ".join(parts[1:]).strip() or None
    section = re.sub(r"[%\s]", "", parts[0]).lower()
    if section not in SECTIONS:
        raise st.error(
            f"{section!r} is not a valid section (expected one of "
            f"{', '.join('%' + s for s in SECTIONS)})",
            lineno,
        )
    if section in NAMED_SECTIONS and name is None:
        raise st.error(f"%{section} needs a name", lineno)
    if section not in NAMED_SECTIONS and name is not None:
        raise st.error(f"%{section} takes no name", lineno)
    st.section, st.section_name = section, name
    if section == "filter":
        st.filters.setdefault(name, [])  # type: ignore[arg-type]
    elif section == "values":
        st.values.setdefault(name, [])  # type: ignore[arg-type]
    elif section == "fields":
        st.fields.setdefault(name, [])  # type: ignore[arg-type]


def _check_selector(st: _State, selector: str, lineno: int) -> None:
    from .selectors import compile_selector

    try:
        compile_selector(selector)
    except ValueError as exc:
        raise st.error(f"bad selector: {exc}", lineno) from None


def _check_value(st: _State, action: str, value: str, lineno: int) -> None:
    """Reject values that can only fail at run time (unknown deid_func, bad jitter days)."""
    from .funcs import validate_deid_func

    if value.startswith("deid_func:"):
        body = value[len("deid_func:"):]
        name, _, extras = body.partition(" ")
        try:
            validate_deid_func(name, extras)
        except ValueError as exc:
            raise st.error(str(exc), lineno) from None
    elif action == "JITTER" and not value.startswith(("var:", "func:")):
        try:
            int(value.strip())
        except ValueError:
            raise st.error("JITTER needs a whole number of days", lineno) from None


def _check_add_field(st: _State, fld: str, lineno: int) -> None:
    from .selectors import add_target

    try:
        add_target(fld)
    except ValueError as exc:
        raise st.error(str(exc), lineno) from None


def _parse_action(st: _State, line: str, lineno: int) -> None:
    parts = split_action_line(line)
    word = parts.pop(0)
    if word not in _LINE_WORDS:
        if word.upper() in _LINE_WORDS:
            raise st.error(f"action {word!r} must be written in upper case", lineno)
        raise st.error(f"unknown action {word!r} (expected one of {', '.join(ACTIONS)})", lineno)
    if st.section is None:
        raise st.error(f"{word} before any section (add %header above it)", lineno)
    if word == "LABEL":
        # deid ignores LABEL outside %filter; it never changes a file, so neither do we.
        return
    if st.section in ("values", "fields"):
        raise st.error(f"%{st.section} accepts FIELD or SPLIT lines only, found {word!r}", lineno)
    if not parts:
        raise st.error(f"{word} needs a field", lineno)
    fld = parts.pop(0)
    value: str | None = None
    if parts:
        value = _strip_comment(" ".join(parts))
        if not value.strip():
            value = None
    if word in ("ADD", "REPLACE", "JITTER") and value is None:
        raise st.error(f"{word} needs a value", lineno)
    if word in ("BLANK", "KEEP"):
        value = None  # deid ignores trailing tokens of these
    if st.section == "header":
        if word == "ADD":
            _check_add_field(st, fld, lineno)
        else:
            _check_selector(st, fld, lineno)
        if value is not None:
            _check_value(st, word, value, lineno)
    action = Action(word, fld, value, st.path, lineno)
    (st.header if st.section == "header" else st.labels).append(action)


def _parse_group_action(st: _State, line: str, lineno: int) -> None:
    parts = split_action_line(line)
    word = parts.pop(0)
    if word not in GROUP_ACTIONS:
        raise st.error(f"unknown {st.section} rule {word!r} (expected FIELD or SPLIT)", lineno)
    if word == "SPLIT" and st.section == "fields":
        raise st.error("%fields only supports FIELD", lineno)
    if not parts:
        raise st.error(f"{word} needs a field", lineno)
    fld = parts.pop(0)
    _check_selector(st, fld, lineno)
    value = _strip_comment(" ".join(parts)) if parts else None
    if st.section == "fields" or not (value and value.strip()):
        value = None
    if word == "SPLIT" and value is not None:
        try:
            parse_split_options(value)
        except ValueError as exc:
            raise st.error(str(exc), lineno) from None
    target = st.values if st.section == "values" else st.fields
    target[st.section_name].append(Action(word, fld, value, st.path, lineno))  # type: ignore[index]


def parse_split_options(value: str | None) -> tuple[str, int]:
    """``by=<sep>;minlength=<n>`` -> (sep, n); defaults " " and 1, as deid."""
    sep, minlength = " ", 1
    if not value:
        return sep, minlength
    for param in value.split(";"):
        if not param.strip():
            continue
        if "=" not in param:
            raise ValueError(f"SPLIT option {param.strip()!r} is not name=value")
        name, val = (x.strip() for x in param.split("=", 1))
        if name == "minlength":
            try:
                minlength = int(val)
            except ValueError:
                raise ValueError("SPLIT minlength must be a whole number") from None
        elif name == "by":
            sep = val.strip("'").strip('"')
        else:
            raise ValueError(f"unknown SPLIT option {name!r} (expected by= or minlength=)")
    return sep, minlength


# --- %filter --------------------------------------------------------------------------------


def _parse_filter_line(st: _State, line: str, lineno: int) -> None:
    if line.upper().startswith("LABEL"):
        _close_label(st)
        # deid accepts LABEL in any case here (only actions must be upper case).
        text = line.replace("label", "", 1).split("#")[0].strip()
        name = _strip_comment(line[len("LABEL"):]).strip()
        st.label = {"name": name, "text": text, "line": lineno, "criteria": [], "coords": []}
        return
    if st.label is None:
        raise st.error("%filter lines must follow a LABEL", lineno)
    low = line.lower()
    for word, keep, ctp in _COORD_WORDS:
        if low.startswith(word):
            spec = line[len(word):].strip()
            st.label["coords"].append(Coordinates(keep, _coordinates(st, spec, ctp, lineno), lineno))
            return
    st.label["criteria"].append((line, lineno))


def _coordinates(st: _State, spec: str, ctp: bool, lineno: int) -> str:
    if spec == "all":
        return spec
    if spec.startswith("from:") and not ctp:
        if not spec[5:].strip():
            raise st.error("coordinates from: needs a sequence keyword", lineno)
        return spec
    try:
        nums = [int(x) for x in spec.replace(" ", "").split(",") if x]
    except ValueError:
        raise st.error("coordinates must be four integers x0,y0,x1,y1, 'all' or 'from:<Sequence>'", lineno) from None
    if len(nums) != 4:
        raise st.error(f"coordinates need 4 numbers, found {len(nums)}", lineno)
    if ctp:
        x, y, w, h = nums
        nums = [x, y, x + w, y + h]
    return ",".join(str(n) for n in nums)


def _close_label(st: _State) -> None:
    if st.label is None:
        return
    lab = st.label
    st.filters[st.section_name].append(  # type: ignore[index]
        Label(
            name=lab["name"],
            criteria=tuple(lab["criteria"]),
            coordinates=tuple(lab["coords"]),
            path=st.path,
            line=lab["line"],
            text=lab["text"],
        )
    )
    st.label = None


# --- merging --------------------------------------------------------------------------------


def merge_recipes(recipes: Sequence[Recipe], texts: Sequence[str] | None = None) -> Recipe:
    """Merge in list order: %header concatenated, a same-named %filter group replaced (in place)
    by the later one, later %values/%fields lists win by name, %labels concatenated.

    deid drops the later %values/%fields and mis-replaces filter groups; we do what it meant.
    """
    if not recipes:
        raise RecipeError("no recipe to load")
    if len(recipes) == 1:
        return recipes[0]
    fmt = recipes[0].format
    header: list[Action] = []
    labels: list[Action] = []
    groups: dict[str, FilterGroup] = {}
    values: dict[str, tuple[Action, ...]] = {}
    fields: dict[str, tuple[Action, ...]] = {}
    sources: list[str] = []
    for r in recipes:
        if r.format != fmt:
            raise RecipeError(f"cannot merge format {r.format!r} with {fmt!r}", r.sources[0] if r.sources else None)
        header.extend(r.header)
        labels.extend(r.labels)
        for g in r.filters:
            groups[g.name] = g  # dict keeps the first position, takes the later value
        values.update(r.values)
        fields.update(r.fields)
        sources.extend(r.sources)
    sha = _digest(texts) if texts is not None else _digest(r.sha256 for r in recipes)
    return Recipe(
        header=tuple(header),
        format=fmt,
        filters=tuple(groups.values()),
        values=values,
        fields=fields,
        labels=tuple(labels),
        sources=tuple(sources),
        sha256=sha,
    )
