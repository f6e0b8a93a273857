"""steps with --clean-pixels: triage, put deferring to clean, clean, quarantine, provenance.

Kept beside tests/files/test_steps.py (same module under test) so the pixel cases read as one story.
"""

from __future__ import annotations

import os

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

from deid_workers.config import Settings
from deid_workers.files.provenance import Provenance
from deid_workers.files.steps import put_one
from deid_workers.files.triage import PixelPolicy, Triage, triage
from deid_workers.fs.folders import quarantine_folder
from deid_workers.recipe import load_recipe
from deid_workers.synth import make_dataset

BOX = (2, 3, 10, 6)  # x0, y0, x1, y1
RECIPE = f"""FORMAT dicom

%filter whitelist
LABEL Known clean
  contains StationName synthstation

%filter blacklist
LABEL Screen capture
  equals Modality ot

%filter graylist
LABEL Synthetic banner
  equals Modality us
  coordinates {",".join(map(str, BOX))}
LABEL Flag without a box
  equals Modality mr

%header
REMOVE PatientName
REMOVE PatientID

%labels
ADD DeidentificationMethodCode 113100
"""


@pytest.fixture(scope="module")
def recipe():
    return load_recipe(text=RECIPE)


def _write(root, name, **kw):
    ds = make_dataset(1, rows=16, cols=16, **kw)
    path = root / name
    ds.save_as(path, enforce_file_format=True)
    return ds


def _put(root, rel, out, recipe, *, now=True, groups=("blacklist",), overwrite=False):
    policy = PixelPolicy(quarantine_folder(str(out)), tuple(groups), now=now)
    return put_one(str(root), rel, str(out), recipe, lambda e, i: None,
                   Settings(secret=b"k-0123456789abcdef0123456789abcdef"), overwrite=overwrite, pixels=policy,
                   provenance=Provenance.of(recipe, name="test.dicom"))


def _outside(arr, box=BOX):
    x0, y0, x1, y1 = box
    mask = np.ones(arr.shape[-3:-1] if arr.shape[-1] == 3 and arr.ndim >= 3 else arr.shape[-2:],
                   dtype=bool)
    mask[y0:y1, x0:x1] = False
    return mask


# -- triage (pure) -------------------------------------------------------------------------

def _r(group, coords=()):
    return {"group": group, "reason": f" {group} hit ", "coordinates": list(coords)}


def test_triage_decisions():
    assert triage({"flagged": False, "results": []}) == Triage("write")
    box = [[0, "0,0,4,4"]]
    assert triage({"results": [_r("graylist", box)]}).action == "clean"
    q = triage({"results": [_r("graylist", box), _r("blacklist")]})
    assert (q.action, q.group, q.reason) == ("quarantine", "blacklist", "blacklist: blacklist hit")
    nobox = triage({"results": [_r("graylist", box), _r("graylist")]})
    assert nobox.action == "quarantine" and "no coordinates" in nobox.reason
    # from: with an absent sequence gives no box: cannot clean, so held back
    assert triage({"results": [_r("graylist", [[1, []]])]}).action == "quarantine"


def test_triage_whitelist_ignored_unless_named_blocking():
    v = {"results": [_r("whitelist")]}
    assert triage(v).action == "write"
    assert triage(v, ("whitelist",)).action == "quarantine"
    assert triage({"results": [_r("graylist", [[0, "all"]])]}, ("graylist",)).action == "quarantine"


def test_quarantine_folder_is_a_sibling(tmp_path):
    assert quarantine_folder(str(tmp_path / "out")) == str(tmp_path / "out-quarantine")
    assert quarantine_folder(str(tmp_path / "out") + "/") == str(tmp_path / "out-quarantine")


# -- put / clean -----------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [
    {"modality": "US"},                                   # 2-D grey
    {"modality": "US", "samples": 3},                     # RGB
    {"modality": "US", "frames": 3},                      # multi-frame grey
    {"modality": "US", "samples": 3, "frames": 2},        # multi-frame RGB
], ids=["grey", "rgb", "multiframe", "multiframe-rgb"])
def test_clean_blacks_out_the_box_and_nothing_else(tmp_path, recipe, kw):
    src = _write(tmp_path, "a.dcm", text_block=BOX, **kw)
    out = tmp_path / "out"
    res = _put(tmp_path, "a.dcm", out, recipe)
    assert res.status == "cleaned" and res.dest == str(out / res.output)
    assert res.reason.startswith("graylist: ")
    back = pydicom.dcmread(res.dest)
    before, after = src.pixel_array, back.pixel_array
    x0, y0, x1, y1 = BOX
    assert before[..., y0:y1, x0:x1, :].max() if kw.get("samples") else before[..., y0:y1, x0:x1].max()
    region = after[..., y0:y1, x0:x1, :] if kw.get("samples") else after[..., y0:y1, x0:x1]
    assert not region.any()
    keep = _outside(after)
    if kw.get("samples"):
        assert np.array_equal(before[..., keep, :], after[..., keep, :])
    else:
        assert np.array_equal(before[..., keep], after[..., keep])
    assert back.BurnedInAnnotation == "NO"
    assert back.PatientIdentityRemoved == "YES"
    assert [i.CodeValue for i in back.DeidentificationMethodCodeSequence] == ["113100", "113101"]
    assert not back.get("PatientName")  # removed; Type 2, so present and empty


