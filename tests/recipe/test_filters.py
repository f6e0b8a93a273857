"""%filter evaluation (deid_workers/recipe/filters.py).

Expected reason strings and coordinates marked "deid 0.4.13" were produced by running deid
0.4.13 (deid.dicom.pixels.detect.has_burned_pixels) on the same recipe text and datasets; they
are hard-coded here so the tests do not need deid installed.
"""

from __future__ import annotations

import logging
import threading
from io import BytesIO

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from deid_workers.errors import RecipeError
from deid_workers.recipe import load_recipe
from deid_workers.recipe.filters import compile_filters, inspect_dataset, region_coordinates
from deid_workers.recipe.model import Coordinates, FilterGroup, Label, Recipe


def make(**elements) -> FileDataset:
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.6.1"
    meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    ds = FileDataset("mem", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return ds


def region_sequence(*boxes) -> Sequence:
    items = []
    for x0, y0, x1, y1 in boxes:
        item = Dataset()
        item.RegionLocationMinX0 = x0
        item.RegionLocationMinY0 = y0
        item.RegionLocationMaxX1 = x1
        item.RegionLocationMaxY1 = y1
        items.append(item)
    return Sequence(items)


def us_dataset() -> FileDataset:
    return make(
        Modality="US",
        Manufacturer="GE Medical",
        ImageType=["ORIGINAL", "PRIMARY"],
        BurnedInAnnotation="",
        PatientName="Doe^John",
        Rows=100,
        Columns=120,
        SequenceOfUltrasoundRegions=region_sequence((5, 6, 50, 60), (1, 2, 3, 4)),
    )


def one_label(*criteria: str, coordinates=(), group="g", name="L") -> Recipe:
    """A recipe built by hand (no parser): one group, one label."""
    label = Label(
        name=name,
        criteria=tuple((text, 10 + i) for i, text in enumerate(criteria)),
        coordinates=tuple(coordinates),
        path="hand.dicom",
        line=9,
    )
    return Recipe(filters=(FilterGroup(group, (label,)),))


def flagged(ds: Dataset, *criteria: str) -> bool:
    return inspect_dataset(ds, one_label(*criteria))["flagged"]


# --- criteria --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("criterion", "expected"),
    [
        ("contains Modality US", True),
        ("contains Modality us", True),  # case-insensitive
        ("contains Modality CT", False),
        ("contains Manufacturer siemens|ge", True),  # a regex: | is OR
        ("contains Manufacturer ^medical", False),
        ("contains Manufacturer ge+", True),  # '+' without a criterion after it stays in the value
        ("contains ImageType primary", True),  # multi-valued: searched in str() of the list
        ("notcontains Modality CT", True),
        ("notcontains Modality US", False),
        ("notcontains PatientID x", True),  # absent: contains is False, so notcontains is True
        ("equals Modality us", True),
        ("equals Manufacturer ge medical", True),
        ("equals Manufacturer ge", False),
        ("equals ImageType original", False),  # multi-valued never equals one value (as deid)
        ("notequals Modality CT", True),
        ("notequals Modality US", False),
        ("notequals PatientID abc", True),  # absent element is not equal
        ("missing PatientID", True),
        ("missing Modality", False),
        ("present Modality", True),
        ("present PatientID", False),
        ("empty BurnedInAnnotation", True),  # present with a zero-length value
        ("empty Modality", False),
        ("empty PatientID", False),  # absent is not empty
        ("missing Manfacturer", True),  # not a keyword (a typo in deid's own recipe): absent
        ("present Manfacturer", False),
        ("Contains Modality US", True),  # criterion words are case-insensitive
    ],
)
def test_each_criterion(criterion: str, expected: bool) -> None:
    assert flagged(us_dataset(), criterion) is expected


@pytest.mark.parametrize(
    ("criterion", "expected"),
    [
        ("contains 0x00080060 us", True),
        ("equals 0x00080060 US", True),  # deid compares the element's text here and says False
        ("notequals 0x00080060 CT", True),
        ("present 0x00100010", True),
        ("missing 0x00100020", True),
        ("empty 0x00280301", True),  # BurnedInAnnotation, zero-length
        ("empty 0x00080060", False),
        ("contains 0x00090010 acme", True),  # private creator, by tag
    ],
)
def test_hex_tags(criterion: str, expected: bool) -> None:
    ds = us_dataset()
    ds.add_new(0x00090010, "LO", "ACME 1.0")
    assert flagged(ds, criterion) is expected


def test_nested_elements_are_invisible() -> None:
    # top level only: RegionLocationMinX0 lives inside a sequence item
    assert flagged(us_dataset(), "missing RegionLocationMinX0")


