"""Execution model and precedence (spec §2.8): deid's 47 action-interaction cases, plus the
deid-workers deviations (Part A §2) and the copy / thread-safety guarantees."""

from __future__ import annotations

import functools
import itertools
import logging
import threading

import pytest
from pydicom.dataset import Dataset
from recipe_helpers import CREATOR, make_dataset, recipe_of, roundtrip

from deid_workers.errors import RecipeError
from deid_workers.recipe import deidentify as _deidentify

ABSENT = "<absent>"
BLANKED = ""
ORIG = "20200115"  # StudyDate of make_dataset

LINES = {
    "ADD": "ADD StudyDate 20000101",
    "BLANK": "BLANK StudyDate",
    "JITTER": "JITTER StudyDate 1",
    "KEEP": "KEEP StudyDate",
    "REPLACE": "REPLACE StudyDate 20100101",
    "REMOVE": "REMOVE StudyDate",
}
SECOND = {  # the second line of a same-action pair differs, so "last wins" is visible
    "ADD": "ADD StudyDate 20000202",
    "JITTER": "JITTER StudyDate 2",
    "REPLACE": "REPLACE StudyDate 20100202",
}

# Expected StudyDate for each ordered pair (first line, second line).
PAIRS = {
    ("ADD", "ADD"): "20000202",
    ("ADD", "BLANK"): BLANKED,
    ("ADD", "JITTER"): "20000102",
    ("ADD", "KEEP"): "20000101",
    ("ADD", "REPLACE"): "20100101",
    ("ADD", "REMOVE"): ABSENT,
    ("BLANK", "ADD"): "20000101",
    ("BLANK", "BLANK"): BLANKED,
    ("BLANK", "JITTER"): BLANKED,
    ("BLANK", "KEEP"): ORIG,
    ("BLANK", "REPLACE"): "20100101",
    ("BLANK", "REMOVE"): ABSENT,
    ("JITTER", "ADD"): "20000101",
    ("JITTER", "BLANK"): BLANKED,
    ("JITTER", "JITTER"): "20200118",
    ("JITTER", "KEEP"): ORIG,
    ("JITTER", "REPLACE"): "20100101",
    ("JITTER", "REMOVE"): "20200116",
    ("KEEP", "ADD"): "20000101",
    ("KEEP", "BLANK"): ORIG,
    ("KEEP", "JITTER"): ORIG,
    ("KEEP", "KEEP"): ORIG,
    ("KEEP", "REPLACE"): ORIG,
    ("KEEP", "REMOVE"): ORIG,
    ("REPLACE", "ADD"): "20000101",
    ("REPLACE", "BLANK"): BLANKED,
    ("REPLACE", "JITTER"): "20100102",
    ("REPLACE", "KEEP"): ORIG,
    ("REPLACE", "REPLACE"): "20100202",
    ("REPLACE", "REMOVE"): "20100101",
    ("REMOVE", "ADD"): "20000101",
    ("REMOVE", "BLANK"): ABSENT,
    ("REMOVE", "JITTER"): "20200116",
    ("REMOVE", "KEEP"): ORIG,
    ("REMOVE", "REPLACE"): "20100101",
    ("REMOVE", "REMOVE"): ABSENT,
}
assert len(PAIRS) == 36 and set(PAIRS) == set(itertools.product(LINES, repeat=2))