def test_clean_decodes_rle_and_writes_explicit_little_endian(tmp_path, recipe):
    ds = make_dataset(1, rows=16, cols=16, modality="US", frames=2, text_block=BOX)
    original = ds.pixel_array.copy()
    ds.compress(RLELossless, generate_instance_uid=False)
    ds.save_as(tmp_path / "rle.dcm", enforce_file_format=True)
    res = _put(tmp_path, "rle.dcm", tmp_path / "out", recipe)
    assert res.status == "cleaned"
    back = pydicom.dcmread(tmp_path / "out" / "rle.dcm")
    assert back.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    x0, y0, x1, y1 = BOX
    assert not back.pixel_array[:, y0:y1, x0:x1].any()
    keep = _outside(back.pixel_array)
    assert np.array_equal(original[:, keep], back.pixel_array[:, keep])


def test_put_defers_pixel_files_without_writing_or_decoding(tmp_path, recipe, monkeypatch):
    _write(tmp_path, "a.dcm", modality="US", text_block=BOX)
    import deid_workers.files.steps as steps

    monkeypatch.setattr(steps, "clean_pixels", lambda *a: pytest.fail("decoded in put"))
    res = _put(tmp_path, "a.dcm", tmp_path / "out", recipe, now=False)
    assert res.status == "clean"
    assert not (tmp_path / "out").exists()


def test_unflagged_file_is_written_without_113101(tmp_path, recipe):
    src = _write(tmp_path, "ct.dcm", modality="CT")
    res = _put(tmp_path, "ct.dcm", tmp_path / "out", recipe, now=False)
    assert res.status == "written"
    back = pydicom.dcmread(tmp_path / "out" / "ct.dcm")
    assert back.PixelData == src.PixelData
    assert [i.CodeValue for i in back.DeidentificationMethodCodeSequence] == ["113100"]
    assert "test.dicom" in back.DeidentificationMethod
    assert "BurnedInAnnotation" not in back


@pytest.mark.parametrize("modality, why", [("OT", "blacklist: "), ("MR", "no coordinates")])
def test_quarantine_keeps_pixels_and_deidentifies_header(tmp_path, recipe, modality, why):
    src = _write(tmp_path, "q.dcm", modality=modality, text_block=BOX)
    out = tmp_path / "out"
    res = _put(tmp_path, "q.dcm", out, recipe)
    assert res.status == "quarantined" and why in res.reason
    assert res.dest == os.path.join(quarantine_folder(str(out)), "q.dcm")
    assert not (out / "q.dcm").exists()
    back = pydicom.dcmread(res.dest)
    assert back.PixelData == src.PixelData
    assert not back.get("PatientName") and back.PatientIdentityRemoved == "YES"
    assert [i.CodeValue for i in back.DeidentificationMethodCodeSequence] == ["113100"]


def test_undecodable_pixels_are_quarantined(tmp_path, recipe):
    ds = make_dataset(1, rows=16, cols=16, modality="US")
    ds.PixelData = ds.PixelData[:10]  # does not match Rows x Columns
    ds.save_as(tmp_path / "bad.dcm", enforce_file_format=True)
    res = _put(tmp_path, "bad.dcm", tmp_path / "out", recipe)
    assert res.status == "quarantined"  # told by the header check, before any decoding
    assert res.reason == ("pixels could not be cleaned: pixel data of 10 bytes is shorter "
                          "than the 512 bytes its header describes")


def test_existing_output_is_refused_in_either_tree(tmp_path, recipe):
    _write(tmp_path, "q.dcm", modality="OT")
    out = tmp_path / "out"
    first = _put(tmp_path, "q.dcm", out, recipe)
    again = _put(tmp_path, "q.dcm", out, recipe)
    assert (first.status, again.status) == ("quarantined", "refused")
    assert _put(tmp_path, "q.dcm", out, recipe, overwrite=True).status == "quarantined"


def _pixel_bomb(path, *, rle=False):
    """An ultrasound file of a few hundred bytes declaring 65535 x 65535 RGB pixels: decoding
    it (or building its mask) would allocate gigabytes."""
    ds = make_dataset(1, rows=4, cols=4, modality="US")
    if rle:
        ds.compress(RLELossless)
    ds.Rows = ds.Columns = 65535
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("rle", [False, True])
@pytest.mark.parametrize("now", [False, True])
def test_pixel_bomb_is_quarantined_by_its_header_without_allocating(tmp_path, recipe, rle, now):
    import tracemalloc

    _pixel_bomb(tmp_path / "bomb.dcm", rle=rle)
    assert (tmp_path / "bomb.dcm").stat().st_size < 2048
    tracemalloc.start()
    try:
        res = _put(tmp_path, "bomb.dcm", tmp_path / "out", recipe, now=now)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20
    assert res.status == "quarantined"  # put (now=False) never sends it to the clean stage
    assert res.reason == ("pixels could not be cleaned: the image decodes to 12884508675 bytes, "
                          "over DEID_MAX_PIXEL_BYTES (1073741824); raise it on workers with the "
                          "memory for it")


def test_pixel_limit_is_a_setting(tmp_path, recipe):
    _write(tmp_path, "us.dcm", modality="US", text_block=BOX)  # 16 x 16 x 16 bits: 512 bytes
    policy = PixelPolicy(quarantine_folder(str(tmp_path / "out")), ("blacklist",), now=True)
    small = Settings(secret=b"k-0123456789abcdef0123456789abcdef", max_pixel_bytes=511)
    res = put_one(str(tmp_path), "us.dcm", str(tmp_path / "out"), recipe, lambda e, i: None,
                  small, overwrite=False, pixels=policy)
    assert res.status == "quarantined" and "over DEID_MAX_PIXEL_BYTES (511)" in res.reason
    res = _put(tmp_path, "us.dcm", tmp_path / "out2", recipe)
    assert res.status == "cleaned"
