"""sync_paths: one syncfs per filesystem where Linux has it, else fsync per file and folder."""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

import pytest

from deid_workers.fs import durable


def _write(tmp_path: Path, n: int) -> list[Path]:
    paths = []
    for i in range(n):
        p = tmp_path / f"d{i % 2}" / f"f{i}.dcm"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"x" * 10)
        paths.append(p)
    return paths


@pytest.mark.skipif(durable._syncfs is None, reason="no syncfs on this platform")
def test_one_syncfs_per_filesystem_and_no_fsync(tmp_path, monkeypatch):
    calls: list[str] = []
    real = durable._syncfs
    monkeypatch.setattr(durable, "_syncfs", lambda fd: (calls.append("syncfs"), real(fd))[1])
    monkeypatch.setattr(durable.os, "fsync", lambda fd: calls.append("fsync"))
    durable.sync_paths(_write(tmp_path, 6))
    assert calls == ["syncfs"]


def test_without_syncfs_each_file_and_each_folder_is_fsynced(tmp_path, monkeypatch):
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(durable, "_syncfs", None)
    monkeypatch.setattr(durable.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    paths = _write(tmp_path, 6)
    durable.sync_paths([*paths, tmp_path / "d0" / "gone.dcm"])  # a missing file is skipped
    assert len(synced) == 6 + 2


@pytest.mark.parametrize("syncfs", ["fake", None])
def test_missing_files_only_sync_nothing(tmp_path, monkeypatch, syncfs):
    calls: list[int] = []
    fake = None if syncfs is None else (lambda fd: calls.append(fd) or 0)
    monkeypatch.setattr(durable, "_syncfs", fake)
    durable.sync_paths([tmp_path / "gone.dcm"])
    assert calls == []


def test_a_failed_syncfs_raises_so_the_batch_is_not_committed(tmp_path, monkeypatch):
    def failing(fd: int) -> int:
        ctypes.set_errno(errno.EIO)
        return -1

    monkeypatch.setattr(durable, "_syncfs", failing)
    with pytest.raises(OSError) as info:
        durable.sync_paths(_write(tmp_path, 1))
    assert info.value.errno == errno.EIO
