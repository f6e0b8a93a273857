"""Recipe grammar (spec §2.1-2.3, 2.7, 2.11) and every RecipeError of Part A §2."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from recipe_helpers import hang_guard

from deid_workers.errors import RecipeError
from deid_workers.recipe import load_recipe, merge_recipes, parse_recipe
from deid_workers.recipe.model import Coordinates
from deid_workers.recipe.parser import split_action_line

FULL = """\
# a comment
FORMAT dicom

%filter graylist  # trailing comment
LABEL Scanner A   # why
  contains Manufacturer ACME + equals Modality CT
  || missing BurnedInAnnotation
  coordinates 0,0,10,20
  keepcoordinates all
  ctpcoordinates 5,6,10,20
  ctpkeepcoordinates 1,1,2,2
  coordinates from:SequenceOfUltrasoundRegions
LABEL Flag only
  present ImageType

%values names
FIELD PatientName
SPLIT InstitutionName by=" ";minlength=3

%fields dates
FIELD endswith:Date

%labels
ADD Something value

%header
ADD PatientIdentityRemoved YES
REPLACE PatientID var:id
JITTER StudyDate 3
BLANK PatientName extra tokens ignored
KEEP Modality
REMOVE ALL
REMOVE (0033,"MITRA OBJECT UTF8 ATTRIBUTES 1.0",1E)
REPLACE Manufacturer "Anon Co"
REMOVE PatientID # note
"""


def test_full_grammar() -> None:
    r = parse_recipe(FULL, "r.dicom")
    assert r.format == "dicom"
    assert [(a.action, a.field, a.value, a.line) for a in r.header] == [
        ("ADD", "PatientIdentityRemoved", "YES", 27),
        ("REPLACE", "PatientID", "var:id", 28),
        ("JITTER", "StudyDate", "3", 29),
        ("BLANK", "PatientName", None, 30),
        ("KEEP", "Modality", None, 31),
        ("REMOVE", "ALL", None, 32),
        ("REMOVE", '(0033,"MITRA OBJECT UTF8 ATTRIBUTES 1.0",1E)', None, 33),
        ("REPLACE", "Manufacturer", '"Anon Co"', 34),
        ("REMOVE", "PatientID", None, 35),
    ]
    assert all(a.path == "r.dicom" for a in r.header)
    (group,) = r.filters
    assert group.name == "graylist"
    first, second = group.labels
    assert first.name == "Scanner A" and first.text == "LABEL Scanner A" and first.line == 5
    assert first.criteria == (
        ("contains Manufacturer ACME + equals Modality CT", 6),
        ("|| missing BurnedInAnnotation", 7),
    )
    assert first.coordinates == (
        Coordinates(False, "0,0,10,20", 8),
        Coordinates(True, "all", 9),
        Coordinates(False, "5,6,15,26", 10),
        Coordinates(True, "1,1,3,3", 11),
        Coordinates(False, "from:SequenceOfUltrasoundRegions", 12),
    )
    assert second.criteria == (("present ImageType", 14),) and second.coordinates == ()
    assert [(a.action, a.field, a.value) for a in r.values["names"]] == [
        ("FIELD", "PatientName", None), ("SPLIT", "InstitutionName", 'by=" ";minlength=3')]
    assert [(a.action, a.field) for a in r.fields["dates"]] == [("FIELD", "endswith:Date")]
    assert [(a.action, a.field, a.value) for a in r.labels] == [("ADD", "Something", "value")]
    assert r.sources == ("r.dicom",) and len(r.sha256) == 64


def test_value_keeps_trailing_space_and_cuts_comment() -> None:
    r = parse_recipe("FORMAT dicom\n%header\nREPLACE A  b   c # x\n")
    assert r.header[0].value == "b c "


def test_repeated_filter_name_appends() -> None:
    r = parse_recipe("FORMAT dicom\n%filter g\nLABEL a\npresent A\n%filter g\nLABEL b\npresent B\n")
    assert [lab.name for lab in r.filters[0].labels] == ["a", "b"]


def test_label_in_header_ignored() -> None:
    assert parse_recipe("FORMAT dicom\n%header\nLABEL x\n").header == ()


ERRORS = [
    ("unknown-action", "%header\nREMOV PatientID", 3),
    ("lower-case-action", "%header\nremove PatientID", 3),
    ("mixed-case-action", "%header\nKeep PatientID", 3),
    ("prefix-action", "%header\nKEEPER PatientID", 3),
    ("section-less-action", "REMOVE PatientID", 2),
    ("missing-field", "%header\nREMOVE", 3),
    ("add-without-value", "%header\nADD PatientID", 3),
    ("replace-without-value", "%header\nREPLACE PatientID", 3),
    ("jitter-without-value", "%header\nJITTER StudyDate", 3),
    ("value-only-comment", "%header\nREPLACE PatientID # x", 3),
    ("jitter-not-int", "%header\nJITTER StudyDate soon", 3),
    ("unknown-deid-func", "%header\nREPLACE X deid_func:simple_uuid", 3),
    ("bad-hmac-root", "%header\nREPLACE X deid_func:hmac_uid root=abc", 3),
    ("bad-regex", "%header\nREMOVE contains:(unclosed", 3),
    ("unknown-expander", "%header\nREMOVE allfields:Patient", 3),
    ("bad-select-group", "%header\nREMOVE select:group:zz", 3),
    ("bad-add-field", "%header\nADD NotAKeyword x", 3),
    ("unknown-section", "%pixels", 2),
    ("unnamed-filter", "%filter", 2),
    ("unnamed-values", "%values", 2),
    ("named-header", "%header foo", 2),
    ("split-in-fields", "%fields f\nSPLIT PatientName", 3),
    ("action-in-values", "%values v\nREMOVE PatientName", 3),
    ("bad-split-option", "%values v\nSPLIT PatientName minlength=x", 3),
    ("criteria-before-label", "%filter g\npresent PatientName", 3),
    ("bad-coordinates", "%filter g\nLABEL a\ncoordinates 1,2,3", 4),
    ("bad-ctp-coordinates", "%filter g\nLABEL a\nctpcoordinates 1,2,x,4", 4),
    ("unknown-format", "%header\nFORMAT nifti", 3),
    ("lower-case-format", "%header\nformat dicom", 3),
]


@pytest.mark.parametrize("body,line", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_recipe_errors(body: str, line: int) -> None:
    text = body if "format" in body.lower() else "FORMAT dicom\n" + body
    with pytest.raises(RecipeError) as info:
        parse_recipe(text, "bad.dicom")
    assert info.value.path == "bad.dicom"
    expected = line if text.startswith("FORMAT") else line - 1
    assert info.value.line == expected
    assert str(info.value).startswith(f"bad.dicom:{expected}: ")


def test_missing_format() -> None:
    with pytest.raises(RecipeError) as info:
        parse_recipe("%header\nREMOVE PatientID\n", "x.dicom")
    assert info.value.path == "x.dicom" and info.value.line is None


def test_merge_by_name(tmp_path) -> None:
    a = tmp_path / "deid.a"
    b = tmp_path / "b.dicom"
    a.write_text("FORMAT dicom\n%filter g\nLABEL old\npresent A\n%filter h\nLABEL keep\npresent H\n"
                 "%values v\nFIELD A\n%fields f\nFIELD A\n%header\nREMOVE A\n")
    b.write_text("FORMAT dicom\n%filter g\nLABEL new\npresent B\n%values v\nFIELD B\n%values w\n"
                 "FIELD W\n%header\nREMOVE B\n")
    r = load_recipe([a, b])
    assert [a.field for a in r.header] == ["A", "B"]
    assert [(g.name, [lab.name for lab in g.labels]) for g in r.filters] == [
        ("g", ["new"]), ("h", ["keep"])]
    assert r.values["v"][0].field == "B" and r.values["w"][0].field == "W"
    assert r.fields["f"][0].field == "A"
    assert r.sources == (str(a), str(b))
    assert r.sha256 != load_recipe(a).sha256
    assert load_recipe(tmp_path).sources == (str(a),)  # a directory: its first deid* file


def test_merge_single_is_identity() -> None:
    r = parse_recipe("FORMAT dicom\n")
    assert merge_recipes([r]) is r


def test_load_text_and_missing_file(tmp_path) -> None:
    r = load_recipe(text="FORMAT dicom\n%header\nREMOVE PatientID\n")
    assert r.sources == ("<text>",)
    with pytest.raises(RecipeError) as info:
        load_recipe(tmp_path / "nope.dicom")
    assert info.value.path == str(tmp_path / "nope.dicom")


def test_load_default_recipe() -> None:
    r = load_recipe()
    assert r.sources[0].endswith("default.dicom") and r.header


def test_load_validates_filter_criteria() -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe(text="FORMAT dicom\n%filter g\nLABEL a\nfrobnicate PatientName\n")
    assert info.value.line == 4


def test_deid_shipped_recipes_load() -> None:
    deid = pytest.importorskip("deid")
    from pathlib import Path

    data = Path(deid.__file__).parent / "data"
    r = load_recipe(data / "deid.dicom")
    assert len(r.header) == 73
    assert [(g.name, len(g.labels)) for g in r.filters] == [
        ("whitelist", 2), ("graylist", 109), ("blacklist", 7)]


# --- the lexer: the token pattern's meaning, in linear time ---------------------------------

_REFERENCE_TOKEN = re.compile(r"""(?:[^\s"']+|"(?:\\.|[^"])*"|'(?:\\.|[^'])*')+""")
"""What a token is (deid's reading of an action line); backtracks exponentially on backslashes."""


@settings(max_examples=3000, deadline=None, derandomize=True)
@given(st.text(alphabet='\\"\' a\t\x1c\xa0\nb', max_size=14))
def test_lexer_reads_lines_as_the_token_pattern_does(line: str) -> None:
    assert split_action_line(line) == _REFERENCE_TOKEN.findall(line)


def test_backslash_pairs_in_an_unclosed_quote_parse_at_once() -> None:
    # The attack: a quoted value of escaped backslash pairs that never closes (22 pairs took
    # over a minute with the pattern alone); thousands of them now parse like any line.
    for pairs in (22, 5000):
        line = 'REPLACE PatientName "' + "\\\\" * pairs
        with hang_guard(20):
            assert split_action_line(line) == ["REPLACE", "PatientName", "\\\\" * pairs]
            recipe = parse_recipe(f"FORMAT dicom\n%header\n{line}\n", "evil.dicom")
    assert recipe.header[0].value == "\\\\" * 5000
    quoted = 'REPLACE InstitutionName "a \\" b" \'c\\\\\' done'
    assert split_action_line(quoted) == ["REPLACE", "InstitutionName", '"a \\" b"', "'c\\\\'", "done"]
