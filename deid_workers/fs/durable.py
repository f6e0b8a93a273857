"""Making a batch of written files durable before the batch is recorded done.

Why a module of its own: on the disks this runs on, one ``fsync`` per small output costs
more than reading, de-identifying and writing the file, and one ``syncfs`` per batch little
(benchmarks/measurements.md). Outputs are therefore written without syncing
(:func:`deid_workers.dicom.writer.write_atomic` with ``sync=False``) and made
durable together here, once per batch and filesystem, before the batch commits: after a power
loss, a batch that counts as done has all its outputs on disk.

``syncfs(2)`` (Linux) flushes everything dirty on one filesystem, our files and their
directory entries included; where it is missing, each file and each directory is fsynced.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from collections.abc import Callable, Iterable

__all__ = ["sync_paths", "fsync_dir"]


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.syncfs
    except (OSError, AttributeError):  # not Linux/glibc: no syncfs
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_syncfs = _load_syncfs()


def fsync_dir(directory: str) -> None:
    """Persist a rename: best effort, some platforms/filesystems cannot open a directory."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sync_paths(paths: Iterable[str | os.PathLike[str]]) -> None:
    """Make every file of ``paths`` and its directory entry durable, at the least cost.

    With ``syncfs`` available: one call per filesystem the files live on. Otherwise each file
    is fsynced, then each of their directories once. Files that are gone (removed by another
    worker, or never written) are skipped; any other error propagates, so a batch whose
    outputs cannot be made durable is not recorded done.
    """
    texts = [os.fspath(path) for path in paths]
    if _syncfs is None:
        _fsync_each(texts)
        return
    by_device: dict[int, str] = {}  # one folder per filesystem names it to syncfs
    for text in texts:
        try:
            st = os.stat(text)
        except FileNotFoundError:
            continue
        by_device.setdefault(st.st_dev, os.path.dirname(text) or ".")
    for folder in by_device.values():
        _syncfs_folder(_syncfs, folder)


def _fsync_each(paths: list[str]) -> None:
    folders: dict[str, None] = {}
    for text in paths:
        try:
            fd = os.open(text, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        folders[os.path.dirname(text) or "."] = None
    for folder in folders:
        fsync_dir(folder)


def _syncfs_folder(syncfs: Callable[[int], int], folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        if syncfs(fd) != 0:
            err = ctypes.get_errno() or errno.EIO
            raise OSError(err, os.strerror(err), folder)
    finally:
        os.close(fd)
