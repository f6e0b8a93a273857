"""Fixtures for the OCR tests: each real engine loaded once per session.

The OCR extra is optional, so without it these tests skip; CI sets ``DEID_REQUIRE_OCR=1``
(.ci/run), which turns a missing engine into a failure instead of a silent skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytest

from deid_workers.errors import OcrEngineError

REQUIRED = os.environ.get("DEID_REQUIRE_OCR") == "1"


def _engine(name: str) -> object:
    from deid_workers.ocr import load_engine

    try:
        return load_engine(name)
    except OcrEngineError as exc:
        if REQUIRED:
            pytest.fail(f"DEID_REQUIRE_OCR=1 but {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def rapid() -> object:
    return _engine("rapidocr")


@pytest.fixture(scope="session")
def tess() -> object:
    return _engine("tesseract")


@pytest.fixture(scope="session", autouse=True)
def _pillow() -> Iterator[None]:
    """The generator draws with Pillow (part of the extra)."""
    try:
        import PIL  # noqa: F401
    except ImportError:
        if REQUIRED:
            pytest.fail("DEID_REQUIRE_OCR=1 but Pillow is not installed")
        pytest.skip("Pillow is not installed (pip install '.[ocr]')")
    yield


class ScriptedEngine:
    """A test double: returns the boxes it was given, for the frame shapes it is shown.

    ``script`` maps a call number (0, 1, ...) to the boxes of that read; reads past the end
    find nothing. It records the images it was shown.
    """

    name = "scripted"

    def __init__(self, *reads: list) -> None:
        self.reads = list(reads)
        self.seen: list[np.ndarray] = []

    def read(self, image: np.ndarray) -> list:
        self.seen.append(image)
        n = len(self.seen) - 1
        return list(self.reads[n]) if n < len(self.reads) else []
