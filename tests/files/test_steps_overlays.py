"""put_one and retired high-bit overlays: the recipe's decision about Overlay Data applies to
them (dicom/overlays.py moves them into OverlayData before the recipe runs)."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileDataset

from deid_workers import synth
from deid_workers.config import Settings
from deid_workers.files.steps import put_one
from deid_workers.recipe import load_recipe

KEEP_OVERLAYS = "FORMAT dicom\n\n%header\n\nREMOVE PatientName\n"
"""A recipe with no line on Overlay Data: the overlay is kept (in the standard form)."""

CASES = {  # name: (BitsAllocated, BitsStored, signed, frames, {group: bit position}, modality)
    "u16": (16, 12, False, 1, {0x6000: 15, 0x6002: 12}, "CT"),
    "s16-frames": (16, 12, True, 3, {0x6000: 14}, "MR"),
    "u8-frames": (8, 7, False, 2, {0x6004: 7}, "OT"),
    "s8": (8, 6, True, 1, {0x6000: 6, 0x6002: 7}, "OT"),
}


def highbit_file(name: str) -> tuple[FileDataset, dict[int, np.ndarray]]:
    alloc, stored, signed, frames, positions, modality = CASES[name]
    return synth.make_high_bit_overlay(9, frames=frames, bits_allocated=alloc, bits_stored=stored,
                                       signed=signed, positions=positions, modality=modality,
                                       seed=len(name))


def _words(ds: pydicom.Dataset) -> np.ndarray:
    frames = int(ds.get("NumberOfFrames", 1))
    dtype = f"<u{ds.BitsAllocated // 8}"
    return np.frombuffer(ds.PixelData, dtype, frames * ds.Rows * ds.Columns).reshape(frames, ds.Rows, ds.Columns)


def _put(tmp_path: Path, ds: FileDataset, recipe_text: str | None = None) -> tuple[Path, Path]:
    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir(parents=True, exist_ok=True)
    ds.save_as(root / "f.dcm", enforce_file_format=True)
    recipe = load_recipe(text=recipe_text) if recipe_text else load_recipe()
    outcome = put_one(str(root), "f.dcm", str(out), recipe, lambda e, i: None,
                      Settings(secret=b"overlay-test-key-0123456789abcdef"), overwrite=False,
                      sync=False)
    assert outcome.status == "written", outcome
    assert outcome.dest is not None
    return root / "f.dcm", Path(outcome.dest)


@pytest.mark.parametrize("name", CASES)
def test_default_recipe_takes_high_bit_overlays_out_of_the_pixels(tmp_path: Path, name: str) -> None:
    ds, planes = highbit_file(name)
    before = _words(ds).copy()
    stored = ds.BitsStored
    pixels = ds.pixel_array.copy()
    src, dest = _put(tmp_path, ds)
    back = pydicom.dcmread(dest)  # no force: a valid Part-10 file
    after = _words(back)
    assert before.max() >> stored and not (after >> stored).any()  # marks there, and gone
    keep = (1 << stored) - 1
    assert np.array_equal(after, before & keep)  # the pixel values' own bits unchanged
    assert np.array_equal(back.pixel_array, pixels)
    assert not [e for e in back if e.tag.group >> 8 == 0x60]
    assert set(planes) == {e.tag.group for e in pydicom.dcmread(src) if e.tag.group >> 8 == 0x60}


@pytest.mark.parametrize("name", ["u16", "s16-frames", "u8-frames"])
def test_a_recipe_that_keeps_overlays_gets_them_as_overlay_data(tmp_path: Path, name: str) -> None:
    ds, planes = highbit_file(name)
    stored = ds.BitsStored
    before = _words(ds).copy()
    frames = before.shape[0]
    _, dest = _put(tmp_path, ds, KEEP_OVERLAYS)
    back = pydicom.dcmread(dest)
    assert np.array_equal(_words(back), before & ((1 << stored) - 1))
    for group, plane in planes.items():
        assert back[group, 0x0100].value == 1 and back[group, 0x0102].value == 0
        got = back.overlay_array(group)  # pydicom's own reading of OverlayData
        assert np.array_equal(got.reshape(plane.shape), plane), hex(group)
        if frames > 1:
            assert (back[group, 0x0015].value, back[group, 0x0051].value) == (frames, 1)
        else:
            assert (group, 0x0015) not in back


DCIODVFY = shutil.which("dciodvfy")
_VALUE = re.compile(r"= <[^>]*>")
_UID = re.compile(r"[0-9]+(?:\.[0-9]+){2,}")


def _errors(path: Path) -> set[str]:
    proc = subprocess.run([DCIODVFY or "dciodvfy", str(path)], capture_output=True, timeout=60)
    lines = (proc.stdout + proc.stderr).decode("utf-8", "replace").splitlines()
    # Values and UIDs replaced (the recipe changes them), as tests/realdata normalises them;
    # the element, module and kind of error stay.
    return {_UID.sub("<uid>", _VALUE.sub("= <v>", x)) for x in lines if x.startswith("Error")}


@pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy (Debian dicom3tools) not installed")
@pytest.mark.parametrize("recipe", [None, KEEP_OVERLAYS], ids=["default", "keep"])
def test_dciodvfy_finds_no_new_error(tmp_path: Path, recipe: str | None) -> None:
    # The high-bit form is retired: dciodvfy calls its overlay elements wrong. Removed or
    # made standard, the output has no overlay error left, and no other new one.
    for name in ("u16", "s16-frames"):
        src, dest = _put(tmp_path / name, highbit_file(name)[0], recipe)
        before, after = _errors(src), _errors(dest)
        assert after <= before, name
        assert [e for e in before if "Overlay" in e]
        assert not [e for e in after if "Overlay" in e], name


def test_verify_reports_overlay_bits_left_in_an_output(tmp_path: Path) -> None:
    from deid_workers.files.verify import residual_overlay_bits
    from deid_workers.tasks.put import verify_output

    original, _ = highbit_file("u16")
    # What a recipe removing the 60xx elements left before: the group gone, the bits not.
    leaky = copy.deepcopy(original)
    for elem in [e.tag for e in leaky if e.tag.group >> 8 == 0x60]:
        del leaky[elem]
    assert residual_overlay_bits(original, leaky) == [
        "overlay 6000 (PixelData bit 15)", "overlay 6002 (PixelData bit 12)"]
    # Sign extension sets unused high bits that no overlay claims: not judged.
    signed = synth.make_dataset(9, rows=12, cols=10)
    signed.PixelRepresentation = 1
    signed.PixelData = np.full(120, -5, "<i2").tobytes()
    assert residual_overlay_bits(signed, signed) == []

    # An overlay put cannot move (its declared size is not the image's) reaches the output
    # with its bits; --verify says so, the clean files stay clean.
    odd, _ = highbit_file("u16")
    odd[0x6000, 0x0010].value = 6
    src, dest = _put(tmp_path, odd)
    assert verify_output(str(src.parent), src.name, str(dest)) == ["overlay 6000 (PixelData bit 15)"]
    clean, _ = highbit_file("s16-frames")
    src, dest = _put(tmp_path / "clean", clean)
    assert verify_output(str(src.parent), src.name, str(dest)) == []


def test_clean_graphics_flags_a_high_bit_overlay_in_inspect_and_put(tmp_path: Path) -> None:
    from deid_workers.files.steps import inspect_one
    from deid_workers.files.triage import PixelPolicy

    root = tmp_path / "in"
    root.mkdir()
    highbit_file("u16")[0].save_as(root / "f.dcm", enforce_file_format=True)
    recipe = load_recipe(profile="basic,clean-graphics")
    settings = Settings(secret=b"overlay-test-key-0123456789abcdef")
    seen = inspect_one(str(root), "f.dcm", recipe, settings)
    assert seen.flagged and [r["group"] for r in seen.results] == ["blacklist"]
    held = put_one(str(root), "f.dcm", str(tmp_path / "out"), recipe, lambda e, i: None, settings,
                   overwrite=False, sync=False,
                   pixels=PixelPolicy(quarantine=str(tmp_path / "q"), quarantine_groups=("blacklist",)))
    assert held.status == "quarantined"
