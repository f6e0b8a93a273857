"""Selector forms and matching surfaces (spec §2.5), at every depth and in file meta."""

from __future__ import annotations

import warnings

import pytest
from recipe_helpers import CREATOR, make_dataset

from deid_workers.recipe.selectors import FieldSet, add_target, compile_selector

NESTED_ACC = "(0040,0275)__0__(0008,0050)"


def uids(selector: str, ds=None, lists=None) -> set[str]:
    fs = FieldSet(ds if ds is not None else make_dataset())
    return {f.uid for f in fs.expand(compile_selector(selector), lists)}


def test_flattening_names_and_uids() -> None:
    fs = FieldSet(make_dataset())
    by_uid = {f.uid: f for f in fs}
    assert by_uid[NESTED_ACC].name == "RequestAttributesSequence__AccessionNumber"
    deep = "(0040,0275)__0__(0032,1064)__0__(0008,0100)"
    assert by_uid[deep].name == "RequestAttributesSequence__RequestedProcedureCodeSequence__CodeValue"
    assert by_uid["(0002,0003)"].is_filemeta
    skipped = {"(7FE0,0010)", "(0002,0010)", "(0002,0012)"}
    assert not skipped & set(by_uid)


def test_all_covers_every_depth_and_meta() -> None:
    found = uids("ALL")
    assert {"(0010,0010)", NESTED_ACC, "(0040,0275)__1__(0008,0050)", "(0002,0003)"} <= found
    assert uids("all") == found


@pytest.mark.parametrize(
    "selector",
    ["AccessionNumber", "accessionnumber", "Accession Number", "(0008,0050)", "00080050"],
)
def test_exact_forms_hit_every_depth(selector: str) -> None:
    assert uids(selector) == {"(0008,0050)", NESTED_ACC, "(0040,0275)__1__(0008,0050)"}


def test_exact_path_and_uid() -> None:
    assert uids("RequestAttributesSequence__AccessionNumber") == {
        NESTED_ACC, "(0040,0275)__1__(0008,0050)"}
    assert uids(NESTED_ACC) == {NESTED_ACC}


@pytest.mark.parametrize(
    "selector",
    [f'(0021,"{CREATOR}",15)', f'0021,"{CREATOR}",15', f'(0021,"{CREATOR.lower()}",15)'],
)
def test_private_creator_exact(selector: str) -> None:
    assert uids(selector) == {"(0021,1015)"}


def test_private_creator_in_contains() -> None:
    assert uids('contains:"MITRA OBJECT') == {"(0033,101E)"}
    assert "(0021,1015)" in uids("contains:Siemens: Thorax")


def test_contains_startswith_endswith_except() -> None:
    assert {"(0010,0010)", "(0010,0020)", "(0010,0030)", "(0010,0040)"} <= uids("contains:0010")
    assert "(0008,0030)" in uids("endswith:Time")
    assert "(0008,002A)" in uids("endswith:Time")  # AcquisitionDateTime
    assert uids("startswith:PatientB") == {"(0010,0030)"}
    except_ = uids("except:Manufacturer")
    assert "(0008,0070)" not in except_ and "(0008,1090)" not in except_  # ModelName too
    assert "(0010,0010)" in except_
    assert "(0040,0275)__0__(0040,1001)" in uids("contains:Sequence")  # parent in the path
    # | is OR; OtherPatientIDs contains "PatientID"
    assert uids("contains:PatientName|PatientID") == {"(0010,0010)", "(0010,0020)", "(0010,1000)"}


def test_regex_is_lowercased_like_deid() -> None:
    sel = compile_selector(r"contains:\D")
    assert sel.regex is not None and sel.regex.text == r"\d"


def test_select_vr_and_group() -> None:
    assert "(0008,0020)" in uids("select:VR:DA") and "(0010,0010)" not in uids("select:VR:DA")
    assert uids("select:vr:pnx") >= {"(0010,0010)"}
    assert uids("select:group:0021") == {"(0021,0010)", "(0021,1015)", "(0021,1016)"}


