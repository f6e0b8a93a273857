"""Cleaning free text (the Clean options' C): the file's own names, IDs and dates come out of a
description, whatever order, case or date format; the rest of the text stays."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from deid_workers.config import Settings
from deid_workers.recipe import deidentify, load_recipe
from deid_workers.recipe.cleantext import clean_text, clean_value, collect
from deid_workers.recipe.funcs import fast_shift, jitter_value, shift_value

SETTINGS = Settings(secret=b"7d1c0e5b9a3f48e2b6c1d0f9a8e7b6c5")
FOUND = collect((("name", "O'Neil-Smith^Mary Ann^Q"), ("id", "MRN-004711"), ("id", "AC12"),
                 ("date", "20240131"), ("date", "19651107101500"), ("id", "1")))


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("CT head Mary O'Neil-Smith MRN-004711 31/01/2024", "CT head [name] [name] [id] [date]"),
        ("smith, mary ann: follow-up of 2024-01-31 (ac12)", "[name], [name] [name]: follow-up of [date] ([id])"),
        ("MARY ANN O'NEIL-SMITH seen Jan 31, 2024 and 7 November 1965", "[name] [name] [name] seen [date] and [date]"),
        ("prior 01/31/24, born 07.11.1965, mrn-004711x", "prior [date], born [date], mrn-004711x"),
        ("scan on 2019-05-06 (another date of the patient)", "scan on [date] (another date of the patient)"),
        ("Marys Annex Smithson 1.2.840.10008.5 v1.2.10 series 1",
         "Marys Annex Smithson 1.2.840.10008.5 v1.2.10 series 1"),
    ],
)
def test_the_files_names_ids_and_dates_come_out(text: str, cleaned: str) -> None:
    assert clean_text(text, FOUND) == cleaned


def test_what_is_collected() -> None:
    assert set(FOUND.names) == {"o'neil-smith", "o'neil", "smith", "mary", "ann"}  # "Q": one letter
    assert FOUND.ids == ("mrn-004711", "ac12")  # "AC12" is long enough, "1" is not
    assert FOUND.dates == ("19651107", "20240131")


def test_clean_value_keeps_the_vr_valid() -> None:
    assert clean_value("DOE ANN", "CS", collect((("name", "Doe^Ann"),))) == "NAME NAME"
    assert clean_value("Smith Mary 2024-01-31", "SH", FOUND) == "[name] [name]"  # SH: 16
    assert clean_value(["a Mary", "b"], "LO", FOUND) == ["a [name]", "b"]
    assert clean_value(b"Mary x", "UN", FOUND) == b"[name] x"
    assert clean_value(b"Mary", "OB", FOUND) == b"Mary"  # binary data is no text
    assert clean_value(12, "US", FOUND) == 12


def test_the_engine_cleans_with_the_values_the_file_held_before_any_line() -> None:
    ds = Dataset()
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "PID-77"
    ds.StudyDate = "20230405"
    ds.ReferringPhysicianName = "House^Gregory"
    ds.StudyDescription = "MR knee jane DOE pid-77 05/04/2023 dr house"
    item = Dataset()
    item.SeriesDescription = "T1 Gregory"
    ds.ReferencedSeriesSequence = Sequence([item])
    out = deidentify(ds, load_recipe(profile="basic,clean-descriptors"), settings=SETTINGS)
    assert out.StudyDescription == "MR knee [name] [name] [id] [date] dr [name]"
    assert out.ReferencedSeriesSequence[0].SeriesDescription == "T1 [name]"
    assert "PatientName" in out and not out.PatientName  # the Basic Profile's Z still holds


def test_text_with_nothing_to_clean_keeps_its_bytes() -> None:
    from io import BytesIO

    import pydicom

    ds = Dataset()
    ds.PatientName = "Doe^Jane"
    ds.StudyDescription = "CHEST W/O CONTRAST"
    buf = BytesIO()
    ds.save_as(buf, implicit_vr=False, little_endian=True)
    read = pydicom.dcmread(BytesIO(buf.getvalue()), force=True)
    out = deidentify(read, load_recipe(profile="basic,clean-descriptors"), settings=SETTINGS,
                     in_place=True)
    assert out.StudyDescription == "CHEST W/O CONTRAST"


def test_the_fast_date_shift_writes_what_the_parsing_path_writes() -> None:
    rng = random.Random(7)
    start = datetime(1900, 1, 1)
    for _ in range(400):
        when = start + timedelta(seconds=rng.randrange(0, 200 * 365 * 86400))
        days = rng.randrange(-800, 800)
        da = when.strftime("%Y%m%d")
        dt = when.strftime("%Y%m%d%H%M%S") + rng.choice(["", ".5", ".123456", ".01"])
        for text, vr in ((da, "DA"), (dt, "DT"), (da, "DT"), (da, "LO")):
            fast = fast_shift(text, days, vr if vr != "LO" else "")
            assert fast is not None
            assert fast == jitter_value(text, vr, days), (text, vr, days)


def test_date_shift_removes_what_it_cannot_read_and_keeps_times() -> None:
    assert shift_value("20200230", "DA", -3) is None
    assert shift_value("101010", "TM", -3) == "101010"
    assert shift_value(["20200101", "20200102"], "DA", 1) == "20200102\\20200103"
    assert shift_value(b"20200101", "UN", 1) == b"20200102"


def test_names_in_another_character_set_are_decoded_as_pydicom_decodes_them() -> None:
    from io import BytesIO

    import pydicom

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Müller^Jürgen"
    ds.StudyDescription = "IRM jürgen MÜLLER"
    buf = BytesIO()
    ds.save_as(buf, implicit_vr=False, little_endian=True)
    read = pydicom.dcmread(BytesIO(buf.getvalue()), force=True)
    out = deidentify(read, load_recipe(profile="basic,clean-descriptors"), settings=SETTINGS, in_place=True)
    assert out.StudyDescription == "IRM [name] [name]"


@pytest.mark.parametrize("text", ["AXIAL 0", "T1 sag", "smithy maryann", "31 jan", "4 x 5mm"])
def test_text_that_cannot_hold_a_value_is_told_apart_without_the_search(text: str) -> None:
    assert not FOUND.may_hold(text) and clean_text(text, FOUND) == text


@pytest.mark.parametrize("text", ["x Mary", "o'neil", "mrn-004711", "1/2/24", "jan 5 24", "20240131"])
def test_text_that_may_hold_a_value_is_searched(text: str) -> None:
    assert FOUND.may_hold(text)