P = f'(0021,"{CREATOR}",15)'
# (id, recipe, field path to read: keyword or "Seq[i].Keyword", expected)
EXTRA = [
    ("private-creator-replace-vs-remove-all", f"REMOVE ALL\nREPLACE {P} anon", "0x00211015", "anon"),
    ("private-creator-keep-vs-remove-all", f"KEEP {P}\nREMOVE ALL", "0x00211015", "SENTINEL PRIVATE"),
    ("private-creator-remove", f"REMOVE {P}", "0x00211015", ABSENT),
    ("hex-replace-vs-remove", "REMOVE 00080020\nREPLACE 00080020 20100101", "StudyDate", "20100101"),
    ("paren-tag-keep-vs-remove", "KEEP (0008,0020)\nREMOVE StudyDate", "StudyDate", ORIG),
    ("hex-add-then-remove-all", "ADD 00291010 added\nREMOVE ALL", "0x00291010", ABSENT),
    ("parent-remove-then-child-replace",
     "REMOVE RequestAttributesSequence\nREPLACE RequestAttributesSequence__RequestedProcedureID X",
     "RequestAttributesSequence", ABSENT),
    ("child-replace-then-parent-remove",
     "REPLACE RequestAttributesSequence__RequestedProcedureID X\nREMOVE RequestAttributesSequence",
     "RequestAttributesSequence", ABSENT),
    ("parent-blank-then-child-replace",
     "BLANK RequestAttributesSequence\nREPLACE RequestAttributesSequence__RequestedProcedureID X",
     "RequestAttributesSequence", 0),
    ("child-replace-then-parent-blank",
     "REPLACE RequestAttributesSequence__RequestedProcedureID X\nBLANK RequestAttributesSequence",
     "RequestAttributesSequence", 0),
    ("fields-list-replace-does-not-shield", "REPLACE fields:f 20100101\nREMOVE ALL", "StudyDate", ABSENT),
]

# These tests pin deid's execution model (spec §2.8-2.9); the conformance pass that runs
# after it is a deliberate difference, tested on its own in test_conformance.py.
deidentify = functools.partial(_deidentify, conform_iod=False)


def _read(ds: Dataset, path: str):
    if path.startswith("0x"):
        tag = int(path, 16)
        return ds[tag].value if tag in ds else ABSENT
    if path not in ds:
        return ABSENT
    value = ds.data_element(path).value
    if path.endswith("Sequence"):
        return len(value)
    return "" if value is None else str(value)


@pytest.mark.parametrize(
    "first,second", list(PAIRS), ids=[f"{a}-then-{b}" for a, b in PAIRS]
)
def test_action_pair(first: str, second: str) -> None:
    line2 = SECOND.get(second, LINES[second]) if first == second else LINES[second]
    recipe = recipe_of(f"{LINES[first]}\n{line2}")
    out = roundtrip(deidentify(make_dataset(), recipe))
    assert _read(out, "StudyDate") == PAIRS[(first, second)]


@pytest.mark.parametrize("header,path,expected", [c[1:] for c in EXTRA], ids=[c[0] for c in EXTRA])
def test_interaction_extra(header: str, path: str, expected) -> None:
    recipe = recipe_of(header, "%fields f\nFIELD StudyDate")
    out = roundtrip(deidentify(make_dataset(), recipe))
    assert _read(out, path) == expected


def test_interaction_case_count() -> None:
    assert len(PAIRS) + len(EXTRA) == 47


def test_remove_all_keeps_skip_list_and_replaced(dataset) -> None:
    out = deidentify(dataset, recipe_of("REMOVE ALL\nREPLACE PatientID anon"))
    assert out.PatientID == "anon"
    assert "PixelData" in out and "PatientName" not in out
    assert out.file_meta.TransferSyntaxUID == dataset.file_meta.TransferSyntaxUID
    assert "MediaStorageSOPInstanceUID" not in out.file_meta  # SOPInstanceUID is gone too


def test_file_meta_restored_from_dataset_when_only_meta_removed(dataset) -> None:
    out = roundtrip(deidentify(dataset, recipe_of("REMOVE MediaStorageSOPInstanceUID")), enforce=True)
    assert out.file_meta.MediaStorageSOPInstanceUID == dataset.SOPInstanceUID


def test_input_untouched_and_new_object(dataset) -> None:
    before = roundtrip(dataset)
    out = deidentify(dataset, recipe_of("REMOVE ALL\nJITTER StudyDate 3"))
    assert out is not dataset
    assert dataset.PatientName == "SENTINEL^PATIENT"
    assert roundtrip(dataset) == before


