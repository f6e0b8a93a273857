#!/usr/bin/env python3
"""Generate the shipped default recipe from a committed copy of DICOM PS3.15 table E.1-1.

Why a generator: table E.1-1 has some 650 attribute rows and changes with every edition of the
standard. Writing the recipe by hand would drift from the table silently; generating it from a
machine-readable copy makes every recipe line traceable to a row, and a test fails when the
committed recipe and the table disagree.

    python scripts/generate_default_recipe.py            # rewrite default.dicom
    python scripts/generate_default_recipe.py --check    # exit 1 if default.dicom is stale

Refreshing the table itself (a new edition) is a separate, rarer step: it reads the
per-action tag lists that the BSD-licensed ``dicom-anonymizer`` package carries (its module is
parsed with ``ast``, never imported or copied) and rewrites the TSV:

    pip download dicom-anonymizer --no-deps -d /tmp/da && unzip -q /tmp/da/*.whl -d /tmp/da
    python scripts/generate_default_recipe.py --import-dicom-anonymizer \\
        /tmp/da/dicomanonymizer/dicom_anonymization_databases/dicomfields_2026c.py \\
        --edition 2026c --source "dicom-anonymizer 2.1.0 (PyPI)"

The output depends on pydicom's data dictionary (keywords and VRs), so a pydicom upgrade that
learns new attributes can change it; the test then asks for a regeneration.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom import datadict

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "deid_workers" / "recipe" / "data"
TABLE_PATH = DATA_DIR / "annex_e1_1.tsv"
RECIPE_PATH = DATA_DIR / "default.dicom"

TABLE_COLUMNS = ("tag", "name", "basic_profile")
"""Columns of the TSV, after its ``# key: value`` header lines."""

UID_FUNC = "deid_func:hmac_uid"
"""Keyed, deterministic UID replacement (the engine's built-in): same input, same output."""

# One table of dummies for the recipe and the engine's conformance pass.
sys.path.insert(0, str(ROOT))
from deid_workers.recipe.dummies import DUMMY_BY_KEYWORD, DUMMY_BY_VR  # noqa: E402

PRIVATE_SELECTOR = "startswith:[0-9a-f]{3}[13579bdf][0-9a-f]{4}$"
"""Every element of an odd (private) group, at any depth, private creators included.

deid's regex selectors are searched against the 8-hex-digit tag among other surfaces; the
anchors keep keywords, names and ``(gggg,eeee)`` text from matching.
"""

MASK_SELECTORS: dict[str, str] = {
    "(50xx,xxxx)": "startswith:50[0-9a-f]{6}$",
    "(60xx,4000)": "startswith:60[0-9a-f]{2}4000$",
    "(60xx,3000)": "startswith:60[0-9a-f]{2}3000$",
}
"""Repeating-group rows of the table, as regex selectors over the 8-hex-digit tag."""


@dataclass(frozen=True)
class Row:
    """One attribute row of table E.1-1: its tag text, name and Basic Profile action code."""

    tag: str
    name: str
    code: str


@dataclass(frozen=True)
class Table:
    """The TSV: its ``# key: value`` provenance lines and its rows, in file order."""

    meta: dict[str, str]
    rows: tuple[Row, ...]

    @property
    def edition(self) -> str:
        return self.meta.get("edition", "unknown")


@dataclass(frozen=True)
class Mapped:
    """What one row becomes: a recipe action line (None: no line of its own), why, and the
    lines that make a kept sequence's items dummies where no other row reaches them."""

    row: Row
    line: str | None
    note: str
    items: tuple[str, ...] = ()


ITEM_DUMMIES: dict[str, tuple[str, ...]] = {
    # SR and KOS content: every row of the table reaches the items, but the free text of a
    # TEXT item is no row of its own; D (a dummy content) makes it a dummy text.
    "ContentSequence": (f"REPLACE TextValue {DUMMY_BY_VR['UT']}",),
    # The items are codes that identify a person (an employee number and its meaning).
    "PersonIdentificationCodeSequence": (
        "REPLACE endswith:PersonIdentificationCodeSequence__(CodeValue|LongCodeValue|"
        f"URNCodeValue|CodeMeaning) {DUMMY_BY_VR['LO']}",),
}
"""For a D on a sequence (kept with its items): the lines that give the items' identifying
values dummies where no row of the table selects them."""


