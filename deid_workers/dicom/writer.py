"""A dataset written as one output: its Part-10 bytes, published atomically.

The bytes are those of ``save_as(enforce_file_format=True)`` (preamble, "DICM", file meta
filled in where missing, so every output opens in any reader, as deid's do), from
:func:`~deid_workers.dicom.encoder.encode_part10`; :mod:`deid_workers.fs.publish`
makes the file appear whole, or not at all, and never twice.
"""

from __future__ import annotations

import os

from pydicom.dataset import Dataset

from ..errors import OutputExistsError
from ..fs.publish import exists_at, open_folder, write_at
from ..reasons import UnwritableValue, element_of
from .encoder import encode_part10

__all__ = ["write_atomic"]


def write_atomic(
    ds: Dataset, dest: str | os.PathLike[str], *, overwrite: bool, sync: bool = True,
    root: str | os.PathLike[str] | None = None,
) -> None:
    """Write ``ds`` to ``dest`` so that ``dest`` is either absent/old or complete and new (see
    :func:`~deid_workers.fs.publish.write_at` for ``overwrite`` and ``sync``; ``root`` as
    :func:`~deid_workers.fs.publish.open_folder` takes it).

    An existing ``dest`` is refused before anything is encoded when not ``overwrite``.
    Raises :class:`OutputExistsError` (``dest`` as given) when it exists and not overwrite,
    :class:`~deid_workers.reasons.UnwritableValue` when pydicom cannot encode a value (no
    file is made), and any other ``OSError`` (disk full, ...).
    """
    shown = os.fspath(dest)
    folder, name = open_folder(shown, root, create=False)  # -1: not there yet
    try:
        if folder >= 0 and not overwrite and exists_at(folder, name):
            raise OutputExistsError(shown)
        try:
            data = encode_part10(ds)  # before any file exists: a dataset that cannot be written leaves none
        except MemoryError:
            raise
        except Exception as exc:
            # pydicom's writer refused a value; its message may quote it, so only the element
            # it names travels on (reasons.explain_failure words it for the run log).
            raise UnwritableValue(element_of(exc)) from exc
        if folder < 0:  # the first file of its folder: making it for every file cost more
            folder, name = open_folder(shown, root, create=True)
        write_at(folder, name, data, shown, overwrite=overwrite, sync=sync)
    finally:
        if folder >= 0:
            os.close(folder)
