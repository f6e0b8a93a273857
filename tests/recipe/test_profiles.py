"""The PS3.15 Annex E options (``load_recipe(profile=...)``): for each option, a dataset holding
every attribute its column of table E.1-1 names (at the top level, inside a sequence item,
and, for private attributes, in blocks at several block numbers) is de-identified with
``basic,<option>`` and checked attribute by attribute against the column's code; plus the
conflicts the standard leaves open, the merge of a user's recipe on top, and what every
output says about itself.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from deid_workers.config import Settings
from deid_workers.errors import RecipeError
from deid_workers.files.provenance import stamp
from deid_workers.recipe import annex_e, deidentify, inspect_dataset, load_recipe, standard
from deid_workers.recipe.cleantext import Identifying, clean_value
from deid_workers.recipe.funcs import hmac_id, jitter_value, shift_days
from deid_workers.recipe.options import OPTIONS, ProfileError, parse_profile
from deid_workers.recipe.standard import Row

SETTINGS = Settings(secret=b"profile-test-key" * 2, date_shift_min=-400, date_shift_max=-20)
CONTAINER = 0x00082218  # Anatomic Region Sequence: no row of E.1-1, so every profile keeps it
FAMILY, GIVEN = "Doe", "Johanna"
PATIENT_ID = "PID-90210"
BIRTH = "19700412"
TEXT_FORMS = (f"{GIVEN.upper()} {FAMILY.lower()}", PATIENT_ID.lower(), "12/04/1970")
"""A name (other order and case), an ID and a date of the file, as free text holds them."""


def _vr(row: Row) -> str:
    """The row's VR (pydicom's; for the few it does not know, a VR of the right kind)."""
    vr = annex_e.row_vr(row)
    if vr is not None:
        return vr
    for suffix, guess in (("DateTime", "DT"), ("Date", "DA"), ("Time", "TM")):
        if row.name.endswith(suffix):
            return guess
    return "LO"


def _value(tag: int, vr: str) -> Any:
    """A value valid for the VR and unique to the tag; free text holds the patient's name, ID
    and birth date (cut to fit a short VR)."""
    text = f"S{tag:08X}"
    if vr == "SH":
        return f"{FAMILY} {BIRTH}"
    if vr == "CS":
        return FAMILY.upper()
    if vr == "AE":
        return f"AE{tag:08X}"
    if vr in ("LO", "LT", "ST", "UT", "UC"):
        return f"{text} {' '.join(TEXT_FORMS)}"
    return {
        "DA": "20210315", "DT": "20210315101010.25", "TM": "101010", "UI": f"1.2.826.0.1.3680043.10.543.{tag}",
        "AS": "042Y", "DS": "12.5", "IS": "42", "US": 42, "OB": b"\x01\x02\x03\x04",
        "UR": f"http://example.org/{text}",
    }[vr]


def _element(row: Row) -> DataElement:
    tag = row.tag_int
    assert tag is not None
    vr = _vr(row)
    if vr == "SQ":
        item = Dataset()
        item.CodeMeaning = f"code {FAMILY} {PATIENT_ID}"
        item.TextValue = f"text {FAMILY} {PATIENT_ID}"
        return DataElement(tag, vr, Sequence([item]))
    if row.name.startswith("Timezone"):
        return DataElement(tag, vr, "+0100")
    return DataElement(tag, vr, _value(tag, vr))


SAFE = [(r.group, r.creator, r.element, r.vr) for r in standard.safe_private()
        if r.vr in ("DS", "LO", "SH", "CS", "US", "UL", "IS", "FD", "FL")]
SAFE_PICK = [SAFE[0], next(s for s in SAFE if s[1] != SAFE[0][1])]
"""Two safe private elements of different creators, planted in blocks 0x10, 0x42 and 0xF0."""


def _private_value(vr: str) -> Any:
    return {"DS": "1.5", "IS": "7", "US": 7, "UL": 7, "FD": 1.5, "FL": 1.5}.get(vr, "SAFE")


def _plant_private(ds: Dataset, block: int) -> None:
    """In ``ds``: each picked safe element in a block of its creator at ``block`` (its group),
    an element the table does not list next to it, and a block of an unknown creator."""
    for group, creator, element, vr in SAFE_PICK:
        ds.add_new((group << 16) | block, "LO", creator)
        ds.add_new((group << 16) | block << 8 | element, vr, _private_value(vr))
        ds.add_new((group << 16) | block << 8 | ((element + 1) & 0xFF), "LO", f"unsafe {FAMILY}")
    ds.add_new(0x00290000 | block, "LO", "NOT A SAFE CREATOR")
    ds.add_new(0x00290000 | block << 8 | 0x01, "LO", f"unsafe {FAMILY}")


def _planted(option: str) -> tuple[Dataset, list[Row]]:
    """A dataset with every attribute the option's column names, at the top level and (but
    the command and file-meta groups) inside an item of :data:`CONTAINER`."""
    key = OPTIONS[option].key
    rows = [r for r in standard.e1_1() if key in r.option_codes]
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.PatientName = f"{FAMILY}^{GIVEN}"
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = BIRTH
    inner = Dataset()
    for row in rows:
        if row.private:
            _plant_private(ds, 0x10)
            _plant_private(inner, 0x42)
            _plant_private(ds, 0xF0)
            continue
        if row.tag in annex_e.MASK_SELECTORS:
            continue  # planted below, in two groups each
        element = _element(row)
        if element.tag >> 16 == 0x0002:
            meta.add(element)
            continue
        ds.add(element)
        if element.tag >> 16 != 0x0000:
            inner.add(copy.deepcopy(element))
    if option == "clean-graphics":
        for group in (0x5000, 0x5002):
            ds.add_new(group << 16 | 0x0022, "LO", f"curve {FAMILY}")
            ds.add_new(group << 16 | 0x3000, "OW", b"\x00\x01\x00\x02")
        for group in (0x6000, 0x6002):
            ds.add_new(group << 16 | 0x4000, "LT", f"overlay {FAMILY}")
            ds.add_new(group << 16 | 0x3000, "OW", b"\x00\xff" * 4)
    ds.add_new(CONTAINER, "SQ", Sequence([inner]))
    return ds, rows


def _plain(value: Any) -> Any:
    if isinstance(value, MultiValue):
        return list(value)
    return value


def _find(ds: Dataset, tag: int) -> DataElement | None:
    return ds[tag] if tag in ds else None


def _check_kept(out: DataElement | None, before: DataElement) -> None:
    assert out is not None, f"{before.tag} removed"
    if before.VR == "SQ":
        assert len(out.value) == len(before.value)
    else:
        assert _plain(out.value) == _plain(before.value), before.tag


def _expected_clean(option: str, row: Row, before: DataElement, days: int, found: Identifying) -> Any:
    """What the option's C gives this attribute (:mod:`deid_workers.recipe.annex_e`'s rules)."""
    vr = before.VR
    if option == "retain-longitudinal-modified-dates":
        if vr in ("DA", "DT"):
            return jitter_value(before.value, vr, days)
        if vr in ("TM", "SH"):
            return before.value  # a time of day and an offset from UTC: kept
        raise AssertionError(vr)
    if option == "retain-device-identity":
        return hmac_id(SETTINGS.secret or b"", str(before.value), length=16)
    return clean_value(before.value, vr, found)


def _found() -> Identifying:
    """The file's identifying values, as the engine collects them (the planted dataset holds
    these, plus the dates and IDs of the rows, which the checks below do not rely on)."""
    from deid_workers.recipe.cleantext import collect

    return collect((("name", f"{FAMILY}^{GIVEN}"), ("id", PATIENT_ID), ("date", BIRTH)))


def _check_row(option: str, row: Row, out: Dataset, before: Dataset, days: int) -> None:
    """One attribute of ``before`` (one depth) against the option's code for its row."""
    tag = row.tag_int
    assert tag is not None
    if tag not in before:
        return
    original = before[tag]
    element = _find(out, tag)
    code = row.option_codes[OPTIONS[option].key]
    if code == "K":
        _check_kept(element, original)
        return
    assert code == "C"
    item = annex_e.map_row(row, (option,))
    if item.effect in ("remove", "replace") and item.line and "deid_func" not in item.line:
        # a C the option cannot carry out here (a binary timestamp): the Basic Profile's
        assert element is None or _plain(element.value) != _plain(original.value), row.tag
        return
    if original.VR == "SQ":
        assert element is not None and len(element.value) == 1, f"{row.tag} sequence not kept"
        item_ds = element.value[0]
        for text in (item_ds.CodeMeaning, item_ds.TextValue):
            assert FAMILY.lower() not in text.lower() and PATIENT_ID.lower() not in text.lower(), row.tag
        assert item_ds.CodeMeaning == "code [name] [id]"
        return
    assert element is not None, f"{row.tag} {row.name} removed, expected cleaned"
    expected = _expected_clean(option, row, original, days, _found())
    assert _plain(element.value) == _plain(expected), f"{row.tag} {row.name}"
    if item.effect == "clean":
        text = str(element.value).lower()
        for token in (FAMILY.lower(), GIVEN.lower(), PATIENT_ID.lower(), "12/04/1970", BIRTH):
            assert token not in text, f"{row.tag}: {token!r} survived cleaning"


