"""What OCR found in one file: counts and box geometry, never text.

A verdict is safe to log, to put in a Celery result, in the run log and the summary: it holds
the engine name, how many frames were read, and per box its place, the decision (phi, allowed,
text, unsure) and the reason (a header keyword such as ``PatientName`` or a rule name such as
``date``). The text an engine read is dropped as soon as the box is judged.

``status`` says what the pipeline must do with the file:

- ``clean``: nothing to black out (no PHI, and nothing unsure that the policy quarantines);
- ``redact``: black out :meth:`OcrVerdict.redactions`, then verify the result;
- ``quarantine``: text that may be PHI could not be read with confidence (policy
  ``on_unsure="quarantine"``), or the pixels could not be decoded (``error`` says which step).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .frames import PIXELS
from .lines import EITHER, HORIZONTAL, VERTICAL, orientation
from .rules import ALLOWED, PHI, TEXT, UNSURE

__all__ = ["BoxVerdict", "OcrVerdict", "Redaction", "CLEAN", "REDACT", "QUARANTINE"]

CLEAN, REDACT, QUARANTINE = "clean", "redact", "quarantine"
_KINDS = (PHI, ALLOWED, TEXT, UNSURE)


@dataclass(frozen=True)
class BoxVerdict:
    """One text box as judged: geometry in its source's coordinates, decision, reason."""

    source: str          # "pixels" or "overlay 60xx"
    frame: int
    x0: int
    y0: int
    x1: int
    y1: int
    kind: str            # phi | allowed | text | unsure
    reason: str          # header keyword or rule name: never the text
    confidence: float
    redact: bool         # the policy blacks this box out

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "frame": self.frame, "box": [self.x0, self.y0, self.x1, self.y1],
                "kind": self.kind, "reason": self.reason, "confidence": round(self.confidence, 3),
                "redact": self.redact}


@dataclass(frozen=True)
class Redaction:
    """A box to black out (margin included, clipped), on every frame of its source."""

    source: str
    x0: int
    y0: int
    x1: int
    y1: int


@dataclass(frozen=True)
class OcrVerdict:
    """The result of :func:`deid_workers.ocr.ocr_dataset` for one file."""

    engine: str
    status: str
    frames_read: int = 0
    frames_total: int = 0
    boxes: tuple[BoxVerdict, ...] = ()
    margin: int = 0            # pixels added around every box ...
    margin_ratio: float = 0.0  # ... plus this share of the line's height (its shorter side)
    line_extend: float = 0.0   # along the line: margin plus this many line heights
    shapes: dict[str, tuple[int, int]] = field(default_factory=dict)   # source -> (rows, cols)
    error: str | None = None   # why the pixels could not be read (no value quoted)

    def count(self, kind: str) -> int:
        return sum(1 for b in self.boxes if b.kind == kind)

    @property
    def counts(self) -> dict[str, int]:
        """Boxes per decision, and how many the policy blacks out."""
        out = {k: self.count(k) for k in (PHI, ALLOWED, TEXT, UNSURE)}
        out["redacted"] = sum(1 for b in self.boxes if b.redact)
        return out

    def redactions(self) -> list[Redaction]:
        """Boxes to black out, each grown by the margins and clipped to its source, deduplicated.

        Every frame of a source gets every box found on any of its frames: text burned into a
        loop rarely moves, and frames that were not read (a sampled cine loop) must be covered.
        """
        seen: set[tuple[str, int, int, int, int]] = set()
        out = []
        for b in self.boxes:
            if not b.redact:
                continue
            t = min(b.x1 - b.x0, b.y1 - b.y0)
            across = self.margin + int(round(self.margin_ratio * t))
            along = self.margin + int(round(self.line_extend * t))
            way = orientation(b)
            mx = along if way in (HORIZONTAL, EITHER) else across
            my = along if way in (VERTICAL, EITHER) else across
            rows, cols = self.shapes.get(b.source, (b.y1 + my, b.x1 + mx))
            key = (b.source, max(0, b.x0 - mx), max(0, b.y0 - my), min(cols, b.x1 + mx), min(rows, b.y1 + my))
            if key not in seen:
                seen.add(key)
                out.append(Redaction(*key))
        return out

    def pixel_coordinates(self) -> list[str]:
        """The pixel redactions as deid coordinates ``"x0,y0,x1,y1"`` (for recipe.clean_pixels)."""
        return [f"{r.x0},{r.y0},{r.x1},{r.y1}" for r in self.redactions() if r.source == PIXELS]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for the store, the inspect report and task results: counts and
        geometry only, and everything :meth:`from_dict` needs to black out the same boxes
        (the margins and each source's shape)."""
        return {"engine": self.engine, "status": self.status, "frames_read": self.frames_read,
                "frames_total": self.frames_total, "counts": self.counts,
                "error": self.error, "boxes": [b.to_dict() for b in self.boxes],
                "margin": self.margin, "margin_ratio": self.margin_ratio,
                "line_extend": self.line_extend,
                "shapes": {source: list(shape) for source, shape in self.shapes.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OcrVerdict:
        """The verdict :meth:`to_dict` gave (the clean stage reads what the ocr stage stored).

        Raises ValueError when ``data`` is not such a form (a box without four corners, a
        status or decision we do not know)."""
        try:
            boxes = []
            for b in data.get("boxes") or ():
                x0, y0, x1, y1 = (int(v) for v in b["box"])
                if b["kind"] not in _KINDS:
                    raise ValueError(f"unknown box decision {b['kind']!r}")
                boxes.append(BoxVerdict(str(b["source"]), int(b["frame"]), x0, y0, x1, y1,
                                        str(b["kind"]), str(b["reason"]), float(b["confidence"]),
                                        bool(b["redact"])))
            status = str(data["status"])
            if status not in (CLEAN, REDACT, QUARANTINE):
                raise ValueError(f"unknown verdict status {status!r}")
            shapes = {str(k): (int(v[0]), int(v[1])) for k, v in (data.get("shapes") or {}).items()}
            error = data.get("error")
            return cls(engine=str(data["engine"]), status=status,
                       frames_read=int(data.get("frames_read") or 0),
                       frames_total=int(data.get("frames_total") or 0), boxes=tuple(boxes),
                       margin=int(data.get("margin") or 0),
                       margin_ratio=float(data.get("margin_ratio") or 0.0),
                       line_extend=float(data.get("line_extend") or 0.0), shapes=shapes,
                       error=None if error is None else str(error))
        except (KeyError, TypeError, IndexError) as exc:
            raise ValueError(f"not an OCR verdict ({type(exc).__name__})") from None

    def summary(self) -> dict[str, Any]:
        """What the run log and the summary say of a file: its status, frames read and box
        counts (found, per decision, to black out); no geometry."""
        counts = self.counts
        return {"status": self.status, "frames": self.frames_read, "boxes": len(self.boxes),
                "phi": counts[PHI], "unsure": counts[UNSURE], "to_redact": counts["redacted"],
                **({"error": self.error} if self.error else {})}
