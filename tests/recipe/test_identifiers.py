"""get_identifiers / entity_item: flat, JSON-safe, top-level only (spec Part A §3)."""

from __future__ import annotations

import json
import warnings
from io import BytesIO

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom import dcmread
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag
from recipe_helpers import make_dataset

from deid_workers import synth
from deid_workers.recipe import entity_item, get_identifiers
from deid_workers.recipe.identifiers import _json_value


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
    """The reference: every element converted by pydicom, then the same filter and _json_value."""
    out: dict[str, object] = {}
    for element in ds:
        vr, value = element.VR, element.value
        if (not element.keyword or element.keyword == "PixelData" or vr == "SQ"
                or vr in ("OB", "OD", "OF", "OL", "OV", "OW", "UN")):
            continue
        if value is None or value == "" or isinstance(value, (bytes, bytearray)):
            continue
        if isinstance(value, (list, MultiValue)):
            items = [_json_value(v, vr) for v in value if v not in (None, "")]
            if items:
                out[element.keyword] = items
        else:
            out[element.keyword] = _json_value(value, vr)
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
    "SeriesInstanceUID": b" 1.2.4",  # pydicom's UID strips both ends
    "FrameOfReferenceUID": b"1.2.5\\ 1.2.6 ",
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


# --- the raw decoding of numbers, IS/DS and PN (get_identifiers' fast path) -----------------