def _check_private(out: Dataset, block: int) -> None:
    for group, _creator, element, vr in SAFE_PICK:
        creator_tag = (group << 16) | block
        assert creator_tag in out, f"creator of a kept block ({creator_tag:08X}) removed"
        safe_tag = (group << 16) | block << 8 | element
        assert safe_tag in out and _plain(out[safe_tag].value) == _plain(
            DataElement(safe_tag, vr, _private_value(vr)).value)
        assert ((group << 16) | block << 8 | ((element + 1) & 0xFF)) not in out
    assert (0x00290000 | block) not in out and (0x00290000 | block << 8 | 0x01) not in out


@pytest.mark.parametrize("option", list(OPTIONS))
def test_option_does_what_its_column_says_at_every_depth(option: str) -> None:
    ds, rows = _planted(option)
    recipe = load_recipe(profile=["basic", option])
    out = deidentify(ds, recipe, settings=SETTINGS)
    days = shift_days(SETTINGS.secret or b"", PATIENT_ID, SETTINGS.date_shift_min, SETTINGS.date_shift_max)
    inner_before, inner_out = ds[CONTAINER].value[0], out[CONTAINER].value[0]
    for row in rows:
        if row.private:
            _check_private(out, 0x10)
            _check_private(out, 0xF0)
            _check_private(inner_out, 0x42)
            continue
        if row.tag in annex_e.MASK_SELECTORS:
            continue
        _check_row(option, row, out, ds, days)
        _check_row(option, row, inner_out, inner_before, days)
    if option == "retain-uids":
        assert out.file_meta.MediaStorageSOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID
    if option == "clean-graphics":
        for group in (0x5000, 0x5002, 0x6000, 0x6002):
            data = group << 16 | 0x3000
            assert out[data].value == ds[data].value, "graphics data kept"
        assert out[0x50000022].value == "curve [name]" and out[0x60024000].value == "overlay [name]"
        verdict = inspect_dataset(out, recipe)
        assert verdict["flagged"] and "0x60003000 present" in verdict["results"][0]["reason"]
    # Basic's rows that the option does not name are untouched by it: the patient's name
    assert not out.get("PatientName")


