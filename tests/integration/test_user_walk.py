"""deid's client documentation, walked as a new user would with deid-submit (issue 18): what
deid shows its users (warnings in its words, refusals, where things are), deid-submit shows,
on the default embedded broker and on a cluster."""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import pytest

from deid_workers.cli import main
from deid_workers.synth import phi_strings, write_study_tree

pytestmark = pytest.mark.integration

VAR_RECIPE = """FORMAT dicom

%header

ADD PatientIdentityRemoved YES
REPLACE PatientID var:id
REPLACE SOPInstanceUID var:source_id
"""


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_deid_client_walkthrough_on_the_embedded_broker(tmp_path, monkeypatch, capsys):
    for name in ("DEID_BROKER_URL", "DEID_SECRET", "DEID_SECRET_FILE", "MESSAGELEVEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    key = tmp_path / "xdg" / "deid-workers" / "secret.key"
    demo = tmp_path / "cache" / "deid-workers" / "dicom-cookies"

    # get --print: the ids on stdout, nothing written anywhere, no lasting key needed
    code, ids, err = _run(capsys, "--action", "get", "--print", "--workers", "1")
    assert code == 0, err
    assert "No input folder specified, will use demo dicom-cookies." in err
    assert len(json.loads(ids)) == 1 and not key.exists()
    assert not list(tmp.iterdir())  # no temp folder left behind
    (tmp_path / "ids.json").write_text(ids)
    recipe = tmp_path / "deid.dicom"
    recipe.write_text(VAR_RECIPE)

    # put with ids that lack id and source_id: deid's warnings, in its words, on the terminal
    out = tmp_path / "out"
    put = ("--action", "put", "--ids", str(tmp_path / "ids.json"), "--deid", str(recipe),
           "--outfolder", str(out), "--workers", "1")
    code, table, err = _run(capsys, *put)
    assert code == 0, err
    said = [x for x in err.splitlines() if x.startswith("WARNING REPLACE ")]
    assert sorted(said) == sorted(f"WARNING REPLACE {f} not done for image{i}.dcm"
                                  for i in range(1, 8) for f in ("PatientID", "SOPInstanceUID"))
    rows = [" ".join(x.split()) for x in table.splitlines()]
    assert "warnings 14" in rows and "14 REPLACE/JITTER not done (field removed)" in rows
    assert f"input {demo}" in rows and sorted(os.listdir(demo)) == sorted(os.listdir(out))
    assert f"secret key {key} (created by this run: keep it, runs with it give the same " \
           "pseudonyms)" in rows and key.exists()
    assert rows[0].endswith("(put, finished); embedded: its state went with the private Redis")
    (first_log,) = os.listdir(tmp_path / "out-records")
    lines = [json.loads(x) for x in (tmp_path / "out-records" / first_log).read_text().splitlines()]
    assert [len(x["warnings"]) for x in lines] == [2] * 7
    kept = (tmp_path / "out-records" / first_log).read_bytes()

    # again, at MESSAGELEVEL=ERROR: the refusals only, and the first run's log stays
    monkeypatch.setenv("MESSAGELEVEL", "ERROR")
    code, table, err = _run(capsys, *put)
    assert code == 1
    assert sorted(err.splitlines()) == [f"ERROR image{i}.dcm already exists, overwrite set to "
                                        "False. Not writing." for i in range(1, 8)]
    logs = sorted(os.listdir(tmp_path / "out-records"))
    assert len(logs) == 2 and (tmp_path / "out-records" / first_log).read_bytes() == kept
    assert "secret key" in table and "created by this run" not in table


def test_put_whose_ids_cover_some_files_says_so_and_exits_1(cluster, tmp_path, capsys):
    root = tmp_path / "in"
    write_study_tree(root, patients=2, images=2, nested_dirs=False)
    ids_dir = tmp_path / "ids"
    assert _run(capsys, "--action", "get", "--quiet", "--input", str(root),
                "--records", str(ids_dir))[0] == 0
    ids = json.loads((ids_dir / "deid-ids.json").read_text())
    del ids[sorted(ids)[0]]  # one patient's two files are not covered
    (tmp_path / "some.json").write_text(json.dumps(ids))
    code, stdout, err = _run(capsys, "--action", "put", "--json", "--ids",
                             str(tmp_path / "some.json"), "--input", str(root),
                             "--outfolder", str(tmp_path / "out"))
    assert code == 1
    assert "ERROR The ids in some.json match only 2 of the 4 input files" in err
    assert len([x for x in err.splitlines() if x.startswith("WARNING No identifiers for ")]) == 2
    summary = json.loads(stdout)
    assert summary["no_ids"] == 2 and summary["warnings"]["kinds"] == {"no_ids": 2}


def test_shared_instance_uids_and_recipe_warnings_reach_summary_and_run_log(cluster, tmp_path,
                                                                           capsys):
    root = tmp_path / "in"
    paths = write_study_tree(root, patients=1, images=3, nested_dirs=False)
    shutil.copy(root / paths[0], root / "zz-copy.dcm")  # the last batch: another batch's item
    recipe = tmp_path / "deid.var"
    recipe.write_text("FORMAT dicom\n%header\nREPLACE PatientID var:id\n")
    code, stdout, err = _run(capsys, "--action", "all", "--json", "--batch", "1", "--deid",
                             str(recipe), "--input", str(root), "--outfolder",
                             str(tmp_path / "out"))
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["warnings"]["kinds"] == {"not_done": 4, "duplicate_uid": 1}
    shared = [w for w in summary["warnings"]["first"] if w["kind"] == "duplicate_uid"]
    assert len(shared) == 1 and shared[0]["path"] in (paths[0], "zz-copy.dcm")
    assert f"WARNING {shared[0]['text']}" in err
    with open(summary["run_log"]) as fh:
        lines = {json.loads(x)["path"]: json.loads(x) for x in fh}
    assert shared[0]["text"] in lines[shared[0]["path"]]["warnings"]
    assert lines["zz-copy.dcm"]["warnings"][-1] == "REPLACE PatientID not done for zz-copy.dcm"
    text = stdout + err + json.dumps(lines)
    for phi in phi_strings(0):
        assert phi not in text


def test_input_may_name_one_file(cluster, tmp_path, capsys):
    root = tmp_path / "in"
    paths = write_study_tree(root, patients=1, images=2, nested_dirs=False)
    out = root / "out"  # beside the file: nothing else of its folder is read
    code, stdout, err = _run(capsys, "--action", "all", "--json", "--input",
                             str(root / paths[1]), "--outfolder", str(out))
    assert code == 0, err
    summary = json.loads(stdout)
    assert (summary["files_found"], summary["written"]) == (1, 1)
    assert summary["input_file"] == paths[1] and len(os.listdir(out)) == 1
