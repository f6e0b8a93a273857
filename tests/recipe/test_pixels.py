"""Pixel cleaning from inspect verdicts (deid_workers/recipe/pixels.py).

Expected images are built here by zeroing the boxes by hand, not with the code under test.
The mask semantics (later boxes win, keep restores, x1/y1 exclusive) were checked against
deid 0.4.13's clean_pixel_data on the same arrays.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.pixels import pack_bits
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

from deid_workers.recipe import load_recipe
from deid_workers.recipe.filters import inspect_dataset
from deid_workers.recipe.pixels import clean_pixels, has_boxes, regions

ROWS, COLS = 12, 10


def image(frames: int = 1, samples: int = 1, bits: int = 8, planar: int = 0) -> tuple[FileDataset, np.ndarray]:
    """A dataset whose every pixel is non-zero, and its array as pydicom returns it."""
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("mem", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SOPInstanceUID = "1.2.3.4"
    ds.Modality = "US"
    shape: tuple[int, ...] = (ROWS, COLS) if samples == 1 else (ROWS, COLS, samples)
    if frames > 1:
        shape = (frames, *shape)
    dtype = np.uint8 if bits == 8 else np.uint16
    arr = (np.arange(int(np.prod(shape))) % 200 + 1).astype(dtype).reshape(shape)
    ds.set_pixel_data(arr, "MONOCHROME2" if samples == 1 else "RGB", bits, generate_instance_uid=False)
    if planar:
        ds.PlanarConfiguration = 1
        ds.PixelData = np.moveaxis(arr, -1, -3).tobytes()
    return ds, arr


def verdict(*coordinates) -> dict:
    return {
        "flagged": True,
        "results": [{"group": "graylist", "reason": "r", "coordinates": [list(c) for c in coordinates]}],
    }


BOX = verdict((0, "2,3,6,8"))  # x 2..5, y 3..7


def expected_for_box(arr: np.ndarray, samples: int) -> np.ndarray:
    want = arr.copy()
    if samples > 1:
        want[..., 3:8, 2:6, :] = 0
    else:
        want[..., 3:8, 2:6] = 0
    return want


# --- the mask ---------------------------------------------------------------------------------


def test_regions_in_order_keep_restores() -> None:
    v = {
        "results": [
            {"group": "a", "coordinates": [[0, "all"], [1, ["1,1,3,4", "8,0,10,2"]]]},
            {"group": "b", "coordinates": [[0, "2,2,3,3"]]},
        ]
    }
    mask = regions(v, ROWS, COLS)
    want = np.zeros((ROWS, COLS), np.uint8)
    want[1:4, 1:3] = 1
    want[0:2, 8:10] = 1
    want[2, 2] = 0
    assert mask.dtype == np.uint8
    assert np.array_equal(mask, want)


def test_regions_clip_to_image() -> None:
    mask = regions(verdict((0, "-5,-5,2,2"), (0, "8,10,500,500")), ROWS, COLS)
    want = np.ones((ROWS, COLS), np.uint8)
    want[0:2, 0:2] = 0
    want[10:, 8:] = 0
    assert np.array_equal(mask, want)


def test_regions_without_results_keep_everything() -> None:
    assert regions({"flagged": False, "results": []}, 3, 4).all()
    assert not has_boxes({"flagged": True, "results": [{"group": "whitelist", "coordinates": []}]})
    assert has_boxes(BOX)


@pytest.mark.parametrize(
    "bad",
    [[0, "1,2,3"], [0, "a,b,c,d"], [2, "1,2,3,4"], [0, 5], ["0"], [0, ["1,2,3,4", "SECRET^NAME"]]],
)
def test_malformed_coordinates_raise_without_quoting(bad: list) -> None:
    v = {"results": [{"group": "graylist", "coordinates": [bad]}]}
    with pytest.raises(ValueError) as info:
        regions(v, ROWS, COLS)
    assert "result 1 (graylist), coordinates 1" in str(info.value)
    assert "SECRET" not in str(info.value)


# --- cleaning ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frames", "samples", "bits", "planar"),
    [
        (1, 1, 8, 0),  # 2-D grey
        (1, 1, 16, 0),
        (1, 3, 8, 0),  # RGB, interleaved
        (1, 3, 8, 1),  # RGB, planar
        (4, 1, 16, 0),  # multi-frame grey
        (3, 3, 8, 0),  # multi-frame RGB
        (3, 3, 8, 1),
    ],
)
def test_box_is_zero_rest_unchanged(frames: int, samples: int, bits: int, planar: int) -> None:
    ds, arr = image(frames, samples, bits, planar)
    before = copy.deepcopy(ds)
    out = clean_pixels(ds, BOX)
    assert out is not ds
    assert np.array_equal(out.pixel_array, expected_for_box(arr, samples))
    assert out.BurnedInAnnotation == "NO"
    assert out.get("PlanarConfiguration") == ds.get("PlanarConfiguration")
    assert out.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    # input untouched
    assert ds == before and ds.PixelData == before.PixelData
    assert "BurnedInAnnotation" not in ds


@pytest.mark.parametrize("planar", [0, 1])
def test_a_box_in_ybr_pixels_is_black_not_zero(planar: int) -> None:
    # YBR zeros display saturated green: black is Y 0 with Cb and Cr at mid-scale (128).
    ds, arr = image(2, 3, planar=planar)
    ds.PhotometricInterpretation = "YBR_FULL"
    out = clean_pixels(ds, BOX)
    out.pixel_array_options(as_rgb=False)
    want = arr.copy()
    want[..., 3:8, 2:6, :] = (0, 128, 128)
    assert np.array_equal(out.pixel_array, want)
    assert out.PhotometricInterpretation == "YBR_FULL"


def test_all_then_keep_regions() -> None:
    ds, arr = image(2, 3)
    out = clean_pixels(ds, verdict((0, "all"), (1, ["1,1,4,5"])))
    want = np.zeros_like(arr)
    want[:, 1:5, 1:4, :] = arr[:, 1:5, 1:4, :]
    assert np.array_equal(out.pixel_array, want)


def test_compressed_source_written_uncompressed() -> None:
    ds, arr = image(2, 3)
    ds.compress(RLELossless, generate_instance_uid=False)
    out = clean_pixels(ds, BOX)
    assert ds.file_meta.TransferSyntaxUID == RLELossless
    assert out.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert out.SOPInstanceUID == "1.2.3.4"
    assert np.array_equal(out.pixel_array, expected_for_box(arr, 3))


def test_one_bit_pixels() -> None:
    ds, _ = image()
    bits = np.ones((ROWS, COLS), np.uint8)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 1, 0
    ds.PixelData = pack_bits(bits)
    out = clean_pixels(ds, BOX)
    want = bits.copy()
    want[3:8, 2:6] = 0
    assert np.array_equal(out.pixel_array, want)


def test_no_boxes_returns_unchanged_copy() -> None:
    ds, arr = image()
    out = clean_pixels(ds, {"flagged": True, "results": [{"group": "whitelist", "coordinates": []}]})
    assert out is not ds
    assert np.array_equal(out.pixel_array, arr)
    assert "BurnedInAnnotation" not in out


def test_needs_pixel_data() -> None:
    ds, _ = image()
    del ds.PixelData
    with pytest.raises(ValueError, match="no PixelData"):
        clean_pixels(ds, BOX)


def test_inspect_then_clean_from_ultrasound_regions() -> None:
    recipe = load_recipe(
        text=(
            "FORMAT dicom\n%filter graylist\nLABEL Blank Image\n  coordinates all\n"
            "LABEL Clean Ultrasound Regions\n  present SequenceOfUltrasoundRegions\n"
            "  keepcoordinates from:SequenceOfUltrasoundRegions\n"
            "LABEL Header strip\n  contains Modality US\n  ctpcoordinates 0,0,10,2\n"
        )
    )
    ds, arr = image()
    item = Dataset()
    item.RegionLocationMinX0, item.RegionLocationMinY0 = 2, 3
    item.RegionLocationMaxX1, item.RegionLocationMaxY1 = 7, 9
    ds.SequenceOfUltrasoundRegions = [item]
    out = clean_pixels(ds, inspect_dataset(ds, recipe))
    want = np.zeros_like(arr)
    want[3:9, 2:7] = arr[3:9, 2:7]
    want[0:2, :] = 0  # ctp 0,0,10,2 -> 0,0,10,2 (x, y, w, h) scrubbed after the keep
    assert np.array_equal(out.pixel_array, want)


def test_header_is_checked_before_the_mask_or_a_decode_is_allocated() -> None:
    import tracemalloc

    from deid_workers.recipe.pixels import PixelLimitError, check_pixels, decoded_size
    from deid_workers.synth import make_dataset

    ds = make_dataset(1, rows=4, cols=4, modality="US")  # 16-bit grey
    assert check_pixels(ds) == decoded_size(ds) == 32
    ds.Rows = ds.Columns = 65535
    ds.NumberOfFrames = 2
    verdict = {"results": [{"group": "g", "coordinates": [[0, "all"]]}]}
    tracemalloc.start()
    try:
        with pytest.raises(PixelLimitError, match="decodes to 17179344900 bytes"):
            clean_pixels(ds, verdict)
        with pytest.raises(PixelLimitError, match="32 bytes is shorter than the 17179344900"):
            clean_pixels(ds, verdict, max_bytes=1 << 40)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    del ds.Rows
    with pytest.raises(PixelLimitError, match="Rows is missing"):
        check_pixels(ds)
