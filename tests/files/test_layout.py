"""Output paths: the input tree mirrored without the names that identify its files."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from deid_workers.files.layout import Layout, path_leaks, pseudonym, tokens, uid_path

KEY = b"layout-key"


def _ds(**values: object) -> Dataset:
    ds = Dataset()
    ds.PatientName = "Doe^John"
    ds.PatientID = "12345678"
    ds.AccessionNumber = "ACC77"
    ds.PatientBirthDate = "19700101"
    ds.StudyInstanceUID = "1.2.3.4.5.6.7"
    ds.SOPInstanceUID = "1.2.3.4.5.6.7.8.9"
    for k, v in values.items():
        setattr(ds, k, v)
    return ds


def test_tokens_split_at_everything_but_letters_and_digits() -> None:
    assert tokens("DOE_JOHN-19700101.dcm") == ["doe", "john", "19700101", "dcm"]
    assert tokens("Müller^Jürgen") == ["müller", "jürgen"]


@pytest.mark.parametrize("rel,kept", [
    ("study/series/image.dcm", True),
    ("12345678/series/image.dcm", False),        # the PatientID
    ("DOE_JOHN/image.dcm", False),               # name tokens
    ("export/doe/image.dcm", False),             # one token is enough, any case
    ("exports/IM12345678.dcm", False),           # a long token inside a name
    ("19700101/ct/1.dcm", False),                # the birth date
    ("acc77/x.dcm", False),                      # the accession number
    ("1.2.3.4.5.6.7/x.dcm", False),              # the study's own UID
    ("x/1.2.3.4.5.6.7.8.9.dcm", False),          # the instance's own UID as file name
    ("doest/x.dcm", True),                       # 'doe' is short: a whole token only
    ("johnson/x.dcm", False),                    # 'john' (4 letters) inside a name counts
])
def test_mirror_replaces_only_the_names_that_hold_the_files_identifiers(rel, kept) -> None:
    layout = Layout("mirror", lambda: KEY)
    ds = _ds()
    out = layout.before(rel, ds)
    assert out is not None
    assert (out == rel) is kept
    assert len(out.split("/")) == len(rel.split("/"))
    assert path_leaks(out, ds) == []
    if not kept:
        assert path_leaks(rel, ds)


def test_pseudonyms_are_keyed_stable_and_keep_the_extension() -> None:
    ds = _ds()
    a = Layout("mirror", lambda: KEY).before("DOE_JOHN/12345678.dcm", ds)
    b = Layout("mirror", lambda: KEY).before("DOE_JOHN/other.dcm", ds)
    c = Layout("mirror", lambda: b"another key").before("DOE_JOHN/other.dcm", ds)
    assert a is not None and b is not None and c is not None
    folder, name = a.split("/")
    assert folder == b.split("/")[0] == pseudonym(KEY, "DOE_JOHN")  # same folder, same name
    assert name == pseudonym(KEY, "12345678.dcm") + ".dcm"
    assert b.split("/")[1] == "other.dcm" and c.split("/")[0] != folder
    assert len(folder) == 16 and folder.isalnum()


def test_the_key_is_only_read_when_a_name_must_change() -> None:
    def no_key() -> bytes:
        raise AssertionError("key read")

    assert Layout("mirror", no_key).before("a/b.dcm", _ds()) == "a/b.dcm"


def test_other_patient_ids_count_in_both_forms() -> None:
    item = Dataset()
    item.PatientID = "MRN0099"
    ds = _ds(OtherPatientIDs=["H-4411", "X9"])
    ds.OtherPatientIDsSequence = Sequence([item])
    layout = Layout("mirror", lambda: KEY)
    for rel in ("h-4411/a.dcm", "mrn0099/a.dcm", "x9/a.dcm"):
        out = layout.before(rel, ds)
        assert out is not None and out != rel, rel


def test_uid_layout_uses_the_new_uids() -> None:
    ds = _ds(SeriesInstanceUID="2.25.2")
    ds.StudyInstanceUID = "2.25.1"
    ds.SOPInstanceUID = "2.25.3"
    layout = Layout("uid", lambda: KEY)
    assert layout.before("DOE/x.dcm", ds) is None  # known once the recipe ran
    assert layout.after("DOE/x.dcm", ds) == "2.25.1/2.25.2/2.25.3.dcm"
    del ds.SOPInstanceUID
    out = layout.after("DOE/x.dcm", ds)
    assert out.startswith("2.25.1/2.25.2/no-instance-uid-") and "DOE" not in out
    bare = Dataset()
    with pytest.warns(UserWarning):
        bare.StudyInstanceUID = "not/a uid"  # never a path component
    assert uid_path(bare) == "no-study-uid/no-series-uid/no-instance-uid.dcm"


def test_unknown_layout_is_refused() -> None:
    with pytest.raises(ValueError):
        Layout("flat")


def test_a_uid_name_is_checked_for_the_files_uids_only() -> None:
    ds = _ds(AccessionNumber="2")  # a short numeric ID: a digit group of any 2.25 UID
    assert path_leaks("2.25.1/2.25.2/2.25.3.dcm", ds) == []
    assert path_leaks("2/x.dcm", ds) == ["AccessionNumber"]
    assert path_leaks("x/1.2.3.4.5.6.7.dcm", ds) == ["StudyInstanceUID"]
