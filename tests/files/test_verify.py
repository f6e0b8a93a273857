"""The residual-PHI check compares an input with its output, element by element."""

from __future__ import annotations

import copy

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from deid_workers.files.verify import residual_phi
from deid_workers.synth import make_dataset


def _deidentified(ds: Dataset) -> Dataset:
    out = copy.deepcopy(ds)
    out.PatientName = "ANONYMOUS"
    out.PatientID = "SUBJ-1"
    del out.PatientBirthDate
    out.SOPInstanceUID = "2.25.1234567890"
    out.file_meta.MediaStorageSOPInstanceUID = "2.25.1234567890"
    for keyword in ("OtherPatientIDs", "OtherPatientNames"):  # the synthetic files' other names
        if keyword in out:
            delattr(out, keyword)
    return out


def test_clean_output_has_no_residual() -> None:
    ds = make_dataset(1)
    out = _deidentified(ds)
    assert residual_phi(ds, out) == []


def test_value_copied_into_a_kept_comment_is_found_by_its_source_keyword() -> None:
    ds = make_dataset(1)
    ds.ImageComments = f"patient {ds.PatientName} came late"
    out = _deidentified(ds)
    assert residual_phi(ds, out) == ["PatientName"]


def test_case_insensitive_and_at_any_depth() -> None:
    ds = make_dataset(2)
    out = _deidentified(ds)
    item = Dataset()
    item.CodeMeaning = str(ds.PatientID).lower()
    out.ConceptNameCodeSequence = Sequence([item])
    assert "PatientID" in residual_phi(ds, out)


def test_private_binary_values_are_searched() -> None:
    ds = make_dataset(3)
    out = _deidentified(ds)
    out.add_new(0x00091010, "UN", b"xx" + str(ds.PatientBirthDate).encode() + b"\0")
    assert "PatientBirthDate" in residual_phi(ds, out)


def test_uids_match_whole_uids_only_and_kept_elements_are_not_reported() -> None:
    ds = make_dataset(4)
    out = _deidentified(ds)
    out.ReferencedSOPInstanceUID = str(ds.SOPInstanceUID) + ".1"  # contains it, is another UID
    assert "SOPInstanceUID" not in residual_phi(ds, out)
    out.ReferencedSOPInstanceUID = str(ds.SOPInstanceUID)
    assert "SOPInstanceUID" in residual_phi(ds, out)
    # StudyDate kept unchanged by the recipe is the recipe's choice, not a residual
    assert "StudyDate" not in residual_phi(ds, out)


def test_original_uid_left_in_file_meta_is_found() -> None:
    ds = make_dataset(5)
    out = _deidentified(ds)
    out.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    assert residual_phi(ds, out) == ["SOPInstanceUID"]


def test_short_values_and_standard_uids_are_ignored() -> None:
    ds = Dataset()
    ds.PatientSex = "F"
    ds.PatientName = "AB"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    out = Dataset()
    out.ImageComments = "AB F"
    out.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    assert residual_phi(ds, out) == []


# -- precision: what is not a leak ---------------------------------------------------------

def test_a_value_inside_a_longer_word_is_not_found() -> None:
    # ANON (a procedure step ID) inside the ANONYMOUS the recipe wrote; TOSHIBA (the
    # institution) inside a kept TOSHIBA_MEC manufacturer: whole tokens only
    ds = Dataset()
    ds.ScheduledProcedureStepID = "ANON"
    ds.InstitutionName = "TOSHIBA"
    ds.Manufacturer = "TOSHIBA_MEC"
    out = Dataset()
    out.PatientName = "ANONYMOUS"
    out.Manufacturer = "TOSHIBA_MEC"
    assert residual_phi(ds, out) == []
    out.ImageComments = "scanned at TOSHIBA, room 2"  # the name as a word of its own
    assert residual_phi(ds, out) == ["InstitutionName"]


def test_the_recipes_own_dummies_are_not_leaks() -> None:
    ds = Dataset()
    ds.PatientBirthDate = "19000101"  # already a dummy in the input
    ds.OtherPatientIDs = "ANONYMOUS"
    out = Dataset()
    out.ContentDate = "19000101"
    out.PatientName = "ANONYMOUS"
    dummies = frozenset({"19000101", "anonymous"})
    assert residual_phi(ds, out, dummies=dummies) == []
    assert residual_phi(ds, out) == ["OtherPatientIDs", "PatientBirthDate"]


def test_descriptions_codes_and_private_values_are_searched_in_not_for() -> None:
    # removed by the profile because they may hold PHI, but identifying no one themselves:
    # a study description surviving in a kept code meaning is no residual
    ds = Dataset()
    ds.StudyDescription = "CT BRAIN WO IVCON"
    ds.add_new(0x00091010, "LO", "WHOLE BODY")
    item = Dataset()
    item.CodeValue = "SGH0101"
    item.CodeMeaning = "CT BRAIN WO IVCON"
    ds.ProcedureCodeSequence = Sequence([item])
    out = Dataset()
    out.ProcedureCodeSequence = Sequence([copy.deepcopy(item)])
    out.BodyPartExamined = "WHOLE BODY"
    assert residual_phi(ds, out) == []


