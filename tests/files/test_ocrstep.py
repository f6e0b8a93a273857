"""Which files --ocr reads, what a verdict makes of a file, and a run without --ocr untouched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from deid_workers.files.ocrstep import (
    ALL_FILES,
    HELD_UNSURE,
    OCR_REDACT,
    ocr_selection,
    ocr_triage,
)
from deid_workers.ocr.verdict import BoxVerdict, OcrVerdict
from deid_workers.recipe import parse_recipe
from deid_workers.run.plan import final_stage, stages_of
from deid_workers.run.totals import stage_totals
from deid_workers.synth import make_dataset

ROOT = str(Path(__file__).resolve().parents[2])
FLAG_MR = parse_recipe("FORMAT dicom\n%filter graylist\nLABEL mr\n  equals Modality mr\n"
                       "  coordinates 0,0,2,2\n")


def test_risky_files_by_header_then_by_the_recipe_and_every_file_with_all():
    ct, mr, us = (make_dataset(rows=4, cols=4, modality=m) for m in ("CT", "MR", "US"))
    assert ocr_selection(us, "risky", FLAG_MR) == "ultrasound"
    assert ocr_selection(ct, "risky", FLAG_MR) is None
    assert ocr_selection(mr, "risky", FLAG_MR) == "recipe filter"
    assert ocr_selection(mr, "risky", FLAG_MR, {"flagged": False}) is None   # the caller's verdict
    assert ocr_selection(ct, "all", FLAG_MR) == ALL_FILES
    del ct.PixelData
    assert ocr_selection(ct, "all", FLAG_MR) is None              # nothing to read
    assert ocr_selection(ct, "all", FLAG_MR, headers_only=True) == ALL_FILES  # inspect: Rows says
    del ct.Rows
    assert ocr_selection(ct, "all", FLAG_MR, headers_only=True) is None
    del us.PixelData
    assert ocr_selection(us, "risky", FLAG_MR, headers_only=True) == "ultrasound"


def _verdict(status: str, *kinds: str, error: str | None = None) -> OcrVerdict:
    boxes = tuple(BoxVerdict("pixels", 0, 0, 0, 4, 2, k, "r", 0.9, k == "phi") for k in kinds)
    return OcrVerdict(engine="x", status=status, boxes=boxes, error=error)


def test_a_verdict_says_write_clean_or_quarantine_with_a_reason_free_of_values():
    assert ocr_triage(_verdict("clean", "allowed")) == ("write", None)
    assert ocr_triage(_verdict("redact", "phi")) == ("clean", OCR_REDACT)
    assert ocr_triage(_verdict("quarantine", "unsure")) == ("quarantine", HELD_UNSURE)
    action, why = ocr_triage(_verdict("quarantine", error="pixels could not be decoded (KeyError)"))
    assert action == "quarantine" and why.startswith("ocr: pixels could not be decoded (KeyError);")


def test_the_plan_puts_ocr_between_put_and_clean_and_before_inspects_report():
    assert stages_of("all", ocr="risky") == ("get", "finalize", "put", "ocr", "clean")
    assert stages_of("put", ocr="all", ids=True, clean_pixels=True) == ("load", "put", "ocr", "clean")
    assert stages_of("inspect", ocr="risky") == ("inspect", "ocr", "finalize")
    assert stages_of("get", ocr="risky") == ("get", "finalize")
    assert stages_of("all") == ("get", "finalize", "put")
    assert final_stage(False, "risky") == "clean" and final_stage(False) == "put"
    rec = {"action": "put", "ocr": "risky", "n_batches": 2, "walk_done": True}
    counters = {"walk:files": 9, "put:files": 9, "put:batches": 2, "put:to_ocr": 4,
                "ocr:files": 4, "ocr:batches": 1, "ocr:to_clean": 3, "clean:files": 1}
    totals = {t.name: (t.done, t.total, t.final) for t in stage_totals(rec, counters)}
    assert totals == {"put": (9, 9, True), "ocr": (4, 4, True), "clean": (1, 3, False)}


def test_without_ocr_nothing_of_ocr_is_imported(tmp_path):
    """A put (with and without --clean-pixels) through the tasks' own modules, the CLI and the
    producer, in a fresh interpreter: not one module of deid_workers.ocr (nor rapidocr) loads."""
    code = f"""
import sys
import deid_workers.app, deid_workers.cli, deid_workers.producer, deid_workers.worker
import deid_workers.tasks.put, deid_workers.tasks.clean, deid_workers.tasks.ocr
import deid_workers.tasks.inspect, deid_workers.tasks.finalize
from deid_workers.config import Settings
from deid_workers.files.steps import inspect_one, put_one
from deid_workers.files.triage import PixelPolicy
from deid_workers.recipe import load_recipe
from deid_workers.synth import write_study_tree
root = {str(tmp_path / "in")!r}
rels = write_study_tree(root, patients=1, series=1, images=2)
settings, recipe = Settings(secret=b"deid-workers-test-key-0123456789abcdef"), load_recipe(None)
for pixels in (None, PixelPolicy({str(tmp_path / "q")!r})):
    for rel in rels:
        inspect_one(root, rel, recipe, settings)
        put_one(root, rel, {str(tmp_path / "out")!r}, recipe, lambda e, i: None, settings,
                overwrite=True, pixels=pixels)
loaded = sorted(m for m in sys.modules if m.startswith(("deid_workers.ocr", "deid_workers.files.ocrstep",
                                                          "rapidocr", "onnxruntime", "cv2")))
assert not loaded, loaded
print("ok")
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
