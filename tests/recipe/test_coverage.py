"""``--check-recipe``'s engine: the attributes of table E.1-1 a recipe leaves in place where a
profile would remove, empty, replace or clean them."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from deid_workers.recipe import load_recipe
from deid_workers.recipe.coverage import check_recipe, count_in, render_table, to_json
from deid_workers.recipe.options import OPTIONS, parse_profile

KNOWN_GAPS = """FORMAT dicom
%header
REMOVE PatientName
BLANK PatientID
KEEP StudyDate
REPLACE AccessionNumber var:accession
REMOVE contains:Physician
REPLACE StudyDescription deid_func:clean_text
JITTER SeriesDate deid_func:date_shift
"""


def _gaps(recipe_text: str, profile: str = "basic") -> dict[str, str]:
    coverage = check_recipe(load_recipe(text=recipe_text), parse_profile(profile))
    return {g.tag: g.recipe for g in coverage.gaps}


def test_a_recipe_with_known_gaps() -> None:
    gaps = _gaps(KNOWN_GAPS)
    handled = ["(0010,0010)", "(0010,0020)", "(0008,0050)", "(0008,0090)", "(0032,1032)",
               "(0008,1030)", "(0008,0021)"]
    assert not [t for t in handled if t in gaps]  # removed, emptied, replaced (var: missing
    # removes it), matched by a regex, cleaned (the text holds the name), shifted
    assert gaps["(0008,0020)"] == "KEEP <recipe>:5"  # Study Date: kept by a line
    assert gaps["(0010,0030)"] == "no line"  # Patient's Birth Date
    assert gaps["(0008,0018)"] == "no line"  # SOP Instance UID (U)
    assert gaps["(gggg,eeee)"] == "no line"  # private elements
    assert len(gaps) > 600


def test_the_shipped_recipes_have_no_gap_against_their_own_profile() -> None:
    assert not check_recipe(load_recipe(), ()).gaps
    for name in OPTIONS:
        assert not check_recipe(load_recipe(profile=["basic", name]), (name,)).gaps, name


def test_what_an_option_keeps_is_a_gap_against_the_basic_profile_only() -> None:
    kept = check_recipe(load_recipe(profile="basic,retain-uids"), ())
    uids = {g.tag for g in kept.gaps}
    assert "(0008,0018)" in uids and "(0020,000D)" in uids
    assert all(g.expected == "replace" or g.code in ("X", "X/Z", "X/Z/D", "X/D") for g in kept.gaps)
    # and the other way round: a recipe that removes more than the profile asks has no gap
    assert not check_recipe(load_recipe(), ("retain-uids",)).gaps


def test_an_option_that_cleans_needs_the_text_cleaned() -> None:
    recipe = "FORMAT dicom\n%header\nREMOVE ALL\nKEEP StudyDescription\n"
    assert set(_gaps(recipe, "basic,clean-descriptors")) == {"(0008,1030)"}
    assert set(_gaps(recipe)) == {"(0008,1030)"}


def test_with_files_only_the_gaps_they_hold_with_counts() -> None:
    coverage = check_recipe(load_recipe(text=KNOWN_GAPS), ())
    first = Dataset()
    first.StudyDate = "20200101"
    first.PatientBirthDate = "19700101"
    item = Dataset()
    item.StudyDate = "20200101"
    first.ReferencedStudySequence = Sequence([item])
    first.add_new(0x00090010, "LO", "CREATOR")
    first.add_new(0x00091001, "LO", "x")
    second = Dataset()
    second.StudyDate = "20200102"
    second.PatientName = "Doe^Jane"  # handled: no gap
    narrowed = count_in(coverage, [first, second, None])
    found = {g.tag: (g.files, g.places) for g in narrowed.gaps}
    assert found == {"(0008,0020)": (2, 3), "(0010,0030)": (1, 1), "(0008,1110)": (1, 1),
                     "(gggg,eeee)": (1, 2)}
    assert narrowed.files == 2 and narrowed.unreadable == 1
    table = render_table(narrowed)
    assert "4 attribute(s) left in place in 2 file(s)" in table and "1 file(s) could not be read" in table
    assert "FILES" in table and "PLACES" in table
    data = to_json(narrowed)
    assert data["edition"] == "2026d" and data["profile"] == "basic" and data["files"] == 2
    assert {g["tag"] for g in data["gaps"]} == set(found)


@pytest.mark.parametrize("option", ["retain-safe-private", "clean-graphics"])
def test_private_and_repeating_groups_are_checked(option: str) -> None:
    gaps = _gaps("FORMAT dicom\n%header\nREMOVE PatientName\n", f"basic,{option}")
    assert "(gggg,eeee)" in gaps
    assert ("(50xx,xxxx)" in gaps) and ("(60xx,4000)" in gaps)
    assert "(60xx,3000)" not in gaps or option != "clean-graphics"  # kept and flagged there
