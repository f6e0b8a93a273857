"""The lazy walk: order, exclusions, symlinks, unreadable directories, batches (its memory:
benchmarks/walk_memory.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deid_workers.errors import InputError
from deid_workers.fs import walk
from deid_workers.reasons import UNREADABLE_FOLDER


def _touch(root: Path, *rels: str) -> None:
    for rel in rels:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_relative_posix_paths_sorted_depth_first(tmp_path: Path) -> None:
    _touch(tmp_path, "b.dcm", "a/z.dcm", "a/b/c.dcm", "a/a.dcm", "c/x", "A.dcm")
    (tmp_path / "empty").mkdir()
    assert list(walk.iter_files(tmp_path)) == ["A.dcm", "a/a.dcm", "a/b/c.dcm", "a/z.dcm", "b.dcm", "c/x"]


def test_skips_our_temp_files_but_not_other_hidden_files(tmp_path: Path) -> None:
    _touch(tmp_path, ".a.dcm.x1y2.tmp", "sub/.deid-ids.json.abc.tmp", ".hidden.dcm", "keep.tmp")
    assert list(walk.iter_files(tmp_path)) == [".hidden.dcm", "keep.tmp"]


def test_exclude_output_folder_inside_input(tmp_path: Path) -> None:
    _touch(tmp_path, "in/a.dcm", "in/out/a.dcm", "in/outside.dcm")
    got = list(walk.iter_files(tmp_path / "in", exclude=tmp_path / "in" / "out"))
    assert got == ["a.dcm", "outside.dcm"]
    # An exclude outside the input, or not yet existing, changes nothing.
    assert len(list(walk.iter_files(tmp_path / "in", exclude=tmp_path / "elsewhere"))) == 3
    assert list(walk.iter_files(tmp_path / "in", exclude=tmp_path / "in" / "new")) == [
        "a.dcm", "out/a.dcm", "outside.dcm"]


def test_symlinks_are_not_followed_reported_and_loops_end(tmp_path: Path) -> None:
    _touch(tmp_path, "in/d/a.dcm", "other/secret.dcm")
    (tmp_path / "in" / "d" / "loop").symlink_to(tmp_path / "in")
    (tmp_path / "in" / "out").symlink_to(tmp_path / "other")
    (tmp_path / "in" / "link.dcm").symlink_to(tmp_path / "other" / "secret.dcm")  # leaves --input
    (tmp_path / "in" / "inside.dcm").symlink_to(tmp_path / "in" / "d" / "a.dcm")
    (tmp_path / "in" / "dangling.dcm").symlink_to(tmp_path / "nowhere")
    errors: list[tuple[str, str]] = []
    got = list(walk.iter_files(tmp_path / "in", on_error=lambda rel, why: errors.append((rel, why))))
    assert got == ["d/a.dcm"]
    assert errors == [(rel, walk.LINK) for rel in ("d/loop", "dangling.dcm", "inside.dcm",
                                                   "link.dcm", "out")]


def test_unreadable_directory_is_reported_and_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _touch(tmp_path, "a/1.dcm", "locked/2.dcm", "z/3.dcm")
    real = os.scandir
    locked = str(tmp_path / "locked")

    def scandir(path: str) -> object:  # root ignores chmod, so refuse here
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(walk.os, "scandir", scandir)
    errors: list[tuple[str, str]] = []
    got = list(walk.iter_files(tmp_path, on_error=lambda rel, reason: errors.append((rel, reason))))
    assert got == ["a/1.dcm", "z/3.dcm"]
    assert errors == [("locked", UNREADABLE_FOLDER)]


def test_root_must_be_a_directory(tmp_path: Path) -> None:
    _touch(tmp_path, "f.dcm")
    with pytest.raises(InputError, match="not a directory"):
        list(walk.iter_files(tmp_path / "f.dcm"))
    with pytest.raises(InputError, match="file not found"):
        list(walk.iter_files(tmp_path / "missing"))


def test_batches(tmp_path: Path) -> None:
    _touch(tmp_path, *[f"d{i % 3}/f{i:02d}.dcm" for i in range(10)])
    batches = list(walk.iter_batches(tmp_path, 4))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert [p for b in batches for p in b] == list(walk.iter_files(tmp_path))
    assert list(walk.iter_batches(tmp_path / "d0", 100)) == [["f00.dcm", "f03.dcm", "f06.dcm", "f09.dcm"]]
    (tmp_path / "empty").mkdir()
    assert list(walk.iter_batches(tmp_path / "empty", 4)) == []
    with pytest.raises(ValueError):
        list(walk.iter_batches(tmp_path, 0))


def test_batches_are_produced_before_the_walk_ends(tmp_path: Path) -> None:
    _touch(tmp_path, "a/1.dcm", "a/2.dcm", "b/3.dcm")
    (tmp_path / "c").mkdir()
    batches = walk.iter_batches(tmp_path, 2)
    assert next(batches) == ["a/1.dcm", "a/2.dcm"]
    # Written after the first batch into a directory not listed yet: a lazy walk sees it.
    _touch(tmp_path, "c/4.dcm")
    assert next(batches) == ["b/3.dcm", "c/4.dcm"]
