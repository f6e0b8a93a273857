"""dicom/overlays.py: a high-bit overlay made standard, and what it leaves alone."""

from __future__ import annotations

import copy

import numpy as np
from pydicom.encaps import encapsulate
from pydicom.pixels import unpack_bits
from pydicom.uid import ExplicitVRBigEndian, RLELossless

from deid_workers import synth
from deid_workers.dicom.overlays import high_bit_position, native_words, standardize_high_bit_overlays


def _with_high_bit(frames: int = 1, pos: int = 15, rows: int = 4, cols: int = 4):  # type: ignore[no-untyped-def]
    ds = synth.make_dataset(rows=rows, cols=cols, frames=frames)  # 16 allocated, 12 stored
    words = np.frombuffer(ds.PixelData, "<u2").reshape(frames, 4, 4).copy()
    for f in range(frames):
        words[f, f, :] |= 1 << pos  # row f of frame f
    ds.PixelData = words.tobytes()
    for elem, vr, value in ((0x0010, "US", rows), (0x0011, "US", cols), (0x0100, "US", 16), (0x0102, "US", pos)):
        ds.add_new(0x60020000 | elem, vr, value)
    return ds, words


def test_declared_frames_are_the_ones_moved_and_every_frame_is_cleared() -> None:
    ds, words = _with_high_bit(frames=3)
    ds.add_new(0x60020051, "US", 2)   # ImageFrameOrigin: frames 2..3
    ds.add_new(0x60020015, "IS", 5)   # more than there are: clipped
    assert standardize_high_bit_overlays(ds) == (0x6002,)
    bits = np.asarray(unpack_bits(ds[0x60023000].value, as_array=True))[:32].reshape(2, 4, 4)
    assert np.array_equal(bits, (words[1:] >> 15) & 1)
    assert (ds[0x60020015].value, ds[0x60020051].value) == (2, 2)
    after = native_words(ds)
    assert after is not None and not (after >> 12).any()
    assert np.array_equal(after, words & 0x0FFF)
    assert high_bit_position(ds, 0x6002) is None and standardize_high_bit_overlays(ds) == ()


def test_big_endian_words_keep_their_byte_order() -> None:
    ds, words = _with_high_bit()
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    ds.set_original_encoding(False, False, ds.original_character_set)  # as read from such a file
    ds.PixelData = words.astype(">u2").tobytes()
    assert standardize_high_bit_overlays(ds) == (0x6002,)
    assert np.array_equal(np.frombuffer(ds.PixelData, ">u2").reshape(1, 4, 4), words & 0x0FFF)
    assert ds[0x60023000].VR == "OB" and ds[0x60023000].value[:2] == b"\x0f\x00"


def test_what_is_left_alone() -> None:
    plain = synth.make_dataset(rows=4, cols=4)
    before = copy.deepcopy(plain)
    assert standardize_high_bit_overlays(plain) == () and plain == before

    odd, _ = _with_high_bit()
    odd[0x60020010].value = 3           # not the image's size: no viewer can draw it
    data = odd.PixelData
    assert standardize_high_bit_overlays(odd) == () and odd.PixelData == data

    pixel_bit, _ = _with_high_bit(pos=11)  # within BitsStored: a pixel bit, no overlay
    assert high_bit_position(pixel_bit, 0x6002) is None
    assert standardize_high_bit_overlays(pixel_bit) == ()

    packed, _ = _with_high_bit()
    packed.file_meta.TransferSyntaxUID = RLELossless  # encapsulated: nothing to move
    packed.PixelData = encapsulate([b"\0" * 32])
    packed["PixelData"].is_undefined_length = True
    assert native_words(packed) is None and standardize_high_bit_overlays(packed) == ()
    assert 0x60023000 not in packed
