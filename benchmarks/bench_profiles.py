"""Per-file time of ``recipe.deidentify`` on the demo study: the default recipe and each
PS3.15 Annex E option (``--profile basic,<option>``), in-process, as a put worker calls it
(a dataset just read, edited in place).

    python benchmarks/bench_profiles.py [--rounds N] [--profile basic,OPTION ...]

Each round reads the 7 demo files (not timed) and times ``deidentify`` on each, for every
recipe in turn (shuffled); the figures are the median and the minimum over rounds of the
mean per file, with each option's ratio to Basic.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from deid_workers.config import Settings  # noqa: E402
from deid_workers.dicom import reader  # noqa: E402
from deid_workers.recipe import deidentify, load_recipe  # noqa: E402
from deid_workers.synth import write_demo_study  # noqa: E402


def _profiles() -> list[str]:
    try:
        from deid_workers.recipe.options import OPTIONS
    except ImportError:  # before profiles existed: the default recipe only
        return []
    return ["basic"] + [f"basic,{name}" for name in OPTIONS]


def _recipe(profile: str | None) -> Any:
    if profile is None:
        return load_recipe()
    return load_recipe(profile=profile.split(","))  # type: ignore[call-arg]


def time_recipes(paths: list[Path], recipes: dict[str, Any], settings: Settings,
                 rounds: int) -> dict[str, tuple[float, float]]:
    """(median, minimum) over ``rounds`` of the mean seconds per file of ``deidentify``, per
    recipe.

    The recipes take turns within each round, in an order shuffled each round, so a load that
    comes and goes on a shared machine falls on all of them alike; the minimum is the figure
    least moved by other processes, the median the typical one.
    """
    for recipe in recipes.values():  # warm up: compiled selectors, caches by field shape
        for p in paths:
            deidentify(reader.read_dataset(p, headers_only=False), recipe, settings=settings,
                       in_place=True)
    means: dict[str, list[float]] = {name: [] for name in recipes}
    order = list(recipes.items())
    rng = random.Random(1)
    for _ in range(rounds):
        rng.shuffle(order)
        for name, recipe in order:
            datasets = [reader.read_dataset(p, headers_only=False) for p in paths]
            start = time.perf_counter()
            for ds in datasets:
                deidentify(ds, recipe, settings=settings, in_place=True)
            means[name].append((time.perf_counter() - start) / len(datasets))
    return {name: (statistics.median(values), min(values)) for name, values in means.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--profile", action="append",
                        help="profile(s) to time (default: the default recipe and every option)")
    args = parser.parse_args(argv)
    settings = Settings(secret=hashlib.sha256(b"bench_profiles").hexdigest().encode())
    with tempfile.TemporaryDirectory() as folder:
        paths = [Path(folder) / rel for rel in write_demo_study(folder)]
        recipes = {"default recipe": _recipe(None)}
        recipes.update((profile, _recipe(profile)) for profile in args.profile or _profiles())
        rows = list(time_recipes(paths, recipes, settings, args.rounds).items())
    timing = dict(rows)
    median0, min0 = timing.get("basic", rows[0][1])
    for name, (median, low) in rows:
        print(f"{name:45s} median {median * 1e6:7.1f} us/file x{median / median0:.3f}"
              f"   min {low * 1e6:7.1f} x{low / min0:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