# --- deviations from deid (spec Part A §2) ---------------------------------------------------


@pytest.mark.parametrize("action", ["REPLACE", "JITTER"])
@pytest.mark.parametrize("source", ["var:nope", "func:nope"])
def test_missing_value_removes_field_and_warns(dataset, caplog, action, source) -> None:
    caplog.set_level(logging.WARNING, logger="deid_workers.recipe.actions")
    out = deidentify(dataset, recipe_of(f"{action} StudyDate {source}"), {}, filename="a/b.dcm")
    assert "StudyDate" not in out
    assert "REPLACE StudyDate not done for a/b.dcm" in [r.getMessage() for r in caplog.records]


def test_func_returning_none_counts_as_missing(dataset) -> None:
    out = deidentify(dataset, recipe_of("REPLACE PatientID func:f"), funcs={"f": lambda **k: None})
    assert "PatientID" not in out


def test_jitter_tm_unchanged(dataset) -> None:
    out = deidentify(dataset, recipe_of("JITTER StudyTime 5\nJITTER StudyDate 5"))
    assert out.StudyTime == dataset.StudyTime
    assert out.StudyDate == "20200120"


def test_jitter_dt_and_multivalue() -> None:
    ds = make_dataset()
    ds.add_new(0x00211017, "DA", ["20200101", "20200201"])
    out = deidentify(ds, recipe_of("JITTER AcquisitionDateTime 1\nJITTER 00211017 1"))
    assert out.AcquisitionDateTime == "20200116120000.000000"
    assert list(out[0x00211017].value) == ["20200102", "20200202"]


def test_remove_with_trailing_comment_removes(dataset) -> None:
    out = deidentify(dataset, recipe_of("REMOVE PatientID # a note"))
    assert "PatientID" not in out


@pytest.mark.parametrize("keyword,meta", [
    ("SOPInstanceUID", "MediaStorageSOPInstanceUID"), ("SOPClassUID", "MediaStorageSOPClassUID"),
])
def test_uid_replace_keeps_file_meta_in_step(dataset, keyword, meta) -> None:
    out = roundtrip(deidentify(dataset, recipe_of(f"REPLACE {keyword} 1.2.3.4")), enforce=True)
    assert getattr(out, keyword) == "1.2.3.4"
    assert getattr(out.file_meta, meta) == "1.2.3.4"


def test_uid_replace_by_func_syncs_meta(dataset) -> None:
    out = deidentify(dataset, recipe_of("REPLACE contains:UID deid_func:pydicom_uuid"))
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID != dataset.SOPInstanceUID


# --- other semantics -------------------------------------------------------------------------


def test_remove_with_func_value_removes_only_when_true(dataset) -> None:
    f = lambda field, **kw: field.element.keyword == "PatientID"  # noqa: E731
    out = deidentify(dataset, recipe_of("REMOVE ALL func:f"), funcs={"f": f})
    assert "PatientID" not in out and "PatientName" in out


def test_func_gets_deid_arguments(dataset) -> None:
    seen = []

    def f(dicom, value, field, item):
        seen.append((field if isinstance(field, str) else field.uid, value, item["x"]))
        return "v"

    out = deidentify(dataset, recipe_of("REPLACE AccessionNumber func:f\nADD Manufacturer func:f"),
                     {"x": 1}, funcs={"f": f})
    assert ("(0008,0050)", "func:f", 1) in seen
    assert ("(0040,0275)__0__(0008,0050)", "func:f", 1) in seen
    assert ("Manufacturer", "func:f", 1) in seen
    assert out.RequestAttributesSequence[1].AccessionNumber == "v"


