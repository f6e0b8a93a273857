"""The engines behind the one interface: what they read, where, and that they stay offline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deid_workers.errors import OcrEngineError
from deid_workers.ocr.engine import check_image, load_engine, unturn_box
from deid_workers.ocr.identifying import skeleton
from deid_workers.synth_burned import font_names, render_text

ROOT = Path(__file__).resolve().parents[2]


def _page(text: str, rotation: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    rows, cols = 200, 240
    alpha = render_text(text, font_names()[0], 20, rotation)
    img = np.full((rows, cols), 20, np.uint8)
    h, w = alpha.shape
    y, x = 30, 40
    img[y:y + h, x:x + w] = np.maximum(img[y:y + h, x:x + w], (alpha * 230).astype(np.uint8))
    return img, (x, y, x + w, y + h)


@pytest.mark.parametrize("rotation", [0, 90, 270])
@pytest.mark.parametrize("name", ["rapid", "tess"])
def test_engine_reads_a_line_where_it_is(name: str, rotation: int, request: pytest.FixtureRequest) -> None:
    engine = request.getfixturevalue(name)
    image, (x0, y0, x1, y1) = _page("PID-0421-SENT", rotation)
    boxes = engine.read(image)
    hits = [b for b in boxes if "0421" in skeleton(b.text).replace("O", "0")]
    assert hits, [(b.text, b.confidence) for b in boxes]
    b = hits[0]
    assert 0.0 <= b.confidence <= 1.0
    # the box sits on the ink (a few pixels of slack either way)
    assert b.x0 <= x0 + 6 and b.y0 <= y0 + 6 and b.x1 >= x1 - 6 and b.y1 >= y1 - 6
    assert b.x0 >= x0 - 15 and b.y0 >= y0 - 15 and b.x1 <= x1 + 15 and b.y1 <= y1 + 15
    rgb = engine.read(np.repeat(image[:, :, None], 3, axis=2))
    assert any("0421" in skeleton(t.text).replace("O", "0") for t in rgb)
    assert engine.read(np.zeros((40, 40), np.uint8)) == []


@pytest.mark.parametrize("rot", [0, 90, 180, 270])
def test_boxes_of_a_turned_page_map_back(rot: int) -> None:
    img = np.zeros((30, 50), np.uint8)
    img[5:9, 10:20] = 1                                  # the box x 10..20, y 5..9
    turned = np.rot90(img, k=rot // 90)
    ys, xs = np.nonzero(turned)
    box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert unturn_box(box, rot, turned.shape[1], turned.shape[0]) == (10, 5, 20, 9)


def test_bad_names_settings_and_images() -> None:
    with pytest.raises(OcrEngineError, match="unknown engine"):
        load_engine("nope")
    with pytest.raises(OcrEngineError, match="unknown setting"):
        load_engine("tesseract", colour=True)
    with pytest.raises(OcrEngineError, match="rotations"):
        load_engine("tesseract", rotations=(45,))
    for bad in (np.zeros((4, 4), np.uint16), np.zeros((4, 4, 4), np.uint8), np.zeros((0, 4), np.uint8)):
        with pytest.raises(ValueError):
            check_image(bad)


def test_no_network_at_import_load_or_read(rapid) -> None:  # type: ignore[no-untyped-def]
    # A fresh interpreter in which every socket connect and name lookup fails loudly.
    code = """
import socket, sys
def refuse(*a, **k):
    raise SystemExit("network used: " + repr(a[:2]))
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
import numpy as np
import deid_workers.ocr as ocr
for name in ("rapidocr", "tesseract"):
    engine = ocr.load_engine(name)
    engine.read(np.full((64, 128), 30, np.uint8))
print("offline ok")
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0 and "offline ok" in done.stdout, done.stderr[-2000:]
