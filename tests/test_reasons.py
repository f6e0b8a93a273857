"""Reasons are read by the people who run the archive: what is wrong, and what to do."""

from __future__ import annotations

import errno
import re

import pytest

from deid_workers import reasons
from deid_workers.errors import RecipeError

BARE = re.compile(r"^[A-Za-z_.]*(Error|Exception|Exceeded)$")


@pytest.mark.parametrize("reason", sorted(reasons.SKIP_REASONS))
def test_skip_reasons_say_what_and_what_to_do(reason: str) -> None:
    what, _, todo = reason.partition(": ")
    assert what and todo, reason  # "<what is wrong>: <what to do>"
    assert "\n" not in reason and not BARE.match(reason)


@pytest.mark.parametrize("exc,stage,expected", [
    (OSError(errno.ENOSPC, "No space left on device"), "put", "output disk is full"),
    (OSError(errno.EROFS, "Read-only file system"), "put", "read-only"),
    (OSError(errno.EIO, "Input/output error"), "get", "I/O error while reading"),
    (OSError(errno.ESTALE, "Stale file handle"), "put", "Stale file handle"),
    (MemoryError(), "clean", "ran out of memory"),
    (ValueError("PatientName 'DOE^JOHN' is bad"), "put", "internal error while de-identifying"),
    (AttributeError("x"), "get", "(AttributeError); please report it"),
])
def test_failures_are_worded_and_quote_no_message(exc: BaseException, stage: str,
                                                  expected: str) -> None:
    text = reasons.explain_failure(exc, stage)
    assert expected in text and not BARE.match(text)
    assert "DOE" not in text  # an exception's message may quote a value: never used


def test_a_recipe_error_keeps_its_file_and_line() -> None:
    exc = RecipeError("REPLACE SliceThickness: the value is not a valid DS", "site.dicom", 5)
    assert reasons.explain_failure(exc, "put") == str(exc)


def test_a_value_pydicom_cannot_write_names_its_element() -> None:
    try:
        try:
            raise TypeError("encoding without a string argument")
        except TypeError as inner:
            raise TypeError("With tag (0008,0008) got exception: x") from inner
    except TypeError as exc:
        keyword = reasons.element_of(exc)
    assert keyword == "ImageType"
    text = reasons.explain_failure(reasons.UnwritableValue(keyword), "put")
    assert "in ImageType does not fit" in text
