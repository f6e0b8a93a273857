"""Path rules: where a relative path may lead, files opened without following links, and
the temporary names our atomic writes use.

Relative paths come from the walk, the store and ids files a user may edit; none may make a
worker read or write outside the folders a run names (:func:`enforce_inside`,
:func:`beneath`). Every atomic write (an output, an export, a report) first writes
``.<name>.<unique>.tmp`` beside its destination: the walk skips such names, and a redelivered
batch removes what a killed write left (:func:`remove_stale_temps`).
"""

from __future__ import annotations

import errno
import os

from ..errors import InputError
from ..reasons import OUTSIDE

__all__ = ["enforce_inside", "output_path", "real_root", "beneath", "open_no_follow",
           "LINK_ERRNOS", "TEMP_SUFFIX", "temp_prefix", "is_temp", "remove_stale_temps"]

O_BINARY = getattr(os, "O_BINARY", 0)
O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)

LINK_ERRNOS = frozenset({errno.ELOOP, errno.EMLINK})
"""What open(O_NOFOLLOW) gives for a symbolic link (Linux and macOS: ELOOP; FreeBSD: EMLINK)."""


def open_no_follow(path: str, flags: int) -> int:
    """An ``opener`` for :func:`open`: no symbolic link followed, no blocking on a FIFO (it is
    refused once open), not inherited by children."""
    return os.open(path, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)


def beneath(fd: int, root: str | os.PathLike[str]) -> bool:
    """Whether the open file ``fd`` lies under ``root``'s real path, as the kernel names it
    (``/proc/self/fd``); True where that name cannot be had."""
    try:
        where = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return True
    return where.startswith(real_root(os.fspath(root)).rstrip(os.sep) + os.sep)


def enforce_inside(root: str | os.PathLike[str], rel: str) -> str:
    """Absolute path of ``rel`` under ``root``, refusing anything that would land outside.

    Relative paths come from the walk, the store and ids files a user may edit; a crafted one
    (``../../etc/x``, an absolute path, a symlinked directory pointing out) must not make a
    worker write outside the output folder. Raises :class:`InputError` (a skip, not a crash).
    """
    if not rel or "\0" in rel or os.path.isabs(rel) or rel.startswith(("/", "\\")):
        raise InputError(rel, OUTSIDE)
    base = os.path.realpath(root)
    target = os.path.normpath(os.path.join(base, rel))
    if os.path.commonpath([base, target]) != base or target == base:
        raise InputError(rel, OUTSIDE)
    # A symlink inside root may point elsewhere: resolve what exists of the parent.
    parent = os.path.realpath(os.path.dirname(target))
    if os.path.commonpath([base, parent]) != base:
        raise InputError(rel, OUTSIDE)
    return target


def output_path(outfolder: str, out_rel: str) -> str:
    """The absolute path of output path ``out_rel`` (from the run's layout) under a folder,
    never outside it."""
    return str(enforce_inside(outfolder, out_rel))


_REAL_ROOTS: dict[str, str] = {}
_REAL_ROOTS_MAX = 64


def real_root(root: str) -> str:
    """``os.path.realpath(root)``, remembered: a run writes thousands of files under the same
    one or two folders, and resolving one costs a system call per component."""
    real = _REAL_ROOTS.get(root)
    if real is None:
        real = os.path.realpath(root)
        if len(_REAL_ROOTS) >= _REAL_ROOTS_MAX:
            _REAL_ROOTS.clear()
        _REAL_ROOTS[root] = real
    return real


TEMP_SUFFIX = ".tmp"


def temp_prefix(name: str) -> str:
    """What a temporary name for ``name`` starts with (then something unique, then
    :data:`TEMP_SUFFIX`)."""
    return f".{name}."


def is_temp(name: str) -> bool:
    """Whether ``name`` is one of our temporary names (the walk leaves them out)."""
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


def remove_stale_temps(path: str) -> None:
    """Remove what killed writes of ``path`` left beside it (never read under those names,
    but they should not stay behind); nothing when its folder cannot be listed."""
    parent, name = os.path.split(path)
    prefix = temp_prefix(name)
    try:
        entries = os.listdir(parent)
    except OSError:
        return
    for entry in entries:
        if entry.startswith(prefix) and entry.endswith(TEMP_SUFFIX):
            try:
                os.unlink(os.path.join(parent, entry))
            except OSError:
                pass
