"""Files that appear whole or not at all: the exports and reports a run writes.

Written under a hidden temporary name in the destination's folder, fsynced, then renamed over
the destination (and the folder fsynced, so the new name survives a power loss), so a reader
(or a crash) never meets half a file, and a failed write leaves the previous version as it was.
DICOM outputs have their own writer (:mod:`deid_workers.fs.publish`): they must also refuse
to replace an existing file and batch their fsyncs.
"""

from __future__ import annotations

import os
import tempfile
from types import TracebackType
from typing import IO, Any

from .durable import fsync_dir
from .paths import TEMP_SUFFIX, temp_prefix

__all__ = ["AtomicFile"]


class AtomicFile:
    """``with AtomicFile(dest) as fh: fh.write(...)``: published on a clean exit, discarded if
    the block raises. :meth:`commit` and :meth:`discard` do the same outside a ``with``."""

    def __init__(self, dest: str | os.PathLike[str], *, binary: bool = False,
                 newline: str | None = None, mode: int = 0o644, replace: bool = True) -> None:
        self.dest = os.fspath(dest)
        self.mode = mode
        self.replace = replace
        folder, name = os.path.split(self.dest)
        fd, self.tmp = tempfile.mkstemp(prefix=temp_prefix(name), suffix=TEMP_SUFFIX, dir=folder or ".")
        self.file: IO[Any] = (os.fdopen(fd, "wb") if binary else
                              os.fdopen(fd, "w", encoding="utf-8", newline=newline))
        self._done = False

    def __enter__(self) -> IO[Any]:
        return self.file

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()

    def commit(self) -> None:
        """Flush, fsync, rename over the destination (``mode``: 0644 like a plain write, 0600
        for identifiers and run logs), and fsync the folder: without it a power loss could
        keep the old file, or none, under the name. With ``replace=False`` an existing
        destination is kept and FileExistsError raised (a hard link publishes the file only
        if the name is free, atomically)."""
        if self._done:
            return
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.chmod(self.tmp, self.mode)
            if self.replace:
                os.replace(self.tmp, self.dest)
            else:
                os.link(self.tmp, self.dest)
                os.unlink(self.tmp)
        except BaseException:
            self.discard()
            raise
        self._done = True
        fsync_dir(os.path.dirname(self.dest) or ".")

    def discard(self) -> None:
        """Close and remove the temporary file; the destination is untouched."""
        self._done = True
        if not self.file.closed:
            self.file.close()
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass
