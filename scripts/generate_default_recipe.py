#!/usr/bin/env python3
"""Write the shipped PS3.15 Annex E recipes from the shipped copy of the standard's tables.

    python scripts/generate_default_recipe.py            # rewrite the recipes
    python scripts/generate_default_recipe.py --check    # exit 1 if any is stale

Writes, from ``deid_workers/recipe/data/standard/`` (Table E.1-1 of DICOM PS3.15, the edition
named in ``deid_workers/recipe/standard.py``):

- ``deid_workers/recipe/data/default.dicom``: the Basic Profile, the default recipe;
- ``deid_workers/recipe/data/options/<option>.dicom``: for each of the ten options, the rows
  its column names and the lines that take the place of the Basic Profile's.

The mapping itself lives in the package (``deid_workers/recipe/annex_e.py``), which also
renders a profile when a user picks one (``--profile basic,<option>...``), so the files are
exactly what runs. The output depends on pydicom's data dictionary (keywords and VRs): a
pydicom upgrade that learns new attributes can change it, and the test then asks for a run
of this script. For a new edition, replace the tables as data/standard/README.md says.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deid_workers.recipe.annex_e import render_option, render_profile  # noqa: E402
from deid_workers.recipe.options import OPTIONS  # noqa: E402

DATA_DIR = ROOT / "deid_workers" / "recipe" / "data"
RECIPE_PATH = DATA_DIR / "default.dicom"
OPTIONS_DIR = DATA_DIR / "options"


def outputs() -> dict[Path, str]:
    """Every generated file and its text."""
    files = {RECIPE_PATH: render_profile(())}
    for name in OPTIONS:
        files[OPTIONS_DIR / f"{name}.dicom"] = render_option(name)
    return files


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a generated file is stale")
    args = parser.parse_args(argv)
    files = outputs()
    if args.check:
        stale = [p for p, text in files.items()
                 if not p.exists() or p.read_text(encoding="utf-8") != text]
        for path in stale:
            print(f"{path.relative_to(ROOT)} is stale; run {sys.argv[0]}", file=sys.stderr)
        return 1 if stale else 0
    OPTIONS_DIR.mkdir(exist_ok=True)
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