def test_deid_workers_own_stamp_is_not_searched() -> None:
    from deid_workers.files.filemeta import IMPLEMENTATION_VERSION_NAME

    ds = Dataset()
    ds.InstitutionalDepartmentName = "DEFAULT"
    out = Dataset()
    out.DeidentificationMethod = ["deid-workers 0.1.0 recipe default.dicom sha256:abc"]
    out.file_meta = Dataset()
    out.file_meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    assert residual_phi(ds, out) == []
    out.DeidentificationMethod = ["site method: DEFAULT department"]  # not ours
    assert residual_phi(ds, out) == ["InstitutionalDepartmentName"]


def test_a_short_single_word_counts_only_as_a_whole_value() -> None:
    ds = Dataset()
    ds.InstitutionName = "Here"  # a placeholder, and a common word
    out = Dataset()
    out.Manufacturer = "Manufacturer name here"
    assert residual_phi(ds, out) == []
    out.StationName = "HERE"
    assert residual_phi(ds, out) == ["InstitutionName"]


def test_a_person_name_is_found_in_any_order() -> None:
    ds = Dataset()
    ds.PatientName = "Doe^John"
    out = Dataset()
    out.ImageComments = "Test case"
    assert residual_phi(ds, out) == []
    out.ImageComments = "seen: John Doe, 3rd visit"
    assert residual_phi(ds, out) == ["PatientName"]


# -- recall: planted leaks are found -----------------------------------------------------

def test_planted_leaks_are_found_by_their_source_keyword() -> None:
    ds = make_dataset(6)
    clean = _deidentified(ds)
    assert residual_phi(ds, clean) == []

    named = copy.deepcopy(clean)
    named.ImageComments = str(ds.PatientName)  # a name copied into ImageComments
    assert residual_phi(ds, named) == ["PatientName"]

    private = copy.deepcopy(clean)
    private.add_new(0x00291010, "LO", f"ref {ds.PatientID}")  # an ID in a private tag
    assert residual_phi(ds, private) == ["PatientID"]

    nested = copy.deepcopy(clean)  # a UID in a nested sequence
    inner = Dataset()
    inner.ReferencedSOPInstanceUID = str(ds.SOPInstanceUID)
    outer = Dataset()
    outer.ReferencedImageSequence = Sequence([inner])
    nested.ReferencedSeriesSequence = Sequence([outer])
    assert residual_phi(ds, nested) == ["SOPInstanceUID"]

    meta = copy.deepcopy(clean)  # an ID in the file meta (an AE title holds 16 characters)
    assert len(str(ds.PatientID)) <= 16
    meta.file_meta.SourceApplicationEntityTitle = str(ds.PatientID)
    assert residual_phi(ds, meta) == ["PatientID"]


def test_an_identifier_in_the_output_path_is_found() -> None:
    ds = make_dataset(7)
    out = _deidentified(ds)
    assert residual_phi(ds, out, path="KQ2Z7XY4/series/image.dcm") == []
    found = residual_phi(ds, out, path=f"exports/{ds.PatientID}/image.dcm")
    assert found == ["PatientID (output path)"]
    found = residual_phi(ds, out, path=f"{ds.SOPInstanceUID}.dcm")
    assert found == ["SOPInstanceUID (output path)"]


def test_recipe_literals_are_the_values_it_writes() -> None:
    from deid_workers.files.verify import recipe_literals
    from deid_workers.recipe import load_recipe

    recipe = load_recipe(text="FORMAT dicom\n%header\nREPLACE PatientName Anonymous\n"
                              "ADD PatientIdentityRemoved YES\nREPLACE PatientID var:id\n"
                              "REPLACE StudyInstanceUID deid_func:hmac_uid\nBLANK X\n")
    assert recipe_literals(recipe) == {"anonymous", "yes"}
    assert recipe_literals(recipe) is recipe_literals(recipe)  # once per recipe


def test_uids_of_definitions_identify_no_one() -> None:
    # a coding scheme's UID (DCMTK's, in an SR code item) removed in one place and kept in
    # another is no residual; an instance UID is
    ds = Dataset()
    ds.CodingSchemeUID = "1.2.276.0.7230010.3.0.0.1"
    ds.ReferencedSOPClassUID = "1.2.3.4.5.6"
    ds.StudyInstanceUID = "1.2.3.4.5.7"
    out = Dataset()
    item = Dataset()
    item.CodingSchemeUID = "1.2.276.0.7230010.3.0.0.1"
    item.ReferencedSOPClassUID = "1.2.3.4.5.6"
    item.ReferencedSOPInstanceUID = "1.2.3.4.5.7"
    out.ContentSequence = Sequence([item])
    assert residual_phi(ds, out) == ["StudyInstanceUID"]
