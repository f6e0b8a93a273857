"""Overlay planes: their own OverlayData and the retired high bits of the pixel data."""

from __future__ import annotations

import numpy as np
from pydicom.pixels import pack_bits

from deid_workers import synth
from deid_workers.ocr.frames import iter_frames
from deid_workers.ocr.overlays import clear_overlay_box, high_bit_position, overlay_groups, overlay_planes


def _with_overlay_data(bits: np.ndarray, group: int = 0x6002, frames: int = 1):  # type: ignore[no-untyped-def]
    rows, cols = bits.shape[-2:]
    ds = synth.make_dataset(rows=8, cols=8)
    ds.add_new((group << 16) | 0x0010, "US", rows)
    ds.add_new((group << 16) | 0x0011, "US", cols)
    ds.add_new((group << 16) | 0x0015, "IS", frames)
    ds.add_new((group << 16) | 0x0050, "SS", [3, 2])
    ds.add_new((group << 16) | 0x0100, "US", 1)
    ds.add_new((group << 16) | 0x0102, "US", 0)
    ds.add_new((group << 16) | 0x3000, "OW", pack_bits(bits.astype(np.uint8).ravel()))
    return ds


def test_overlay_data_frames_are_read_with_their_origin() -> None:
    bits = np.zeros((2, 5, 6), bool)   # odd size: frames are not byte aligned
    bits[0, 1, 2] = bits[1, 4, 5] = True
    ds = _with_overlay_data(bits, frames=2)
    assert overlay_groups(ds) == [0x6002] and high_bit_position(ds, 0x6002) is None
    planes = list(overlay_planes(ds))
    assert [(p.source, p.index, p.origin) for p in planes] == [("overlay 6002", 0, (2, 1)), ("overlay 6002", 1, (2, 1))]
    assert np.array_equal(planes[0].bits, bits[0]) and np.array_equal(planes[1].bits, bits[1])
    images = [f for f in iter_frames(ds) if f.source != "pixels"]
    assert images[0].image.dtype == np.uint8 and images[0].image[1, 2] == 255 and images[0].image.sum() == 255


def test_clear_a_box_in_overlay_data_on_every_frame() -> None:
    bits = np.ones((2, 5, 6), bool)
    ds = _with_overlay_data(bits, frames=2)
    assert clear_overlay_box(ds, 0x6002, (1, 1, 3, 4))
    planes = list(overlay_planes(ds))
    for p in planes:
        assert not p.bits[1:4, 1:3].any() and p.bits.sum() == 30 - 6
    assert not clear_overlay_box(ds, 0x6004, (0, 0, 1, 1))


def test_high_bit_overlay_is_read_from_raw_pixel_data_and_cleared_there() -> None:
    ds = synth.make_dataset(rows=4, cols=4, frames=2)      # 16 allocated, 12 stored
    words = np.frombuffer(ds.PixelData, "<u2").reshape(2, 4, 4).copy()
    words[:, 1, 1:3] |= 1 << 14
    ds.PixelData = words.tobytes()
    for elem, vr, value in ((0x0010, "US", 4), (0x0011, "US", 4), (0x0100, "US", 16), (0x0102, "US", 14)):
        ds.add_new(0x60000000 | elem, vr, value)
    assert high_bit_position(ds, 0x6000) == 14
    planes = list(overlay_planes(ds))
    assert len(planes) == 2 and planes[1].bits.sum() == 2 and planes[1].bits[1, 1]
    pixels_before = ds.pixel_array.copy()             # pydicom masks the overlay bit away
    assert clear_overlay_box(ds, 0x6000, (0, 0, 2, 4))
    after = np.frombuffer(ds.PixelData, "<u2").reshape(2, 4, 4)
    assert ((after >> 14) & 1).sum() == 2 and (after[:, 1, 2] >> 14).all()
    assert np.array_equal(ds.pixel_array, pixels_before)


def test_an_overlay_bit_within_bits_stored_is_not_an_overlay() -> None:
    ds = synth.make_dataset(rows=4, cols=4)
    for elem, vr, value in ((0x0010, "US", 4), (0x0011, "US", 4), (0x0100, "US", 16), (0x0102, "US", 3)):
        ds.add_new(0x60000000 | elem, vr, value)
    assert high_bit_position(ds, 0x6000) is None and list(overlay_planes(ds)) == []


def test_redact_when_the_recipe_removed_the_overlay_elements() -> None:
    from deid_workers.ocr.redact import redact
    from deid_workers.ocr.verdict import BoxVerdict, OcrVerdict

    ds = synth.make_dataset(rows=4, cols=4)
    words = np.frombuffer(ds.PixelData, "<u2").reshape(4, 4).copy()
    words[0, :] |= 1 << 15
    ds.PixelData = words.tobytes()
    box = BoxVerdict("overlay 6000", 0, 0, 0, 4, 1, "phi", "PatientName", 0.9, True)
    verdict = OcrVerdict(engine="x", status="redact", boxes=(box,), shapes={"overlay 6000": (4, 4)})
    out = redact(ds, verdict)                     # no 60xx elements left in ds
    assert not (np.frombuffer(out.PixelData, "<u2") >> 12).any()
    assert (np.frombuffer(ds.PixelData, "<u2") >> 15).sum() == 4     # the input is untouched
