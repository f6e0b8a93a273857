"""The PS3.15 Annex E options a user picks: their names, how a profile is spelled, and which
combinations the standard leaves contradictory.

A profile is the Basic Application Level Confidentiality Profile plus any of the ten options
that have a column in Table E.1-1, spelled ``basic[,OPTION...]`` with each option's name in
kebab case (``basic,retain-uids,clean-descriptors``). Each option's column gives, for the rows
it names, K (keep) or C (clean) in place of the Basic Profile's action.

Two options contradict each other where their columns give different actions for the same
attribute (Retain Longitudinal Temporal Information with Full Dates keeps a date, with
Modified Dates shifts it). The standard gives no precedence between options, so such a
profile is refused (:func:`check_conflicts`), naming the attributes, before anything runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..errors import RecipeError
from .standard import Row, cid_7050, e1_1

__all__ = [
    "BASIC",
    "BASIC_CODE",
    "OPTIONS",
    "Option",
    "ProfileError",
    "check_conflicts",
    "conflicts",
    "effective_code",
    "parse_profile",
    "profile_name",
]

BASIC = "basic"
"""The profile's first word: the Basic Application Level Confidentiality Profile."""

BASIC_CODE = "113100"
"""CID 7050: Basic Application Confidentiality Profile."""


@dataclass(frozen=True)
class Option:
    """One option: its kebab-case name, its column's key in ``e1_1.json`` and its CID 7050 code
    (the code's meaning, from ``cid_7050.json``, is :attr:`title`)."""

    name: str
    key: str
    code: str

    @property
    def title(self) -> str:
        return cid_7050()[self.code]


OPTIONS: dict[str, Option] = {
    o.name: o
    for o in (
        Option("retain-safe-private", "retain_safe_private", "113111"),
        Option("retain-uids", "retain_uids", "113110"),
        Option("retain-device-identity", "retain_device_identity", "113109"),
        Option("retain-institution-identity", "retain_institution_identity", "113112"),
        Option("retain-patient-characteristics", "retain_patient_characteristics", "113108"),
        Option("retain-longitudinal-full-dates", "retain_longitudinal_full_dates", "113106"),
        Option("retain-longitudinal-modified-dates", "retain_longitudinal_modified_dates", "113107"),
        Option("clean-descriptors", "clean_descriptors", "113105"),
        Option("clean-structured-content", "clean_structured_content", "113104"),
        Option("clean-graphics", "clean_graphics", "113103"),
    )
}
"""Every option with a column in Table E.1-1, in a fixed order (the order recipes and codes
are written in, whatever order the user named them)."""


class ProfileError(RecipeError):
    """A profile that cannot be used: an unknown option, or options that contradict."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "profile")


def parse_profile(spec: str | Iterable[str]) -> tuple[str, ...]:
    """``"basic,retain-uids"`` (or ``["basic", "retain-uids"]``) -> the option names, in
    :data:`OPTIONS` order, without repeats. The first word must be ``basic``: every option is
    an option of the Basic Profile. Raises :class:`ProfileError`, saying what to write."""
    words = spec.split(",") if isinstance(spec, str) else [str(w) for w in spec]
    words = [w.strip().lower() for w in words if w.strip()]
    if not words or words[0] != BASIC:
        raise ProfileError(f"must start with {BASIC!r}: write basic[,OPTION...] "
                           f"(options: {', '.join(OPTIONS)})")
    names = set()
    for word in words[1:]:
        if word == BASIC:
            continue
        if word not in OPTIONS:
            raise ProfileError(f"unknown profile option {word!r} (expected one of {', '.join(OPTIONS)})")
        names.add(word)
    chosen = tuple(n for n in OPTIONS if n in names)
    check_conflicts(chosen)
    return chosen


def profile_name(options: Sequence[str]) -> str:
    """The profile as the user spells it: ``basic,retain-uids``."""
    return ",".join((BASIC, *options))


def effective_code(row: Row, options: Sequence[str]) -> tuple[str, str | None]:
    """(action code, the option that gave it, or None for the Basic Profile's) of ``row``
    under a profile whose options do not conflict."""
    codes = row.option_codes
    for name in options:
        code = codes.get(OPTIONS[name].key)
        if code is not None:
            return code, name
    return row.basic, None


def conflicts(options: Sequence[str]) -> list[tuple[Row, dict[str, str]]]:
    """The rows for which two of ``options`` give different actions, each with every chosen
    option's action for it (option name -> code)."""
    keys = {OPTIONS[n].key: n for n in options}
    found = []
    for row in e1_1():
        given = {keys[k]: code for k, code in row.options if k in keys}
        if len(set(given.values())) > 1:
            found.append((row, given))
    return found


_NAMED = 8  # attributes named in the message; the rest are counted


def check_conflicts(options: Sequence[str]) -> None:
    """Raise :class:`ProfileError` when the options contradict for some attribute: for each
    pair of options that do, what each does and the attributes (the first few by name and
    tag, then a count)."""
    found = conflicts(options)
    if not found:
        return
    pairs: dict[tuple[tuple[str, str], tuple[str, str]], list[Row]] = {}
    for row, given in found:
        chosen = [n for n in options if n in given]
        for i, a in enumerate(chosen):
            for b in chosen[i + 1:]:
                if given[a] != given[b]:
                    pairs.setdefault(((a, given[a]), (b, given[b])), []).append(row)
    said = []
    for ((a, code_a), (b, code_b)), rows in pairs.items():
        names = ", ".join(f"{row.name} {row.tag}" for row in rows[:_NAMED])
        more = f" and {len(rows) - _NAMED} more" if len(rows) > _NAMED else ""
        said.append(f"{a} {_WORD[code_a]} and {b} {_WORD[code_b]} {len(rows)} attribute(s): "
                    f"{names}{more}")
    raise ProfileError(f"options contradict: {'; '.join(said)}. The standard gives no "
                       "precedence between options: leave one of each pair out")


_WORD = {"K": "keeps", "C": "cleans"}
