"""The residual-PHI check compares an input with its output, element by element."""

from __future__ import annotations

import copy

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from deid_workers.synth import make_dataset
from deid_workers.verify import residual_phi


def _deidentified(ds: Dataset) -> Dataset:
    out = copy.deepcopy(ds)
    out.PatientName = "ANONYMOUS"
    out.PatientID = "SUBJ-1"
    del out.PatientBirthDate
    out.SOPInstanceUID = "2.25.1234567890"
    out.file_meta.MediaStorageSOPInstanceUID = "2.25.1234567890"
    return out


def test_clean_output_has_no_residual() -> None:
    ds = make_dataset(1)
    out = _deidentified(ds)
    for keyword in ("OtherPatientIDs", "OtherPatientNames"):
        if keyword in out:
            delattr(out, keyword)
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
