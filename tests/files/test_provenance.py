"""provenance: PatientIdentityRemoved, DeidentificationMethod and CID 7050 codes in outputs."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from deid_workers.errors import RecipeError
from deid_workers.files.provenance import (
    CID_7050,
    CLEAN_PIXEL_DATA,
    Provenance,
    declared_codes,
    stamp,
)
from deid_workers.recipe import load_recipe

DECLARING = """FORMAT dicom
%header
KEEP Modality
%labels
ADD DeidentificationMethodCode 113100
ADD DeidentificationMethodCode 113108
ADD DeidentificationMethodCode 113100
ADD Something else
"""


def _codes(ds: Dataset) -> list[tuple[str, str, str]]:
    return [(i.CodeValue, i.CodingSchemeDesignator, i.CodeMeaning)
            for i in ds.DeidentificationMethodCodeSequence]


def test_declared_codes_in_order_without_repeats():
    assert declared_codes(load_recipe(text=DECLARING)) == ("113100", "113108")


def test_default_recipe_declares_the_basic_profile():
    assert declared_codes(load_recipe()) == ("113100",)


@pytest.mark.parametrize("code", ["999999", "113101", "basic"])
def test_unknown_or_per_file_code_is_a_recipe_error_with_line(code):
    text = f"FORMAT dicom\n%header\nKEEP Modality\n%labels\nADD DeidentificationMethodCode {code}\n"
    with pytest.raises(RecipeError) as info:
        declared_codes(load_recipe(text=text))
    assert info.value.line == 5


def test_stamp_without_cleaning():
    recipe = load_recipe(text=DECLARING)
    ds = Dataset()
    stamp(ds, recipe, pixels_cleaned=False)
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.DeidentificationMethod.startswith("deid-workers ")
    assert f"sha256:{recipe.sha256[:12]}" in ds.DeidentificationMethod
    assert recipe.name in ds.DeidentificationMethod
    assert _codes(ds) == [("113100", "DCM", CID_7050["113100"]),
                          ("113108", "DCM", CID_7050["113108"])]


def test_stamp_with_cleaning_adds_113101():
    ds = Dataset()
    stamp(ds, load_recipe(), pixels_cleaned=True)
    assert [c[0] for c in _codes(ds)] == ["113100", CLEAN_PIXEL_DATA]
    assert _codes(ds)[1][2] == "Clean Pixel Data Option"


def test_recipe_without_codes_and_no_cleaning_writes_no_sequence():
    ds = Dataset()
    stamp(ds, load_recipe(text="FORMAT dicom\n%header\nKEEP Modality\n"), pixels_cleaned=False)
    assert "DeidentificationMethodCodeSequence" not in ds
    assert ds.PatientIdentityRemoved == "YES"


def test_stamp_keeps_recipe_method_and_is_idempotent():
    recipe = load_recipe()
    ds = Dataset()
    ds.DeidentificationMethod = "site tool v2"
    other = Dataset()
    other.CodeValue, other.CodingSchemeDesignator, other.CodeMeaning = "113100", "DCM", "x"
    ds.DeidentificationMethodCodeSequence = Sequence([other])
    stamp(ds, recipe, pixels_cleaned=True)
    stamp(ds, recipe, pixels_cleaned=True)
    assert list(ds.DeidentificationMethod) == ["site tool v2", Provenance.of(recipe).method]
    assert [c[0] for c in _codes(ds)] == ["113100", "113101"]


def test_method_fits_lo_with_long_recipe_names():
    recipe = load_recipe()
    prov = Provenance.of(recipe, name="x" * 200 + "\\deid.dicom", version="12.34.56")
    assert len(prov.method) <= 64
    assert prov.method.endswith(f"sha256:{recipe.sha256[:12]}")
    assert "\\" not in prov.method


def test_stamped_dataset_writes_and_reads_back(tmp_path):
    import pydicom

    from deid_workers.synth import make_dataset

    ds = make_dataset(phi=False)
    stamp(ds, load_recipe(), pixels_cleaned=True)
    ds.save_as(tmp_path / "x.dcm", enforce_file_format=True)
    back = pydicom.dcmread(tmp_path / "x.dcm")
    assert back.PatientIdentityRemoved == "YES"
    assert [i.CodeValue for i in back.DeidentificationMethodCodeSequence] == ["113100", "113101"]


def _built(code: str) -> Dataset:
    """An item as keyword assignments build it (what the stamp's copies must equal)."""
    item = Dataset()
    item.CodeValue = code
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = CID_7050[code]
    return item


def _attributes(obj: object) -> dict[str, object]:
    return {k: v for k, v in vars(obj).items() if k != "_dict"}


@pytest.mark.parametrize("cleaned", [False, True])
def test_stamped_items_equal_built_ones_in_every_attribute(cleaned):
    ds = Dataset()
    for _ in range(2):  # the second stamp of a process copies the items built by the first
        ds = Dataset()
        stamp(ds, load_recipe(text=DECLARING), pixels_cleaned=cleaned)
    items = list(ds.DeidentificationMethodCodeSequence)
    assert [i.CodeValue for i in items] == ["113100", "113108"] + (["113101"] if cleaned else [])
    for item in items:
        built = _built(item.CodeValue)
        assert type(item) is Dataset
        assert _attributes(item) == _attributes(built)
        assert list(item._dict) == list(built._dict)
        for tag, elem in built._dict.items():
            assert type(item._dict[tag]) is type(elem)
            assert vars(item._dict[tag]) == vars(elem)


def test_stamped_items_share_nothing_a_caller_may_change():
    recipe = load_recipe()
    first, second = Dataset(), Dataset()
    stamp(first, recipe, pixels_cleaned=False)
    stamp(second, recipe, pixels_cleaned=False)
    a = first.DeidentificationMethodCodeSequence[0]
    b = second.DeidentificationMethodCodeSequence[0]
    assert a is not b and a._dict is not b._dict
    assert a._private_blocks is not b._private_blocks and a._pixel_id is not b._pixel_id
    assert all(a._dict[tag] is not b._dict[tag] for tag in a._dict)
    a.CodeMeaning = "changed"
    third = Dataset()
    stamp(third, recipe, pixels_cleaned=False)
    assert b.CodeMeaning == third.DeidentificationMethodCodeSequence[0].CodeMeaning == CID_7050[
        "113100"]


def test_stamp_with_a_recipe_builds_its_provenance_once(monkeypatch):
    recipe = load_recipe(text=DECLARING)
    calls = []
    real = Provenance.of.__func__

    def counting(cls, *args, **kwargs):
        calls.append(args)
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(Provenance, "of", classmethod(counting))
    first, second = Dataset(), Dataset()
    stamp(first, recipe, pixels_cleaned=False)
    stamp(second, recipe, pixels_cleaned=False)
    assert len(calls) == 1
    assert second.DeidentificationMethod == first.DeidentificationMethod == real(
        Provenance, recipe).method
    other = load_recipe(text=DECLARING.replace("113108", "113109"))
    stamp(third := Dataset(), other, pixels_cleaned=False)
    assert [c[0] for c in _codes(third)] == ["113100", "113109"]


class _OwnClass(Dataset):
    """A dataset class stamp does not take shortcuts with: pydicom's keyword steps decide."""


def _variants() -> list[Dataset]:
    """Datasets before stamping: without the elements, with them converted, with them raw."""
    import io

    from pydicom import dcmread

    from deid_workers.synth import make_dataset

    plain = make_dataset(1, phi=False)
    converted = make_dataset(2, phi=False)
    converted.PatientIdentityRemoved = "NO"
    converted.DeidentificationMethod = ["site tool", "deid-workers 0.1 recipe x sha256:abc"]
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "113108", "DCM", "x"
    converted.DeidentificationMethodCodeSequence = Sequence([item])
    buf = io.BytesIO()
    converted.save_as(buf, enforce_file_format=True)
    raw = dcmread(io.BytesIO(buf.getvalue()))
    return [plain, converted, raw]


@pytest.mark.parametrize("index", [0, 1, 2])
@pytest.mark.parametrize("cleaned", [False, True])
def test_stamp_writes_what_pydicom_keyword_assignments_write(index, cleaned):
    import copy
    import io

    recipe = load_recipe(text=DECLARING)
    ds = _variants()[index]
    other = copy.deepcopy(ds)
    other.__class__ = type("Own" + type(ds).__name__, (type(ds), _OwnClass), {})
    stamp(ds, recipe, pixels_cleaned=cleaned)
    stamp(other, recipe, pixels_cleaned=cleaned)

    def written(d: Dataset) -> bytes:
        buf = io.BytesIO()
        d.save_as(buf, enforce_file_format=True)
        return buf.getvalue()

    assert written(ds) == written(other)
    for keyword in ("PatientIdentityRemoved", "DeidentificationMethod"):
        assert type(ds[keyword]) is type(other[keyword])
        assert vars(ds[keyword]) == vars(other[keyword])
        assert type(ds[keyword].value) is type(other[keyword].value)
