"""The one exception tree of deid-workers.

Everything we raise on purpose derives from :class:`DeidError`, so a caller can catch it all
at one place (the CLI does, and turns it into one line on stderr and an exit code)::

    DeidError              root: `except DeidError` catches all we raise on purpose
    ├─ RecipeError         .path .line -> "deid.dicom:12: unknown action 'REMOV'"
    ├─ InputError          input unreadable or not DICOM (.path .reason) -> skipped and reported
    ├─ OutputExistsError   output present and no --overwrite (.path)
    ├─ IdentifiersError    ids file malformed, or refused by the safe unpickler (.path)
    ├─ ConfigError         names the variable: "DEID_BATCH_SIZE: expected an integer"
    ├─ StoreError          Redis unreachable or run unknown
    │  └─ RunRefused       a worker will not run it: not signed with the cluster key, another
    │                      key, or folders outside the worker's roots
    └─ OcrEngineError      the OCR engine is not installed or cannot load (.engine): names the fix

Messages never quote a DICOM element value: they may end up in logs and task results, which
must stay free of PHI. Facts are kept as attributes so tests and callers need not parse text.
"""

from __future__ import annotations

__all__ = [
    "DeidError",
    "RecipeError",
    "InputError",
    "OutputExistsError",
    "IdentifiersError",
    "ConfigError",
    "StoreError",
    "RunRefused",
    "OcrEngineError",
]


class DeidError(Exception):
    """Root of every error deid-workers raises on purpose."""


class RecipeError(DeidError):
    """A recipe could not be loaded; names the file and line so the author can fix it."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None) -> None:
        self.message = message
        self.path = path
        self.line = line
        where = path or "<recipe>"
        prefix = f"{where}:{line}: " if line is not None else f"{where}: "
        super().__init__(prefix + message)


class InputError(DeidError):
    """An input file is unreadable or not DICOM; the pipeline skips it and reports why."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class OutputExistsError(DeidError):
    """The output exists and --overwrite was not given; the file is left untouched."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"{path} already exists, overwrite set to False. Not writing.")


class IdentifiersError(DeidError):
    """An identifiers file is malformed or was refused by the restricted unpickler."""

    def __init__(self, message: str, path: str | None = None) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class ConfigError(DeidError):
    """A setting is invalid; the message starts with the variable's name."""


class StoreError(DeidError):
    """Redis is unreachable or a run is unknown."""


class RunRefused(StoreError):
    """A run (or a list it holds) that a worker will not act on: its record or a batch is not
    signed with the cluster key (written or altered by someone who holds only the Redis
    password), it was submitted with another key, or it points at folders outside the
    worker's own roots. The message says which."""


class OcrEngineError(DeidError):
    """The OCR engine named by the caller is missing or failed to load; says what to install."""

    def __init__(self, engine: str, message: str) -> None:
        self.engine = engine
        super().__init__(f"OCR engine {engine!r}: {message}")
