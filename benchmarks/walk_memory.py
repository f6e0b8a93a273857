"""Peak traced memory of walking a tree lazily, against holding every path it yields.

The walk (:mod:`deid_workers.fs.walk`) must stay flat however many files the input holds:
its memory is one folder's listing, not the tree. This builds ``--files`` empty files in
folders of 500 and prints both peaks and their ratio as JSON (``lazy`` should be a small
fraction of ``held``; benchmarks/measurements.md has a run's figures).

    python -m benchmarks.walk_memory [--files 20000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import tracemalloc
from pathlib import Path

from deid_workers.fs.walk import iter_files

__all__ = ["walk_memory"]

PER_FOLDER = 500


def walk_memory(root: Path, files: int) -> dict[str, float]:
    """Build ``files`` empty files under ``root`` and measure both ways of walking them."""
    for n in range(files):
        folder = root / f"patient-{n // PER_FOLDER:04d}" / "study"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"image-{n % PER_FOLDER:05d}.dcm").touch()
    tracemalloc.start()
    try:
        count = sum(1 for _ in iter_files(root))
        _, lazy = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        held = list(iter_files(root))
        _, peak_held = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == len(held) == files
    return {"files": files, "lazy_peak_kb": round(lazy / 1024, 1),
            "held_peak_kb": round(peak_held / 1024, 1), "ratio": round(lazy / peak_held, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="walk-memory-") as tmp:
        print(json.dumps(walk_memory(Path(tmp), args.files)))


if __name__ == "__main__":
    main()