def test_values_and_fields_lists() -> None:
    ds = make_dataset()
    assert uids("values:v", ds, {"v": ["sentinel-id"]}) == {"(0010,0020)"}
    assert uids("values:v", ds, {"v": []}) == set()
    assert uids("values:v", ds, {"v": ["(unbalanced"]}) == set()  # escaped, not re.error
    fs = FieldSet(ds)
    stored = {f.uid: f for f in fs.expand(compile_selector("AccessionNumber"))}
    assert uids("fields:f", ds, {"f": stored}) == set(stored)


def test_skip_tags_exclude_at_every_depth() -> None:
    fs = FieldSet(make_dataset(), frozenset({"(0008,0050)"}))
    assert not [f for f in fs if f.element.keyword == "AccessionNumber"]


def test_removal_forgets_children_and_memo_filters() -> None:
    fs = FieldSet(make_dataset())
    sel = compile_selector("AccessionNumber")
    assert len(fs.expand(sel)) == 3
    seq = fs.get("(0040,0275)")
    assert seq is not None
    fs.remove(seq)
    assert [f.uid for f in fs.expand(sel)] == ["(0008,0050)"]


@pytest.mark.parametrize("bad", ["contains:(x", "nosuch:x", "select:group:zz", "select:color:red"])
def test_bad_selectors(bad: str) -> None:
    with pytest.raises(ValueError):
        compile_selector(bad)


def test_add_target() -> None:
    assert add_target("PatientID") == (0x00100020, "LO")
    assert add_target("00291010") == (0x00291010, "ST")
    with pytest.raises(ValueError):
        add_target("(0010,0020)")


def test_cross_file_name_cache_keeps_private_creators_apart() -> None:
    """The names cache is keyed by tag path and creator: the same private tag under another
    creator must not answer the first creator's selector."""
    from pydicom.dataset import Dataset

    def with_creator(creator: str) -> Dataset:
        ds = Dataset()
        ds.private_block(0x0011, creator, create=True).add_new(0x10, "LO", "x")
        return ds

    sel = compile_selector('0011,"ALPHA",10')
    assert [f.uid for f in FieldSet(with_creator("ALPHA")).expand(sel)] == ["(0011,1010)"]
    assert FieldSet(with_creator("BETA")).expand(sel) == []
    regex = compile_selector("contains:ALPHA")
    assert FieldSet(with_creator("BETA")).expand(regex) == []
    assert [f.uid for f in FieldSet(with_creator("ALPHA")).expand(regex)] == ["(0011,1010)"]


def test_names_of_raw_fields_need_no_conversion_and_match_converted_ones() -> None:
    """A field is named from its tag (and creator) alone: naming every field of a file read
    from bytes leaves its public elements raw, with the same names as once converted."""
    from pydicom.dataelem import RawDataElement
    from recipe_helpers import roundtrip

    ds = roundtrip(make_dataset())
    raw_fields = [f for f in FieldSet(ds) if isinstance(ds.get_item(f.tag_int), RawDataElement)]
    assert len(raw_fields) > 20
    names = {f.uid: (f._exact_keys_uncached(), f._surfaces_uncached()) for f in raw_fields}
    assert all(isinstance(ds.get_item(f.tag_int), RawDataElement) for f in raw_fields)
    for f in raw_fields:
        _ = f.element  # converts it
        assert (f._exact_keys_uncached(), f._surfaces_uncached()) == names[f.uid], f.uid


def test_exact_index_as_of_earlier_fields_keeps_their_order() -> None:
    fs = FieldSet(make_dataset())
    before = list(fs)
    top = fs.get("(0008,0050)")
    fs.remove(top)
    fs.add(top)  # re-created: last in the field set
    assert fs.exact_index(before)["accessionnumber"][0] == "(0008,0050)"
    assert fs.indexed


# --- cheap element construction (new_element, Field.original_value) ---------------------------