def read_table(path: Path = TABLE_PATH) -> Table:
    """Parse the TSV; raise ValueError naming the line for anything malformed."""
    meta: dict[str, str] = {}
    rows: list[Row] = []
    header_seen = False
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        if raw.startswith("#"):
            key, sep, value = raw[1:].partition(":")
            if sep and re.fullmatch(r"[a-z_]+", key.strip()):
                meta[key.strip()] = value.strip()
            continue
        cells = raw.split("\t")
        if not header_seen:
            if tuple(cells) != TABLE_COLUMNS:
                raise ValueError(f"{path}:{number}: expected header {TABLE_COLUMNS}")
            header_seen = True
            continue
        if len(cells) != len(TABLE_COLUMNS):
            raise ValueError(f"{path}:{number}: expected {len(TABLE_COLUMNS)} cells")
        tag, name, code = cells
        if not re.fullmatch(r"\([0-9A-Fx]{4},[0-9A-Fx]{4}\)", tag):
            raise ValueError(f"{path}:{number}: bad tag {tag!r}")
        rows.append(Row(tag, name, code))
    return Table(meta, tuple(rows))


def tag_int(tag: str) -> int | None:
    """``(0010,0010)`` → 0x00100010; None for repeating-group masks such as ``(50xx,xxxx)``."""
    hexdigits = tag[1:5] + tag[6:10]
    return None if "x" in hexdigits else int(hexdigits, 16)


def vr_of(tag: int) -> str | None:
    """The dictionary VR (first choice of ``US or SS``-style VRs); None if pydicom lacks it."""
    if tag not in datadict.DicomDictionary:
        return None
    return datadict.dictionary_VR(tag).split(" or ")[0]


def selector_for(row: Row) -> str:
    """Keyword where pydicom knows the attribute (readable, matches at every depth), else the
    ``(gggg,eeee)`` text, which deid's exact selectors also compare; masks become regexes."""
    if row.tag in MASK_SELECTORS:
        return MASK_SELECTORS[row.tag]
    tag = tag_int(row.tag)
    if tag is None:
        raise ValueError(f"{row.tag}: repeating-group row without a selector")
    keyword = datadict.keyword_for_tag(tag)
    return keyword or row.tag


def dummy_for(row: Row) -> str:
    """A D replacement valid for the row's VR: a keyed UID for UI, else a fixed dummy."""
    tag = tag_int(row.tag)
    vr = vr_of(tag) if tag is not None else None
    if vr is None:
        raise ValueError(f"{row.tag} {row.name}: VR unknown, cannot choose a dummy value")
    if vr == "UI":
        return UID_FUNC
    keyword = datadict.keyword_for_tag(tag) if tag is not None else ""
    if keyword in DUMMY_BY_KEYWORD:
        return DUMMY_BY_KEYWORD[keyword]
    if vr not in DUMMY_BY_VR:
        raise ValueError(f"{row.tag} {row.name}: no dummy value for VR {vr}")
    return DUMMY_BY_VR[vr]


