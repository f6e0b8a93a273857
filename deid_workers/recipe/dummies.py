"""Dummy values: valid for their VR, the same in every file, so they carry no information.

One table for both users: the default recipe's generator writes them into ``D`` rows
(``scripts/generate_default_recipe.py``) and the conformance pass puts them where an IOD
needs a value the recipe took away (:mod:`.conformance`). A UID never gets a fixed dummy
(instances would collide): both use the keyed ``hmac_uid`` of the original instead.
"""

from __future__ import annotations

__all__ = ["DUMMY_TEXT", "DUMMY_BYTES", "DUMMY_BY_VR", "DUMMY_BY_KEYWORD", "dummy_text"]

DUMMY_TEXT = "ANONYMOUS"
DUMMY_BYTES = "ANON"  # even length, so OB/OW/UN need no padding

DUMMY_BY_VR: dict[str, str] = {
    **dict.fromkeys(("AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"), DUMMY_TEXT),
    **dict.fromkeys(("DS", "IS", "FL", "FD", "SL", "SS", "SV", "UL", "US", "UV"), "0"),
    **dict.fromkeys(("OB", "OW", "OF", "OL", "UN"), DUMMY_BYTES),
    **dict.fromkeys(("OD", "OV"), DUMMY_BYTES * 2),  # 8-byte units
    "AS": "000Y",
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
}
"""Recipe text of the dummy for each VR (the engine converts it as it converts a REPLACE)."""

DUMMY_BY_KEYWORD: dict[str, str] = {
    # Code strings with enumerated or defined terms: one of the terms rather than free text.
    "ReasonForTheAttributeModification": "COERCE",
    # PS3.3 SR Document General: UNVERIFIED needs no Verifying Observer Sequence.
    "VerificationFlag": "UNVERIFIED",
    # PS3.3 SR Document General: PARTIAL claims nothing about the content.
    "CompletionFlag": "PARTIAL",
}
"""Dummies that depend on the attribute rather than only its VR."""


def dummy_text(vr: str, keyword: str = "") -> str | None:
    """The dummy's recipe text for an attribute, or None for a VR without one (SQ, AT, UI)."""
    return DUMMY_BY_KEYWORD.get(keyword) or DUMMY_BY_VR.get(vr)