ELEMENT_CASES = [
    ("PN", "ANONYMOUS"), ("LO", "ANONYMOUS"), ("CS", "ANON"), ("DA", "19000101"),
    ("TM", "000000"), ("DT", "19000101000000"), ("AS", "000Y"), ("UI", "1.2.3.4"),
    ("US", 7), ("FL", 1.5), ("OB", b"ab"), ("DS", "1.5"), ("IS", "3"), ("SQ", None),
    ("LO", "A\\B"), ("CS", "lower"), ("UI", "1.02.3"), ("UI", "1.2.3\n"), ("UI", "1.2.3 "),
    ("UI", "1." + "2" * 70), ("UI", ""), ("DA", None), ("PN", None), ("UN", "x"), ("AT", None),
]


def _attrs(el) -> dict:
    out = dict(vars(el))
    value = el.value
    state = list(value) if isinstance(value, list) or type(value).__name__ == "MultiValue" else (
        vars(value) if hasattr(value, "__dict__") else None)
    out["_value"] = (type(value), repr(value), state)
    return out


@pytest.mark.parametrize("vr,value", ELEMENT_CASES)
@pytest.mark.parametrize("shared", [True, False])
def test_new_element_is_what_pydicom_builds(vr, value, shared) -> None:
    """Same attributes, same value type and the same warnings, on first and later calls."""
    from pydicom.dataelem import DataElement
    from pydicom.tag import Tag

    from deid_workers.recipe.elements import new_element

    for _ in range(2):  # the second call is served from the template cache
        with warnings.catch_warnings(record=True) as ours:
            warnings.simplefilter("always")
            mine = new_element(Tag(0x00081010), vr, value, shared)
        with warnings.catch_warnings(record=True) as theirs:
            warnings.simplefilter("always")
            ref = DataElement(Tag(0x00081010), vr, value)
        assert _attrs(mine) == _attrs(ref)
        assert [str(w.message) for w in ours] == [str(w.message) for w in theirs]


def test_shared_person_names_are_separate_objects() -> None:
    from pydicom.tag import Tag

    from deid_workers.recipe.elements import new_element

    a = new_element(Tag(0x00100010), "PN", "ANONYMOUS", True)
    b = new_element(Tag(0x00100010), "PN", "ANONYMOUS", True)
    assert a.value == b.value and a.value is not b.value


@pytest.mark.parametrize("raw", [b"1.2.840.10008.5.1.4.1.1.2\x00", b"1.2.3.4 ", b"1.2.03.4\x00",
                                 b"1.2.3\\1.2.4", b"", b"1.2.3\n\x00", b"1." + b"2" * 70])
@pytest.mark.parametrize("explicit", [True, False])
def test_original_value_of_a_raw_uid_is_the_converted_value(raw, explicit) -> None:
    from pydicom.dataelem import RawDataElement
    from pydicom.dataset import Dataset
    from pydicom.tag import Tag

    tag = Tag(0x0020000D)

    def dataset() -> Dataset:
        ds = Dataset()
        ds._dict[tag] = RawDataElement(tag, "UI" if explicit else None, len(raw), raw, 0,
                                       not explicit, True)
        return ds

    ds = dataset()
    field = next(f for f in FieldSet(ds) if f.tag_int == 0x0020000D)
    with warnings.catch_warnings(record=True) as ours:
        warnings.simplefilter("always")
        mine = field.original_value()
    with warnings.catch_warnings(record=True) as theirs:
        warnings.simplefilter("always")
        ref = dataset()[tag].value
    assert (type(mine), mine) == (type(ref), ref)
    assert [str(w.message) for w in ours] == [str(w.message) for w in theirs]
    # read from its bytes (the element stays raw) exactly when it is one valid UID
    fast = isinstance(ds._dict[tag], RawDataElement)
    assert fast == (raw in (b"1.2.840.10008.5.1.4.1.1.2\x00", b"1.2.3.4 "))