def map_row(row: Row) -> Mapped:
    """Turn one table row into a recipe line, by the rules in docs/default-recipe.md.

    X → REMOVE, Z → BLANK, K → KEEP, U → REPLACE with a keyed UID, D → REPLACE with a dummy.
    Compound codes are "the first action, unless IOD conformance needs the next"; a recipe
    line cannot see the IOD, so the line is the first action and the engine's conformance
    pass (deid_workers/recipe/conformance.py) takes the next where the file's IOD needs it:
    X/Z, X/D, X/Z/D → REMOVE (put back empty where Type 2, with a dummy where Type 1);
    Z/D → REPLACE with a dummy (valid for Type 1 and 2 alike, and a Patient ID that media
    and archives can index). D on a sequence → no line: the items stay, and every other row
    (they match at every depth) de-identifies them, as does X/Z/U* (the instance UIDs inside
    are replaced by their own U rows, keeping references consistent).
    """
    code = row.code
    selector = selector_for(row)
    tag = tag_int(row.tag)
    vr = vr_of(tag) if tag is not None else None
    if code in ("X", "X/Z", "X/D", "X/Z/D"):
        note = "remove" if code == "X" else "remove; the conformance pass keeps it where the IOD needs it"
        return Mapped(row, f"REMOVE {selector}", note)
    if code == "Z":
        return Mapped(row, f"BLANK {selector}", "zero length")
    if code == "K":
        return Mapped(row, f"KEEP {selector}", "keep")
    if code == "U":
        if vr not in (None, "UI"):
            raise ValueError(f"{row.tag} {row.name}: U on VR {vr}")
        return Mapped(row, f"REPLACE {selector} {UID_FUNC}", "keyed UID")
    if code in ("D", "Z/D"):
        if vr == "SQ":
            keyword = datadict.keyword_for_tag(tag) if tag is not None else ""
            items = ITEM_DUMMIES.get(keyword, ())
            note = "kept; the line below and the other rows" if items else "kept; the other rows"
            return Mapped(row, None, f"{note} de-identify its items", items)
        return Mapped(row, f"REPLACE {selector} {dummy_for(row)}", "dummy value")
    if code == "X/Z/U*":
        if vr != "SQ":
            raise ValueError(f"{row.tag} {row.name}: X/Z/U* on VR {vr}")
        return Mapped(row, None, "kept; instance UIDs inside are replaced by their U rows")
    raise ValueError(f"{row.tag} {row.name}: action code {code!r} is not a Basic Profile code")


def row_comment(row: Row) -> str:
    """The comment line that precedes a row's action line (tests find rows by it)."""
    return f"# {row.tag} {row.name} [{row.code}]"


FILTER_SECTION = """\
# Header triage for burned-in annotation. Every label of every group is evaluated; a file is
# flagged when any label holds. Criteria compare lower-cased values; `contains` is a regex.

%filter blacklist

# PS3.3 C.7.6.1 (General Image module): Burned In Annotation (0028,0301) YES states that
# the pixels carry enough annotation to identify the patient.
LABEL Burned In Annotation YES
  contains BurnedInAnnotation yes

# PS3.3 General Image module: Recognizable Visual Features (0028,0302) YES states that the
# image (a photograph, a surface rendering) could identify the patient.
LABEL Recognizable Visual Features YES
  contains RecognizableVisualFeatures yes

# PS3.3 C.7.6.1.1.2: Image Type value 1 DERIVED or value 2 SECONDARY marks pixels made from
# other images or captured after the fact; reports and reconstructions often carry text.
LABEL Derived or secondary image
  contains ImageType derived|secondary

# Console screen captures are written with Image Type values such as SCREEN SAVE or SAVE
# (e.g. CT dose screens; the CTP pixel anonymizer script keys on SCREEN SAVE).
LABEL Screen save image
  contains ImageType save

# PS3.3 C.7.3.1.1.1: Modality OT (Other) is what scanned documents and screenshots use.
LABEL Modality OT
  equals Modality ot

# PS3.4 Annex B: Secondary Capture Image Storage 1.2.840.10008.5.1.4.1.1.7 and its
# multi-frame variants .7.1 to .7.4; captured screens, the usual carrier of burned-in text.
LABEL Secondary Capture SOP Class
  contains SOPClassUID ^1\\.2\\.840\\.10008\\.5\\.1\\.4\\.1\\.1\\.7(\\.[1-4])?$

%filter graylist

# PS3.3 C.8.5.5 (US Region Calibration module): each item of Sequence of Ultrasound Regions
# gives the pixel box (Region Location Min X0/Y0, Max X1/Y1) of one image region; the text
# around them is device annotation. Scrub everything, then keep the regions (later wins).
LABEL Ultrasound outside the calibrated regions
  equals Modality us
  + present SequenceOfUltrasoundRegions
  coordinates all
  keepcoordinates from:SequenceOfUltrasoundRegions

# Device layouts below: the boxes come from the CTP DicomPixelAnonymizer script as carried
# in pydicom deid 0.4.13's deid.dicom graylist (CTP "x,y,w,h" written here as x0,y0,x1,y1).

# Siemens ACUSON S2000 ultrasound, 1024x768 frames: patient banner along the top 60 rows.
LABEL Siemens S2000 ultrasound banner
  contains Modality us
  + contains Manufacturer siemens
  + contains ManufacturerModelName s2000
  + equals Rows 768
  + equals Columns 1024
  coordinates 0,0,1024,60

# GE LOGIQ 9 ultrasound: patient banner along the top 30 rows of a 640-pixel-wide frame.
LABEL GE LOGIQ 9 ultrasound banner
  contains Modality us
  + contains Manufacturer ^ge
  + contains ManufacturerModelName logiq9
  coordinates 0,0,640,30

# GE CT dose report screens: patient and exam text in the top 110 rows of a 512 frame.
LABEL GE CT dose report
  contains Modality ct
  + contains Manufacturer ^ge
  + contains SeriesDescription dose report
  coordinates 0,0,512,110
"""


