"""steps.get_one / inspect_one / put_one on files under tmp_path: no Redis, no Celery."""

from __future__ import annotations

import os
from pathlib import Path

import pydicom
import pytest

from deid_workers.config import Settings
from deid_workers.files.steps import MISSING_ENTITY, get_one, ids_keys, inspect_one, put_one
from deid_workers.fs.paths import output_path
from deid_workers.recipe import load_recipe
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
    monkeypatch.setenv("DEID_SECRET", "steps-secret-0123456789abcdef01234567")
    return Settings.from_env({"DEID_SECRET": "steps-secret-0123456789abcdef01234567"})


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
    # The tree is mirrored: same depth, and names that hold none of the file's identifiers
    # kept (synth names its folders after the patient, so here every name is a pseudonym).
    assert out.dest == os.path.join(out_dir, out.output)
    assert len(out.output.split("/")) == len(paths[0].split("/"))
    assert out.output.endswith(".dcm") and "0000" not in out.output
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
    recipe = load_recipe(text=RECIPE)
    first = put_one(root, paths[0], str(out_dir), recipe, lambda e, i: None, settings,
                    overwrite=False)
    assert first.status == "written" and first.dest is not None
    dest = Path(first.dest)
    dest.write_bytes(b"keep me")
    out = put_one(root, paths[0], str(out_dir), recipe, lambda e, i: None, settings,
                  overwrite=False)
    assert out.status == "refused" and out.dest == first.dest
    assert dest.read_bytes() == b"keep me"
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


# --- real-world files: written, or explained -----------------------------------------------

def test_a_file_without_file_meta_is_written_as_valid_part10(tmp_path, settings):
    from pydicom.dataset import FileMetaDataset

    ds = make_dataset(5)
    ds.file_meta = FileMetaDataset()
    ds.preamble = None
    pydicom.dcmwrite(tmp_path / "bare.dcm", ds, implicit_vr=False, little_endian=True,
                     force_encoding=True)
    out = put_one(str(tmp_path), "bare.dcm", str(tmp_path / "out"), load_recipe(text=RECIPE),
                  lambda e, i: {"id": "S", "source_id": "A^B"}, settings, overwrite=False)
    assert out.status == "written", out.reason
    back = pydicom.dcmread(out.dest)  # no force: preamble, DICM, complete meta
    assert back.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert back.file_meta.MediaStorageSOPInstanceUID == back.SOPInstanceUID


def test_a_removed_sop_instance_uid_leaves_no_trace_of_the_original(tmp_path, settings):
    from deid_workers.files.filemeta import IMPLEMENTATION_CLASS_UID
    from deid_workers.recipe.funcs import hmac_uid

    ds = make_dataset(6)
    ds.save_as(tmp_path / "x.dcm", enforce_file_format=True)
    recipe = load_recipe(text="FORMAT dicom\n%header\nREMOVE SOPInstanceUID\n"
                              "REPLACE StudyInstanceUID var:nothing\n")
    out = put_one(str(tmp_path), "x.dcm", str(tmp_path / "out"), recipe, lambda e, i: None,
                  settings, overwrite=False)
    back = pydicom.dcmread(out.dest)
    expected = hmac_uid(settings.resolve_secret()[0], str(ds.SOPInstanceUID))
    assert back.SOPInstanceUID == back.file_meta.MediaStorageSOPInstanceUID == expected
    assert str(ds.SOPInstanceUID).encode() not in Path(out.dest).read_bytes()
    assert back.file_meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID


def test_a_dicomdir_is_left_out_with_its_reason(tmp_path, settings):
    import shutil

    from deid_workers.reasons import MEDIA_INDEX

    src = Path(pydicom.__file__).parent / "data" / "test_files" / "dicomdirtests" / "DICOMDIR"
    shutil.copyfile(src, tmp_path / "DICOMDIR")
    assert get_one(str(tmp_path), "DICOMDIR", settings).reason == MEDIA_INDEX
    out = put_one(str(tmp_path), "DICOMDIR", str(tmp_path / "out"), load_recipe(text=RECIPE),
                  lambda e, i: None, settings, overwrite=False)
    assert (out.status, out.reason, out.dest) == ("skipped", MEDIA_INDEX, None)
    assert not (tmp_path / "out").exists()


def test_uid_layout_writes_study_series_instance(tree, tmp_path, settings):
    from deid_workers.files.layout import run_layout

    root, paths = tree
    recipe = load_recipe()  # the default: every UID becomes its hmac_uid
    out = put_one(root, paths[0], str(tmp_path / "out"), recipe, lambda e, i: None, settings,
                  overwrite=False, layout=run_layout(settings, "uid"))
    back = pydicom.dcmread(out.dest)
    assert out.output == (f"{back.StudyInstanceUID}/{back.SeriesInstanceUID}/"
                          f"{back.SOPInstanceUID}.dcm")
    again = put_one(root, paths[0], str(tmp_path / "out"), recipe, lambda e, i: None, settings,
                    overwrite=False, layout=run_layout(settings, "uid"))
    assert (again.status, again.dest) == ("refused", out.dest)  # the same place every time
    assert again.reason is not None and "same SOP Instance UID" in again.reason


@pytest.mark.filterwarnings("ignore:Invalid value:UserWarning")
def test_a_value_pydicom_cannot_write_fails_naming_its_element(tmp_path, settings):
    from deid_workers.reasons import UnwritableValue, explain_failure

    make_dataset(7).save_as(tmp_path / "x.dcm", enforce_file_format=True)
    recipe = load_recipe(text="FORMAT dicom\n%header\nREPLACE Rows 70000\n")  # US: 16 bits
    with pytest.raises(UnwritableValue) as info:
        put_one(str(tmp_path), "x.dcm", str(tmp_path / "out"), recipe, lambda e, i: None,
                settings, overwrite=False)
    assert info.value.keyword == "Rows"
    assert "in Rows does not fit" in explain_failure(info.value, "put")
    assert not list((tmp_path / "out").rglob("*.dcm"))
