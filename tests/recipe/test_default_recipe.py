"""The shipped default recipe: generated from table E.1-1 (the shipped 2026d copy), and
leak-free on a dataset that carries every attribute of the table it can.

The generator script lives in scripts/ (not a package), so it is loaded from its path; the
mapping itself is deid_workers/recipe/annex_e.py.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pydicom import config as pydicom_config
from pydicom import datadict
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian
from pydicom.valuerep import validate_value

from deid_workers import deidentify, load_recipe
from deid_workers.recipe import annex_e, standard
from deid_workers.recipe.filters import inspect_dataset
from deid_workers.recipe.parser import parse_recipe
from deid_workers.recipe.standard import Row

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "generate_default_recipe.py"
STANDARD = ROOT / "deid_workers" / "recipe" / "data" / "standard"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_default_recipe", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


gen = _load_generator()
ROWS = standard.e1_1()
MAPPED = annex_e.mapped_rows()
RECIPE_TEXT = gen.RECIPE_PATH.read_text(encoding="utf-8")


def _row(keyword: str) -> Row:
    tag = datadict.tag_for_keyword(keyword)
    assert tag is not None
    return next(r for r in ROWS if r.tag_int == tag)


# --- generation --------------------------------------------------------------------------------


def test_committed_recipes_are_the_generator_output() -> None:
    """Regenerate every shipped recipe (the default and the ten option files) and diff."""
    stale = [str(p.relative_to(ROOT)) for p, text in gen.outputs().items()
             if p.read_text(encoding="utf-8") != text]
    assert not stale, f"run: python scripts/generate_default_recipe.py ({stale})"
    assert gen.main(["--check"]) == 0
    assert RECIPE_TEXT == annex_e.render_profile(())
    assert len(gen.outputs()) == 11


def test_each_generated_file_cites_the_edition() -> None:
    for path, text in gen.outputs().items():
        assert "DICOM PS3.15 edition 2026d" in text, path
        assert "© NEMA" in text, path


def test_table_copies_are_the_standard_2026d_with_their_provenance() -> None:
    readme = (STANDARD / "README.md").read_text(encoding="utf-8")
    assert "© NEMA" in readme and "pymedphys/pymedphys" in readme
    for name in ("e1_1", "e1_1a", "e3_10_1", "cid_7050"):
        data = json.loads((STANDARD / f"{name}.json").read_text(encoding="utf-8"))
        assert data["edition"] == standard.EDITION == "2026d"
        assert standard.table(name)["content_sha256"] == data["content_sha256"]
    for path in STANDARD.iterdir():
        if path.name != "README.md":
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            assert f"`{path.name}`" in readme and digest in readme, f"{path.name}: digest not in README"
    assert (STANDARD / "LICENSE-NEMA-DICOM").read_text(encoding="utf-8").startswith("DICOM Standard")


def test_a_table_of_another_edition_or_altered_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    real = json.loads((STANDARD / "e1_1a.json").read_text(encoding="utf-8"))
    for change, message in ((dict(real, edition="2026c"), "edition"),
                            (dict(real, rows=real["rows"][1:]), "content_sha256")):
        monkeypatch.setattr(standard.resources, "files", lambda _pkg, c=change: _FakeFiles(json.dumps(c)))
        standard._table.cache_clear()
        with pytest.raises(standard.StandardError, match=message):
            standard.table("e1_1a")
    monkeypatch.undo()
    standard._table.cache_clear()
    assert standard.table("e1_1a")["edition"] == "2026d"


class _FakeFiles:
    def __init__(self, text: str) -> None:
        self.text = text

    def __truediv__(self, _other: str) -> _FakeFiles:
        return self

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.text


def test_table_is_complete() -> None:
    tags = [row.tag for row in ROWS]
    assert len(tags) == len(set(tags)) == 657
    assert {row.basic for row in ROWS} <= set(standard.action_codes())
    assert {"(50xx,xxxx)", "(60xx,3000)", "(60xx,4000)", "(gggg,eeee)"} <= set(tags)
    assert all(row.name for row in ROWS)
    assert len(standard.safe_private()) == 479 and len(standard.cid_7050()) == 13


def test_every_row_maps_to_its_line_in_the_recipe() -> None:
    lines = RECIPE_TEXT.splitlines()
    index = {line: i for i, line in enumerate(lines)}
    for item in MAPPED:
        comment = annex_e.row_comment(item)
        assert comment in index, comment
        following = lines[index[comment] + 1]
        if item.row.private:
            assert lines[index[comment] + 2] == item.line == f"REMOVE {annex_e.PRIVATE_SELECTOR}"
        elif item.line is None:  # a sequence kept: X/Z/U*, or D (its items are cleaned)
            assert item.row.basic in ("X/Z/U*", "D")
            assert annex_e.row_vr(item.row) == "SQ"
            assert following.startswith("# (no line:")
            start = index[comment] + 2
            assert tuple(lines[start:start + len(item.items)]) == item.items
        else:
            assert following == item.line


@pytest.mark.parametrize(
    ("keyword", "code", "line"),
    [
        ("PatientName", "Z", "BLANK PatientName"),
        ("PatientID", "Z/D", "REPLACE PatientID ANONYMOUS"),
        ("PatientBirthDate", "Z", "BLANK PatientBirthDate"),
        ("AcquisitionDate", "X/Z", "REMOVE AcquisitionDate"),
        ("ContentDate", "Z/D", "REPLACE ContentDate 19000101"),
        ("SeriesTime", "X/D", "REMOVE SeriesTime"),
        ("AcquisitionDateTime", "X/Z/D", "REMOVE AcquisitionDateTime"),
        ("InstitutionName", "X/Z/D", "REMOVE InstitutionName"),
        ("SOPInstanceUID", "U", "REPLACE SOPInstanceUID deid_func:hmac_uid"),
        ("AnnotationGroupUID", "D", "REPLACE AnnotationGroupUID deid_func:hmac_uid"),
        ("ContentSequence", "D", None),
        ("InstitutionCodeSequence", "X/Z/D", "REMOVE InstitutionCodeSequence"),
        ("PatientAddress", "X", "REMOVE PatientAddress"),
        ("SelectorASValue", "D", "REPLACE SelectorASValue 000Y"),
        ("ReferencedImageSequence", "X/Z/U*", None),
    ],
)
def test_action_code_mapping(keyword: str, code: str, line: str | None) -> None:
    row = _row(keyword)
    assert row.basic == code
    assert annex_e.map_row(row).line == line


def test_unknown_attributes_are_selected_by_tag_and_unknown_codes_fail() -> None:
    unknown = [r for r in ROWS if r.tag_int is not None and r.tag_int not in datadict.DicomDictionary]
    assert unknown, "pydicom learnt every tag: drop this test's premise"
    for row in unknown:
        assert annex_e.map_row(row).line == f"REMOVE {row.tag}"
    with pytest.raises(ValueError, match="not a Basic Profile code"):
        annex_e.map_row(Row("(0010,0010)", "Patient's Name", "C", (), False, True))


def test_dummy_values_are_valid_for_their_vr() -> None:
    checked = 0
    for item in MAPPED:
        if not item.line or not item.line.startswith("REPLACE ") or "deid_func:" in item.line:
            continue
        value = item.line.split(" ", 2)[2]
        vr = annex_e.row_vr(item.row)
        assert vr is not None
        payload: Any = value.encode() if vr in ("OB", "OW", "UN", "OF", "OL", "OD", "OV") else value
        validate_value(vr, payload, pydicom_config.RAISE)
        checked += 1
    assert checked > 90  # the D and Z/D rows of E.1-1 outside UIDs and sequences


def _selector_regex(selector: str) -> re.Pattern[str]:
    """How deid compiles a startswith: selector (spec §2.5): ^(RE), lower-cased, IGNORECASE."""
    kind, _, expression = selector.partition(":")
    assert kind == "startswith"
    return re.compile(f"^({expression.lower()})", re.IGNORECASE)


def test_private_and_repeating_group_selectors_hit_only_their_tags() -> None:
    private = _selector_regex(annex_e.PRIVATE_SELECTOR)
    assert private.search("00091001") and private.search("7FE1FFFF") and private.search("00190010")
    assert not private.search("00100010") and not private.search("7FE00010")
    assert not private.search("(0009,1001)")
    curve = _selector_regex(annex_e.MASK_SELECTORS["(50xx,xxxx)"])
    assert curve.search("50003000") and curve.search("501E0010")
    assert not curve.search("00503000") and not curve.search("60003000")
    overlay = _selector_regex(annex_e.MASK_SELECTORS["(60xx,4000)"])
    assert overlay.search("60004000") and overlay.search("601E4000")
    assert not overlay.search("60003000") and not overlay.search("60004001")
    # The same regexes are searched against keywords and names: none may match.
    words = [w for entry in datadict.DicomDictionary.values() for w in (entry[4], entry[2])]
    for pattern in [private, curve, overlay]:
        assert not [w for w in words if w and pattern.search(w)]


def test_recipe_parses_with_the_project_parser() -> None:
    recipe = parse_recipe(RECIPE_TEXT, str(gen.RECIPE_PATH))
    actions = [a for a in recipe.header if a.action != "ADD"]
    assert len(actions) == sum(1 for m in MAPPED if m.line) + sum(len(m.items) for m in MAPPED)
    assert [g.name for g in recipe.filters] == ["blacklist", "graylist"]
    adds = {a.field: a.value for a in recipe.header if a.action == "ADD"}
    assert adds["PatientIdentityRemoved"] == "YES"
    assert adds["DeidentificationMethod"].endswith("(PS3.15 E.1-1 2026d)")
    assert [(a.field, a.value) for a in recipe.labels] == [("DeidentificationMethodCode", "113100")]


# --- filters -----------------------------------------------------------------------------------


def _image(**elements: Any) -> Dataset:
    ds = Dataset()
    ds.Modality = "CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.Rows = 512
    ds.Columns = 512
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return ds


def _inspect(ds: Dataset) -> dict[str, Any]:
    recipe = parse_recipe(RECIPE_TEXT, str(gen.RECIPE_PATH))
    result: dict[str, Any] = inspect_dataset(ds, recipe)
    return result


@pytest.mark.parametrize(
    "elements",
    [
        {"BurnedInAnnotation": "YES"},
        {"RecognizableVisualFeatures": "YES"},
        {"ImageType": ["DERIVED", "PRIMARY"]},
        {"ImageType": ["ORIGINAL", "SECONDARY"]},
        {"ImageType": ["DERIVED", "SECONDARY", "SCREEN SAVE"]},
        {"Modality": "OT"},
        {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.7"},
        {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.7.4"},
    ],
)
def test_blacklist_flags_likely_burned_in_text(elements: dict[str, Any]) -> None:
    result = _inspect(_image(**elements))
    assert result["flagged"]
    assert {r["group"] for r in result["results"]} == {"blacklist"}


@pytest.mark.parametrize(
    "elements",
    [
        {},
        {"BurnedInAnnotation": "NO"},
        {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.77.1.1"},  # VL Endoscopic: not SC
    ],
)
def test_plain_original_images_are_not_flagged(elements: dict[str, Any]) -> None:
    assert not _inspect(_image(**elements))["flagged"]


def test_ultrasound_keeps_only_its_regions_and_scrubs_a_known_banner() -> None:
    region = Dataset()
    region.RegionLocationMinX0, region.RegionLocationMinY0 = 10, 70
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = 900, 700
    ds = _image(
        Modality="US",
        SOPClassUID="1.2.840.10008.5.1.4.1.1.6.1",
        Manufacturer="SIEMENS",
        ManufacturerModelName="ACUSON S2000",
        Rows=768,
        Columns=1024,
        SequenceOfUltrasoundRegions=Sequence([region]),
    )
    result = _inspect(ds)
    assert result["flagged"]
    assert [r["group"] for r in result["results"]] == ["graylist", "graylist"]
    regions, banner = (r["coordinates"] for r in result["results"])
    assert regions[0] == [0, "all"] and regions[1][0] == 1
    assert banner == [[0, "0,0,1024,60"]]


# --- no PHI survives ------------------------------------------------------------------------------

WRAPPER = "AnatomicRegionSequence"  # not a row of E.1-1: kept, so its children are tested
NESTED = ("PatientName", "StudyDate", "AccessionNumber", "StudyInstanceUID", "OperatorsName")
SAFE_CODES = {"K", "C"}


def _sentinel(tag: int, vr: str) -> Any:
    """A value valid for the VR, unique per tag, and unlike every dummy the recipe writes."""
    text = f"S{tag:08X}"
    if vr in ("AE", "CS", "SH", "LO", "LT", "ST", "UT", "UC"):
        return text
    if vr == "PN":
        return f"SENTINEL^{text}"
    values = {
        "AS": "042Y",
        "DA": "20210315",
        "DT": "20210315101010",
        "TM": "101010",
        "DS": "12.5",
        "IS": "42",
        "UR": f"http://sentinel.example/{text}",
        "UI": f"1.2.826.0.1.3680043.10.543.{tag}",
        "AT": 0x00100010,
    }
    if vr in values:
        return values[vr]
    if vr in ("FL", "FD"):
        return 12.5
    if vr in ("SL", "SS", "UL", "US", "SV", "UV"):
        return 42
    if vr in ("OB", "OW", "OD", "OF", "OL", "OV", "UN"):
        return b"SENTINEL"
    raise AssertionError(vr)


def _phi_dataset() -> tuple[FileDataset, dict[int, tuple[str, Any]]]:
    """A dataset with every E.1-1 attribute that can live in a data set, keyed by tag."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("phi.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    planted: dict[int, tuple[str, Any]] = {}
    for row in ROWS:
        tag = row.tag_int
        if tag is None or tag >> 16 in (0x0000, 0x0002):
            continue  # masks are planted below; command and file-meta groups apart
        vr = annex_e.row_vr(row) or "LO"
        if vr == "SQ":
            item = Dataset()
            item.CodeMeaning = f"S{tag:08X}"
            value: Any = Sequence([item])
        else:
            value = _sentinel(tag, vr)
        ds.add(DataElement(tag, vr, value))
        planted[tag] = (row.basic, value)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Modality = "CT"
    ds.add_new(0x50000010, "US", 42)  # curve (50xx,xxxx)
    ds.add_new(0x60024000, "LT", "SOVERLAY")  # overlay comments (60xx,4000)
    ds.add_new(0x60003000, "OW", b"SENTINEL")  # overlay data (60xx,3000)
    ds.add_new(0x00090010, "LO", "SENTINEL CREATOR")
    ds.add_new(0x00091001, "LO", "SPRIVATE")
    inner = Dataset()
    for keyword in NESTED:
        tag = datadict.tag_for_keyword(keyword)
        assert tag is not None
        setattr(inner, keyword, copy.deepcopy(planted[tag][1]))
    inner.add_new(0x00190010, "LO", "SENTINEL CREATOR")
    inner.add_new(0x00191001, "LO", "SPRIVATE")
    setattr(ds, WRAPPER, Sequence([inner]))
    return ds, planted


