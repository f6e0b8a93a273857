"""deid-submit against hostile or broken inputs: refused with one clear line, nothing started.

The broker is a dead address: every refusal here must happen before deid-submit connects (a
connection attempt would end in exit 1, "cannot reach Redis"), which proves nothing ran.
"""

from __future__ import annotations

import json
import os
import pickle

import pytest

from deid_workers import cli
from deid_workers.synth import write_study_tree

pytestmark = pytest.mark.usefixtures("cluster_key")

DEAD_BROKER = "redis://127.0.0.1:1/0"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in ("DEID_BROKER_URL", "DEID_BATCH_SIZE", "MESSAGELEVEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "in"
    write_study_tree(root, patients=1, images=1)
    return root


class _Payload:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def _run(capsys, *args: str) -> tuple[int, str]:
    code = cli.main(["--broker", DEAD_BROKER, *args])
    return code, capsys.readouterr().err


def test_ids_pickle_with_code_is_refused_and_never_runs(tree, tmp_path, capsys):
    marker = tmp_path / "payload-ran"
    evil = tmp_path / "deid-ids.pkl"
    evil.write_bytes(pickle.dumps({"P": {"u": {"f": _Payload(str(marker))}}}, protocol=2))
    code, err = _run(capsys, "--action", "put", "--ids", str(evil), "--input", str(tree),
                     "--outfolder", str(tmp_path / "out"))
    assert code == cli.EXIT_USAGE
    assert err.startswith(f"deid-submit: error: refusing to load {evil}") and "code" in err
    assert len(err.splitlines()) == 1
    assert not marker.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("doc", [[1, 2], {"P": ["not", "a", "mapping"]}, {"P": {"u": 3}}])
def test_json_ids_of_the_wrong_shape_are_refused(tree, tmp_path, capsys, doc):
    ids = tmp_path / "ids.json"
    ids.write_text(json.dumps(doc))
    code, err = _run(capsys, "--action", "put", "--ids", str(ids), "--input", str(tree),
                     "--outfolder", str(tmp_path / "out"))
    assert code == cli.EXIT_USAGE and err.startswith("deid-submit: error: ")
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_broken_recipe_names_file_and_line(tree, tmp_path, capsys):
    recipe = tmp_path / "deid.broken"
    recipe.write_text("FORMAT dicom\n\n%header\n\nREMOV PatientName\n")
    code, err = _run(capsys, "--action", "all", "--deid", str(recipe), "--input", str(tree),
                     "--outfolder", str(tmp_path / "out"))
    assert code == cli.EXIT_USAGE
    assert err.startswith(f"deid-submit: error: {recipe}:5: ")


def test_recipe_that_does_not_exist(tree, tmp_path, capsys):
    code, err = _run(capsys, "--action", "all", "--deid", str(tmp_path / "nope.dicom"),
                     "--input", str(tree), "--outfolder", str(tmp_path / "out"))
    assert code == cli.EXIT_USAGE and "nope.dicom" in err and len(err.splitlines()) == 1


def test_output_folder_that_cannot_be_written(tree, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")  # a folder cannot be made below a file, even by root
    code, err = _run(capsys, "--action", "all", "--input", str(tree),
                     "--outfolder", str(blocker / "out"))
    assert code == cli.EXIT_USAGE
    assert err.startswith(f"deid-submit: error: {blocker / 'out'}: output folder is not writable")


def test_output_folder_equal_to_input_is_refused(tree, capsys):
    code, err = _run(capsys, "--action", "all", "--input", str(tree), "--outfolder", str(tree))
    assert code == cli.EXIT_USAGE and "input folder and the output folder overlap" in err


@pytest.mark.parametrize("where", ["inside the input", "records inside the output",
                                   "input inside the records"])
def test_overlapping_folders_are_refused_before_anything_starts(tree, tmp_path, capsys, where):
    """Input and outputs never overlap, and identifiers never sit in the release tree."""
    out, records = tmp_path / "out", tmp_path / "out-records"
    if where == "inside the input":
        out = tree / "out"
    elif where == "records inside the output":
        records = out / "ids"
    else:
        records = tree.parent
    code, err = _run(capsys, "--action", "all", "--input", str(tree), "--outfolder", str(out),
                     "--records", str(records))
    assert code == cli.EXIT_USAGE and err.count("\n") == 1 and "overlap" in err
    assert not out.exists()  # checked before anything is created


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_ids_pickle_that_expands_by_shared_references_is_refused(tree, tmp_path, capsys, protocol):
    # The attack: [L, L] nested 30 times is under 300 bytes and 2**30 elements once walked.
    shared: object = ["x"]
    for _ in range(30):
        shared = [shared, shared]
    bomb = tmp_path / "deid-ids.pkl"
    bomb.write_bytes(pickle.dumps({"P": {"u": {"PatientName": shared}}}, protocol=protocol))
    assert bomb.stat().st_size < 300
    code, err = _run(capsys, "--action", "put", "--ids", str(bomb), "--input", str(tree),
                     "--outfolder", str(tmp_path / "out"))
    assert code == cli.EXIT_USAGE
    assert err == (f"deid-submit: error: {bomb}: refusing to load: a value is shared by "
                   "reference (a pickle that expands when read; export it again)\n")
    assert not (tmp_path / "out").exists()
