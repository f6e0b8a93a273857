"""REPLACE and BLANK per VR (spec §2.9), checked after a pydicom write and re-read, plus the
value sources of §2.6."""

from __future__ import annotations

import functools

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from recipe_helpers import make_dataset, recipe_of, roundtrip

from deid_workers.recipe import deidentify as _deidentify
from deid_workers.recipe.funcs import FuncContext
from deid_workers.recipe.values import MISSING, convert_value, resolve_value

# VR -> (keyword, initial value, REPLACE text, value read back after REPLACE, after BLANK)
VRS = {
    "AE": ("RetrieveAETitle", "OLDAE", "NEWAE", "NEWAE", ""),
    "AS": ("PatientAge", "030Y", "042Y", "042Y", ""),
    "AT": ("DataElement", 0x00100010, "00100020", 0x00100020, None),
    "CS": ("Modality", "CT", "MR", "MR", ""),
    "DA": ("InstanceCreationDate", "20200101", "20010101", "20010101", ""),
    "DS": ("EventElapsedTimes", "2.5", "1.5", "1.5", None),
    "DT": ("InstanceCoercionDateTime", "20200101120000", "20010101120000", "20010101120000", ""),
    "FD": ("TimeRange", 2.5, "1.5", 1.5, None),
    "FL": ("RecommendedDisplayFrameRateInFloat", 2.5, "1.5", 1.5, None),
    "IS": ("ReferencedFrameNumber", "3", "7", "7", None),
    "LO": ("Manufacturer", "old", "new", "new", ""),
    "LT": ("ExtendedCodeMeaning", "old", "new", "new", ""),
    "OB": ("RecordKey", b"ol", "ab", b"ab", None),
    "OD": ("FilterLookupTableData", b"\0" * 8, "abcdefgh", b"abcdefgh", None),
    "OF": ("VerticesOfThePolygonalOutline", b"\0" * 4, "abcd", b"abcd", None),
    "OL": ("LongPrimitivePointIndexList", b"\0" * 4, "abcd", b"abcd", None),
    "OV": ("SelectorOVValue", b"\0" * 8, "abcdefgh", b"abcdefgh", None),
    "OW": ("RecommendedDisplayCIELabValueList", b"ol", "ab", b"ab", None),
    "PN": ("ReferringPhysicianName", "Old^N", "New^N", "New^N", ""),
    "SH": ("AccessionNumber", "old", "new", "new", ""),
    "SL": ("ReferencePixelX0", 3, "7", 7, None),
    "SQ": ("LanguageCodeSequence", "seq", "x", 0, 0),
    "SS": ("TagAngleSecondAxis", 3, "7", 7, None),
    "ST": ("InstitutionAddress", "old", "new", "new", ""),
    "SV": ("SelectorSVValue", 3, "7", 7, None),
    "TM": ("InstanceCreationTime", "120000", "130000", "130000", ""),
    "UC": ("LongCodeValue", "old", "new", "new", ""),
    "UI": ("InstanceCreatorUID", "1.2.3", "1.2.4", "1.2.4", ""),
    "UL": ("PrivateDataElementValueMultiplicity", 3, "7", 7, None),
    "UN": ("SelectorUNValue", b"ol", "ab", b"ab", None),
    "UR": ("CodingSchemeURL", "http://old", "http://new", "http://new", ""),
    "US": ("PrivateGroupReference", 3, "7", 7, None),
    "UT": ("PrivateDataElementDescription", "old", "new", "new", ""),
    "UV": ("FileOffsetInContainer", 3, "7", 7, None),
}
assert len(VRS) == 34

# These tests pin deid's execution model (spec §2.8-2.9); the conformance pass that runs
# after it is a deliberate difference, tested on its own in test_conformance.py.
deidentify = functools.partial(_deidentify, conform_iod=False)


def _dataset(vr: str) -> tuple[Dataset, str]:
    keyword, initial, *_ = VRS[vr]
    ds = make_dataset()
    if vr == "SQ":
        item = Dataset()
        item.CodeValue = "en"
        initial = Sequence([item])
    setattr(ds, keyword, initial)
    return ds, keyword


def _read_back(ds: Dataset, keyword: str):
    value = roundtrip(ds)[keyword].value
    return len(value) if isinstance(value, Sequence) else value


@pytest.mark.parametrize("vr", list(VRS))
def test_replace_per_vr(vr: str) -> None:
    ds, keyword = _dataset(vr)
    out = deidentify(ds, recipe_of(f"REPLACE {keyword} {VRS[vr][2]}"))
    assert _read_back(out, keyword) == VRS[vr][3]


@pytest.mark.parametrize("vr", list(VRS))
def test_blank_per_vr(vr: str) -> None:
    ds, keyword = _dataset(vr)
    out = deidentify(ds, recipe_of(f"BLANK {keyword}"))
    assert keyword in out
    assert _read_back(out, keyword) == VRS[vr][4]


def test_replace_numeric_with_text_blanks() -> None:
    out = deidentify(make_dataset(), recipe_of("REPLACE Rows many"))
    assert "Rows" in out and out.Rows is None


@pytest.mark.parametrize("text,expected", [('"Anon   Co"', '"Anon   Co"'), ("Anon   Co", "Anon Co")])
def test_replace_value_tokens(text, expected) -> None:
    out = deidentify(make_dataset(), recipe_of(f"REPLACE Manufacturer {text}"))
    assert out.Manufacturer == expected  # quotes kept, runs of spaces outside quotes collapsed


@pytest.mark.parametrize(
    "vr,text,expected",
    [("FL", "1.5", 1.5), ("US", "7", 7), ("OB", "ab", b"ab"), ("LO", "x", "x"), ("US", "x", None)],
)
def test_convert_value(vr, text, expected) -> None:
    ok, value = convert_value(vr, text)
    assert value == expected and ok is (expected is not None)


def test_resolve_sources() -> None:
    ctx = FuncContext()
    lookup = {"v": "V", "f": lambda **kw: kw["value"]}
    kw = dict(lookup=lookup, field=None, dataset=None, ctx=ctx)
    assert resolve_value("var:v", **kw) == "V"
    assert resolve_value("var:x", **kw) is MISSING
    assert resolve_value("func:f", **kw) == "func:f"
    assert resolve_value("func:x", **kw) is MISSING
    assert resolve_value("VAR:v", **kw) == "VAR:v"  # prefixes are case-sensitive, as in deid
    assert resolve_value("plain", **kw) == "plain"
