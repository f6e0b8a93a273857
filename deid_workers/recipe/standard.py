"""The DICOM standard's de-identification tables, as shipped data (``data/standard/``).

PS3.15 Table E.1-1 (the Basic Profile column and every option column), Table E.3.10-1 (the
private attributes the Retain Safe Private Option keeps) and PS3.16 CID 7050 (the method
codes), edition :data:`EDITION`. Everything deid-workers does with the Annex E profiles is
generated from these files, so they are the one source of truth: the default recipe, the
option recipes, the conformance pass's list of table attributes, the provenance codes and
the coverage check.

Each file is checked when loaded: its ``edition`` must be :data:`EDITION` (a new edition is a
deliberate change, made here) and its ``rows`` must hash to its ``content_sha256``. The
files are read once per process; nothing here reads anything outside the package.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

__all__ = [
    "EDITION",
    "ACKNOWLEDGEMENT",
    "Row",
    "SafePrivate",
    "StandardError",
    "action_codes",
    "cid_7050",
    "e1_1",
    "safe_private",
    "safe_private_keys",
    "table",
]

EDITION = "2026d"
"""The edition of the standard the shipped tables (and every recipe generated from them)
come from. Checked against each file's ``edition`` field when it is loaded."""

ACKNOWLEDGEMENT = f"DICOM PS3.15 {EDITION}, © NEMA"

_SCHEMA = "pymedphys-deid-table/1"


class StandardError(ValueError):
    """A shipped table that is not what this code was written for (edition, integrity)."""


def table(name: str) -> dict[str, Any]:
    """One shipped table (``e1_1``, ``e1_1a``, ``e3_10_1``, ``cid_7050``), checked."""
    return _table(name)


@lru_cache(maxsize=None)
def _table(name: str) -> dict[str, Any]:
    text = (resources.files("deid_workers.recipe") / "data" / "standard" / f"{name}.json").read_text(
        encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    if data.get("schema") != _SCHEMA:
        raise StandardError(f"{name}.json: schema {data.get('schema')!r}, expected {_SCHEMA!r}")
    if data.get("edition") != EDITION:
        raise StandardError(f"{name}.json: edition {data.get('edition')!r}, expected {EDITION!r} "
                            "(a new edition is a deliberate change: see data/standard/README.md)")
    canonical = json.dumps(data["rows"], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if hashlib.sha256(canonical.encode("utf-8")).hexdigest() != data.get("content_sha256"):
        raise StandardError(f"{name}.json: rows do not match content_sha256 (file altered?)")
    return data


@dataclass(frozen=True)
class Row:
    """One attribute row of Table E.1-1.

    ``tag`` is the table's text: ``(gggg,eeee)`` in upper-case hex, ``x`` for a wildcard digit
    of a repeating group (``(50xx,xxxx)``, ``(60xx,3000)``), or ``(gggg,eeee)`` for the one row
    of private attributes (the table's text there is longer). ``options`` maps an option key
    (``retain_uids``...) to its action code, ``K`` or ``C``, for the options whose column
    names this row.
    """

    tag: str
    name: str
    basic: str
    options: tuple[tuple[str, str], ...]
    retired: bool
    in_standard_iod: bool

    @property
    def option_codes(self) -> dict[str, str]:
        return dict(self.options)

    @property
    def private(self) -> bool:
        """The "Private Attributes" row: every element of an odd group."""
        return self.tag == PRIVATE_TAG

    @property
    def tag_int(self) -> int | None:
        """``(0010,0010)`` -> 0x00100010; None for a wildcard row (masks, private)."""
        digits = self.tag[1:5] + self.tag[6:10]
        if self.private or "x" in digits:
            return None
        return int(digits, 16)


PRIVATE_TAG = "(gggg,eeee)"
"""How :class:`Row` writes the private attributes' row, whose text in the table is
"(gggg,eeee) where gggg is odd"."""


@lru_cache(maxsize=1)
def e1_1() -> tuple[Row, ...]:
    """The rows of Table E.1-1, in the table's order."""
    codes = action_codes()
    rows = []
    for raw in table("e1_1")["rows"]:
        tag = str(raw["tag"])
        if tag.startswith(PRIVATE_TAG) and tag != PRIVATE_TAG:
            tag = PRIVATE_TAG
        row = Row(tag, str(raw["name"]), str(raw["basic_profile"]),
                  tuple(sorted((str(k), str(v)) for k, v in raw["options"].items())),
                  bool(raw["retired"]), bool(raw["in_standard_iod"]))
        for code in (row.basic, *row.option_codes.values()):
            if code not in codes:
                raise StandardError(f"e1_1.json: {row.tag} {row.name}: code {code!r} is not in E.1-1a")
        rows.append(row)
    return tuple(rows)


@lru_cache(maxsize=1)
def action_codes() -> dict[str, str]:
    """Table E.1-1a: action code -> the standard's definition."""
    return {str(r["code"]): str(r["description"]) for r in table("e1_1a")["rows"]}


@lru_cache(maxsize=1)
def cid_7050() -> dict[str, str]:
    """PS3.16 CID 7050: code value (scheme DCM) -> code meaning."""
    out = {}
    for r in table("cid_7050")["rows"]:
        if r["scheme_designator"] != "DCM":
            raise StandardError(f"cid_7050.json: scheme {r['scheme_designator']!r}, expected 'DCM'")
        out[str(r["code_value"])] = str(r["code_meaning"])
    return out


@dataclass(frozen=True)
class SafePrivate:
    """One row of Table E.3.10-1: a private element that is safe to keep, named by its group,
    the low byte of its element (the high byte is the block its creator reserved, ``xx``, which
    differs from file to file) and its private creator."""

    group: int
    element: int
    creator: str
    vr: str
    meaning: str


@lru_cache(maxsize=1)
def safe_private() -> tuple[SafePrivate, ...]:
    """The rows of Table E.3.10-1, in the table's order."""
    rows = []
    for raw in table("e3_10_1")["rows"]:
        tag = str(raw["tag"]).lower()
        if len(tag) != 11 or tag[6:8] != "xx":
            raise StandardError(f"e3_10_1.json: tag {raw['tag']!r} is not (gggg,xxee)")
        rows.append(SafePrivate(int(tag[1:5], 16), int(tag[8:10], 16), str(raw["private_creator"]),
                                str(raw["vr"]), str(raw["meaning"])))
    return tuple(rows)


@lru_cache(maxsize=1)
def safe_private_keys() -> frozenset[tuple[int, str, int]]:
    """(group, private creator, element low byte) of every safe private element: what a
    private element of a file is matched by, wherever its creator's block lands."""
    return frozenset((r.group, r.creator, r.element) for r in safe_private())
