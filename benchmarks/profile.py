"""Where the time of one file goes: pyinstrument over the get and put steps, in-process.

    python -m benchmarks.profile [--files 300] [--step get|put|inspect|all] [--html DIR]

No Redis, no Celery: :func:`deid_workers.files.steps.get_one` / ``put_one`` / ``inspect_one`` over a
synth tree of small images, with the default recipe, which is what a worker does per file.
Per-task overhead (Redis round trips, Celery) is measured by the cluster runs instead.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

from deid_workers.config import Settings
from deid_workers.files.steps import get_one, inspect_one, put_one
from deid_workers.recipe import load_recipe
from deid_workers.synth import write_study_tree

__all__ = ["main", "time_steps"]


def time_steps(root: str, rels: list[str], step: str, out: str) -> float:
    settings = Settings(secret=b"deid-workers-benchmark-key-not-secret")
    recipe = load_recipe(None)
    ids: dict[tuple[str, str], dict[str, object]] = {}
    if step == "put":
        for rel in rels:
            o = get_one(root, rel, settings)
            ids[(o.entity, o.item)] = o.fields
    start = time.perf_counter()
    for rel in rels:
        if step == "get":
            get_one(root, rel, settings)
        elif step == "inspect":
            inspect_one(root, rel, recipe)
        else:
            put_one(root, rel, out, recipe, lambda e, i: ids.get((e, i)), settings,
                    overwrite=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=300)
    p.add_argument("--step", choices=("get", "put", "inspect", "all"), default="all")
    p.add_argument("--html", metavar="DIR", help="also write pyinstrument HTML reports here")
    p.add_argument("--no-profile", action="store_true", help="only time, no profiler")
    a = p.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="bench-profile-")
    try:
        root = os.path.join(tmp, "in")
        rels = write_study_tree(root, patients=max(1, a.files // 50), series=2, images=25)
        rels = rels[: a.files]
        steps = ("get", "inspect", "put") if a.step == "all" else (a.step,)
        for step in steps:
            out = os.path.join(tmp, "out-" + step)
            seconds = time_steps(root, rels, step, out)  # warm (recipe compile, imports)
            if a.no_profile:
                print(f"{step}: {len(rels) / seconds:.1f} files/s in one process")
                continue
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0005)
            profiler.start()
            seconds = time_steps(root, rels, step, out)
            profiler.stop()
            print(f"=== {step}: {len(rels)} files, {len(rels) / seconds:.1f} files/s "
                  f"(profiled; slower than real)")
            print(profiler.output_text(unicode=False, color=False, show_all=False))
            if a.html:
                os.makedirs(a.html, exist_ok=True)
                with open(os.path.join(a.html, f"{step}.html"), "w", encoding="utf-8") as fh:
                    fh.write(profiler.output_html())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
