"""Lines, redaction boxes with their margins, and verdicts that carry no text."""

from __future__ import annotations

import json

from deid_workers.ocr.engine import TextBox
from deid_workers.ocr.lines import EITHER, HORIZONTAL, VERTICAL, orientation, same_line, spread
from deid_workers.ocr.verdict import BoxVerdict, OcrVerdict


def _tb(x0: int, y0: int, x1: int, y1: int) -> TextBox:
    return TextBox(x0, y0, x1, y1, "", 1.0)


def test_orientation_and_same_line() -> None:
    assert orientation(_tb(0, 0, 60, 10)) == HORIZONTAL
    assert orientation(_tb(0, 0, 10, 60)) == VERTICAL
    assert orientation(_tb(0, 0, 10, 12)) == EITHER
    line = _tb(100, 50, 200, 62)
    assert same_line(line, _tb(205, 51, 240, 63))           # next word
    assert same_line(line, _tb(80, 50, 96, 62))             # a short label before it
    assert not same_line(line, _tb(230, 50, 260, 62))       # 30 px away: more than 1.5 line heights
    assert not same_line(line, _tb(205, 70, 240, 82))       # the line below
    assert same_line(_tb(10, 100, 22, 200), _tb(10, 203, 22, 260))   # vertical text
    assert not same_line(_tb(10, 100, 22, 200), _tb(30, 100, 42, 200))  # a parallel column


def test_spread_follows_chains_within_one_frame_only() -> None:
    boxes = [_tb(0, 0, 50, 10), _tb(55, 0, 90, 10), _tb(95, 0, 120, 10), _tb(55, 0, 90, 10)]
    out = spread(boxes, [True, False, False, False], [("pixels", 0)] * 3 + [("pixels", 1)])
    assert out == [True, True, True, False]


def _verdict(*boxes: BoxVerdict, **kw: object) -> OcrVerdict:
    return OcrVerdict(engine="x", status="redact", boxes=boxes, shapes={"pixels": (100, 200)}, **kw)  # type: ignore[arg-type]


def _box(x0: int, y0: int, x1: int, y1: int, redact: bool = True, source: str = "pixels") -> BoxVerdict:
    return BoxVerdict(source, 0, x0, y0, x1, y1, "phi" if redact else "allowed", "r", 0.9, redact)


def test_redactions_grow_along_the_line_more_than_across_and_clip() -> None:
    v = _verdict(_box(50, 40, 110, 50), _box(5, 90, 15, 99, redact=False),
                 margin=2, margin_ratio=0.2, line_extend=1.0)
    (r,) = v.redactions()
    assert (r.x0, r.y0, r.x1, r.y1) == (50 - 12, 40 - 4, 110 + 12, 50 + 4)
    tall = _verdict(_box(190, 10, 198, 90), margin=2, margin_ratio=0.25, line_extend=1.0)
    (r,) = tall.redactions()
    assert (r.x0, r.y0, r.x1, r.y1) == (190 - 4, 0, 200, 90 + 10)
    assert tall.pixel_coordinates() == ["186,0,200,100"]


def test_the_same_box_on_many_frames_is_one_redaction() -> None:
    v = _verdict(*(BoxVerdict("pixels", f, 10, 10, 50, 20, "phi", "date", 0.9, True) for f in range(5)))
    assert len(v.redactions()) == 1


def test_verdict_json_has_counts_and_geometry_only() -> None:
    v = _verdict(_box(1, 2, 30, 12), _box(40, 2, 60, 12, redact=False), _box(0, 0, 3, 3, source="overlay 6000"))
    d = v.to_dict()
    assert d["counts"] == {"phi": 2, "allowed": 1, "text": 0, "unsure": 0, "redacted": 2}
    assert d["boxes"][0] == {"source": "pixels", "frame": 0, "box": [1, 2, 30, 12], "kind": "phi", "reason": "r",
                             "confidence": 0.9, "redact": True}
    assert set(json.loads(json.dumps(d))) == {"engine", "status", "frames_read", "frames_total", "counts", "error",
                                              "boxes", "margin", "margin_ratio", "line_extend", "shapes"}


def test_a_stored_verdict_blacks_out_the_same_boxes() -> None:
    # The ocr stage stores to_dict(); the clean stage rebuilds the verdict from it.
    v = _verdict(_box(50, 40, 110, 50), _box(5, 90, 15, 99, redact=False), _box(0, 0, 3, 3, source="overlay 6000"),
                 margin=2, margin_ratio=0.2, line_extend=1.0, frames_read=2, frames_total=3)
    back = OcrVerdict.from_dict(json.loads(json.dumps(v.to_dict())))
    assert back == v and back.redactions() == v.redactions()
    assert back.summary() == {"status": "redact", "frames": 2, "boxes": 3, "phi": 2, "unsure": 0, "to_redact": 2}
    for broken in ({}, {**v.to_dict(), "status": "maybe"},
                   {**v.to_dict(), "boxes": [{**v.to_dict()["boxes"][0], "box": [1, 2]}]},
                   {**v.to_dict(), "boxes": [{**v.to_dict()["boxes"][0], "kind": "secret"}]}):
        try:
            OcrVerdict.from_dict(broken)
        except ValueError:
            continue
        raise AssertionError(f"accepted {broken}")


def test_which_files_plain_ocr_reads() -> None:
    from deid_workers import synth
    from deid_workers.ocr.select import ocr_reason

    ct = synth.make_dataset(rows=4, cols=4)                       # ORIGINAL PRIMARY AXIAL CT
    assert ocr_reason(ct) is None
    assert ocr_reason(ct, flagged_by_recipe=True) == "recipe filter"
    ct.BurnedInAnnotation = "YES"
    assert ocr_reason(ct) == "BurnedInAnnotation YES"
    assert ocr_reason(synth.make_dataset(rows=4, cols=4, modality="US")) == "ultrasound"
    assert ocr_reason(synth.make_dataset(rows=4, cols=4, samples=3, modality="OT")) == "secondary capture"
    derived = synth.make_dataset(rows=4, cols=4)
    derived.ImageType = ["DERIVED", "SECONDARY", "SCREEN SAVE"]
    assert ocr_reason(derived) == "derived or secondary image"
    parametric = synth.make_dataset(rows=4, cols=4)
    parametric.SOPClassUID = "1.2.840.10008.5.1.4.1.1.30"        # a prefix of no risky class
    assert ocr_reason(parametric) is None
    del derived.PixelData
    assert ocr_reason(derived) is None                            # nothing to read


def test_package_surface_and_no_engine_at_import() -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    import deid_workers.ocr as ocr

    assert len(set(ocr.__all__)) == len(ocr.__all__)
    for name in ocr.__all__:
        assert hasattr(ocr, name), name
    root = str(Path(__file__).resolve().parents[2])
    code = ("import sys, deid_workers.ocr; "
            "print(sorted(m for m in ('rapidocr', 'onnxruntime', 'cv2') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": root})
    assert done.stdout.strip() == "[]"
