"""folders: the rules every run's folders obey, checked by the producer and by each worker."""

from __future__ import annotations

import pytest

from deid_workers.errors import RunRefused
from deid_workers.fs.folders import check_folders, records_folder, run_folders


def _folders(tmp_path, **kw):
    base = {"input": tmp_path / "in", "output": tmp_path / "out",
            "records": tmp_path / "out-records"}
    base.update(kw)
    return {k: str(v) for k, v in base.items()}


def test_folders_apart_and_inside_the_roots_pass(tmp_path):
    check_folders(_folders(tmp_path), input_roots=[str(tmp_path / "in")],
                  output_roots=[str(tmp_path)])
    assert records_folder(str(tmp_path / "out") + "/") == str(tmp_path / "out-records")


@pytest.mark.parametrize(("change", "said"), [
    ({"output": "in/out"}, "the input folder and the output folder overlap"),
    ({"output": "in"}, "the input folder and the output folder overlap"),
    ({"input": "out/in"}, "the input folder and the output folder overlap"),
    ({"records": "out/ids"}, "the output folder and the records folder overlap"),
    ({"records": "in/ids"}, "the input folder and the records folder overlap"),
    ({"quarantine": "out-records/q"}, "the records folder and the quarantine folder overlap"),
])
def test_overlapping_folders_are_refused(tmp_path, change, said):
    folders = _folders(tmp_path, **{k: tmp_path / v for k, v in change.items()})
    with pytest.raises(RunRefused, match=said):
        check_folders(folders)


def test_a_folder_outside_the_roots_is_refused_even_through_a_symlink(tmp_path):
    (tmp_path / "allowed").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "allowed" / "link").symlink_to(tmp_path / "elsewhere")
    folders = _folders(tmp_path, output=tmp_path / "allowed" / "link" / "out")
    with pytest.raises(RunRefused, match=r"run r1: the output folder .*elsewhere/out is outside "
                                         r"this worker's DEID_OUTPUT_ROOTS"):
        check_folders(folders, output_roots=[str(tmp_path / "allowed")], run_id="r1")
    with pytest.raises(RunRefused, match="the input folder .* DEID_INPUT_ROOTS"):
        check_folders(_folders(tmp_path), input_roots=[str(tmp_path / "allowed")])
    with pytest.raises(RunRefused, match="not an absolute path"):
        check_folders({"input": "relative/in"})


def test_a_runs_folders_follow_its_action():
    rec = {"action": "all", "input": "/i", "outfolder": "/o", "records": "/r"}
    assert run_folders(rec) == {"input": "/i", "output": "/o", "records": "/r"}
    assert run_folders(dict(rec, action="get")) == {"input": "/i", "records": "/r"}
    assert run_folders(dict(rec, action="get", print_ids=True)) == {"input": "/i"}
    assert run_folders(dict(rec, clean_pixels=True))["quarantine"] == "/o-quarantine"