def test_add_creates_with_dictionary_vr_and_hex_as_st(dataset) -> None:
    out = deidentify(dataset, recipe_of(
        "ADD PatientIdentityRemoved YES\nADD 00291010 x\nADD 00020016 AET\nADD Rows 7"))
    assert out["PatientIdentityRemoved"].VR == "CS"
    assert out[0x00291010].VR == "ST"
    assert out.file_meta.SourceApplicationEntityTitle == "AET"
    assert out.Rows == 7


def test_add_with_missing_var_adds_nothing(dataset) -> None:
    out = deidentify(dataset, recipe_of("ADD PatientIdentityRemoved var:none"))
    assert "PatientIdentityRemoved" not in out


def test_values_list_selects_by_value(dataset) -> None:
    recipe = recipe_of("REMOVE values:v", "%values v\nFIELD PatientID")
    out = deidentify(dataset, recipe)
    assert "PatientID" not in out and "PatientName" in out


def test_values_list_uses_original_values(dataset) -> None:
    recipe = recipe_of("REPLACE PatientID changed\nREMOVE values:v", "%values v\nFIELD PatientID")
    out = deidentify(dataset, recipe)
    assert out.PatientID == "changed"  # shielded by REPLACE; list holds the old value


def test_values_list_of_a_multi_valued_field_selects_what_deid_selects() -> None:
    # deid's FIELD adds each value of a multi-valued element; the list's text used to be
    # "['ORIGINAL', 'PRIMARY', 'AXIAL']", a regex character class matching any field with
    # one of those letters (over a hundred elements of a real CT header)
    ds = Dataset()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SeriesDescription = "AXIAL 5mm"
    ds.ImageComments = "PRIMARY read"
    ds.Modality = "CT"
    ds.StudyDescription = "HEAD"
    ds.InstitutionName = "General Hospital"
    ds.Manufacturer = "OTHER VENDOR"  # has O, R, I, A, L... but none of the three values
    out = deidentify(ds, recipe_of("REMOVE values:v", "%values v\nFIELD ImageType"))
    # the field itself matches (its text holds the values, as in deid), and the two whose
    # values hold one of them; nothing else
    assert sorted(e.keyword for e in out) == ["InstitutionName", "Manufacturer", "Modality",
                                              "StudyDescription"]


@pytest.mark.parametrize("minlength,hit", [(8, True), (9, False)])
def test_split_values(dataset, minlength, hit) -> None:
    recipe = recipe_of("REPLACE values:v X", f'%values v\nSPLIT InstitutionName by=" ";minlength={minlength}')
    out = deidentify(dataset, recipe)
    assert (out.InstitutionName == "X") is hit
    assert (out.PatientName == "X") is hit  # "SENTINEL" also occurs in the name
    assert out.Modality == "CT"


def test_thread_safe_same_recipe() -> None:
    recipe = recipe_of("REMOVE ALL\nREPLACE contains:PatientName X\nJITTER StudyDate 1")
    expected = roundtrip(deidentify(make_dataset(), recipe))
    results = []

    def work() -> None:
        for _ in range(5):
            results.append(roundtrip(deidentify(make_dataset(), recipe)) == expected)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 20


def test_in_place_edits_the_given_dataset_and_matches_the_copy() -> None:
    from deid_workers.recipe import load_recipe
    from deid_workers.synth import make_dataset as synth_dataset

    recipe = load_recipe(None)
    original = synth_dataset(3)
    copied = deidentify(original, recipe)
    assert copied is not original and original.PatientName == "DOE^JANE^P0003"
    work = synth_dataset(3)
    edited = deidentify(work, recipe, in_place=True)
    assert edited is work
    assert edited == copied and edited.file_meta == copied.file_meta


@pytest.mark.parametrize("line", ["REPLACE SpecificCharacterSet ISO_IR 100",
                                  "ADD SpecificCharacterSet ISO_IR 100",
                                  "REMOVE SpecificCharacterSet"])