def test_without_the_option_the_basic_profile_removes_what_it_would_keep() -> None:
    ds, rows = _planted("retain-patient-characteristics")
    out = deidentify(ds, load_recipe(profile="basic"), settings=SETTINGS)
    for row in rows:
        assert row.tag_int is not None
        element = _find(out, row.tag_int)
        assert element is None or _plain(element.value) != _plain(ds[row.tag_int].value), row.name


def test_modified_dates_keep_the_intervals_between_a_patients_studies() -> None:
    recipe = load_recipe(profile="basic,retain-longitudinal-modified-dates")

    def study(patient: str, date: str) -> Dataset:
        ds = Dataset()
        ds.PatientID = patient
        ds.StudyDate = date
        ds.AcquisitionDateTime = f"{date}093000.5"
        ds.StudyTime = "093000"
        item = Dataset()
        item.ContentDate = date  # nested: the same shift
        ds.add_new(CONTAINER, "SQ", Sequence([item]))
        return deidentify(ds, recipe, settings=SETTINGS)

    from datetime import date as Date

    def day(text: str) -> Date:
        return Date(int(text[:4]), int(text[4:6]), int(text[6:8]))

    first, second, other = study("P1", "20200115"), study("P1", "20210301"), study("P2", "20200115")
    assert (day(second.StudyDate) - day(first.StudyDate)).days == (Date(2021, 3, 1) - Date(2020, 1, 15)).days
    assert first.StudyDate != "20200115" and other.StudyDate != first.StudyDate
    assert first.StudyTime == "093000" and first.AcquisitionDateTime.endswith("093000.500000")
    assert first[CONTAINER][0].ContentDate == first.StudyDate


def test_a_date_that_cannot_be_shifted_is_removed_not_kept() -> None:
    ds = Dataset()
    ds.PatientID = "P1"
    with pytest.warns(UserWarning, match="Invalid value for VR DA"):
        ds.add(DataElement(0x00080021, "DA", "20200230"))  # no such day
        ds.add(DataElement(0x00080022, "DA", "notadate"))
    out = deidentify(ds, load_recipe(profile="basic,retain-longitudinal-modified-dates"), settings=SETTINGS)
    assert "SeriesDate" not in out and "AcquisitionDate" not in out