def test_equals_numbers_compare_as_text() -> None:
    assert flagged(us_dataset(), "equals Rows 100")
    assert not flagged(us_dataset(), "equals Rows 1000")


# --- operators and lines ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # a = contains Modality CT (False), b = present Modality (True), c = missing Modality (False)
        ("contains Modality CT + present Modality || present Modality", True),  # (F and T) or T
        ("present Modality || contains Modality CT + missing Modality", False),  # (T or F) and F
        ("present Modality + contains Modality CT || missing Modality", False),  # (T and F) or F
        ("contains Modality CT || present Modality", True),
        ("present Modality + missing PatientID", True),
    ],
)
def test_inner_operators_fold_left_to_right(line: str, expected: bool) -> None:
    assert flagged(us_dataset(), line) is expected


def test_lines_are_anded_and_leading_operator_ignored() -> None:
    ds = us_dataset()
    assert flagged(ds, "present Modality", "+ missing PatientID", "|| present PatientName")
    # a leading || does not make the line an OR (docs say so, code does not)
    assert not flagged(ds, "present Modality", "|| contains Modality CT")
    assert not flagged(ds, "contains Modality CT", "|| present Modality")


def test_label_without_criteria() -> None:
    ds = make(Modality="CT")
    with_box = one_label(coordinates=[Coordinates(False, "0,0,10,10")])
    assert inspect_dataset(ds, with_box)["flagged"]
    assert not inspect_dataset(ds, one_label())["flagged"]


# --- reasons, groups, coordinates (expected values from deid 0.4.13) --------------------------

RECIPE = """FORMAT dicom

%filter whitelist
LABEL contains simple
  contains Modality US
LABEL inner ops
  contains Modality US + equals Manufacturer ge medical || missing Foo
LABEL lines anded
  contains Modality US
  + missing PatientID
  || present PatientName
LABEL two lines false
  contains Modality CT
  present PatientName
LABEL empty one
  empty BurnedInAnnotation
LABEL after or
  || contains Modality US
  coordinates 1,2,3,4
  keepcoordinates all
LABEL coords only after or
  ctpcoordinates 10,10,5,5

%filter graylist
LABEL from
  present SequenceOfUltrasoundRegions
  keepcoordinates from:SequenceOfUltrasoundRegions
  coordinates from:PatientName
  coordinates from:NotThere
LABEL Blank
  coordinates all
"""

# deid 0.4.13 output for RECIPE on us_dataset(). A label without criteria reports its LABEL line
# (prefix kept) behind the operator of the last criteria line deid evaluated before it: "or"
# for "coords only after or", "" for "Blank".
EXPECTED = [
    ("whitelist", " Modality contains US", []),
    ("whitelist", " Modality contains US and Manufacturer equals ge medical or Foo missing ", []),
    ("whitelist", "or Modality contains US PatientID missing  PatientName present ", []),
    ("whitelist", " BurnedInAnnotation empty ", []),
    ("whitelist", "or Modality contains US", [[0, "1,2,3,4"], [1, "all"]]),
    ("whitelist", "or LABEL coords only after or", [[0, "10,10,15,15"]]),
    (
        "graylist",
        " SequenceOfUltrasoundRegions present ",
        [[1, ["5,6,50,60", "1,2,3,4"]], [0, []], [0, []]],
    ),
    ("graylist", " LABEL Blank", [[0, "all"]]),
]


def test_reasons_and_coordinates_match_deid() -> None:
    verdict = inspect_dataset(us_dataset(), load_recipe(text=RECIPE))
    assert verdict["flagged"] is True
    got = [(r["group"], r["reason"], r["coordinates"]) for r in verdict["results"]]
    assert got == EXPECTED


def test_shipped_blacklist_reason() -> None:
    # deid.dicom's blacklist label, reason as deid 0.4.13 reports it for a file without ImageType
    text = (
        "FORMAT dicom\n%filter blacklist\nLABEL Stanford Blacklist Missing ImageType\n"
        "  missing ImageType || empty ImageType\n"
    )
    verdict = inspect_dataset(make(Modality="CT"), load_recipe(text=text))
    assert verdict == {
        "flagged": True,
        "results": [
            {"group": "blacklist", "reason": " ImageType missing  or ImageType empty ", "coordinates": []}
        ],
    }


def test_each_criterion_keeps_its_own_value() -> None:
    # deid pairs 'x' with 'missing' here and searches for "none"; we keep the line's meaning
    recipe = one_label("missing Modality || contains Manufacturer medical")
    verdict = inspect_dataset(us_dataset(), recipe)
    assert verdict["flagged"]
    assert verdict["results"][0]["reason"] == " Modality missing  or Manufacturer contains medical"