def _cleared(element: DataElement | None, original: Any) -> bool:
    """Removed, blanked, emptied, or given a different value."""
    if element is None or element.value in (None, "", b"") or element.value == []:
        return True
    value = element.value
    if isinstance(value, Sequence):
        return len(value) == 0
    if isinstance(value, MultiValue):
        value = list(value)
    return bool(value != original)


def test_no_attribute_of_table_e11_survives_with_its_value() -> None:
    ds, planted = _phi_dataset()
    out = deidentify(copy.deepcopy(ds), load_recipe())
    leaks = []
    for tag, (code, original) in planted.items():
        if code in SAFE_CODES:
            continue
        element = out.get(tag)
        if code == "X/Z/U*" or (code == "D" and isinstance(original, Sequence)):
            # Kept sequence; what matters is that nothing planted inside survives unchanged.
            if element is not None and len(element.value):
                leaks += [f"{tag:08X}/{e.tag}" for e in element.value[0] if e.value == original]
            continue
        if not _cleared(element, original):
            leaks.append(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {code}")
        if element is not None and element.VR == "UI" and element.value:
            assert UID(str(element.value)).is_valid, f"{tag:08X} invalid UID"
    assert not leaks, leaks
    for tag in (0x50000010, 0x60024000, 0x60003000, 0x00090010, 0x00091001):
        assert tag not in out, f"{tag:08X} survived"
    inner = out[WRAPPER][0]
    for keyword in NESTED:
        tag = datadict.tag_for_keyword(keyword)
        assert tag is not None
        assert _cleared(inner.get(tag), planted[tag][1]), f"nested {keyword} survived"
    assert 0x00191001 not in inner and 0x00190010 not in inner
    assert out.PatientIdentityRemoved == "YES"
    assert "E.1-1 2026d" in out.DeidentificationMethod


def test_uids_are_replaced_consistently() -> None:
    ds, _ = _phi_dataset()
    referring = Dataset()
    referring.SOPInstanceUID = "1.2.826.0.1.3680043.10.543.77"
    referenced = Dataset()
    referenced.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    referenced.ReferencedSOPClassUID = ds.SOPClassUID
    referring.ReferencedImageSequence = Sequence([referenced])
    referring.StudyInstanceUID = ds.StudyInstanceUID

    recipe = load_recipe()
    first = deidentify(copy.deepcopy(ds), recipe)
    again = deidentify(copy.deepcopy(ds), recipe)
    other = deidentify(referring, recipe)

    for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
                    "FrameOfReferenceUID"):
        new = first[keyword].value
        assert new != ds[keyword].value and UID(new).is_valid, keyword
        assert again[keyword].value == new, f"{keyword} not deterministic"
    assert other.StudyInstanceUID == first.StudyInstanceUID
    ref = other.ReferencedImageSequence[0]
    assert ref.ReferencedSOPInstanceUID == first.SOPInstanceUID
    assert ref.ReferencedSOPClassUID == ds.SOPClassUID  # class UIDs are not identifying
    assert first.file_meta.MediaStorageSOPInstanceUID == first.SOPInstanceUID
