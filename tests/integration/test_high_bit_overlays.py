"""deid-submit --action all on a real Redis and real workers: an overlay kept in the high bits
of the pixel data leaves with the default recipe, and --verify finds nothing left."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest

from deid_workers.cli import main
from deid_workers.synth import make_high_bit_overlay

pytestmark = pytest.mark.integration

FILES = {  # rel: make_high_bit_overlay keywords
    "us/u16.dcm": {"positions": {0x6000: 15, 0x6002: 13}, "modality": "US"},
    "mr/signed-frames.dcm": {"frames": 3, "signed": True, "positions": {0x6000: 14}, "modality": "MR"},
    "ot/u8.dcm": {"bits_allocated": 8, "bits_stored": 7, "modality": "OT"},
}


def test_all_takes_high_bit_overlays_out_of_the_pixels(cluster, tmp_path, capsys, place):
    root, out = tmp_path / "in", tmp_path / "out"
    pixels = {}
    for i, (rel, kw) in enumerate(FILES.items()):
        ds, _ = make_high_bit_overlay(i, seed=i, **kw)
        pixels[rel] = ds.pixel_array.copy()
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(root / rel, enforce_file_format=True)
    code = main(["--action", "all", "--verify", "--input", str(root), "--outfolder", str(out),
                 "--json", "--quiet"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(stdout)
    assert (summary["written"], summary["residual_phi"]) == (3, 0), summary
    for rel in FILES:
        before = pydicom.dcmread(root / rel)
        back = pydicom.dcmread(out / place(root, rel))
        dtype = f"<u{back.BitsAllocated // 8}"
        words, old = (np.frombuffer(d.PixelData, dtype, pixels[rel].size) for d in (back, before))
        assert (old >> back.BitsStored).any() and not (words >> back.BitsStored).any(), rel
        assert not [e for e in back if e.tag.group >> 8 == 0x60], rel
        assert np.array_equal(back.pixel_array, pixels[rel]), rel
