"""The settings of an OCR check, in one frozen object built once per worker.

Defaults were chosen by measurement on the generated corpus (``python -m benchmarks.ocr``;
docs/ocr.md has the figures): they favour recall of PHI over keeping harmless text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .allowlist import AllowList, load_allowlist

__all__ = ["OcrPolicy", "ON_UNSURE"]

ON_UNSURE = ("quarantine", "redact")


def _default_allow() -> AllowList:
    return load_allowlist()


@dataclass(frozen=True)
class OcrPolicy:
    """How boxes are judged and what is blacked out.

    - ``min_confidence``: below it a box that no content rule flags is ``unsure``.
    - ``on_unsure``: ``"quarantine"`` the file (the issue's rule: text we cannot read with
      confidence goes to a person), or ``"redact"`` the unsure boxes and release the file.
    - ``redact_text``: also black out readable text that is neither PHI nor allow-listed
      (for screen captures and scanned documents, where any text is suspect).
    - ``margin`` + ``margin_ratio`` x line height: how far a blackout extends past the box
      across its line; along the line it extends ``margin`` + ``line_extend`` x line height
      more (a detector often cuts the first or last letters off a line).
    - ``max_frames``: frames read per source (a longer loop is sampled, frames.py).
    - ``overlays``: read the 60xx overlay planes too.
    """

    allow: AllowList = field(default_factory=_default_allow)
    min_confidence: float = 0.5
    on_unsure: str = "quarantine"
    redact_text: bool = False
    margin: int = 2
    margin_ratio: float = 0.25
    line_extend: float = 1.25
    max_frames: int = 16
    overlays: bool = True

    def __post_init__(self) -> None:
        if self.on_unsure not in ON_UNSURE:
            raise ValueError(f"on_unsure must be one of {', '.join(ON_UNSURE)}")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError("min_confidence must be between 0 and 1")
        if self.margin < 0 or self.margin_ratio < 0 or self.line_extend < 0:
            raise ValueError("margin and margin_ratio must be >= 0")
        if self.max_frames < 1:
            raise ValueError("max_frames must be >= 1")

    @classmethod
    def with_allowlist(cls, path: str | Path | None, **settings: object) -> OcrPolicy:
        """A policy whose allow-list is read from ``path`` (None: the shipped one)."""
        return cls(allow=load_allowlist(path), **settings)  # type: ignore[arg-type]
