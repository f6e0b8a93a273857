#!/usr/bin/env python3
"""Generate the shipped attribute Type table (``deid_workers/recipe/data/iod_types.json``)
from the PS3.3 tables that the registry package ``dicom-standard`` 0.1.0 carries as JSON.

Why: the conformance pass after a recipe (``deid_workers/recipe/conformance.py``) must know,
for the IOD of a file's SOP Class, which attributes must be present (Type 2) or must hold a
value (Type 1) at each nesting level. PS3.3 gives that per module and per macro; the package
gives it as about 60 MB of JSON. This script keeps only what the pass reads, so the project
ships a few hundred kilobytes and never reads ``dicom-standard`` at run time:

- ``sop_classes``: SOP Class UID -> IOD id (``sops.json``, ``ciods.json``);
- ``iods``: IOD id -> its module ids, and the functional group macros of an enhanced
  multi-frame IOD (``ciod_to_modules.json``, ``ciod_to_fg_macros.json``);
- ``modules`` and ``macros``: a tree per module or functional group macro, tag (8 hex digits,
  ``xx`` for a repeating group) -> Type, or [Type, {child tag -> ...}] for a sequence whose
  items hold attributes of Type 1, 1C, 2 or 2C (``module_to_attributes.json``,
  ``macro_to_attributes.json``). Type 3 attributes with no such descendants are left out:
  the pass treats an attribute the table does not list as optional.

Where the standard lists one path twice (alternative macros of a content item, say), the
stronger Type is kept (1 > 1C > 2 > 2C > 3). Rows without a Type (normalised IODs' modules
give none) count as Type 3.

    python scripts/generate_type_table.py            # rewrite iod_types.json
    python scripts/generate_type_table.py --check    # exit 1 if iod_types.json is stale

Needs ``dicom-standard==0.1.0`` (the ``test`` extra pins it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TABLE_PATH = ROOT / "deid_workers" / "recipe" / "data" / "iod_types.json"

PACKAGE = "dicom-standard"
VERSION = "0.1.0"
EDITION = "2020"
"""The edition of PS3.3 that dicom-standard 0.1.0 parsed (its 2020 release; the tables' links
name ``current``, which was then the 2020 edition)."""

SOURCES = ("sops.json", "ciods.json", "ciod_to_modules.json", "ciod_to_fg_macros.json",
           "module_to_attributes.json", "macro_to_attributes.json")

STRENGTH = {"1": 5, "1C": 4, "2": 3, "2C": 2, "3": 1}
"""Order in which two Types of one path are merged: the stronger requirement wins."""

Tree = dict[str, Any]  # tag -> Type | [Type, Tree]


def source_dir() -> Path:
    """The folder of dicom-standard's JSON files (``<prefix>/standard``), from its installed
    file list; SystemExit with what to do when the package or its version is missing."""
    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError:
        raise SystemExit(f"{PACKAGE} is not installed: pip install {PACKAGE}=={VERSION}") from None
    if dist.version != VERSION:
        raise SystemExit(f"{PACKAGE} {dist.version} is installed; this table is built from "
                         f"{VERSION}: pip install {PACKAGE}=={VERSION}")
    for f in dist.files or ():
        if f.name == "sops.json":
            return Path(str(dist.locate_file(f))).resolve().parent
    raise SystemExit(f"{PACKAGE} {VERSION} has no sops.json in its file list")


def _load(folder: Path, name: str) -> Any:
    return json.loads((folder / name).read_text(encoding="utf-8"))


def _type_of(row: dict[str, Any]) -> str:
    t = str(row.get("type"))
    return t if t in STRENGTH else "3"


def _tag(text: str) -> str:
    """``(0040,A730)`` -> ``0040a730``; ``(60xx,3000)`` -> ``60xx3000``."""
    return (text[1:5] + text[6:10]).lower()


def build_tree(rows: Iterable[dict[str, Any]]) -> Tree:
    """The pruned Type tree of one module or macro from its rows (``path`` is
    ``<id>:<tag>:<tag>...``, parents listed before their children)."""
    full: dict[tuple[str, ...], str] = {}
    for row in rows:
        path = tuple(part.lower() for part in row["path"].split(":")[1:])
        t = _type_of(row)
        old = full.get(path)
        if old is None or STRENGTH[t] > STRENGTH[old]:
            full[path] = t
    # keep a path when it is required, or when a required path lies below it
    keep = {p for p, t in full.items() if t != "3"}
    for p in list(keep):
        keep.update(p[:i] for i in range(1, len(p)))
    tree: Tree = {}
    for path in sorted(keep, key=lambda p: (len(p), p)):
        node = tree
        for tag in path[:-1]:
            entry = node[tag]
            if not isinstance(entry, list):
                entry = node[tag] = [entry, {}]
            node = entry[1]
        node[path[-1]] = full.get(path, "3")
    return tree


def _canon(tree: Tree) -> str:
    return json.dumps(tree, sort_keys=True, separators=(",", ":"))


def share_subtrees(trees: dict[str, Tree], min_size: int = 40) -> tuple[dict[str, Tree], dict[str, Tree]]:
    """Replace each sequence's children that recur (the Code Sequence Macro under hundreds of
    sequences, say) by a reference ``"@N"`` to one entry of a ``shared`` table; the table's
    own entries refer to each other the same way. Returns (trees, shared); deterministic."""
    counts: dict[str, int] = {}

    def count(tree: Tree) -> None:
        for entry in tree.values():
            if isinstance(entry, list):
                key = _canon(entry[1])
                counts[key] = counts.get(key, 0) + 1
                count(entry[1])

    for tree in trees.values():
        count(tree)
    chosen = sorted(k for k, n in counts.items() if n > 1 and len(k) >= min_size)
    ids = {k: f"@{i}" for i, k in enumerate(chosen)}

    def rewrite(tree: Tree) -> Tree:
        out: Tree = {}
        for tag, entry in tree.items():
            if isinstance(entry, list):
                ref = ids.get(_canon(entry[1]))
                out[tag] = [entry[0], ref if ref is not None else rewrite(entry[1])]
            else:
                out[tag] = entry
        return out

    shared = {ids[k]: rewrite(json.loads(k)) for k in chosen}
    return {name: rewrite(tree) for name, tree in trees.items()}, shared


def build(folder: Path) -> dict[str, Any]:
    """The whole table, a pure function of the package's JSON files."""
    sops = _load(folder, "sops.json")
    ciods = {c["name"]: c["id"] for c in _load(folder, "ciods.json")}
    iods: dict[str, dict[str, list[str]]] = {}
    for row in _load(folder, "ciod_to_modules.json"):
        iods.setdefault(row["ciodId"], {"modules": [], "fg_macros": []})["modules"].append(row["moduleId"])
    for row in _load(folder, "ciod_to_fg_macros.json"):
        iods.setdefault(row["ciodId"], {"modules": [], "fg_macros": []})["fg_macros"].append(row["macroId"])
    for entry in iods.values():
        entry["modules"] = sorted(set(entry["modules"]))
        entry["fg_macros"] = sorted(set(entry["fg_macros"]))
        if not entry["fg_macros"]:
            del entry["fg_macros"]
    sop_classes = {s["id"]: ciods[s["ciod"]] for s in sops if ciods.get(s["ciod"]) in iods}

    used_modules = {m for e in iods.values() for m in e["modules"]}
    used_macros = {m for e in iods.values() for m in e.get("fg_macros", ())}
    by_module: dict[str, list[dict[str, Any]]] = {}
    for row in _load(folder, "module_to_attributes.json"):
        if row["moduleId"] in used_modules:
            by_module.setdefault(row["moduleId"], []).append(row)
    by_macro: dict[str, list[dict[str, Any]]] = {}
    for row in _load(folder, "macro_to_attributes.json"):
        if row["macroId"] in used_macros:
            by_macro.setdefault(row["macroId"], []).append(row)
    trees = {f"module:{m}": build_tree(by_module.get(m, ())) for m in sorted(used_modules)}
    trees.update({f"macro:{m}": build_tree(by_macro.get(m, ())) for m in sorted(used_macros)})
    trees, shared = share_subtrees(trees)
    modules = {k.split(":", 1)[1]: v for k, v in trees.items() if k.startswith("module:")}
    macros = {k.split(":", 1)[1]: v for k, v in trees.items() if k.startswith("macro:")}

    provenance = {
        "title": "Attribute Types of the modules and functional group macros of each IOD (DICOM PS3.3)",
        "edition": EDITION,
        "package": f"{PACKAGE} {VERSION} (PyPI; https://github.com/innolitics/dicom-standard, MIT)",
        "sources": {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in SOURCES},
        "generated_by": "scripts/generate_type_table.py",
        "types": "1 and 1C: present with a value; 2 and 2C: present, maybe empty; 3: optional, "
                 "listed only above a required attribute; unlisted: optional",
    }
    return {"provenance": provenance, "sop_classes": dict(sorted(sop_classes.items())),
            "iods": dict(sorted(iods.items())), "modules": modules, "macros": macros,
            "shared": shared}


def render(table: dict[str, Any]) -> str:
    """One line per top-level entry of each section, so a new edition reads as a diff."""
    out = ["{"]
    sections = list(table.items())
    for i, (name, value) in enumerate(sections):
        out.append(f"{json.dumps(name)}: {{")
        items = list(value.items())
        for j, (key, entry) in enumerate(items):
            comma = "," if j < len(items) - 1 else ""
            out.append(f"  {json.dumps(key)}: {json.dumps(entry, separators=(',', ':'))}{comma}")
        out.append("}," if i < len(sections) - 1 else "}")
    out.append("}")
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if iod_types.json is stale")
    parser.add_argument("--output", type=Path, default=TABLE_PATH, help=f"default: {TABLE_PATH}")
    args = parser.parse_args(argv)
    text = render(build(source_dir()))
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale; run {sys.argv[0]}", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
