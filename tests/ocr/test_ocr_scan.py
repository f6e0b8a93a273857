"""ocr_dataset, redact and verify_redacted: judged with a scripted engine, then with real OCR.

The real-OCR tests use the session's engines (conftest) on small generated images; what they
check is the plumbing (frames, overlays, boxes, redaction, verification), not recall, which the
benchmark measures (python -m benchmarks.ocr).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ScriptedEngine

from deid_workers import synth
from deid_workers.ocr import (
    OcrPolicy,
    TextBox,
    identifying_values,
    ocr_dataset,
    redact,
    verify_redacted,
)
from deid_workers.ocr.scan import SAME_LINE
from deid_workers.synth_burned import PHI, TextSpec, make_text_dataset

POLICY = OcrPolicy()


def _covered(truth, redactions) -> float:  # type: ignore[no-untyped-def]
    mask = np.zeros(truth.ink.shape, bool)
    for r in redactions:
        if r.source == truth.source:
            x0, y0 = max(r.x0 - truth.x0, 0), max(r.y0 - truth.y0, 0)
            x1, y1 = min(r.x1, truth.x1) - truth.x0, min(r.y1, truth.y1) - truth.y0
            if x1 > x0 and y1 > y0:
                mask[y0:y1, x0:x1] = True
    return float((mask & truth.ink).sum() / truth.ink.sum())


# -- judged with a scripted engine ------------------------------------------------------------

def test_boxes_are_judged_and_the_verdict_holds_no_text() -> None:
    ds = synth.make_dataset(3, rows=64, cols=64)          # DOE^JANE^P0003, PID-0003-SENT
    engine = ScriptedEngine([
        TextBox(2, 2, 40, 10, "DOE, JANE", 0.95),
        TextBox(2, 20, 14, 28, "Pt", 0.9),                  # a piece of a line ...
        TextBox(15, 20, 60, 28, "PID-0003-SENT", 0.99),     # ... whose rest is PHI
        TextBox(2, 40, 10, 48, "L", 0.99),
        TextBox(20, 40, 60, 48, "HELLO THERE", 0.97),
    ])
    v = ocr_dataset(ds, engine, POLICY)
    assert v.status == "redact" and v.frames_read == 1 and v.frames_total == 1
    assert [(b.kind, b.reason) for b in v.boxes] == [
        ("phi", "PatientName"), ("phi", SAME_LINE), ("phi", "PatientID"), ("allowed", "allow-list"),
        ("text", "other text")]
    assert v.counts == {"phi": 3, "allowed": 1, "text": 0 + 1, "unsure": 0, "redacted": 3}
    dumped = json.dumps(v.to_dict())
    assert not any(s in dumped for s in synth.phi_strings(3) | {"DOE", "JANE", "HELLO"})
    strict = ocr_dataset(ds, ScriptedEngine(list(engine.reads[0])), OcrPolicy(redact_text=True))
    assert strict.counts["redacted"] == 4


def test_unsure_text_quarantines_or_is_blacked_out_by_policy() -> None:
    ds = synth.make_dataset(rows=32, cols=32)
    boxes = [TextBox(1, 1, 20, 8, "X7#q", 0.2)]
    assert ocr_dataset(ds, ScriptedEngine(boxes), POLICY).status == "quarantine"
    v = ocr_dataset(ds, ScriptedEngine(boxes), OcrPolicy(on_unsure="redact"))
    assert v.status == "redact" and v.counts["redacted"] == 1
    assert ocr_dataset(ds, ScriptedEngine([]), POLICY).status == "clean"


def test_undecodable_pixels_quarantine_without_quoting_anything() -> None:
    ds = synth.make_dataset(rows=32, cols=32)
    ds.PixelData = ds.PixelData[:10]
    v = ocr_dataset(ds, ScriptedEngine(), POLICY)
    assert v.status == "quarantine" and v.error and v.error.startswith("pixels could not be decoded (")


def test_the_original_header_judges_a_de_identified_copy() -> None:
    original = identifying_values(synth.make_dataset(3))
    ds = synth.make_dataset(3, rows=32, cols=32, phi=False)   # the same file de-identified
    boxes = [TextBox(1, 1, 30, 8, "Jane Doe", 0.9)]
    assert ocr_dataset(ds, ScriptedEngine(boxes), POLICY).status == "clean"
    assert verify_redacted(ds, original, ScriptedEngine(boxes), POLICY).status == "quarantine"
    stray = [TextBox(1, 1, 30, 8, "x", 0.2)]                     # a blackout's edge read as a letter
    check = verify_redacted(ds, original, ScriptedEngine(stray), POLICY)
    assert check.status == "clean" and check.counts["unsure"] == 1


def test_each_sampled_frame_and_overlay_is_read_once() -> None:
    ds = synth.make_dataset(rows=8, cols=8, frames=30)
    for elem, vr, value in ((0x0010, "US", 8), (0x0011, "US", 8), (0x0100, "US", 1), (0x0102, "US", 0),
                            (0x3000, "OW", b"\0" * 8)):
        ds.add_new(0x60000000 | elem, vr, value)
    engine = ScriptedEngine()
    v = ocr_dataset(ds, engine, OcrPolicy(max_frames=4))
    assert v.frames_read == 5 and v.frames_total == 30 and len(engine.seen) == 5
    assert set(v.shapes) == {"pixels", "overlay 6000"}


# -- real OCR ---------------------------------------------------------------------------------

def _phi_specs() -> list[TextSpec]:
    # patient 0: SMITH^OLIVIA, ID 00104729, born 1935-01-01, accession ACC-0000-000
    return [
        TextSpec("SMITH, OLIVIA", 20, 20, 18, 0, PHI, "PatientName"),
        TextSpec("ID: 00104729", 20, 60, 18, 0, PHI, "PatientID"),
        TextSpec("DOB 01/01/1935", 20, 100, 18, 0, PHI, "PatientBirthDate"),
        TextSpec("ACC-0000-000", 225, 40, 18, 90, PHI, "AccessionNumber"),
        TextSpec("120 kVp", 20, 200, 18),
        TextSpec("R", 180, 200, 22),
    ]


def test_real_ocr_finds_redacts_and_verifies_grey(rapid) -> None:  # type: ignore[no-untyped-def]
    case = make_text_dataset(_phi_specs(), rows=256, cols=256, photometric="MONOCHROME2-window")
    v = ocr_dataset(case.ds, rapid, POLICY)
    assert v.status == "redact", v.to_dict()
    for t in case.truth:
        cov = _covered(t, v.redactions())
        assert (cov >= 0.98) if t.kind == PHI else (cov == 0.0), (t.field, t.x0, t.y0, cov)
    cleaned = redact(case.ds, v)
    assert cleaned.BurnedInAnnotation == "NO" and case.ds.get("BurnedInAnnotation") != "NO"
    r = v.redactions()[0]
    assert not cleaned.pixel_array[r.y0:r.y1, r.x0:r.x1].any()
    assert verify_redacted(cleaned, identifying_values(case.ds), rapid, POLICY).status == "clean"


def test_real_ocr_on_ybr_colour_and_on_every_frame(rapid) -> None:  # type: ignore[no-untyped-def]
    specs = [TextSpec("Olivia Smith", 30, 30, 20, 0, PHI, "PatientName"), TextSpec("Gain 52", 30, 120, 18)]
    case = make_text_dataset(specs, rows=160, cols=224, rgb=True, photometric="YBR_FULL", frames=2)
    assert case.ds.PhotometricInterpretation == "YBR_FULL"
    v = ocr_dataset(case.ds, rapid, POLICY)
    assert v.status == "redact" and v.frames_read == 2
    assert [b.kind for b in v.boxes if b.frame == 0] == ["phi", "allowed"]
    cleaned = redact(case.ds, v)
    r = v.redactions()[0]
    box = cleaned.pixel_array[:, r.y0:r.y1, r.x0:r.x1]                   # both frames, still YBR:
    assert not box[..., 0].any() and (box[..., 1:] == 128).all()          # black, no chroma
    assert verify_redacted(cleaned, identifying_values(case.ds), rapid, POLICY).status == "clean"


@pytest.mark.parametrize("overlay", ["data", "highbit"])
def test_real_ocr_reads_overlays_and_clears_them(rapid, overlay: str) -> None:  # type: ignore[no-untyped-def]
    specs = [TextSpec("SMITH OLIVIA", 20, 20, 20, 0, PHI, "PatientName", source="overlay 6000"),
             TextSpec("L", 200, 200, 22)]
    case = make_text_dataset(specs, rows=240, cols=240, overlay=overlay)
    v = ocr_dataset(case.ds, rapid, POLICY)
    phi = [b for b in v.boxes if b.kind == "phi"]
    assert v.status == "redact" and [b.source for b in phi] == ["overlay 6000"]
    assert _covered(case.truth[0], v.redactions()) >= 0.98
    cleaned = redact(case.ds, v)
    assert verify_redacted(cleaned, identifying_values(case.ds), rapid, POLICY).status == "clean"
    if overlay == "highbit":   # the overlay's bit is gone from the box, the image is as it was
        assert np.array_equal(cleaned.pixel_array, case.ds.pixel_array)


def test_tesseract_engine_runs_the_same_pipeline(tess) -> None:  # type: ignore[no-untyped-def]
    case = make_text_dataset([TextSpec("SMITH OLIVIA", 20, 30, 24, 0, PHI, "PatientName")], rows=128, cols=256)
    v = ocr_dataset(case.ds, tess, POLICY)
    assert v.engine == "tesseract" and v.status == "redact"
    assert _covered(case.truth[0], v.redactions()) >= 0.98


def test_an_engine_failure_is_raised_not_taken_for_a_bad_file() -> None:
    from deid_workers.errors import OcrEngineError

    class Broken(ScriptedEngine):
        def read(self, image: np.ndarray) -> list:
            raise OcrEngineError("broken", "read failed: RuntimeError")

    with pytest.raises(OcrEngineError):
        ocr_dataset(synth.make_dataset(rows=8, cols=8), Broken(), POLICY)
