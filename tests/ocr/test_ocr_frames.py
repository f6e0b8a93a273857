"""Frames as a viewer shows them: windows, MONOCHROME1, colour spaces, palettes; cine sampling."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.pixels import convert_color_space

from deid_workers import synth
from deid_workers.ocr.frames import PIXELS, frame_indices, iter_frames


def _grey(values: np.ndarray, **elements: object):  # type: ignore[no-untyped-def]
    frames = values.shape[0] if values.ndim == 3 else 1
    rows, cols = values.shape[-2:]
    ds = synth.make_dataset(rows=rows, cols=cols, frames=frames, modality="MR")
    ds.PixelData = values.astype("<u2").tobytes()
    for k, v in elements.items():
        setattr(ds, k, v)
    return ds


def test_window_center_width_is_applied_after_rescale() -> None:
    # stored 1024 + HU; window 40/400 shows -160..240 HU
    hu = np.array([[-1000, -160, 40, 240, 1000]], dtype=np.int32)
    ds = _grey((hu + 1024)[np.newaxis], RescaleIntercept="-1024", RescaleSlope="1", WindowCenter="40",
               WindowWidth="400")
    img = next(iter_frames(ds)).image
    assert img.dtype == np.uint8
    assert img[0, 0] == 0 and img[0, 4] == 255
    assert img[0, 1] <= 1 and img[0, 3] >= 254 and 125 <= img[0, 2] <= 130


def test_no_window_means_min_max_and_monochrome1_is_inverted() -> None:
    values = np.array([[[100, 600, 1100]]], dtype=np.uint16)
    m2 = next(iter_frames(_grey(values))).image
    assert list(m2[0]) == [0, 128, 255]
    m1 = next(iter_frames(_grey(values, PhotometricInterpretation="MONOCHROME1"))).image
    assert list(m1[0]) == [255, 127, 0]


def test_a_broken_window_falls_back_to_min_max() -> None:
    values = np.array([[[0, 4095]]], dtype=np.uint16)
    img = next(iter_frames(_grey(values, WindowCenter="40", WindowWidth="0"))).image
    assert list(img[0]) == [0, 255]


def test_rgb_and_ybr_come_out_as_rgb() -> None:
    rgb = np.zeros((1, 4, 4, 3), np.uint8)
    rgb[..., 0] = 200
    ds = synth.make_dataset(rows=4, cols=4, samples=3)
    ds.PixelData = rgb.tobytes()
    img = next(iter_frames(ds)).image
    assert img.shape == (4, 4, 3) and img[0, 0].tolist() == [200, 0, 0]
    ds.PixelData = convert_color_space(rgb[0], "RGB", "YBR_FULL").tobytes()
    ds.PhotometricInterpretation = "YBR_FULL"
    back = next(iter_frames(ds)).image
    assert np.abs(back[0, 0].astype(int) - [200, 0, 0]).max() <= 2


def test_palette_colour_goes_through_its_tables() -> None:
    ds = synth.make_dataset(rows=2, cols=2, modality="US")
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ds.PixelData = bytes([0, 1, 1, 0])
    for colour, entries in (("Red", [0, 65535]), ("Green", [0, 0]), ("Blue", [65535, 0])):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [2, 0, 16])
        setattr(ds, f"{colour}PaletteColorLookupTableData", np.array(entries, "<u2").tobytes())
    img = next(iter_frames(ds)).image
    assert img.dtype == np.uint8 and img.shape == (2, 2, 3)
    assert img[0, 1].tolist() == [255, 0, 0] and img[0, 0].tolist() == [0, 0, 255]


@pytest.mark.parametrize(("total", "most", "expected"), [
    (3, 16, [0, 1, 2]), (100, 5, [0, 25, 50, 74, 99]), (1000, 2, [0, 999]), (10, 1, [0]),
])
def test_frame_sampling(total: int, most: int, expected: list[int]) -> None:
    assert frame_indices(total, most) == expected


def test_every_frame_of_a_short_loop_and_a_sample_of_a_long_one() -> None:
    values = np.arange(20, dtype=np.uint16).reshape(20, 1, 1) * np.ones((1, 2, 2), np.uint16)
    values[:, 0, 0] = 4095   # so min-max keeps each frame's own level visible
    ds = _grey(values)
    assert [f.index for f in iter_frames(ds, max_frames=32)] == list(range(20))
    sampled = list(iter_frames(ds, max_frames=4))
    assert [f.index for f in sampled] == [0, 6, 13, 19] and all(f.source == PIXELS for f in sampled)


def test_no_pixel_data_means_no_frames() -> None:
    ds = synth.make_dataset()
    del ds.PixelData
    assert list(iter_frames(ds)) == []
