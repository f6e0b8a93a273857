"""get_identifiers / entity_item: flat, JSON-safe, top-level only (spec Part A §3)."""

from __future__ import annotations

import json

from recipe_helpers import make_dataset

from deid_workers.recipe import entity_item, get_identifiers


def test_identifiers_are_json_safe_and_flat() -> None:
    ids = get_identifiers(make_dataset())
    assert json.loads(json.dumps(ids)) == ids
    assert ids["PatientName"] == "SENTINEL^PATIENT"
    assert ids["StudyDate"] == "20200115"
    assert ids["Rows"] == 2
    assert ids["OtherPatientIDs"] == ["OTHER-1", "OTHER-2"]
    for left_out in ("PixelData", "RequestAttributesSequence", "MediaStorageSOPInstanceUID"):
        assert left_out not in ids
    assert not [k for k in ids if not k[0].isalpha()]  # private elements have no keyword


def test_empty_values_left_out() -> None:
    ids = get_identifiers(make_dataset(InstitutionName=""))
    assert "InstitutionName" not in ids


def test_entity_item() -> None:
    ds = make_dataset()
    assert entity_item(ds) == ("SENTINEL-ID-1", ds.SOPInstanceUID)
    assert entity_item(make_dataset(PatientID=None)) == (None, ds.SOPInstanceUID)
    assert entity_item(ds, "AccessionNumber", "StudyDate") == ("ACC-TOP-1", "20200115")