def _typed(value: object) -> object:
    """``value`` with the type of every item: 1 == 1.0, but they are not the same identifier."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return (type(value).__name__, repr(value))


def _raw_dataset(elements: dict[int, tuple[str, bytes]], implicit: bool, little: bool) -> Dataset:
    raws = {}
    for tag, (vr, data) in elements.items():
        raws[BaseTag(tag)] = RawDataElement(BaseTag(tag), None if implicit else vr, len(data),
                                            data, 0, implicit, little)
    ds = Dataset(raws)
    ds.set_original_encoding(implicit, little, None)
    return ds


def _through_pydicom(elements: dict[int, tuple[str, bytes]], implicit: bool, little: bool) -> object:
    """get_identifiers on the dataset with every element converted by pydicom first, so that
    none takes the raw path: the reference. An error is part of the answer."""
    ds = _raw_dataset(elements, implicit, little)
    try:
        for _ in ds:  # iterating converts and stores each element
            pass
        return _typed(get_identifiers(ds))
    except Exception as exc:  # noqa: BLE001 - the same error is expected from the raw path
        return type(exc).__name__


def _raw_path(elements: dict[int, tuple[str, bytes]], implicit: bool, little: bool) -> object:
    try:
        return _typed(get_identifiers(_raw_dataset(elements, implicit, little)))
    except Exception as exc:  # noqa: BLE001
        return type(exc).__name__


FAST_TAGS = {  # VR -> standard tags with that VR
    "US": [0x00280010, 0x00181310, 0x00281101], "SS": [0x00189219], "UL": [0x00209157],
    "SL": [0x00186020], "FL": [0x00089459], "FD": [0x00189306, 0x00189307], "UV": [0x0008040C],
    "IS": [0x00200011, 0x00280034], "DS": [0x00180050, 0x00200032], "PN": [0x00100010, 0x00101001],
}
NUMBER_TEXT = st.text(alphabet="0123456789+-.eE \\\x00\n", max_size=20)
NAME_TEXT = st.text(alphabet="AZaz^=\\ \x00\xe9", max_size=14)


@st.composite
def _elements(draw: st.DrawFn) -> dict[int, tuple[str, bytes]]:
    out: dict[int, tuple[str, bytes]] = {}
    for _ in range(draw(st.integers(1, 5))):
        vr = draw(st.sampled_from(sorted(FAST_TAGS)))
        tag = draw(st.sampled_from(FAST_TAGS[vr]))
        if vr in ("IS", "DS"):
            data = draw(NUMBER_TEXT).encode("latin-1")
        elif vr == "PN":
            data = draw(NAME_TEXT).encode(draw(st.sampled_from(["latin-1", "utf-8"])))
        else:
            data = draw(st.binary(max_size=17))
        out[tag] = (vr, data)
    charset = draw(st.sampled_from([None, b"ISO_IR 100", b"ISO_IR 192", b"", b"ISO_IR 144 "]))
    if charset is not None:
        out[0x00080005] = ("CS", charset)
    return out


@settings(max_examples=300, deadline=None, derandomize=True)
@given(elements=_elements(), implicit=st.booleans(), little=st.booleans())
def test_raw_numbers_and_names_decode_as_pydicom_converts_them(elements, implicit, little) -> None:
    implicit = implicit and little  # big endian is explicit VR only
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about invalid values, as it should
        assert _raw_path(elements, implicit, little) == _through_pydicom(elements, implicit, little)


def test_raw_numbers_and_names_examples() -> None:
    elements = {
        0x00200011: ("IS", b" 12 "), 0x00200013: ("IS", b"1.0 "), 0x00280034: ("IS", b"1\\\\2 "),
        0x00180050: ("DS", b" 1.25"), 0x00200032: ("DS", b"-1\\2.5e1\\.5 "),
        0x00280010: ("US", b"\x00\x02"), 0x00181310: ("US", b"\x00\x00\x00\x01\x00\x01\x00\x00"),
        0x00189306: ("FD", b"\x00\x00\x00\x00\x00\x00\xf8\x3f"),
        0x00100010: ("PN", b"DOE^JANE "), 0x00101001: ("PN", b"A^B\\C^D=E^F="),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "1.0" is not a valid IS; pydicom says so
        ids = _raw_path(elements, False, True)
        assert ids == _through_pydicom(elements, False, True)
    assert isinstance(ids, dict)
    assert ids["SeriesNumber"] == ("int", "12") and ids["InstanceNumber"] == ("int", "1")
    assert ids["PixelAspectRatio"] == [("int", "1"), ("int", "2")]
    assert ids["ImagePositionPatient"] == [("float", "-1.0"), ("float", "25.0"), ("float", "0.5")]
    assert ids["Rows"] == ("int", "512") and ids["AcquisitionMatrix"][1] == ("int", "256")
    assert ids["SingleCollimationWidth"] == ("float", "1.5")
    assert ids["PatientName"] == ("str", "'DOE^JANE'")
    assert ids["OtherPatientNames"] == [("str", "'A^B'"), ("str", "'C^D=E^F'")]


def _entity_item_by_get(ds: Dataset, entity: str, item: str) -> tuple[str | None, str | None]:
    """entity_item as Dataset.get defines it (the fast lookup must agree)."""
    def one(keyword: str) -> str | None:
        value = ds.get(keyword)
        return None if value is None or value == "" else str(value)

    return one(entity), one(item)


class _Shadowing(Dataset):
    PatientID = "class attribute"  # Dataset.get finds this before any element


@pytest.mark.parametrize(("entity", "item"), [
    ("PatientID", "SOPInstanceUID"),
    ("AccessionNumber", "StudyDate"),
    ("OtherPatientIDs", "ImageType"),  # multi-valued: str of the MultiValue
    ("Rows", "PixelSpacing"),  # numbers
    ("ReferencedImageSequence", "PatientName"),
    ("NotAKeyword", "filename"),  # not keywords: attributes, as Dataset.get
    ("PatientSex", "IssuerOfPatientID"),  # absent, empty
])
def test_entity_item_agrees_with_dataset_get(entity: str, item: str) -> None:
    src = make_dataset()
    src.OtherPatientIDs = ["A", "B"]
    src.ImageType = ["ORIGINAL", "PRIMARY"]
    src.Rows = 8
    src.PixelSpacing = [0.5, 0.5]
    src.IssuerOfPatientID = ""
    src.ReferencedImageSequence = [Dataset()]
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, src)
    for touch in (False, True):  # raw elements, then converted ones
        ds = dcmread(BytesIO(fp.getvalue()), force=True)
        ds.filename = "some/file.dcm"
        if touch:
            for _elem in ds:
                pass
        expected = _entity_item_by_get(ds, entity, item)
        fresh = dcmread(BytesIO(fp.getvalue()), force=True)
        fresh.filename = "some/file.dcm"
        if touch:
            for _elem in fresh:
                pass
        assert entity_item(fresh, entity, item) == expected
        assert _state(fresh) == _state(ds)  # the same elements converted


def _state(ds: Dataset) -> list[tuple[int, str]]:
    return [(int(t), type(e).__name__) for t, e in ds._dict.items()]


def test_entity_item_reads_what_dataset_get_reads_on_other_classes() -> None:
    ds = _Shadowing()
    ds.add_new(0x00100020, "LO", "element")
    assert entity_item(ds) == ("class attribute", None)
    plain = Dataset()
    plain.add_new(0x00100020, "LO", "element")
    plain.__dict__["PatientID"] = "instance attribute"
    assert entity_item(plain) == ("instance attribute", None)


def test_values_are_capped_per_field_and_the_cut_noted() -> None:
    from deid_workers.recipe.identifiers import CUT_NOTE, VALUE_MAX, cap_identifiers, cap_key

    fields = {"ImageComments": "x" * 20_000, "ImageType": ["ORIGINAL", "PRIMARY"],
              "OtherPatientIDs": ["a" * 600, "b" * 600, "c"], "Rows": 512,
              "PatientComments": ["z" * 5000], "StudyDescription": "d" * VALUE_MAX}
    capped = cap_identifiers(dict(fields))
    assert capped["ImageComments"] == "x" * VALUE_MAX
    assert capped["OtherPatientIDs"] == ["a" * 600]  # the items that fit
    assert capped["PatientComments"] == ["z" * VALUE_MAX]
    assert capped["ImageType"] == fields["ImageType"] and capped["Rows"] == 512
    assert capped["StudyDescription"] == fields["StudyDescription"]  # at the limit: kept
    assert capped[CUT_NOTE] == {"ImageComments": 20_000, "OtherPatientIDs": 1201,
                                "PatientComments": 5000}
    assert CUT_NOTE not in cap_identifiers({"PatientID": "P1"})
    long_a, long_b = "p" * 5000 + "a", "p" * 5000 + "b"
    assert cap_key("P1") == "P1" and len(cap_key(long_a)) <= 256
    assert cap_key(long_a) != cap_key(long_b) and cap_key(long_a) == cap_key(long_a)
