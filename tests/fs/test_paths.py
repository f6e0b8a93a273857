"""enforce_inside: a relative path never leads outside its folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deid_workers.dicom import reader
from deid_workers.errors import InputError
from deid_workers.fs import paths


def test_enforce_inside_accepts_normal_paths(tmp_path: Path) -> None:
    root = os.path.realpath(tmp_path)
    assert paths.enforce_inside(tmp_path, "a/b.dcm") == os.path.join(root, "a", "b.dcm")
    assert paths.enforce_inside(tmp_path, "a/../b.dcm") == os.path.join(root, "b.dcm")


@pytest.mark.parametrize("rel", ["../x.dcm", "a/../../x.dcm", "/etc/passwd", "", ".", "a\0b"])
def test_enforce_inside_refuses_escapes(tmp_path: Path, rel: str) -> None:
    with pytest.raises(InputError) as info:
        paths.enforce_inside(tmp_path / "root", rel)
    assert info.value.reason == reader.OUTSIDE


def test_enforce_inside_refuses_symlinked_dir_pointing_out(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (root / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(InputError):
        paths.enforce_inside(root, "link/x.dcm")
