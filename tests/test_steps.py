"""steps.get_one / inspect_one / put_one on files under tmp_path: no Redis, no Celery."""

from __future__ import annotations

import os
from pathlib import Path

import pydicom
import pytest

from deid_workers.config import Settings
from deid_workers.recipe import load_recipe
from deid_workers.steps import MISSING_ENTITY, get_one, ids_keys, inspect_one, output_path, put_one
from deid_workers.synth import make_dataset, phi_strings, write_study_tree

RECIPE = """FORMAT dicom

%header

REPLACE PatientID var:id
REPLACE PatientName var:source_id
REMOVE PatientBirthDate
"""

FILTER = """FORMAT dicom

%filter graylist

LABEL Secondary capture
  contains ImageType SAVE
"""


@pytest.fixture
def settings(monkeypatch):
    monkeypatch.setenv("DEID_SECRET", "steps-secret")
    return Settings.from_env({"DEID_SECRET": "steps-secret"})


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "in"
    paths = write_study_tree(root, patients=1, images=2, corrupt=3)
    return str(root), paths


def test_get_one_reads_keys_and_fields(tree, settings):
    root, paths = tree
    out = get_one(root, paths[0], settings)
    assert out.ok and out.reason is None and not out.missing
    assert out.entity == "PID-0000-SENT"
    assert out.item == out.fields["SOPInstanceUID"]
    assert out.fields["PatientID"] == out.entity


@pytest.mark.parametrize("index,reason", [(2, "empty"), (3, "trunc"), (4, "DICOM")])
def test_get_one_skips_bad_files_with_a_reason_and_a_relative_path(tree, settings, index, reason):
    root, paths = tree
    out = get_one(root, paths[index], settings)
    assert not out.ok and out.path == paths[index]
    assert reason.lower() in out.reason.lower()
    assert root not in out.reason


def test_missing_entity_and_item_are_kept_and_listed(tmp_path, settings):
    ds = make_dataset(3)
    del ds.PatientID
    ds.save_as(tmp_path / "x.dcm", enforce_file_format=True)
    out = get_one(str(tmp_path), "x.dcm", settings)
    assert out.ok and out.entity == MISSING_ENTITY and out.missing == ("PatientID",)
    assert ids_keys(None, None, "a/b.dcm") == (MISSING_ENTITY, "a/b.dcm")


def test_inspect_one_flags_by_header_filter(tmp_path):
    recipe = load_recipe(text=FILTER)
    ds = make_dataset(1)
    ds.ImageType = ["DERIVED", "SECONDARY", "SAVE"]
    ds.save_as(tmp_path / "f.dcm", enforce_file_format=True)
    make_dataset(2).save_as(tmp_path / "c.dcm", enforce_file_format=True)
    flagged = inspect_one(str(tmp_path), "f.dcm", recipe)
    clean = inspect_one(str(tmp_path), "c.dcm", recipe)
    assert flagged.ok and flagged.flagged and flagged.results[0]["group"] == "graylist"
    assert clean.ok and not clean.flagged
    (tmp_path / "t.dcm").write_text("text")
    assert not inspect_one(str(tmp_path), "t.dcm", recipe).ok


def test_put_one_uses_ids_as_vars_and_mirrors_the_tree(tree, tmp_path, settings):
    root, paths = tree
    out_dir = str(tmp_path / "out")
    recipe = load_recipe(text=RECIPE)
    seen = []

    def lookup(entity, item):
        seen.append((entity, item))
        return {"id": "SUBJ-1", "source_id": "ANON^ONE"}

    out = put_one(root, paths[0], out_dir, recipe, lookup, settings, overwrite=False)
    assert out.status == "written" and out.has_ids
    assert out.dest == os.path.join(out_dir, paths[0])
    ds = pydicom.dcmread(out.dest)
    assert ds.PatientID == "SUBJ-1" and str(ds.PatientName) == "ANON^ONE"
    # REMOVEd by the recipe; Type 2 in the Patient module, so the conformance pass keeps it
    # present and empty (recipe/conformance.py)
    assert ds["PatientBirthDate"].value in (None, "")
    assert seen[0][0] == "PID-0000-SENT"
    text = Path(out.dest).read_bytes()
    assert b"PID-0000-SENT" not in text


def test_put_one_refuses_existing_output_and_leaves_it(tree, tmp_path, settings):
    root, paths = tree
    out_dir = tmp_path / "out"
    dest = out_dir / paths[0]
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"keep me")
    recipe = load_recipe(text=RECIPE)
    out = put_one(root, paths[0], str(out_dir), recipe, lambda e, i: None, settings,
                  overwrite=False)
    assert out.status == "refused" and dest.read_bytes() == b"keep me"
    out = put_one(root, paths[0], str(out_dir), recipe, lambda e, i: None, settings,
                  overwrite=True)
    assert out.status == "written" and not out.has_ids and dest.read_bytes() != b"keep me"


def test_put_one_skips_unreadable(tree, tmp_path, settings):
    root, paths = tree
    out = put_one(root, paths[2], str(tmp_path / "o"), load_recipe(text=RECIPE),
                  lambda e, i: None, settings, overwrite=False)
    assert out.status == "skipped" and out.reason


def test_output_path_stays_inside(tmp_path):
    from deid_workers.errors import InputError

    with pytest.raises(InputError):
        output_path(str(tmp_path), "../escape.dcm")


def test_phi_sentinels_exist_for_leak_tests():
    assert "PID-0000-SENT" in phi_strings(0)


def test_get_one_caps_huge_values_and_keys(tmp_path, settings):
    # A hostile file: a 60 KB comment and a 5,000-character PatientID (LO allows 64).
    from deid_workers.recipe.identifiers import CUT_NOTE, VALUE_MAX

    root = tmp_path / "in"
    root.mkdir()
    ds = make_dataset(3)
    with pytest.warns(UserWarning, match="exceeds the maximum length"):  # pydicom, writing it
        ds.ImageComments = "c" * 60_000
        ds.PatientID = "P" * 5000
    ds.save_as(root / "big.dcm", enforce_file_format=True)
    with pytest.warns(UserWarning, match="exceeds the maximum length"):  # pydicom, reading it
        out = get_one(str(root), "big.dcm", settings)
    assert out.ok and out.fields["ImageComments"] == "c" * VALUE_MAX
    assert out.fields[CUT_NOTE] == {"ImageComments": 60_000, "PatientID": 5000}
    assert len(out.entity) <= 256 and out.entity == ids_keys("P" * 5000, "x", "big.dcm")[0]
    assert sum(len(str(v)) for v in out.fields.values()) < 4 * VALUE_MAX
