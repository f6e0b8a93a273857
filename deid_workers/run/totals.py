"""How far each stage of a run is, read from its record and counters.

The one reading of the counters that the progress bar (:mod:`deid_workers.progress`) and
``--status`` (:func:`~deid_workers.run.report.run_status`) share, so the two never disagree
on what a stage has done or how many files it will have.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .plan import stages_of

__all__ = ["StageTotal", "stage_totals", "stage_total"]


@dataclass(frozen=True)
class StageTotal:
    """One stage's counts: ``done`` so far and ``total``, the best count known of what it will
    do (None while nothing is known); ``final`` False while that total may still grow."""

    name: str
    done: int
    total: int | None
    final: bool
    unit: str = "files"


def stage_totals(rec: Mapping[str, Any], counters: Mapping[str, int]) -> list[StageTotal]:
    """Every stage of the run that has files or items of its own (finalize has neither), in
    order, from its record and counters."""
    names = stages_of(str(rec.get("action")), clean_pixels=bool(rec.get("clean_pixels")),
                      finalize=False, ids=bool(rec.get("ids_path")), ocr=rec.get("ocr"))
    return [stage_total(name, rec, counters) for name in names]


def stage_total(name: str, rec: Mapping[str, Any], counters: Mapping[str, int]) -> StageTotal:
    """Stage ``name`` of the run (see :class:`StageTotal`).

    - ``load`` (put ``--ids``): the ids file's items, known once the producer has cut it all.
    - ``put`` after get (``--action all``): the files get found valid, known once finalize
      has sent put (the run's stage is put or clean), or the run ended.
    - ``ocr``: the files put (or inspect) left to OCR, known once all of its batches are in.
    - ``clean``: the files put (with ``--ocr``: the ocr stage) left to clean, known once every
      put (ocr) batch is in.
    - the first stage, and any other: the files the walk found, final when the walk is over.
    """
    c = counters
    if name == "load":
        return StageTotal(name, c.get("load:items", 0), rec.get("ids_items"),
                          "ids_chunks" in rec, "items")
    done = c.get(f"{name}:files", 0)
    if name == "put" and rec.get("action") == "all":
        final = rec.get("stage") in ("put", "clean") or bool(rec.get("finished"))
        return StageTotal(name, done, c.get("get:valid", 0) if final else None, final)
    n_batches = int(rec.get("n_batches") or -1)
    if name == "ocr":
        source = "inspect" if rec.get("action") == "inspect" else "put"
        return StageTotal(name, done, c.get(f"{source}:to_ocr", 0),
                          c.get(f"{source}:batches", 0) >= n_batches)
    if name == "clean":
        source = "ocr" if rec.get("ocr") else "put"
        return StageTotal(name, done, c.get(f"{source}:to_clean", 0),
                          c.get(f"{source}:batches", 0) >= n_batches)
    walked = bool(rec.get("walk_done"))
    found = c.get("walk:files", 0)
    return StageTotal(name, done, found if found or walked else None, walked)