def test_every_group_evaluated_and_whitelist_sets_flagged() -> None:
    text = (
        "FORMAT dicom\n%filter whitelist\nLABEL clean\n  contains BurnedInAnnotation no\n"
        "%filter blacklist\nLABEL sc\n  contains ImageType secondary\n"
        "LABEL never\n  present PatientID\n"
    )
    recipe = load_recipe(text=text)
    both = make(BurnedInAnnotation="NO", ImageType=["DERIVED", "SECONDARY"])
    verdict = inspect_dataset(both, recipe)
    assert [r["group"] for r in verdict["results"]] == ["whitelist", "blacklist"]
    white_only = inspect_dataset(make(BurnedInAnnotation="NO"), recipe)
    assert white_only["flagged"] is True
    assert inspect_dataset(make(Modality="CT"), recipe) == {"flagged": False, "results": []}


def test_from_coordinates_read_per_dataset() -> None:
    recipe = load_recipe(text=RECIPE)
    first = inspect_dataset(us_dataset(), recipe)
    other = us_dataset()
    other.SequenceOfUltrasoundRegions = region_sequence((7, 8, 9, 10))
    second = inspect_dataset(other, recipe)
    assert first["results"][6]["coordinates"][0] == [1, ["5,6,50,60", "1,2,3,4"]]
    assert second["results"][6]["coordinates"][0] == [1, ["7,8,9,10"]]
    # the recipe is untouched by evaluation: the first file's answer is unchanged
    assert inspect_dataset(us_dataset(), recipe) == first


def test_region_coordinates_skips_incomplete_items() -> None:
    ds = us_dataset()
    del ds.SequenceOfUltrasoundRegions[1].RegionLocationMaxY1
    assert region_coordinates(ds, "SequenceOfUltrasoundRegions") == ["5,6,50,60"]
    assert region_coordinates(ds, "NotAKeyword") == []
    assert region_coordinates(ds, "Modality") == []


def test_no_filter_section_not_flagged(caplog: pytest.LogCaptureFixture) -> None:
    recipe = load_recipe(text="FORMAT dicom\n%header\nREMOVE PatientName\n")
    with caplog.at_level(logging.DEBUG, logger="deid_workers.recipe.filters"):
        assert inspect_dataset(us_dataset(), recipe) == {"flagged": False, "results": []}
        inspect_dataset(us_dataset(), recipe)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "no %filter" in warnings[0].getMessage()


def test_works_without_pixel_data() -> None:
    ds = us_dataset()
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = np.zeros((100, 120), np.uint8).tobytes()
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    buf.seek(0)
    headers = pydicom.dcmread(buf, stop_before_pixels=True)
    assert "PixelData" not in headers
    recipe = load_recipe(text=RECIPE)
    assert inspect_dataset(headers, recipe) == inspect_dataset(ds, recipe)


def test_compiled_once_and_thread_safe() -> None:
    recipe = load_recipe(text=RECIPE)
    assert compile_filters(recipe) is compile_filters(recipe)
    expected = inspect_dataset(us_dataset(), recipe)
    datasets = [us_dataset() for _ in range(8)]
    results: list[dict] = [{}] * 8

    def run(i: int) -> None:
        for _ in range(20):
            results[i] = inspect_dataset(datasets[i], recipe)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r == expected for r in results)
    assert not hasattr(Dataset, "contains")  # nothing patched onto pydicom


def test_shipped_default_recipe_compiles() -> None:
    recipe = load_recipe()
    assert compile_filters(recipe).labels


# --- errors at load ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("contain Modality US", "unknown filter criterion 'contain'"),
        ("present", "present needs a field"),
        ("contains Modality", "contains needs a field and a value"),
        ("contains Manufacturer (unclosed", "bad regular expression"),
        ("present 0xZZ", "is not a tag"),
        ("present Modality || missing", "missing needs a field"),
        ("present Modality + containsx Modality US", "unknown filter criterion 'containsx'"),
    ],
)
def test_malformed_criteria_raise_with_line(line: str, message: str) -> None:
    text = f"FORMAT dicom\n%filter g\nLABEL x\n  present Modality\n  {line}\n"
    with pytest.raises(RecipeError) as info:
        load_recipe(text=text)
    assert info.value.line == 5
    assert message in str(info.value)


def test_hand_built_recipe_error_names_path() -> None:
    with pytest.raises(RecipeError) as info:
        compile_filters(one_label("present Modality", "bogus Modality"))
    assert (info.value.path, info.value.line) == ("hand.dicom", 11)