def render(table: Table) -> str:
    """The whole recipe text; a pure function of the table and pydicom's dictionary."""
    mapped = [map_row(row) for row in table.rows]
    edition = table.edition
    method = f"deid-workers basic profile (PS3.15 E.1-1 {edition})"
    out = [
        "FORMAT dicom",
        "",
        "# deid-workers default recipe: the DICOM PS3.15 Annex E Basic Application Level",
        f"# Confidentiality Profile, every attribute row of table E.1-1 (edition {edition}),",
        "# plus a header filter for burned-in annotation.",
        "#",
        "# GENERATED by scripts/generate_default_recipe.py from",
        "# deid_workers/recipe/data/annex_e1_1.tsv; do not edit by hand.",
        f"# Table source: {table.meta.get('source', 'unknown')}",
        "# Action codes: X, X/Z, X/D and X/Z/D REMOVE (deid-workers' conformance pass keeps",
        "# the attribute, empty or with a dummy, where the file's IOD needs it), Z BLANK,",
        "# D and Z/D REPLACE with a dummy valid for the VR (UIDs: keyed hmac_uid), U REPLACE",
        "# with hmac_uid; D and X/Z/U* on a sequence keep it (the other rows clean its items).",
        "# See docs/default-recipe.md.",
        "",
        FILTER_SECTION.rstrip("\n"),
        "",
        "%header",
        "",
        f"# {len(mapped)} rows of table E.1-1, in tag order; each row's comment precedes its line.",
    ]
    for item in mapped:
        out.append(row_comment(item.row))
        out.append(item.line if item.line is not None else f"# (no line: {item.note})")
        out.extend(item.items)
    out += [
        "",
        "# Private attributes: the Basic Profile removes them unless the Retain Safe Private",
        "# Option (PS3.15 E.3) applies, which this recipe does not. Every element of an odd",
        "# group, at any depth, private creators included.",
        f"REMOVE {PRIVATE_SELECTOR}",
        "",
        "# PS3.15 E.1.1: record that the identity was removed and how.",
        "ADD PatientIdentityRemoved YES",
        f"ADD DeidentificationMethod {method}",
        "",
        "# PS3.16 CID 7050 codes this recipe implements; deid-workers writes them to",
        "# DeidentificationMethodCodeSequence (see deid_workers/provenance.py).",
        "%labels",
        "ADD DeidentificationMethodCode 113100",
        "",
    ]
    return "\n".join(out)


def mapped_rows(table: Table) -> list[Mapped]:
    """Every row with its recipe line; what the test checks the recipe against."""
    return [map_row(row) for row in table.rows]


# --- refreshing the table from dicom-anonymizer -------------------------------------------------