def test_raw_text_is_decoded_with_the_original_character_set(line) -> None:
    """Fields of a read file stay raw bytes until used; a recipe that changes the character
    set must not make the others be decoded (or written back) under the new one. (pydicom
    decodes with the file's original set and re-encodes raw elements when the set changed.)"""
    src = roundtrip(make_dataset(SpecificCharacterSet="ISO_IR 192", InstitutionName="Zürich",
                                 StudyDescription="Schädel"))
    out = roundtrip(deidentify(src, recipe_of(f"{line}\nREMOVE PatientName"), in_place=True))
    assert out.InstitutionName == "Zürich" and out.StudyDescription == "Schädel"
    assert "PatientName" not in out


# --- the per-file choice of lines (performance) must not change any result -------------------


def _visit_every_line(ds: Dataset, recipe, ids=None, funcs=None) -> Dataset:
    """The reference execution: every %header line, in order, expands its selector on the
    field set (what deid does), instead of the lines chosen per file by field shape."""
    from deid_workers.recipe import actions
    from deid_workers.recipe.funcs import FuncContext

    lookup = dict(ids or {})
    lookup.update(funcs or {})
    run = actions._Run(ds, recipe, lookup, FuncContext(None, None), "x.dcm")
    run.build_lists()
    run._by_shape = False
    for i, (action, sel) in enumerate(run.c.plan):
        run._at = i
        if sel is None:
            run.add(action)
            continue
        for f in run.fields.expand(sel, run.lookup):
            if f.uid in run.fields:
                getattr(run, action.action.lower())(f, action)
    run.sync_meta()
    return ds


ORDER_CASES = {
    "add-then-replace-added": "ADD PatientIdentityRemoved YES\nREPLACE PatientIdentityRemoved NO",
    "add-then-regex-matches-added": "ADD 00291010 x\nREPLACE contains:0029 y\nREMOVE startswith:Patient",
    "keep-beats-remove-all": "KEEP PatientName\nREMOVE ALL\nREPLACE PatientName x",
    "remove-then-replace-same": "REMOVE StudyDate\nREPLACE StudyDate 20100101\nREPLACE PatientID p",
    "re-added-field-order": ("REMOVE AccessionNumber\nADD AccessionNumber A\n"
                             "REPLACE AccessionNumber var:nope\nBLANK Modality"),
    "lists-and-exact-mixed": ("REPLACE values:v X\nREMOVE fields:f\nBLANK startswith:Patient\n"
                              "REPLACE InstitutionName I\nREMOVE ALL\nJITTER StudyDate 1"),
    "sequence-gone-then-children": ("REMOVE contains:Sequence\nADD StudyDate 20000101\n"
                                    "REMOVE endswith:Date\nREPLACE CodeValue c"),
    "select-forms": "JITTER select:VR:DA 2\nREPLACE select:group:0021 20000101\nREMOVE except:Manufacturer",
    "re-added-beside-nested-copies": ("REPLACE AccessionNumber func:gone\nADD AccessionNumber A\n"
                                      "REPLACE AccessionNumber var:nope"),
    "shield-after-add": "REMOVE ALL\nADD PatientID new\nREPLACE PatientID var:nope\nREMOVE PatientID",
    "uid-sync": "REPLACE SOPInstanceUID 1.2.3\nADD SOPClassUID 1.2.4\nREMOVE MediaStorageSOPClassUID",
}
LISTS = "%values v\nFIELD PatientID\n%fields f\nFIELD contains:UID"
# None (so the field is removed) for the top-level copy only; nested copies stay
FUNCS = {"gone": lambda field, **kw: None if field.uid == "(0008,0050)" else "kept"}


