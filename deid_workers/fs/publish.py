"""An output's bytes published whole under its folder, never through a symbolic link.

Workers race each other and may be killed: :func:`write_at` makes sure an output file is either
absent or complete, and that two workers cannot both "win" a no-overwrite write.
"""

from __future__ import annotations

import errno
import itertools
import os

from ..errors import InputError, OutputExistsError
from ..reasons import OUTSIDE, THROUGH_LINK
from .paths import O_BINARY, O_CLOEXEC, O_DIRECTORY, O_NOFOLLOW, TEMP_SUFFIX, real_root, temp_prefix

__all__ = ["open_folder", "exists_at", "write_at"]

_NO_LINK_ERRNOS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS}

_DIR_FLAGS = os.O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC


def open_folder(dest: str, root: str | os.PathLike[str] | None, *, create: bool
                ) -> tuple[int, str]:
    """``(a descriptor of dest's folder, dest's name)``; the descriptor is -1 when the folder
    does not exist and not ``create``."""
    base, parts = _split_under(dest, root)
    folder = _open_folder(base, parts[:-1], create=create, shown=dest)
    return (-1 if folder is None else folder), parts[-1]


def _split_under(dest: str, root: str | os.PathLike[str] | None) -> tuple[str, list[str]]:
    """``(the folder to start from, the components of dest below it)``. ``dest`` must be
    spelled under ``root`` or under its real path (what :func:`~deid_workers.fs.paths.enforce_inside` gives), with no
    ``.`` or ``..`` component below it."""
    if root is None:
        folder, name = os.path.split(dest)
        return folder or ".", [name]
    base = os.fspath(root)
    for start in (base, real_root(base)):
        prefix = start.rstrip(os.sep) + os.sep
        if dest.startswith(prefix):
            parts = dest[len(prefix):].split(os.sep)
            if not any(p in ("", ".", "..") for p in parts):
                return start, parts
    raise InputError(dest, OUTSIDE)


def _open_folder(base: str, parts: list[str], *, create: bool, shown: str) -> int | None:
    """A descriptor of ``base/parts...``, opened one component at a time with O_NOFOLLOW.

    ``base`` itself is the trust anchor (the folder the run names) and may be reached through
    links; below it, a symlink raises :class:`InputError`. A missing folder gives None, or is
    made when ``create`` (another worker making it at the same moment is fine).
    """
    try:
        fd = os.open(base, os.O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    except FileNotFoundError:
        if not create:
            return None
        os.makedirs(base, exist_ok=True)
        fd = os.open(base, os.O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    try:
        for part in parts:
            try:
                sub = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    os.close(fd)
                    return None
                try:
                    os.mkdir(part, 0o777, dir_fd=fd)
                except FileExistsError:
                    pass
                sub = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = sub
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise InputError(shown, THROUGH_LINK) from None
        raise
    return fd


def exists_at(folder: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def write_at(folder: int, name: str, data: bytes, shown: str, *, overwrite: bool,
             sync: bool) -> None:
    """Write ``data`` as ``name`` in the open ``folder`` so that it is either absent/old or complete and new.

    The data goes to ``.<name>.<pid>-<n>.tmp`` in the same directory (same filesystem, so the
    final step is atomic), is fsynced, then:

    - ``overwrite=True``: ``os.replace`` over whatever is there;
    - ``overwrite=False``: ``os.link`` to ``dest``, which fails if ``dest`` exists even when
      another worker created it a microsecond ago, so two workers never both write it.
      Where hard links are unsupported, ``dest`` is claimed with ``O_EXCL`` and then replaced.

    Every step runs relative to a descriptor of ``dest``'s folder, reached from ``root`` (the
    output or quarantine folder; default: ``dest``'s own folder) one folder at a time without
    following a symbolic link, and missing folders are made on the way. So once the folder is
    open, no rename or symlink swapped into the tree can redirect the write elsewhere; a
    symlink met on the way raises :class:`InputError` (:data:`~deid_workers.reasons.THROUGH_LINK`),
    and a name that is a symlink is replaced (``overwrite``) or refused, never followed.

    ``sync=False`` leaves out the two fsyncs (file, then directory), for a caller that makes a
    batch durable at once with :func:`~deid_workers.fs.durable.sync_paths` before it records
    the batch as done. Atomicity against a killed process is unchanged; after a power loss an
    unsynced output may be empty, which is why the batch must not count as done before the
    sync (a redelivered batch rewrites it).

    Raises :class:`OutputExistsError` (``shown``) when it exists and not overwrite.
    Any other ``OSError`` (disk full, ...) propagates after the temp file is removed.
    """
    fd, tmp = _open_temp(folder, name)
    moved = False  # os.replace took the temp name away
    try:
        try:
            _write_all(fd, data)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)
            moved = True
        else:
            _publish_exclusive(folder, tmp, name, shown)  # a hard link: the temp name stays
        if sync:
            _fsync_folder(folder)
    finally:
        if not moved:
            try:
                os.unlink(tmp, dir_fd=folder)
            except FileNotFoundError:
                pass


def _fsync_folder(folder: int) -> None:
    """Persist the rename: best effort, as :func:`~deid_workers.fs.durable.fsync_dir`."""
    try:
        os.fsync(folder)
    except OSError:
        pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


_temp_counter = itertools.count()


def _open_temp(folder: int, name: str) -> tuple[int, str]:
    """Create ``.<name>.<pid>-<n>.tmp`` in the open ``folder`` with ``O_EXCL``.

    pid + a per-process counter is unique among live writers, so unlike ``mkstemp`` there are
    no random names to draw and no chmod afterwards (the mode is 0666 minus the umask, as for
    any new file). A name left by a dead process with a reused pid is skipped, not reused.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_BINARY
    for _ in range(100):
        tmp = f"{temp_prefix(name)}{os.getpid()}-{next(_temp_counter)}{TEMP_SUFFIX}"
        try:
            return os.open(tmp, flags, 0o666, dir_fd=folder), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", name)


def _publish_exclusive(folder: int, tmp: str, target: str, shown: str) -> None:
    try:
        os.link(tmp, target, src_dir_fd=folder, dst_dir_fd=folder, follow_symlinks=False)
        return
    except FileExistsError:
        raise OutputExistsError(shown) from None
    except OSError as exc:
        if exc.errno not in _NO_LINK_ERRNOS:
            raise
    # No hard links here (some network/FUSE filesystems): claim the name, then fill it.
    try:
        claim = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                        0o666, dir_fd=folder)
    except FileExistsError:
        raise OutputExistsError(shown) from None
    os.close(claim)
    try:
        os.replace(tmp, target, src_dir_fd=folder, dst_dir_fd=folder)
    except BaseException:
        os.unlink(target, dir_fd=folder)
        raise
