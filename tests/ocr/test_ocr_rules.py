"""The decision per box: header values, dates, long numbers, labels, the allow-list, confidence."""

from __future__ import annotations

import datetime as dt

import pytest

from deid_workers import synth
from deid_workers.ocr.allowlist import load_allowlist, parse_allowlist
from deid_workers.ocr.identifying import identifying_values
from deid_workers.ocr.rules import ALLOWED, PHI, TEXT, UNSURE, classify, find_dates, has_label, has_long_number

ALLOW = load_allowlist()


@pytest.fixture(scope="module")
def ident():  # type: ignore[no-untyped-def]
    ds = synth.make_dataset(3)          # DOE^JANE^P0003, PID-0003-SENT, born 19430404
    ds.PatientBirthDate = "19870404"
    return identifying_values(ds)


@pytest.mark.parametrize("text", [
    "1987-04-04", "04/04/1987", "04.04.1987", "04.04.87", "19870404", "4 Apr 1987", "04-APR-1987",
    "Apr 4, 1987", "April 4th 1987", "DOB: 1987-O4-O4", "4 avr 1987",
])
def test_dates_in_common_spellings_match_the_header_date(text: str, ident) -> None:  # type: ignore[no-untyped-def]
    assert dt.date(1987, 4, 4) in find_dates(text)
    assert classify(text, 0.99, ident, ALLOW) == (PHI, "PatientBirthDate")


@pytest.mark.parametrize("text", ["12/31/2001", "2001-12-31", "31 Dec 2001", "Dec 2001", "06-Jum-1978", "03/15",
                                  "5/1979", "/1983"])
def test_other_dates_are_phi_by_kind(text: str, ident) -> None:  # type: ignore[no-untyped-def]
    assert find_dates(text)
    assert classify(text, 0.99, ident, ALLOW) == (PHI, "date")


@pytest.mark.parametrize("text", ["v2.1.10", "1.25 mm", "W 400 L 40", "10:15:30", "512 x 512", "12 cm", "1/2",
                                  "12-15 MHz", "13/14", "3/1500"])
def test_not_dates(text: str) -> None:
    assert find_dates(text) == []


@pytest.mark.parametrize(("text", "long"), [
    ("00482913", True), ("MRN 12345", True), ("+1-555-0003", True), ("555 0123", True), ("1234", False),
    ("W 400 L 40", False), ("0 5 10 15 20", False), ("120 kVp 250 mA", False), ("1O234", True),
])
def test_long_numbers(text: str, long: bool) -> None:
    assert has_long_number(text) is long


@pytest.mark.parametrize(("text", "label"), [
    ("DOB: X1Y2Z", True), ("Name: KHAN", True), ("MRN ABC", True), ("Acc# 1A2", True), ("Pat ID: abc", True),
    ("D0B: whatever", True), ("MRN", True), ("Name:", True), ("DOB 3", True), ("Patient Position HFS", False),
    ("RENAME IT", False), ("NAMED", False),
])
def test_labels(text: str, label: bool) -> None:
    assert has_label(text) is label


@pytest.mark.parametrize("text", ["DOE, JANE", "Jane Doe", "doe jane p0003", "DOE^JANE", "JANEDOE", "Jane D0E"])
def test_names_in_any_order_case_and_spelling(text: str, ident) -> None:  # type: ignore[no-untyped-def]
    assert classify(text, 0.9, ident, ALLOW).kind == PHI


def test_header_value_beats_the_allow_list_and_low_confidence(ident) -> None:  # type: ignore[no-untyped-def]
    allow = parse_allowlist("[*]\nJANE\nre:.*\n")
    assert classify("JANE", 0.1, ident, allow) == (PHI, "PatientName")
    assert classify("PID-0003-SENT", 0.1, ident, allow) == (PHI, "PatientID")


def test_allow_list_pattern_overrides_the_kind_rules_words_do_not(ident) -> None:  # type: ignore[no-untyped-def]
    allow = parse_allowlist("[*]\nFRAME\nre:FRAME \\d+\n")
    assert classify("FRAME 000123", 0.9, ident, allow) == (ALLOWED, "allow-list")
    assert classify("FRAME 000123", 0.2, ident, allow) == (PHI, "number")  # unsure reading: pattern not trusted
    assert classify("12/31/2001", 0.9, ident, parse_allowlist("[*]\n12 31 2001\n")).kind == PHI


def test_harmless_annotation_unsure_and_other_text(ident) -> None:  # type: ignore[no-untyped-def]
    for text in ("L", "R", "AP", "120 kVp", "kVp 120", "mAs 3.2", "5 cm", "10cm", "W:400 L:40", "Im: 14", "---|---"):
        assert classify(text, 0.9, ident, ALLOW, modality="CT").kind == ALLOWED, text
    assert classify("Gain 52", 0.9, ident, ALLOW, modality="US").kind == ALLOWED
    assert classify("Gain 52", 0.9, ident, ALLOW, modality="CT").kind == TEXT  # US vocabulary only
    assert classify("HELLO WORLD", 0.9, ident, ALLOW) == (TEXT, "other text")
    assert classify("HELLO WORLD", 0.3, ident, ALLOW) == (UNSURE, "low confidence")
    assert classify("", 0.0, ident, ALLOW) == (UNSURE, "unread")
    assert classify("b 1000", 0.9, ident, ALLOW, modality="MR").kind == ALLOWED


def test_identifying_values_hide_in_repr_and_cover_all_depths() -> None:
    ds = synth.make_dataset(7)
    ident = identifying_values(ds)
    assert "DOE" not in repr(ident) and "PID" not in repr(ident)
    # MRN-0007-REQ lives in a nested sequence only
    assert ident.match("MRN-0007-REQ") == "LocalNamespaceEntityID"
    assert ident.match("HOUSE GREGORY") == "ReferringPhysicianName"


def test_split_and_misread_identifiers() -> None:
    ident = identifying_values(synth.make_dataset(3))
    assert ident.match("PID-0003") == "PatientID"              # first half of PID-0003-SENT
    assert ident.match("PlD-OOO3-SENT") == "PatientID"         # look-alike letters
    assert ident.match("PID-0008-SENT") == "PatientID"         # one character misread
    assert ident.match("0003") is None                         # too short a piece
    assert ident.match("D-0003") in ("PatientID", "OtherPatientIDs")   # 5 characters with digits
    assert ident.match("SENT") is None


def test_long_name_words_match_with_one_letter_misread() -> None:
    ds = synth.make_dataset(1)
    ds.PatientName = "KOWALSKI^PIOTR"
    ident = identifying_values(ds)
    assert ident.match("KOWA1SKY") == "PatientName" and ident.match("P1OTR") == "PatientName"
    assert ident.match("KOWALEWSKA") is None


def test_short_name_words_match_whole_words_only() -> None:
    ds = synth.make_dataset(1)
    ds.PatientName = "LI^WU"
    ident = identifying_values(ds)
    assert ident.match("Li Wu") == "PatientName"
    assert ident.match("LIVER") is None and ident.match("11") is None
