"""deid-submit --action all --ocr on a real Redis and a real celery worker, with real OCR.

Three files of one patient, their name and ID burned into the pixels: an ultrasound (read,
blacked out, read again, written with 113101), a CT that says BurnedInAnnotation YES in a
folder the worker's DEID_TEST_OCR_MISS names (its boxes are not blacked out, as a redaction
that missed its text: verification must hold it), and a plain CT (not risky: not read,
written as it was).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from deid_workers.cli import main

pytestmark = pytest.mark.integration

# patient 0 of synth_burned.header_values: SMITH^OLIVIA, ID 00104729
NAME, PID = "SMITH, OLIVIA", "ID: 00104729"


@pytest.fixture(scope="module", autouse=True)
def _ocr_extra():
    missing = [m for m in ("rapidocr", "onnxruntime", "PIL") if importlib.util.find_spec(m) is None]
    if missing:
        if os.environ.get("DEID_REQUIRE_OCR") == "1":
            pytest.fail(f"DEID_REQUIRE_OCR=1 but {', '.join(missing)} not installed")
        pytest.skip(f"the ocr extra is not installed ({', '.join(missing)})")


def _write(root: Path, rel: str, *, rgb: bool, bia: str | None = None) -> tuple:
    from deid_workers.synth_burned import PHI, TextSpec, make_text_dataset

    specs = [TextSpec(NAME, 16, 16, 20, 0, PHI, "PatientName"),
             TextSpec(PID, 16, 64, 20, 0, PHI, "PatientID"),
             TextSpec("R", 180, 120, 22)]
    case = make_text_dataset(specs, rows=160, cols=224, rgb=rgb,
                             photometric="RGB" if rgb else "MONOCHROME2")
    ds = case.ds
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    if bia is not None:
        ds.BurnedInAnnotation = bia
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(root / rel, enforce_file_format=True)
    return ds.pixel_array.copy(), case.truth


def test_all_with_ocr_blacks_out_verifies_and_quarantines(cluster, tmp_path, capsys, place):
    root, out = tmp_path / "in", tmp_path / "out"
    us, truth = _write(root, "us/screen.dcm", rgb=True)
    _write(root, "ct/ocr-miss/slice.dcm", rgb=False, bia="YES")
    ct, _ = _write(root, "ct/plain.dcm", rgb=False)

    code = main(["--action", "all", "--ocr", "--input", str(root), "--outfolder", str(out),
                 "--batch", "2", "--json", "--quiet"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(stdout)
    assert (summary["written"], summary["cleaned"], summary["quarantined"]) == (1, 1, 1)
    ocr = summary["ocr"]
    assert (ocr["selected"], ocr["read"], ocr["redact"], ocr["verified"], ocr["phi_left"]) == (
        2, 2, 2, 1, 1)
    assert ocr["phi_boxes"] >= 4 and ocr["boxes_cleaned"] >= 2

    cleaned = pydicom.dcmread(out / place(root, "us/screen.dcm"))
    after = cleaned.pixel_array
    for t in truth:
        ink = after[t.y0:t.y1, t.x0:t.x1][t.ink]
        if t.kind == "phi":
            assert not ink.any(), t.field           # every pixel of its ink is black
        else:
            assert ink.any(), t.field                # "R" is harmless and stays
    assert us[truth[0].y0:truth[0].y1, truth[0].x0:truth[0].x1].any()
    assert cleaned.BurnedInAnnotation == "NO"
    assert "113101" in [i.CodeValue for i in cleaned.DeidentificationMethodCodeSequence]

    held = tmp_path / "out-quarantine" / place(root, "ct/ocr-miss/slice.dcm")
    assert held.exists() and not (out / place(root, "ct/ocr-miss/slice.dcm")).exists()
    q = pydicom.dcmread(held)
    assert q.BurnedInAnnotation == "YES"
    assert "113101" not in [i.CodeValue for i in q.get("DeidentificationMethodCodeSequence", [])]
    assert summary["lists"]["quarantined"]["ct/ocr-miss/slice.dcm"].startswith(
        "ocr verification: ")

    plain = pydicom.dcmread(out / place(root, "ct/plain.dcm"))
    assert np.array_equal(plain.pixel_array, ct)

    lines = {x["path"]: x for x in map(json.loads, Path(summary["run_log"]).read_text().splitlines())}
    assert "ocr" not in lines["ct/plain.dcm"]
    assert lines["us/screen.dcm"]["ocr"]["verified"] is True
    assert lines["us/screen.dcm"]["outcome"] == "cleaned"
    assert lines["ct/ocr-miss/slice.dcm"]["ocr"]["verified"] is False
    text = Path(summary["run_log"]).read_text() + stdout
    assert not [s for s in ("SMITH", "OLIVIA", "00104729") if s in text]
