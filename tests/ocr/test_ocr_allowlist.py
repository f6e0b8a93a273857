"""The allow-list file: sections per modality, words, patterns, and errors that name the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from deid_workers.ocr.allowlist import load_allowlist, parse_allowlist


def test_shipped_list_loads_with_every_section() -> None:
    allow = load_allowlist()
    assert len(allow) > 100
    assert {"*", "US", "CT", "MR", "CR", "DX", "MG"} <= set(allow.words)
    assert allow.words_allow("kVp 120 mAs 3.2") and allow.words_allow("L") and allow.words_allow("10cm")
    assert allow.pattern_allows("C5-1", "US") and not allow.pattern_allows("C5-1", "CT")


def test_sections_words_patterns_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "allow.txt"
    path.write_text("# mine\n[*]\nfoo BAR  # two words\n[us]\nGAIN\nre:frame\\s+\\d+\n")
    allow = load_allowlist(path)
    assert allow.words_allow("Foo bar 12", "CT") and not allow.words_allow("gain", "CT")
    assert allow.words_allow("Gain 40%", "US")
    assert allow.pattern_allows("FRAME   00012", "US") and not allow.pattern_allows("FRAME 12 x", "US")
    assert not allow.words_allow("12345")                # long numbers are never a short number
    assert allow.words_allow("--|--|--") and allow.words_allow("")


@pytest.mark.parametrize(("text", "where"), [("[U S]\n", ":1:"), ("[*]\nL\nre:(unclosed\n", ":3:")])
def test_errors_name_the_line(text: str, where: str) -> None:
    with pytest.raises(ValueError, match=where):
        parse_allowlist(text, "mine.txt")


def test_unreadable_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read the allow-list"):
        load_allowlist(tmp_path / "missing.txt")


def test_a_pattern_entry_matches_the_whole_text_in_bounded_time() -> None:
    """Text read from pixels is attacker-controlled: entries run like a recipe's patterns
    (linear engine where it can), one that could backtrack exponentially is refused with its
    line, and an entry means the whole text however it alternates."""
    allow = parse_allowlist("re: W\\d+|L\\d+\n")
    assert allow.pattern_allows("w400") and allow.pattern_allows("L40")
    assert not allow.pattern_allows("w400 Smith")
    with pytest.raises(ValueError, match=r"mine\.txt:2: a repeated group"):
        parse_allowlist("[US]\nre: (\\w+)(a*)*\\1\n", "mine.txt")
    with pytest.raises(ValueError, match=r"mine\.txt:1: bad regular expression"):
        parse_allowlist("re: a)|(b\n", "mine.txt")
