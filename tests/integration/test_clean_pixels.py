"""deid-submit --action all --clean-pixels on a real Redis and a real celery worker."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

from deid_workers.cli import main
from deid_workers.run.runlog import run_log_name
from deid_workers.synth import make_dataset, phi_strings

pytestmark = pytest.mark.integration

BOX = (2, 1, 12, 4)
RECIPE = f"""FORMAT dicom

%filter blacklist
LABEL Screen capture
  equals Modality ot

%filter graylist
LABEL Synthetic ultrasound banner
  equals Modality us
  coordinates {",".join(map(str, BOX))}

%header
REMOVE ALL
KEEP Modality
KEEP SOPClassUID
KEEP SOPInstanceUID
KEEP Rows
KEEP Columns
KEEP SamplesPerPixel
KEEP PhotometricInterpretation
KEEP PlanarConfiguration
KEEP NumberOfFrames
KEEP BitsAllocated
KEEP BitsStored
KEEP HighBit
KEEP PixelRepresentation
KEEP PixelData
REPLACE PatientID var:id

%labels
ADD DeidentificationMethodCode 113100
"""

IMAGES = {  # name: (make_dataset keywords, compress with RLE)
    "us/grey.dcm": ({"modality": "US"}, False),
    "us/rgb-frames.dcm": ({"modality": "US", "samples": 3, "frames": 2}, False),
    "us/rle-frames.dcm": ({"modality": "US", "frames": 3}, True),
    "ot/capture.dcm": ({"modality": "OT"}, False),
    "ct/slice.dcm": ({"modality": "CT"}, False),
}


def _inside(arr, samples):
    x0, y0, x1, y1 = BOX
    return arr[..., y0:y1, x0:x1, :] if samples > 1 else arr[..., y0:y1, x0:x1]


def _outside_mask(rows, cols):
    x0, y0, x1, y1 = BOX
    mask = np.ones((rows, cols), dtype=bool)
    mask[y0:y1, x0:x1] = False
    return mask


def test_all_with_clean_pixels(cluster, tmp_path, capsys, place):
    root, out = tmp_path / "in", tmp_path / "out"
    originals = {}
    for i, (rel, (kw, rle)) in enumerate(IMAGES.items()):
        ds = make_dataset(5, instance=i, rows=16, cols=16, text_block=BOX, **kw)
        originals[rel] = (ds.pixel_array.copy(), ds.PixelData)
        if rle:
            ds.compress(RLELossless, generate_instance_uid=False)
            originals[rel] = (originals[rel][0], ds.PixelData)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(root / rel, enforce_file_format=True)
    (root / "junk.dcm").write_text("not DICOM")
    recipe = tmp_path / "deid.pixels"
    recipe.write_text(RECIPE)

    code = main(["--action", "all", "--clean-pixels", "--input", str(root), "--outfolder",
                 str(out), "--deid", str(recipe), "--batch", "2", "--json", "--quiet"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(stdout)
    assert (summary["written"], summary["cleaned"], summary["quarantined"],
            summary["skipped"]) == (1, 3, 1, 1)
    assert summary["lists"]["quarantined"] == {"ot/capture.dcm": "blacklist: Modality equals ot"}

    for rel in ("us/grey.dcm", "us/rgb-frames.dcm", "us/rle-frames.dcm"):
        back = pydicom.dcmread(out / place(root, rel))
        before = originals[rel][0]
        samples = int(back.SamplesPerPixel)
        assert _inside(before, samples).all(), rel  # the block was there
        after = back.pixel_array
        assert not _inside(after, samples).any(), rel
        keep = _outside_mask(16, 16)
        if samples > 1:
            assert np.array_equal(before[..., keep, :], after[..., keep, :]), rel
        else:
            assert np.array_equal(before[..., keep], after[..., keep]), rel
        assert back.BurnedInAnnotation == "NO" and back.PatientIdentityRemoved == "YES"
        assert [i.CodeValue for i in back.DeidentificationMethodCodeSequence] == [
            "113100", "113101"]
        assert back.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert "deid.pixels" in back.DeidentificationMethod
        assert not back.get("PatientName")  # removed; Type 2, so kept empty (conformance)

    ct = pydicom.dcmread(out / place(root, "ct/slice.dcm"))
    assert ct.PixelData == originals["ct/slice.dcm"][1]
    assert [i.CodeValue for i in ct.DeidentificationMethodCodeSequence] == ["113100"]

    held = tmp_path / "out-quarantine" / place(root, "ot/capture.dcm")
    assert not (out / place(root, "ot/capture.dcm")).exists()
    q = pydicom.dcmread(held)
    assert q.PixelData == originals["ot/capture.dcm"][1]  # pixels untouched
    assert not q.get("PatientName") and q.PatientIdentityRemoved == "YES"

    runlog = Path(summary["run_log"])
    assert runlog == tmp_path / "out-records" / run_log_name(summary["run_id"])
    lines = [json.loads(x) for x in runlog.read_text().splitlines()]
    assert sorted(x["path"] for x in lines) == sorted([*IMAGES, "junk.dcm"])
    counts = Counter(x["outcome"] for x in lines)
    for outcome in ("written", "cleaned", "quarantined", "skipped", "refused", "failed"):
        assert counts.get(outcome, 0) == summary.get(outcome, 0), outcome
    by = {x["path"]: x for x in lines}
    assert by["ot/capture.dcm"]["output"] == "../out-quarantine/ot/capture.dcm"
    assert {x["recipe_sha256"] for x in lines} == {by["ct/slice.dcm"]["recipe_sha256"]}
    assert len(by["ct/slice.dcm"]["recipe_sha256"]) == 64
    text = runlog.read_text()
    assert not [s for s in phi_strings(5) if s in text]
