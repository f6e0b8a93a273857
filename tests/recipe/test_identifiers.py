"""get_identifiers / entity_item: flat, JSON-safe, top-level only (spec Part A §3)."""

from __future__ import annotations

import json
import warnings
from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.multival import MultiValue
from recipe_helpers import make_dataset

from deid_workers import synth
from deid_workers.recipe import entity_item, get_identifiers
from deid_workers.recipe.identifiers import _plain


def test_identifiers_are_json_safe_and_flat() -> None:
    ids = get_identifiers(make_dataset())
    assert json.loads(json.dumps(ids)) == ids
    assert ids["PatientName"] == "SENTINEL^PATIENT"
    assert ids["StudyDate"] == "20200115"
    assert ids["Rows"] == 2
    assert ids["OtherPatientIDs"] == ["OTHER-1", "OTHER-2"]
    for left_out in ("PixelData", "RequestAttributesSequence", "MediaStorageSOPInstanceUID"):
        assert left_out not in ids
    assert not [k for k in ids if not k[0].isalpha()]  # private elements have no keyword


def test_empty_values_left_out() -> None:
    ids = get_identifiers(make_dataset(InstitutionName=""))
    assert "InstitutionName" not in ids


def test_entity_item() -> None:
    ds = make_dataset()
    assert entity_item(ds) == ("SENTINEL-ID-1", ds.SOPInstanceUID)
    assert entity_item(make_dataset(PatientID=None)) == (None, ds.SOPInstanceUID)
    assert entity_item(ds, "AccessionNumber", "StudyDate") == ("ACC-TOP-1", "20200115")


def _as_pydicom_converts(ds: Dataset) -> dict[str, object]:
    """The reference: every element converted by pydicom, then the same filter and _plain."""
    out: dict[str, object] = {}
    for element in ds:
        vr, value = element.VR, element.value
        if (not element.keyword or element.keyword == "PixelData" or vr == "SQ"
                or vr in ("OB", "OD", "OF", "OL", "OV", "OW", "UN")):
            continue
        if value is None or value == "" or isinstance(value, (bytes, bytearray)):
            continue
        if isinstance(value, (list, MultiValue)):
            items = [_plain(v, vr) for v in value if v not in (None, "")]
            if items:
                out[element.keyword] = items
        else:
            out[element.keyword] = _plain(value, vr)
    return out


def _raw_copy(ds: Dataset, implicit: bool) -> Dataset:
    """``ds`` written and read back: its elements are raw, as in a file a worker reads."""
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, implicit
    write_dataset(buf, ds)
    return dcmread(BytesIO(buf.getvalue()), force=True)


ODD_VALUES = {  # keyword -> raw bytes, padding and separators as files have them
    "PatientID": b" PID 7 \x00",
    "OtherPatientIDs": b"A\\\\B \\",
    "AccessionNumber": b"\\",
    "StationName": b"    ",
    "RetrieveAETitle": b" AE1 \\AE2",
    "StudyInstanceUID": b"1.2.3\x00",
    "StudyDate": b"20200101\\20200102 ",
    "StudyTime": b"",
    "AdditionalPatientHistory": b"  leading\\kept  \x00",
    "ImageComments": b"text \\ with backslash ",
    "PatientComments": b"\x1b$B text \x1b(B",
}


@pytest.mark.parametrize("charset", [None, "ISO_IR 100", "ISO_IR 192", ["", "ISO 2022 IR 87"]])
@pytest.mark.parametrize("implicit", [False, True])
def test_raw_values_decode_as_pydicom_converts_them(charset, implicit) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about these values, as it should
        ds = synth.make_dataset(5)
        if charset is None:
            del ds.SpecificCharacterSet
        else:
            ds.SpecificCharacterSet = charset
        for keyword, raw in ODD_VALUES.items():
            tag = tag_for_keyword(keyword)
            ds.add(DataElement(tag, dictionary_VR(tag), raw))
        ds.InstitutionName = b"Z\xc3\xbcrich" if charset == "ISO_IR 192" else b"Z\xfcrich"
        ds.StudyDescription = b"\xff\xfe bad UTF-8" if charset == "ISO_IR 192" else b"plain"
        got = get_identifiers(_raw_copy(ds, implicit))
        assert got == _as_pydicom_converts(_raw_copy(ds, implicit))
    assert got["PatientID"] == " PID 7" and got["OtherPatientIDs"] == ["A", "B"]


def test_raw_dates_follow_pydicom_datetime_conversion(monkeypatch) -> None:
    from pydicom import config

    monkeypatch.setattr(config, "datetime_conversion", True)
    ds = _raw_copy(synth.make_dataset(2), False)
    assert get_identifiers(ds) == _as_pydicom_converts(_raw_copy(synth.make_dataset(2), False))
