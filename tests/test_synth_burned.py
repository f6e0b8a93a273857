"""The burned-in text generator: its truth matches what it drew and what the header says."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest

pytest.importorskip("PIL")

from deid_workers.synth_burned import (  # noqa: E402
    BUILTIN_BITMAP,
    HARMLESS,
    PHI,
    TextSpec,
    font_names,
    make_burned_dataset,
    make_text_dataset,
    render_text,
)


def _roundtrip(ds: pydicom.Dataset) -> pydicom.Dataset:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buf.getvalue()))


@pytest.mark.parametrize("rgb", [False, True])
def test_generated_files_are_valid_and_their_truth_fits(rgb: bool) -> None:
    case = make_burned_dataset(7, rgb=rgb)
    back = _roundtrip(case.ds)
    rows, cols = (600, 800) if rgb else (512, 512)
    assert (back.Rows, back.Columns) == (rows, cols)
    assert back.pixel_array.shape[:2] == (rows, cols)
    kinds = [t.kind for t in case.truth]
    assert kinds.count(PHI) == 4 and 2 <= kinds.count(HARMLESS) <= 4
    assert {t.field for t in case.truth if t.kind == PHI} == {"PatientName", "PatientID", "PatientBirthDate",
                                                               "AccessionNumber"}
    for t in case.truth:
        assert 0 <= t.x0 < t.x1 <= cols and 0 <= t.y0 < t.y1 <= rows
        assert t.ink.shape == (t.y1 - t.y0, t.x1 - t.x0) and t.ink.any()
    # no two items overlap
    for i, a in enumerate(case.truth):
        for b in case.truth[i + 1:]:
            assert a.x1 <= b.x0 or b.x1 <= a.x0 or a.y1 <= b.y0 or b.y1 <= a.y0


def test_deterministic_and_varied() -> None:
    a, b = make_burned_dataset(3), make_burned_dataset(3)
    assert a.ds.PixelData == b.ds.PixelData and [t.x0 for t in a.truth] == [t.x0 for t in b.truth]
    cases = [make_burned_dataset(p, rgb=p % 2 == 1) for p in range(12)]
    assert len({str(c.ds.PatientName) for c in cases}) == 12
    assert len({c.ds.PhotometricInterpretation for c in cases}) >= 3
    assert {t.rotation for c in cases for t in c.truth} == {0, 90, 270}
    assert len({t.font for c in cases for t in c.truth}) >= 4


def test_the_text_drawn_is_in_the_pixels() -> None:
    case = make_text_dataset([TextSpec("HELLO", 10, 10, 20)], rows=64, cols=96)
    t = case.truth[0]
    px = case.ds.pixel_array.astype(int)
    inside, outside = px[t.y0:t.y1, t.x0:t.x1][t.ink], px[40:, :]
    assert inside.mean() > outside.mean() + 2000     # white text, 12-bit, on a dark background


@pytest.mark.parametrize("mode", ["data", "highbit"])
def test_overlay_modes(mode: str) -> None:
    case = make_burned_dataset(5, overlay=mode)
    first = case.truth[0]
    assert first.kind == PHI and first.source == "overlay 6000"
    back = _roundtrip(case.ds)
    assert back[0x60000010].value == 512
    assert (0x60003000 in back) is (mode == "data")


def test_fonts_and_rotation() -> None:
    assert BUILTIN_BITMAP in font_names()
    flat = render_text("ABC", font_names()[0], 20, 0)
    turned = render_text("ABC", font_names()[0], 20, 90)
    assert turned.shape == flat.shape[::-1] and np.allclose(np.rot90(flat), turned)