@pytest.mark.parametrize(
    ("profile", "pair", "named"),
    [
        ("basic,retain-longitudinal-full-dates,retain-longitudinal-modified-dates",
         "retain-longitudinal-full-dates keeps and retain-longitudinal-modified-dates cleans 169",
         "Acquisition Date (0008,0022)"),
        ("basic,retain-device-identity,retain-longitudinal-modified-dates",
         "retain-device-identity keeps and retain-longitudinal-modified-dates cleans 11",
         "Calibration Date (0014,407E)"),
    ],
)
def test_options_that_contradict_are_refused_naming_the_attributes(profile: str, pair: str, named: str) -> None:
    with pytest.raises(ProfileError) as caught:
        load_recipe(profile=profile)
    assert pair in str(caught.value) and named in str(caught.value)
    assert isinstance(caught.value, RecipeError)


def test_options_that_agree_combine() -> None:
    # K from two options, C from two options (Allergies), K and K (Device UID)
    options = parse_profile("basic,clean-descriptors,retain-patient-characteristics,retain-uids,"
                            "retain-device-identity,retain-longitudinal-full-dates")
    assert options == ("retain-uids", "retain-device-identity", "retain-patient-characteristics",
                       "retain-longitudinal-full-dates", "clean-descriptors")
    recipe = load_recipe(profile=["basic", *reversed(options)])
    assert [a.value for a in recipe.labels] == ["113100", "113110", "113109", "113108", "113106", "113105"]


@pytest.mark.parametrize("spec", ["retain-uids", "basic,retain-ids", "", "basic,Retain UIDs"])
def test_a_bad_profile_says_what_to_write(spec: str) -> None:
    with pytest.raises(ProfileError, match="basic|expected one of"):
        parse_profile(spec)


def test_no_profile_changes_nothing_and_a_users_recipe_merges_on_top(tmp_path: Any) -> None:
    assert load_recipe().sources[0].endswith("default.dicom")
    mine = tmp_path / "deid.dicom"
    mine.write_text("FORMAT dicom\n%header\nREPLACE PatientID deid_func:hmac_id prefix=P\n", encoding="utf-8")
    alone = load_recipe(str(mine))
    assert [a.field for a in alone.header] == ["PatientID"]
    merged = load_recipe(str(mine), profile="basic,retain-uids")
    assert merged.sources[0] == "profile:basic,retain-uids" and merged.sources[1] == str(mine)
    assert merged.header[-1].field == "PatientID"
    ds = Dataset()
    ds.PatientID = PATIENT_ID
    ds.SOPInstanceUID = "1.2.3.4"
    out = deidentify(ds, merged, settings=SETTINGS)
    assert out.PatientID.startswith("P") and out.PatientID != "ANONYMOUS"
    assert out.SOPInstanceUID == "1.2.3.4"


@pytest.mark.parametrize(
    ("profile", "codes", "longitudinal"),
    [
        ("basic", ["113100"], "REMOVED"),
        ("basic,retain-longitudinal-full-dates", ["113100", "113106"], "UNMODIFIED"),
        ("basic,retain-longitudinal-modified-dates,retain-safe-private,clean-graphics",
         ["113100", "113111", "113107", "113103"], "MODIFIED"),
    ],
)
def test_every_output_says_what_was_applied(profile: str, codes: list[str], longitudinal: str) -> None:
    ds = Dataset()
    ds.PatientID = PATIENT_ID
    ds.StudyDate = "20200115"
    out = deidentify(ds, load_recipe(profile=profile), settings=SETTINGS)
    stamp(out, load_recipe(profile=profile), pixels_cleaned=False)
    assert [i.CodeValue for i in out.DeidentificationMethodCodeSequence] == codes
    assert {i.CodingSchemeDesignator for i in out.DeidentificationMethodCodeSequence} == {"DCM"}
    assert out.LongitudinalTemporalInformationModified == longitudinal
    assert out.PatientIdentityRemoved == "YES"
    titles = [OPTIONS[n].title for n in parse_profile(profile)]
    assert [i.CodeMeaning for i in out.DeidentificationMethodCodeSequence][1:] == titles
    method = list(out.DeidentificationMethod)
    assert method[0].startswith("deid-workers basic profile (PS3.15 E.1-1 2026d)")
    assert method[-1].startswith("deid-workers 0.1.0 recipe profile:basic")


def test_an_input_modified_before_stays_modified_where_dates_are_kept() -> None:
    ds = Dataset()
    ds.LongitudinalTemporalInformationModified = "MODIFIED"
    recipe = load_recipe(profile="basic,retain-longitudinal-full-dates")
    stamp(ds, recipe, pixels_cleaned=False)
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"


def test_every_profile_renders_and_parses() -> None:
    from deid_workers.recipe.options import conflicts

    names = list(OPTIONS)
    for i, a in enumerate(names):
        for b in names[i:]:
            options = tuple(dict.fromkeys((a, b)))
            if conflicts(options):
                continue
            recipe = load_recipe(profile=["basic", *options])
            assert recipe.labels[0].value == "113100"