_LIST_CODES = {
    "D_TAGS": "D",
    "Z_TAGS": "Z",
    "X_TAGS": "X",
    "U_TAGS": "U",
    "Z_D_TAGS": "Z/D",
    "X_Z_TAGS": "X/Z",
    "X_D_TAGS": "X/D",
    "X_Z_D_TAGS": "X/Z/D",
    "X_Z_U_STAR_TAGS": "X/Z/U*",
}
"""dicom-anonymizer's list names → E.1-1 Basic Profile action codes."""


def _mask_text(value: int, mask: int, digits: int = 4) -> str:
    """Hex digits of value, with 'x' where the mask leaves a nibble free."""
    out = []
    for shift in range((digits - 1) * 4, -1, -4):
        free = not (mask >> shift) & 0xF
        out.append("x" if free else f"{(value >> shift) & 0xF:X}")
    return "".join(out)


def import_dicom_anonymizer(module_path: Path) -> list[Row]:
    """Read (group, element[, group mask, element mask]) tuples and their trailing ``# name``
    comments from a dicomfields_*.py module of dicom-anonymizer, without executing it."""
    source = module_path.read_text(encoding="utf-8")
    lines = source.splitlines()
    rows: list[Row] = []
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.List)):
            continue
        target = node.targets[0]
        if not isinstance(target, ast.Name) or target.id not in _LIST_CODES:
            continue
        for elt in node.value.elts:
            numbers = ast.literal_eval(elt)
            line = lines[(elt.end_lineno or elt.lineno) - 1]
            name = line.split("#", 1)[1].strip() if "#" in line else ""
            name = re.sub(r"\s*\(see Note \d+\)$", "", name)
            if len(numbers) == 2:
                tag = f"({numbers[0]:04X},{numbers[1]:04X})"
            else:
                group, element, gmask, emask = numbers
                tag = f"({_mask_text(group, gmask)},{_mask_text(element, emask)})"
            rows.append(Row(tag, name, _LIST_CODES[target.id]))
    return rows


def write_table(rows: Iterable[Row], meta: dict[str, str], path: Path = TABLE_PATH) -> None:
    """Write the TSV sorted by tag text (deterministic whatever the source order)."""
    ordered = sorted(rows, key=lambda r: r.tag.upper().replace("X", "0") + r.tag)
    tags = [r.tag for r in ordered]
    if len(set(tags)) != len(tags):
        raise ValueError("duplicate tags in the imported table")
    out = [f"# {key}: {value}" for key, value in meta.items()]
    out.append("\t".join(TABLE_COLUMNS))
    out += ["\t".join((r.tag, r.name, r.code)) for r in ordered]
    path.write_text("\n".join(out) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if default.dicom is stale")
    parser.add_argument(
        "--import-dicom-anonymizer",
        metavar="MODULE",
        type=Path,
        help="rewrite annex_e1_1.tsv from a dicomfields_<edition>.py module, then generate",
    )
    parser.add_argument("--edition", help="standard edition of the imported table, e.g. 2026c")
    parser.add_argument("--source", help="package and version the table was imported from")
    args = parser.parse_args(argv)

    if args.import_dicom_anonymizer:
        if not (args.edition and args.source):
            parser.error("--import-dicom-anonymizer needs --edition and --source")
        meta = {
            "title": "DICOM PS3.15 Annex E, Table E.1-1, Basic Profile column",
            "edition": args.edition,
            "source": args.source,
            "source_file": args.import_dicom_anonymizer.name,
            "license": "BSD-3-Clause, Copyright 2020 Kitware Europe (facts of the standard)",
            "generated_by": "scripts/generate_default_recipe.py --import-dicom-anonymizer",
        }
        write_table(import_dicom_anonymizer(args.import_dicom_anonymizer), meta)

    text = render(read_table())
    if args.check:
        current = RECIPE_PATH.read_text(encoding="utf-8") if RECIPE_PATH.exists() else ""
        if current != text:
            print(f"{RECIPE_PATH} is stale; run {sys.argv[0]}", file=sys.stderr)
            return 1
        return 0
    RECIPE_PATH.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
