"""The floor: plain pydicom read + write of every file, in as many processes as workers.

No tool that reads and writes DICOM with pydicom can beat this, so "ours / floor" says how much
the recipe, Redis and Celery cost on top. Files are split evenly over a ``multiprocessing``
pool (forked, so pydicom is already imported); the pool's start is outside the timing, as the
embedded cluster's start is outside our "processing" time.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Sequence

import pydicom
from pydicom.errors import InvalidDicomError

__all__ = ["copy_one", "run_floor"]


def copy_one(pair: tuple[str, str]) -> bool:
    """Read ``src`` whole (pixels included) and write it to ``dest``; False if unreadable."""
    src, dest = pair
    try:
        ds = pydicom.dcmread(src)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError):
        return False
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    ds.save_as(dest)
    return True


def _warm(_: int) -> int:
    return os.getpid()


def run_floor(root: str, paths: Sequence[str], outfolder: str, processes: int) -> dict[str, float]:
    """Copy ``paths`` (absolute, under ``root``) into ``outfolder``; returns seconds and counts."""
    pairs = [(p, os.path.join(outfolder, os.path.relpath(p, root))) for p in paths]
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(processes) as pool:
        pool.map(_warm, range(processes))
        chunk = max(1, len(pairs) // (processes * 8))
        start = time.perf_counter()
        ok = sum(pool.imap_unordered(copy_one, pairs, chunksize=chunk))
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "files": float(len(pairs)), "ok": float(ok)}
