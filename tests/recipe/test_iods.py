"""The shipped Type table (recipe/data/iod_types.json) and its lookups (recipe/iods.py).

The generator lives in scripts/ (not a package), so it is loaded from its path; the table is
regenerated and compared when its source package, dicom-standard 0.1.0, is installed (the
test extra pins it).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pytest

from deid_workers.recipe import iods
from deid_workers.recipe.iods import OPTIONAL, PRESENT, VALUE, requirements

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "generate_type_table.py"

CT = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
GSPS = "1.2.840.10008.5.1.4.1.1.11.1"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_type_table", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _source_installed() -> bool:
    try:
        return metadata.version("dicom-standard") == "0.1.0"
    except metadata.PackageNotFoundError:
        return False


@pytest.mark.skipif(not _source_installed(), reason="dicom-standard 0.1.0 not installed (test extra)")
def test_committed_table_is_the_generator_output() -> None:
    gen = _load_generator()
    committed = gen.TABLE_PATH.read_text(encoding="utf-8")
    assert committed == gen.render(gen.build(gen.source_dir())), \
        "run: python scripts/generate_type_table.py"


def test_table_cites_its_source_and_edition() -> None:
    provenance = iods.table_provenance()
    assert provenance["edition"] == "2020"
    assert provenance["package"].startswith("dicom-standard 0.1.0")
    assert set(provenance["sources"]) >= {"ciod_to_modules.json", "module_to_attributes.json", "sops.json"}


@pytest.mark.parametrize(("sop_class", "path", "level"), [
    (CT, (0x00080016,), VALUE),                 # SOP Class UID, Type 1
    (CT, (0x00100010,), PRESENT),               # Patient's Name, Type 2
    (CT, (0x00080023,), PRESENT),               # Content Date, 2C in General Image
    (COMPREHENSIVE_SR, (0x00080023,), VALUE),   # ... and Type 1 in SR Document General
    (CT, (0x00081110,), OPTIONAL),              # Referenced Study Sequence, Type 3
    (CT, (0x00102299,), PRESENT),               # Responsible Organization, 2C
    (CT, (0x60003000,), VALUE),                 # Overlay Data of group 6000 ...
    (CT, (0x601E3000,), VALUE),                 # ... and of any overlay group
    (GSPS, (0x00700082,), VALUE),               # Presentation Creation Date
    (GSPS, (0x00700001, 0x00700008, 0x00700006), VALUE),  # Unformatted Text Value, 1C
    (COMPREHENSIVE_SR, (0x0040A730, 0x0040A160), VALUE),  # Text Value in Content Sequence
    # deeper than PS3.3's tables list the recursive content tree: by the last two tags
    (COMPREHENSIVE_SR, (0x0040A730, 0x0040A730, 0x0040A730, 0x0040A160), VALUE),
    (COMPREHENSIVE_SR, (0x0040A370, 0x00081110), PRESENT),  # nested Type 2 sequence
    (ENHANCED_CT, (0x52009229, 0x00289110), VALUE),  # a functional group macro's sequence
    (CT, (0x00091001,), OPTIONAL),              # private: never listed
])
def test_requirements_by_iod_and_path(sop_class: str, path: tuple[int, ...], level: int) -> None:
    assert requirements(sop_class).of(path) == level


def test_an_unknown_sop_class_gets_what_any_iod_requires() -> None:
    unknown = requirements("1.2.826.0.1.3680043.10.543.77.1")
    assert unknown.name == "*"
    assert unknown.of((0x00700082,)) == VALUE  # Type 1 in presentation states only
    assert unknown.of((0x00080020,)) == PRESENT
    assert requirements("1.2.826.0.1.3680043.10.543.77.2") is unknown  # merged once


def test_the_package_reads_neither_dicom_standard_nor_the_shared_folder() -> None:
    requirements(CT).of((0x00100010,))
    assert "dicom_standard" not in sys.modules
    for path in (ROOT / "deid_workers").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "dicom_standard" not in text and "/work/shared" not in text, path


def test_table_is_compact_and_well_formed() -> None:
    path = ROOT / "deid_workers" / "recipe" / "data" / "iod_types.json"
    assert path.stat().st_size < 300_000
    table = json.loads(path.read_text(encoding="utf-8"))
    assert len(table["sop_classes"]) >= 130
    for iod in table["iods"].values():
        assert set(iod["modules"]) <= set(table["modules"])
        assert set(iod.get("fg_macros", ())) <= set(table["macros"])
