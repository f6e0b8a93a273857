"""atomicfile: a file appears whole or not at all, and a failed write keeps the old one."""

from __future__ import annotations

import os

import pytest

from deid_workers.fs.atomicfile import AtomicFile


def test_published_on_clean_exit_with_plain_mode(tmp_path):
    dest = tmp_path / "report.tsv"
    with AtomicFile(dest) as fh:
        fh.write("a\tb\n")
        assert not dest.exists()  # nothing under the final name while writing
    assert dest.read_text() == "a\tb\n"
    assert oct(os.stat(dest).st_mode & 0o777) == "0o644"
    assert os.listdir(tmp_path) == ["report.tsv"]


def test_a_failed_write_keeps_the_previous_version_and_leaves_no_temp(tmp_path):
    dest = tmp_path / "deid-ids.json"
    dest.write_text("old")
    with pytest.raises(RuntimeError):
        with AtomicFile(dest, binary=True) as fh:
            fh.write(b"half")
            raise RuntimeError("disk full")
    assert dest.read_text() == "old"
    assert os.listdir(tmp_path) == ["deid-ids.json"]


def test_commit_and_discard_outside_a_with(tmp_path):
    kept, dropped = AtomicFile(tmp_path / "a"), AtomicFile(tmp_path / "b")
    kept.file.write("x")
    dropped.file.write("y")
    kept.commit()
    kept.commit()  # once is enough; a second call does nothing
    dropped.discard()
    assert sorted(os.listdir(tmp_path)) == ["a"]


def test_the_folder_is_synced_after_the_rename(tmp_path, monkeypatch):
    # The rename itself must survive a power loss: the folder's entry is fsynced after it.
    from deid_workers.fs import atomicfile

    synced = []
    monkeypatch.setattr(atomicfile, "fsync_dir",
                        lambda folder: synced.append((folder, os.listdir(folder))))
    with AtomicFile(tmp_path / "ids.json") as fh:
        fh.write("{}")
    assert synced == [(str(tmp_path), ["ids.json"])]


def test_mode_and_no_replace(tmp_path):
    """Identifiers are published 0600; with replace=False an existing file is kept (a hard
    link publishes only to a free name) and no temp file is left."""
    dest = tmp_path / "deid-ids.json"
    with AtomicFile(dest, mode=0o600, replace=False) as fh:
        fh.write("{}")
    assert os.stat(dest).st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        with AtomicFile(dest, replace=False) as fh:
            fh.write("{other}")
    assert dest.read_text() == "{}" and [p.name for p in tmp_path.iterdir()] == [dest.name]
