"""Burned-in text found with OCR: read every frame and overlay, judge each box, black out PHI.

The pure API (no Celery, no Redis; the ``deid.ocr`` task and the clean stage are thin layers
over it)::

    from deid_workers.ocr import load_engine, OcrPolicy, ocr_dataset, redact, verify_redacted
    from deid_workers.ocr import identifying_values

    engine = load_engine()                 # once per worker process: loads the model
    policy = OcrPolicy()                   # or OcrPolicy.with_allowlist("my-allowlist.txt")
    verdict = ocr_dataset(ds, engine, policy)          # status clean | redact | quarantine
    if verdict.status == "redact":
        cleaned = redact(ds, verdict)
        check = verify_redacted(cleaned, identifying_values(ds), engine, policy)
        # check.status == "clean" -> release; otherwise quarantine

Needs the ``ocr`` extra (``pip install ".[ocr]"``): rapidocr and onnxruntime for the default
engine, Pillow for the generator; the tesseract engine needs Debian's ``tesseract-ocr``.
Importing this package loads no engine: :func:`load_engine` does.
"""

from __future__ import annotations

from .allowlist import AllowList, load_allowlist, parse_allowlist
from .engine import DEFAULT_ENGINE, ENGINES, Engine, TextBox, load_engine
from .frames import Frame, iter_frames
from .identifying import Identifying, identifying_values
from .policy import OcrPolicy
from .redact import clean_verdict, redact
from .rules import Decision, classify
from .scan import ocr_dataset, verify_redacted
from .select import has_pixels, ocr_reason
from .verdict import CLEAN, QUARANTINE, REDACT, BoxVerdict, OcrVerdict, Redaction

__all__ = [
    "AllowList", "BoxVerdict", "CLEAN", "DEFAULT_ENGINE", "Decision", "ENGINES", "Engine", "Frame",
    "Identifying", "OcrPolicy", "OcrVerdict", "QUARANTINE", "REDACT", "Redaction", "TextBox",
    "classify", "clean_verdict", "has_pixels", "identifying_values", "iter_frames", "load_allowlist",
    "load_engine", "ocr_dataset", "ocr_reason", "parse_allowlist", "redact", "verify_redacted",
]