@pytest.mark.parametrize("raw", [False, True], ids=["in-memory", "read-from-bytes"])
@pytest.mark.parametrize("header", list(ORDER_CASES.values()), ids=list(ORDER_CASES))
def test_lines_chosen_per_file_match_visiting_every_line(header, raw, caplog) -> None:
    # lists only where used: building them expands selectors before the first line runs
    recipe = recipe_of(header, LISTS if ":v" in header or ":f" in header else "")

    def fresh() -> Dataset:
        return roundtrip(make_dataset()) if raw else make_dataset()

    caplog.set_level(logging.WARNING, logger="deid_workers")
    expected = roundtrip(_visit_every_line(fresh(), recipe, funcs=FUNCS))
    expected_log = [r.getMessage() for r in caplog.records]
    caplog.clear()
    got = roundtrip(deidentify(fresh(), recipe, funcs=FUNCS, filename="x.dcm", in_place=True))
    assert [r.getMessage() for r in caplog.records] == expected_log
    assert got == expected and got.file_meta == expected.file_meta


def test_output_does_not_depend_on_files_seen_before() -> None:
    """Naming a field must not convert it: the names are cached across files, so converting
    only on a cache miss made a file's bytes depend on what the worker saw before (a raw
    value with two trailing spaces came out without them the first time only)."""
    from io import BytesIO

    import pydicom

    from deid_workers.recipe import selectors

    buf = BytesIO()
    make_dataset(ManufacturerModelName="MODEL X").save_as(buf, enforce_file_format=True)
    data = buf.getvalue().replace(b"MODEL X ", b"MODELX  ")
    recipe = recipe_of("REMOVE contains:Patient\nBLANK StudyDate")
    outputs = []
    for _ in range(2):
        for cache in (selectors._NAMES, selectors._MATCHES, selectors._PUBLIC_NAMES):
            cache.clear()
        ds = pydicom.dcmread(BytesIO(data))
        out = BytesIO()
        deidentify(ds, recipe, in_place=True).save_as(out)
        outputs.append(out.getvalue())
    assert b"MODELX  " in outputs[0]
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize("line", ["REPLACE SliceThickness REDACTED", "ADD SliceLocation nowhere",
                                  "REPLACE InstanceNumber var:n"])
def test_a_value_that_does_not_fit_its_vr_names_the_recipe_line(line: str) -> None:
    ds = make_dataset()
    ds.SliceThickness = "1.25"
    ds.InstanceNumber = 3
    recipe = recipe_of(f"KEEP PatientID\n{line}")
    with pytest.warns(UserWarning, match="Invalid value"), pytest.raises(RecipeError) as info:
        deidentify(ds, recipe, {"n": "not-a-number-P0001"})
    assert str(info.value).startswith("test.dicom:")
    assert info.value.line == 5 and "the value is not a valid" in str(info.value)
    assert "P0001" not in str(info.value) and "REDACTED" not in str(info.value)


def test_ids_fields_read_names_every_field_the_engine_looks_up(dataset) -> None:
    """Keeping only these names of a file's ids (as put --ids does) gives the same output."""
    from deid_workers.recipe import ids_fields_read, load_recipe

    recipe = recipe_of(
        "REPLACE PatientID var:newid\nJITTER StudyDate var:days\nREMOVE values:fromids\n"
        "REPLACE AccessionNumber func:newid\nADD PatientIdentityRemoved var:flag\n"
        "REMOVE fields:f\nBLANK values:v",
        "%values v\nFIELD PatientName\n%fields f\nFIELD startswith:Study")
    assert ids_fields_read(recipe) == {"newid", "days", "fromids", "flag", "f", "v"}
    assert ids_fields_read(load_recipe(None)) == frozenset()  # the default reads no ids field
    ids = {"newid": "ANON-1", "days": 7, "fromids": ["SENTINEL-ID-1", "CT"], "flag": "YES",
           "v": ["ignored: the recipe's list wins"], "PatientName": "unread", "other": [1, 2]}
    kept = {name: value for name, value in ids.items() if name in ids_fields_read(recipe)}
    full = roundtrip(deidentify(dataset, recipe, ids, settings=None))
    assert full.PatientID == "ANON-1" and "Modality" not in full  # the ids were read
    assert roundtrip(deidentify(dataset, recipe, kept, settings=None)) == full
