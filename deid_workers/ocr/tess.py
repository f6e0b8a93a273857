"""Debian's ``tesseract`` (5.x, LSTM, ``tesseract-ocr-eng``) behind :class:`Engine`.

A small wrapper of our own around the command line, not pytesseract: the image goes in on
stdin as a binary PGM/PPM (no imaging library needed), the TSV report comes out on stdout, and
words are joined into lines by Tesseract's own block/paragraph/line numbers. Offline: the
model is the system's ``eng.traineddata``.

Tesseract reads horizontal text only, so ``rotations`` (default 0, 90 and 270 degrees) runs it
once per orientation on the turned image and maps the boxes back; the three images are
stacked into one tall page (separated by blank rows) so the model is loaded once per call.
``scale`` enlarges the image first: Tesseract wants capital letters at least ~20 pixels high.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import numpy as np

from ..errors import OcrEngineError
from .engine import TextBox, check_image, clip_box, unturn_box

__all__ = ["TesseractEngine"]

DEFAULTS: dict[str, Any] = {
    "binary": "tesseract",
    "lang": "eng",
    "psm": 11,              # sparse text: find as much scattered text as possible, no layout
    "scale": 2,             # integer upscale before reading (nearest neighbour)
    "rotations": (0, 90, 270),
    "timeout": 60.0,        # seconds per call; a hang is an engine failure, not "no text"
}

_GAP = 32  # blank rows between the stacked orientations, so no line spans two of them


class TesseractEngine:
    """Lines of text from the tesseract command; confidence is the lowest word's (0-1)."""

    name = "tesseract"

    def __init__(self, **settings: Any) -> None:
        unknown = set(settings) - set(DEFAULTS)
        if unknown:
            raise OcrEngineError(self.name, f"unknown setting(s) {', '.join(sorted(unknown))}")
        self.settings = {**DEFAULTS, **settings}
        binary = shutil.which(self.settings["binary"])
        if binary is None:
            raise OcrEngineError(self.name, "the tesseract command is not on PATH; "
                                            "install it: apt-get install tesseract-ocr tesseract-ocr-eng")
        self._binary = binary
        bad = [r for r in self.settings["rotations"] if r not in (0, 90, 180, 270)]
        if bad or not self.settings["rotations"]:
            raise OcrEngineError(self.name, "rotations must be a non-empty subset of 0, 90, 180, 270")
        langs = subprocess.run([binary, "--list-langs"], capture_output=True, text=True, check=False)
        if self.settings["lang"] not in langs.stdout.split():
            raise OcrEngineError(self.name, f"language {self.settings['lang']!r} is not installed; "
                                            f"install it: apt-get install tesseract-ocr-{self.settings['lang']}")
        # OpenMP threads: one worker process per core, as for every engine.
        self._env = {**os.environ, "OMP_THREAD_LIMIT": "1"}

    def read(self, image: np.ndarray) -> list[TextBox]:
        check_image(image)
        rows, cols = image.shape[:2]
        scale = int(self.settings["scale"])
        big = image.repeat(scale, axis=0).repeat(scale, axis=1) if scale > 1 else image
        # Turn, stack, remember where each orientation starts.
        parts: list[tuple[int, int, np.ndarray]] = []   # (rotation, top row in the page, image)
        top = 0
        for rot in self.settings["rotations"]:
            turned = np.rot90(big, k=rot // 90)
            parts.append((rot, top, turned))
            top += turned.shape[0] + _GAP
        width = max(p[2].shape[1] for p in parts)
        page = np.zeros((top - _GAP, width) + big.shape[2:], np.uint8)
        for _rot, y, turned in parts:
            page[y:y + turned.shape[0], :turned.shape[1]] = turned
        out: list[TextBox] = []
        for line in self._lines(page):
            x0, y0, x1, y1, text, conf = line
            for rot, y, turned in parts:
                h, w = turned.shape[:2]
                if y <= y0 < y + h:
                    box = unturn_box((x0, y0 - y, x1, min(y1 - y, h)), rot, w, h)
                    bx0, by0, bx1, by1 = (v / scale for v in box)
                    tb = clip_box(bx0, by0, bx1, by1, text, conf, rows, cols)
                    if tb is not None:
                        out.append(tb)
                    break
        return out

    def _lines(self, page: np.ndarray) -> list[tuple[int, int, int, int, str, float]]:
        """Run tesseract on ``page``; one (x0, y0, x1, y1, text, confidence) per line."""
        if page.ndim == 2:
            header = f"P5\n{page.shape[1]} {page.shape[0]}\n255\n".encode()
        else:
            header = f"P6\n{page.shape[1]} {page.shape[0]}\n255\n".encode()
        s = self.settings
        cmd = [self._binary, "stdin", "stdout", "-l", s["lang"], "--psm", str(s["psm"]), "--oem", "1", "tsv"]
        try:
            done = subprocess.run(cmd, input=header + np.ascontiguousarray(page).tobytes(),
                                  capture_output=True, env=self._env, timeout=float(s["timeout"]), check=False)
        except subprocess.TimeoutExpired:
            raise OcrEngineError(self.name, f"no answer within {s['timeout']} s") from None
        if done.returncode != 0:
            raise OcrEngineError(self.name, f"exited with status {done.returncode}")
        lines: dict[tuple[str, str, str, str], list[tuple[int, int, int, int, str, float]]] = {}
        for row in done.stdout.decode("utf-8", "replace").splitlines()[1:]:
            f = row.split("\t")
            if len(f) != 12 or f[0] != "5":   # level 5 = word
                continue
            text = f[11].strip()
            if not text:
                continue
            left, top_, width, height = int(f[6]), int(f[7]), int(f[8]), int(f[9])
            conf = max(float(f[10]), 0.0) / 100.0
            lines.setdefault((f[1], f[2], f[3], f[4]), []).append((left, top_, left + width, top_ + height, text, conf))
        out = []
        for words in lines.values():
            words.sort(key=lambda w: w[0])
            out.append((min(w[0] for w in words), min(w[1] for w in words), max(w[2] for w in words),
                        max(w[3] for w in words), " ".join(w[4] for w in words), min(w[5] for w in words)))
        return out
