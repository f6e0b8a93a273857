"""Recipe and header regexes: Python's meaning, in bounded time, whatever the pattern or text."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from recipe_helpers import hang_guard

from deid_workers.errors import RecipeError
from deid_workers.recipe import deidentify, inspect_dataset, load_recipe, patterns
from deid_workers.recipe.patterns import PatternError, PatternTimeout, compile_pattern
from deid_workers.synth import make_dataset

TOKENS = ["a", "b", "A", "K", "ı", "é", "ſ", "\\.", ".", "\\d", "\\w", "\\s", "\\D", "\\W", "\\S",
          "[a-c]", "[^ab]", "[\\d_]", "[A-Z]", "(", ")", "(?:", "|", "*", "+", "?", "{1,2}", "^",
          "$", "\\A", "\\Z", "\\b", " ", "\\n", "(?=a)", "(a)\\1"]
TEXT = "abAKkıiſsé1_ \n\x1c.-"


@settings(max_examples=1500, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(TOKENS), max_size=6).map("".join),
       st.text(alphabet=TEXT, max_size=8),
       st.sampled_from([0, re.IGNORECASE, re.DOTALL, re.IGNORECASE | re.DOTALL]))
def test_every_way_of_running_a_pattern_agrees_with_re(pattern: str, text: str, flags: int) -> None:
    try:
        expected = re.search(pattern, text, flags) is not None
    except re.error:
        with pytest.raises(re.error):
            compile_pattern(pattern, flags)
        return
    try:
        compiled = compile_pattern(pattern, flags)
    except PatternError:
        return  # refused: never run
    assert compiled.search(text) is expected, (pattern, text, flags, compiled.engine)
    if compiled.engine == "re2":  # each of its ways agrees: RE2, and the timed fallback
        if not compiled.ascii_only or text.isascii():
            assert bool(compiled._re2(text)) is expected
        assert compiled._slow(text) is expected


def test_engines_chosen() -> None:
    engine = {p: compile_pattern(p, f).engine for p, f in [
        ("ge", 0), ("^ge|siemens", 0), (r"^1\.2\.840(\.[1-4])?$", 0), ("^(50[0-9a-f]{6}$)", re.I),
        (r"(a+)+$", 0), (r"\d+x", 0), (r"(?<=x)a", 0), (r"(a)\1", 0)]}
    assert engine == {"ge": "re", "^ge|siemens": "re", r"^1\.2\.840(\.[1-4])?$": "re",
                      "^(50[0-9a-f]{6}$)": "re", r"(a+)+$": "re2", r"\d+x": "re2",
                      r"(?<=x)a": "timed", r"(a)\1": "timed"}
    one_star = compile_pattern(r"\d+x")  # quadratic at worst: re for short texts only
    assert one_star.ascii_only and one_star.short == patterns.SHORT_TEXT
    assert compile_pattern(r"(a+)+$").short < 0 and not compile_pattern("(a+)+").ascii_only
    with hang_guard(20):  # a long text takes RE2's way
        assert one_star.search("1" * 200_000) is False


FILTER_ATTACK = """FORMAT dicom

%filter graylist
LABEL Evil
  contains InstitutionName (a+)+$
  coordinates all

%header
REMOVE PatientName
"""


def test_catastrophic_filter_and_selector_patterns_run_in_linear_time() -> None:
    recipe = load_recipe(text=FILTER_ATTACK)
    ds = make_dataset(1)
    ds.InstitutionName = "a" * 60 + "!"  # minutes for Python's engine; LO allows 64
    with hang_guard(20):
        assert inspect_dataset(ds, recipe)["flagged"] is False
        ds.InstitutionName = "a" * 60
        assert inspect_dataset(ds, recipe)["flagged"] is True
    selector = load_recipe(text="FORMAT dicom\n%header\nREMOVE contains:(x+x+)+y\n")
    ds = make_dataset(1)
    ds.add_new(0x00090010, "LO", "x" * 60)  # a private creator: selectors search its text
    with hang_guard(20):
        deidentify(ds, selector, {})


def test_a_values_list_cannot_choose_a_catastrophic_pattern() -> None:
    # %values patterns are made of header values: the file picks the regex (deid's behaviour).
    recipe = load_recipe(text="FORMAT dicom\n%values evil\nFIELD InstitutionName\n"
                              "%header\nREMOVE values:evil\n")
    ds = make_dataset(1)
    ds.InstitutionName = "(a+)+$"
    ds.StudyDescription = "a" * 60 + "!"
    ds.SeriesDescription = "aaaa"
    with hang_guard(20):
        out = deidentify(ds, recipe, {})
    assert "StudyDescription" in out and "SeriesDescription" not in out


def test_a_pattern_that_must_backtrack_badly_is_refused_at_load_with_file_and_line(tmp_path) -> None:
    path = tmp_path / "deid.evil"
    path.write_text(FILTER_ATTACK.replace("(a+)+$", r"((a+)+)\1"))
    with pytest.raises(RecipeError) as info:
        load_recipe(str(path))
    assert (info.value.path, info.value.line) == (str(path), 5)  # the criteria line
    assert "exponential time" in str(info.value)
    path.write_text("FORMAT dicom\n%header\n\nREMOVE contains:(?=x)(a|ab)+\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(str(path))
    assert info.value.line == 4 and "exponential time" in str(info.value)


def test_a_match_past_its_time_limit_names_the_recipe_line(monkeypatch) -> None:
    monkeypatch.setattr(patterns, "MATCH_SECONDS", 0.05)
    slow = compile_pattern(r"(?=x)x*x*x*x*x*y", where=("deid.dicom", 7))  # polynomial: n**5
    assert slow.engine == "timed"
    with hang_guard(20), pytest.raises(PatternTimeout) as info:
        slow.search("x" * 500)
    assert (info.value.path, info.value.line) == ("deid.dicom", 7)
    assert "x" * 10 not in str(info.value)  # the pattern is named, never the text