@pytest.mark.parametrize("raw,expected", [
    (b"1.2.840.10008.5.1.4.1.1.2\x00", True), (b"1.2.3.4\x00", True), (b"1.2.3.4 ", False),
    (b"1.2.34\x00\x00", False),
    (b"1.2.34", True), (b"1.2.3\\1.2.4", False), (b"", False), (b"1.02\x00", False),
])
def test_holds_canonical_uid_only_for_bytes_pydicom_would_write_back(raw, expected) -> None:
    from pydicom.dataelem import RawDataElement
    from pydicom.dataset import Dataset
    from pydicom.tag import Tag

    from deid_workers.recipe.elements import holds_canonical_uid

    ds = Dataset()
    ds._dict[Tag(0x00020002)] = RawDataElement(Tag(0x00020002), "UI", len(raw), raw, 0, False, True)
    assert holds_canonical_uid(ds, 0x00020002) is expected
    assert holds_canonical_uid(ds, 0x00020003) is False


def _private_file(implicit: bool) -> bytes:
    import io

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    warnings.simplefilter("ignore")  # the too-long value below (inside the caller's catch)
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "Zoë"
    ds.add_new(0x00090010, "LO", "ACME 1.0")
    ds.add_new(0x00091010, "LO", "Zoë's value")
    ds.add_new(0x00091011, "DS", "42.5")
    ds.add_new(0x00091012, "LO", "X" * 70)  # too long: warns on conversion
    ds.add_new(0x00091013, "US", 7)
    ds.add_new(0x00191001, "LO", "no creator")
    ds.add_new(0x00110000, "UL", 4)  # a private group length: the creator of (0011,00xx)
    ds.add_new(0x00110010, "LO", "OTHER")
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    buf = io.BytesIO()
    ds.save_as(buf, implicit_vr=implicit, little_endian=True, enforce_file_format=False)
    return buf.getvalue()


@pytest.mark.parametrize("implicit", [False, True])
def test_private_elements_convert_as_pydicom_converts_them(implicit) -> None:
    """Same elements (value, VR, creator) and the same warnings as Dataset.__getitem__."""
    import io

    import pydicom

    with warnings.catch_warnings():
        data = _private_file(implicit)
    ours_ds = pydicom.dcmread(io.BytesIO(data), force=True)
    ref_ds = pydicom.dcmread(io.BytesIO(data), force=True)
    with warnings.catch_warnings(record=True) as ours:
        warnings.simplefilter("always")
        fields = {f.tag_int: f for f in FieldSet(ours_ds) if f.tag_int >> 16 & 1}
    with warnings.catch_warnings(record=True) as theirs:
        warnings.simplefilter("always")
        ref = {t: ref_ds[t] for t in sorted(ref_ds._dict) if t >> 16 & 1}
    assert [str(w.message) for w in ours] == [str(w.message) for w in theirs]
    assert set(fields) == set(ref)
    for tag, element in ref.items():
        mine = fields[tag].element
        assert mine is ours_ds._dict[tag]
        assert (mine.VR, mine.value, mine.private_creator, type(mine.value)) == (
            element.VR, element.value, element.private_creator, type(element.value))
        assert fields[tag].creator == element.private_creator


def test_delete_element_matches_pydicom_del() -> None:
    from pydicom.dataset import Dataset
    from pydicom.tag import Tag

    from deid_workers.recipe.elements import delete_element

    ds = Dataset()
    ds.PatientID = "x"
    block = ds.private_block(0x0009, "ACME", create=True)
    block.add_new(0x01, "LO", "v")
    assert ds._private_blocks
    delete_element(ds, Tag(0x00100020))
    delete_element(ds, Tag(0x00100010))  # absent: nothing happens
    assert 0x00100020 not in ds and ds._private_blocks
    delete_element(ds, Tag(0x00090010))  # a private creator: pydicom forgets its blocks
    assert 0x00090010 not in ds and not ds._private_blocks


def test_stock_conversion_turns_off_when_pydicom_conversion_is_customised(monkeypatch) -> None:
    from pydicom import config
    from pydicom.hooks import hooks

    from deid_workers.dicom.compat import stock_conversion

    assert stock_conversion()
    monkeypatch.setattr(config, "data_element_callback", lambda raw, **kw: raw)
    assert not stock_conversion()
    monkeypatch.setattr(config, "data_element_callback", None)
    monkeypatch.setattr(hooks, "raw_element_value", lambda *a, **kw: None)
    assert not stock_conversion()
