"""RapidOCR (PP-OCRv6 small detector and recogniser, ONNX Runtime) behind :class:`Engine`.

Offline by construction: the three ONNX files are taken from the ``rapidocr`` wheel itself
and passed to it as explicit paths, so its download code (used when no path is given) is never
reached, and the recogniser's character list is read from the model's own metadata (checked at
load: without it rapidocr would fetch a dictionary). The wheel's default models changed between
releases, so the version is pinned in pyproject.toml (``.[ocr]``) and the file names are
checked here.

We call ``RapidOCR.__call__`` (its public API) but read its result objects' ``boxes``, ``txts``
and ``scores`` attributes, and at load we call its private ``_load_*_model`` methods (so
the models load at worker start) and check ``text_rec.session.have_key()``: not documented
API, pinned with the version; if they move, loading fails loudly with OcrEngineError.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OcrEngineError
from .engine import TextBox, check_image, clip_box, unturn_box

__all__ = ["RapidOcrEngine", "RAPIDOCR_VERSION", "MODEL_FILES"]

RAPIDOCR_VERSION = "3.10.0"
"""The release whose bundled models were measured (docs/ocr.md)."""

MODEL_FILES = {
    "Det": "PP-OCRv6_det_small.onnx",
    "Rec": "PP-OCRv6_rec_small.onnx",
    "Cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
}
"""The models in rapidocr 3.10.0's wheel (``rapidocr/models/``)."""

# Settings tuned for recall on the generated corpus (benchmarks/ocr.py, docs/ocr.md).
DEFAULTS: dict[str, Any] = {
    "threads": 1,            # one worker process per core: no intra-op threads to fight over
    "limit_side_len": 736,   # the detector sees the short side scaled up to this (multiple of 32)
    "det_thresh": 0.3,       # pixel probability that counts as text
    "box_thresh": 0.5,       # mean probability a detected region needs to be kept
    "unclip_ratio": 1.6,     # how far a detected region grows around the text
    "use_cls": True,         # 0/180 classifier: text upside down after the 90-degree turn
    "rotations": (0, 90),    # read the image as it is and turned by 90 degrees, keeping from the
                             # turned pass only lines across it (vertical in the original): the
                             # detector finds vertical text in pieces (recall 0.985 -> 0.993, half
                             # the speed; docs/ocr.md)
}


class RapidOcrEngine:
    """PP-OCRv6 via rapidocr; lines of text with the recogniser's score as confidence."""

    name = "rapidocr"

    def __init__(self, **settings: Any) -> None:
        unknown = set(settings) - set(DEFAULTS)
        if unknown:
            raise OcrEngineError(self.name, f"unknown setting(s) {', '.join(sorted(unknown))}")
        self.settings = {**DEFAULTS, **settings}
        if not self.settings["rotations"] or any(r not in (0, 90, 180, 270) for r in self.settings["rotations"]):
            raise OcrEngineError(self.name, "rotations must be a non-empty subset of 0, 90, 180, 270")
        try:
            import rapidocr
            from rapidocr import RapidOCR
        except ImportError as exc:  # onnxruntime missing raises here too
            raise OcrEngineError(
                self.name, f"cannot import ({exc.__class__.__name__}: {exc}); install the extra: pip install '.[ocr]'"
            ) from None
        models = Path(rapidocr.__file__).parent / "models"
        paths = {stage: models / fname for stage, fname in MODEL_FILES.items()}
        missing = [p.name for p in paths.values() if not p.is_file()]
        if missing:
            raise OcrEngineError(
                self.name,
                f"model file(s) {', '.join(missing)} not in the rapidocr package; install rapidocr=={RAPIDOCR_VERSION}",
            )
        s = self.settings
        params: dict[str, Any] = {
            "Global.log_level": "critical",   # "detection result is empty" is a warning per blank frame
            "Global.text_score": 0.0,         # keep every recognised line: we judge confidence ourselves
            "Global.use_cls": bool(s["use_cls"]),
            "EngineConfig.onnxruntime.intra_op_num_threads": int(s["threads"]),
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            "Det.limit_side_len": int(s["limit_side_len"]),
            "Det.thresh": float(s["det_thresh"]),
            "Det.box_thresh": float(s["box_thresh"]),
            "Det.unclip_ratio": float(s["unclip_ratio"]),
        }
        for stage, path in paths.items():
            params[f"{stage}.model_path"] = str(path)
        try:
            ocr: Any = RapidOCR(params=params)
            # Load the models now, not on the first file that has text (rapidocr loads each
            # stage on first use; these loaders are its private methods, pinned with the version).
            ocr._load_det_model()
            if s["use_cls"]:
                ocr._load_cls_model()
            rec = ocr._load_rec_model()
            if rec is None or not rec.session.have_key():
                raise OcrEngineError(self.name, "the recogniser model has no character list; "
                                                f"install rapidocr=={RAPIDOCR_VERSION}")
        except OcrEngineError:
            raise
        except Exception as exc:  # rapidocr and onnxruntime raise many kinds
            raise OcrEngineError(self.name, f"failed to load: {exc.__class__.__name__}: {exc}") from None
        self._ocr = ocr
        # rapidocr's logger is set at construction; keep it quiet whatever MESSAGELEVEL says.
        logging.getLogger("RapidOCR").setLevel(logging.CRITICAL)

    def read(self, image: np.ndarray) -> list[TextBox]:
        check_image(image)
        rows, cols = image.shape[:2]
        if image.ndim == 2:
            bgr = np.repeat(image[:, :, np.newaxis], 3, axis=2)
        else:
            bgr = np.ascontiguousarray(image[:, :, ::-1])  # rapidocr takes arrays as BGR
        out: list[TextBox] = []
        for rot in self.settings["rotations"]:
            turned = np.ascontiguousarray(np.rot90(bgr, k=rot // 90)) if rot else bgr
            th, tw = turned.shape[:2]
            for box in self._read(turned):
                if rot and (box.x1 - box.x0) < 1.5 * (box.y1 - box.y0):
                    continue   # the turned pass is for lines that are vertical in the original
                x0, y0, x1, y1 = unturn_box((box.x0, box.y0, box.x1, box.y1), rot, tw, th)
                clipped = clip_box(x0, y0, x1, y1, box.text, box.confidence, rows, cols)
                if clipped is not None:
                    out.append(clipped)
        return out

    def _read(self, bgr: np.ndarray) -> list[TextBox]:
        rows, cols = bgr.shape[:2]
        try:
            result = self._ocr(bgr)
        except Exception as exc:  # onnxruntime or rapidocr failed: the engine's fault, not the file's
            raise OcrEngineError(self.name, f"read failed: {exc.__class__.__name__}") from None
        quads = getattr(result, "boxes", None)
        if quads is None or len(quads) == 0:
            return []
        texts = getattr(result, "txts", None)
        scores = getattr(result, "scores", None)
        recognised = texts is not None and scores is not None and len(texts) == len(quads)
        out: list[TextBox] = []
        for i, quad in enumerate(np.asarray(quads, dtype=np.float64)):
            text, conf = (str(texts[i]), float(scores[i])) if recognised else ("", 0.0)  # type: ignore[index]
            box = clip_box(quad[:, 0].min(), quad[:, 1].min(), quad[:, 0].max() + 1, quad[:, 1].max() + 1,
                           text, conf, rows, cols)
            if box is not None:
                out.append(box)
        return out
