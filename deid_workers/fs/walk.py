"""Lazy walk of ``--input``: relative paths of regular files, in batches.

Why not ``os.walk`` + a list: an input may hold millions of files, and the producer must start
queueing batches before the walk ends, with memory bounded by one directory's listing, not the
tree. Why sorted: a resumed or repeated run must cut the same batches. Why no symbolic links
at all, to folders or to files (judged by lstat, and reported through ``on_error``): a link
loop would never end, and a link out of the input would read files the user did not point at;
a link to a file inside the input adds nothing the walk does not find by itself.
:func:`~deid_workers.dicom.reader.read_dataset` refuses to follow one too, should a file be swapped
for a link after the walk.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from itertools import islice

from .. import reasons
from ..errors import InputError
from ..reasons import BAD_FOLDER, UNREADABLE_FOLDER, VANISHED_FOLDER
from .paths import is_temp

__all__ = ["OnError", "iter_batches", "iter_files"]

OnError = Callable[[str, str], None]
"""``on_error(relpath, reason)``: told about a directory or entry the walk had to skip."""


def _reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return UNREADABLE_FOLDER
    if isinstance(exc, FileNotFoundError):
        return VANISHED_FOLDER
    return BAD_FOLDER


LINK = reasons.LINK
"""What ``on_error`` is told about a symbolic link met in the walk."""

_FILE, _DIR, _LINK = 0, 1, 2


def _listing(path: str) -> list[tuple[str, int]]:
    """Sorted (name, kind) of ``path``: regular files, real directories and symbolic links
    (any target), each judged by lstat (scandir's entry type, no stat of a link's target).

    Only names and a small int are kept, not DirEntry objects, to keep one listing small.
    """
    out: list[tuple[str, int]] = []
    with os.scandir(path) as it:
        for entry in it:
            try:
                if entry.is_symlink():
                    out.append((entry.name, _LINK))
                elif entry.is_dir(follow_symlinks=False):
                    out.append((entry.name, _DIR))
                elif entry.is_file(follow_symlinks=False) and not is_temp(entry.name):
                    out.append((entry.name, _FILE))
            except OSError:
                continue  # vanished or unreadable entry: nothing to yield
    out.sort()
    return out


def _exclude_rel(root: str, exclude: str | os.PathLike[str] | None) -> str | None:
    """``exclude`` as a posix path relative to ``root`` if strictly inside it, else None."""
    if exclude is None:
        return None
    base = os.path.realpath(root)
    target = os.path.realpath(exclude)
    if target == base or os.path.commonpath([base, target]) != base:
        return None
    return os.path.relpath(target, base).replace(os.sep, "/")


def iter_files(
    root: str | os.PathLike[str],
    *,
    exclude: str | os.PathLike[str] | None = None,
    on_error: OnError | None = None,
) -> Iterator[str]:
    """Yield posix paths, relative to ``root``, of the regular files under it, lazily.

    Order: depth first, names sorted within each directory (so the same tree always gives
    the same sequence). Skipped: symbolic links to anything (reported through ``on_error``),
    the ``exclude`` subtree (an output folder inside the input), our own ``.*.tmp`` files,
    other special files (FIFOs, sockets, devices), and directories that cannot be listed
    (reported). ``root`` itself must be a directory (:class:`InputError`).
    """
    top = os.fspath(root)
    try:
        if not stat.S_ISDIR(os.stat(top).st_mode):
            raise InputError(top, "not a directory")
    except FileNotFoundError:
        raise InputError(top, "file not found") from None
    except PermissionError:
        raise InputError(top, "permission denied") from None
    skip = _exclude_rel(top, exclude)

    # Stack of (relative prefix, iterator over that directory's sorted listing).
    try:
        first = _listing(top)
    except OSError:
        raise InputError(top, "permission denied") from None
    stack: list[tuple[str, Iterator[tuple[str, int]]]] = [("", iter(first))]
    while stack:
        prefix, entries = stack[-1]
        for name, kind in entries:
            rel = prefix + name
            if kind == _FILE:
                yield rel
                continue
            if kind == _LINK:
                if on_error is not None:
                    on_error(rel, LINK)
                continue
            if rel == skip:
                continue
            try:
                listing = _listing(os.path.join(top, rel))
            except OSError as exc:
                if on_error is not None:
                    on_error(rel, _reason(exc))
                continue
            stack.append((rel + "/", iter(listing)))
            break
        else:
            stack.pop()


def iter_batches(
    root: str | os.PathLike[str],
    batch_size: int,
    *,
    exclude: str | os.PathLike[str] | None = None,
    on_error: OnError | None = None,
) -> Iterator[list[str]]:
    """:func:`iter_files` cut into lists of at most ``batch_size`` paths (the last may be
    shorter; no empty batch)."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    files = iter_files(root, exclude=exclude, on_error=on_error)
    while batch := list(islice(files, batch_size)):
        yield batch
