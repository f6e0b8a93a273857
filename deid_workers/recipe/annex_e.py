"""PS3.15 Annex E as recipes: every row of Table E.1-1 turned into deid recipe lines, for the
Basic Profile and any combination of its options (``docs/profiles.md`` has the rules).

Why generated: the table has some 650 rows and changes with every edition. A recipe written
by hand drifts from it silently; generated from the shipped table (:mod:`.standard`), every
line traces back to a row, and a test fails when the committed recipes and the table
disagree. The same functions write the shipped default recipe and the option files
(``scripts/generate_default_recipe.py``) and render a profile when a user picks one
(:func:`render_profile`), so what runs is what the files show.

The text is a pure function of the table, the chosen options and pydicom's data dictionary
(keywords and VRs; pinned to pydicom 3.0, whose dictionary a new release may extend).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from pydicom import datadict

from .dummies import DUMMY_BY_KEYWORD, DUMMY_BY_VR
from .options import BASIC_CODE, OPTIONS, check_conflicts, effective_code, profile_name
from .standard import ACKNOWLEDGEMENT, EDITION, Row, e1_1

__all__ = [
    "AE_PSEUDONYM",
    "CLEAN_TEXT",
    "DATE_SHIFT",
    "EFFECTS",
    "MASK_SELECTORS",
    "Mapped",
    "PRIVATE_SELECTOR",
    "UID_FUNC",
    "UNSAFE_PRIVATE",
    "map_row",
    "mapped_rows",
    "render_option",
    "render_profile",
    "row_comment",
    "row_vr",
    "selector_for",
]

UID_FUNC = "deid_func:hmac_uid"
"""Keyed, deterministic UID replacement: the same input and key give the same UID."""
DATE_SHIFT = "deid_func:date_shift"
"""The per-patient keyed shift by whole days (Modified Dates' C)."""
CLEAN_TEXT = "deid_func:clean_text"
"""Free text with the file's own names, IDs and dates taken out (Clean options' C)."""
AE_PSEUDONYM = "deid_func:hmac_id length=16"
"""A keyed pseudonym of an AE title, itself a valid AE title (Retain Device Identity's C)."""
UNSAFE_PRIVATE = "deid_func:unsafe_private"
"""True for a private element that Table E.3.10-1 does not list (Retain Safe Private's C)."""

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

EFFECTS = ("remove", "empty", "replace", "clean", "keep", "sequence", "private", "flag")
"""What a profile does to a row's attribute (:attr:`Mapped.effect`): remove it, empty it,
replace it (a dummy, a keyed UID or pseudonym, a shifted date), clean its free text, keep
it, keep a sequence whose items the other rows clean, remove private elements (all, or
those E.3.10-1 does not list), or keep it and flag the file for review."""

ITEM_DUMMIES: dict[str, tuple[str, ...]] = {
    # SR and KOS content: every row of the table reaches the items, but the free text of a
    # TEXT item is no row of its own; D (a dummy content) makes it a dummy text.
    "ContentSequence": (f"REPLACE TextValue {DUMMY_BY_VR['UT']}",),
    # The items are codes that identify a person (an employee number and its meaning).
    "PersonIdentificationCodeSequence": (
        "REPLACE endswith:PersonIdentificationCodeSequence__(CodeValue|LongCodeValue|"
        f"URNCodeValue|CodeMeaning) {DUMMY_BY_VR['LO']}",),
}
"""For a Basic D on a sequence (kept with its items): the lines that give the items'
identifying values dummies where no row of the table selects them."""

CLEANED_IN_ITEMS = ("TextValue", "UnformattedTextValue")
"""Free text inside a sequence an option cleans (C), cleaned there even where its own row
would give it a dummy: the option's column speaks for the sequence and what it holds."""

_TEXT_VRS = frozenset({"AE", "CS", "LO", "LT", "SH", "ST", "UC", "UT"})
_BINARY_VRS = frozenset({"OB", "OW", "OD", "OF", "OL", "OV", "UN"})
_MODIFIED = "retain-longitudinal-modified-dates"
_DEVICE = "retain-device-identity"
_SAFE_PRIVATE = "retain-safe-private"
_GRAPHICS = "clean-graphics"
_OVERLAY_DATA = "(60xx,3000)"


@dataclass(frozen=True)
class Mapped:
    """What one row becomes under a profile.

    ``code`` is the row's action code under the profile and ``option`` the option whose
    column gave it (None: the Basic Profile's); ``line`` the recipe line (None: no line of
    its own); ``items`` lines written right after it (a Basic D sequence's items); ``late``
    lines written after every row (an option cleaning inside a sequence, so they win over
    the rows of what the sequence holds); ``effect`` one of :data:`EFFECTS`.
    """

    row: Row
    code: str
    option: str | None
    line: str | None
    note: str
    effect: str
    items: tuple[str, ...] = ()
    late: tuple[str, ...] = field(default=())


def row_vr(row: Row) -> str | None:
    """The row's VR in pydicom's dictionary (first of ``US or SS``), "SQ" for a sequence
    pydicom does not know yet (by its name), else None."""
    tag = row.tag_int
    if tag is not None and datadict.dictionary_has_tag(tag):
        return str(datadict.dictionary_VR(tag)).split(" or ")[0]
    if row.name.endswith("Sequence"):
        return "SQ"
    return None


def _keyword(row: Row) -> str:
    tag = row.tag_int
    return str(datadict.keyword_for_tag(tag)) if tag is not None else ""


def selector_for(row: Row) -> str:
    """Keyword where pydicom knows the attribute (readable, matches at every depth), else the
    ``(gggg,eeee)`` text, which deid's exact selectors also compare; masks and the private
    row become regexes over the 8-digit tag."""
    if row.private:
        return PRIVATE_SELECTOR
    if row.tag in MASK_SELECTORS:
        return MASK_SELECTORS[row.tag]
    if row.tag_int is None:
        raise ValueError(f"{row.tag}: repeating-group row without a selector")
    return _keyword(row) or row.tag


def _dummy_for(row: Row) -> str:
    """A D replacement valid for the row's VR: a keyed UID for UI, else a fixed dummy."""
    vr = row_vr(row)
    if vr is None:
        raise ValueError(f"{row.tag} {row.name}: VR unknown, cannot choose a dummy value")
    if vr == "UI":
        return UID_FUNC
    keyword = _keyword(row)
    if keyword in DUMMY_BY_KEYWORD:
        return DUMMY_BY_KEYWORD[keyword]
    if vr not in DUMMY_BY_VR:
        raise ValueError(f"{row.tag} {row.name}: no dummy value for VR {vr}")
    return DUMMY_BY_VR[vr]


def _basic(row: Row) -> Mapped:
    """The Basic Profile's line for a row (docs/default-recipe.md has the rules).

    X -> REMOVE, Z -> BLANK, U -> REPLACE with a keyed UID, D -> REPLACE with a dummy.
    Compound codes are "the first action, unless IOD conformance needs the next"; a recipe
    line cannot see the IOD, so the line is the first action and the engine's conformance
    pass takes the next where the file's IOD needs it: X/Z, X/D, X/Z/D -> REMOVE; Z/D ->
    REPLACE with a dummy (valid for Type 1 and 2 alike). D on a sequence -> no line: the
    items stay and every other row (they match at every depth) de-identifies them, as does
    X/Z/U* (the instance UIDs inside are replaced by their own U rows).
    """
    code = row.basic
    if row.private:
        if code != "X":
            raise ValueError(f"{row.tag} {row.name}: expected X, found {code!r}")
        return Mapped(row, code, None, f"REMOVE {PRIVATE_SELECTOR}",
                      "every element of an odd group, private creators included", "private")
    selector = selector_for(row)
    vr = row_vr(row)
    if code in ("X", "X/Z", "X/D", "X/Z/D"):
        note = "remove" if code == "X" else "remove; the conformance pass keeps it where the IOD needs it"
        return Mapped(row, code, None, f"REMOVE {selector}", note, "remove")
    if code == "Z":
        return Mapped(row, code, None, f"BLANK {selector}", "zero length", "empty")
    if code == "U":
        if vr not in (None, "UI"):
            raise ValueError(f"{row.tag} {row.name}: U on VR {vr}")
        return Mapped(row, code, None, f"REPLACE {selector} {UID_FUNC}", "keyed UID", "replace")
    if code in ("D", "Z/D"):
        if vr == "SQ":
            items = ITEM_DUMMIES.get(_keyword(row), ())
            note = "kept; the line below and the other rows" if items else "kept; the other rows"
            return Mapped(row, code, None, None, f"{note} de-identify its items", "sequence", items)
        return Mapped(row, code, None, f"REPLACE {selector} {_dummy_for(row)}", "dummy value", "replace")
    if code == "X/Z/U*":
        if vr != "SQ":
            raise ValueError(f"{row.tag} {row.name}: X/Z/U* on VR {vr}")
        return Mapped(row, code, None, None, "kept; instance UIDs inside are replaced by their U rows",
                      "sequence")
    raise ValueError(f"{row.tag} {row.name}: action code {code!r} is not a Basic Profile code")


def _as_basic(row: Row, code: str, option: str, why: str) -> Mapped:
    """An option's C that cannot be carried out on this attribute: the Basic line, saying why."""
    basic = _basic(row)
    return Mapped(row, code, option, basic.line, f"{why}: as the Basic Profile ({basic.note})",
                  basic.effect, basic.items)


def _clean(row: Row, option: str) -> Mapped:
    """An option's C (clean: "replace with values of similar meaning known not to contain
    identifying information"), by what the attribute holds."""
    vr = row_vr(row)
    if row.private:
        if option != _SAFE_PRIVATE:
            raise ValueError(f"{row.name}: C from {option}")
        return Mapped(row, "C", option, f"REMOVE {PRIVATE_SELECTOR} {UNSAFE_PRIVATE}",
                      "every private element not in table E.3.10-1 (matched by creator and element, "
                      "whatever block it lands in), and creators left without one", "private")
    selector = selector_for(row)
    if option == _MODIFIED:
        if vr in ("DA", "DT") or (vr is None and row.name.endswith(("Date", "DateTime"))):
            return Mapped(row, "C", option, f"JITTER {selector} {DATE_SHIFT}",
                          "shifted by the patient's keyed number of days", "replace")
        if vr == "TM" or (vr is None and row.name.endswith("Time")):
            return Mapped(row, "C", option, None, "kept: dates move by whole days, so a time of "
                          "day stays as it is", "keep")
        if vr == "SH" and row.name.startswith("Timezone"):
            return Mapped(row, "C", option, None, "kept: a shift by whole days leaves the offset "
                          "from UTC as it is", "keep")
        if vr in _BINARY_VRS:
            return _as_basic(row, "C", option, "a binary timestamp cannot be shifted")
        raise ValueError(f"{row.tag} {row.name}: Modified Dates C on VR {vr}")
    if option == _DEVICE:
        if vr != "AE":
            raise ValueError(f"{row.tag} {row.name}: Retain Device Identity C on VR {vr}")
        return Mapped(row, "C", option, f"REPLACE {selector} {AE_PSEUDONYM}",
                      "keyed pseudonym of the AE title (the same for the same device)", "replace")
    if row.tag == _OVERLAY_DATA:
        return Mapped(row, "C", option, None, "kept; text drawn into the bitmap cannot be read "
                      "here, so %filter blacklist flags the file for review", "flag")
    if vr == "SQ":
        keyword = _keyword(row)
        late = ["REPLACE CodeMeaning " + CLEAN_TEXT]
        if keyword:
            late.insert(0, f"REPLACE contains:(^|__){keyword}__(.+__)?({'|'.join(CLEANED_IN_ITEMS)})$ "
                        + CLEAN_TEXT)
        if keyword == "ContentSequence":
            late.insert(0, f"REPLACE TextValue {CLEAN_TEXT}")
        return Mapped(row, "C", option, None, "kept; the other rows clean its items, and the lines "
                      "after the rows clean the free text inside", "sequence", late=tuple(late))
    if vr in _BINARY_VRS:
        return _as_basic(row, "C", option, f"binary ({vr}) cannot be cleaned as text")
    if vr is not None and vr not in _TEXT_VRS and row.tag not in MASK_SELECTORS:
        raise ValueError(f"{row.tag} {row.name}: C on VR {vr}")
    return Mapped(row, "C", option, f"REPLACE {selector} {CLEAN_TEXT}",
                  "free text: the file's names, IDs and dates taken out", "clean")


def map_row(row: Row, options: Sequence[str] = ()) -> Mapped:
    """Turn one row into recipe lines under the Basic Profile plus ``options`` (which must not
    conflict: :func:`~.options.check_conflicts`)."""
    code, option = effective_code(row, options)
    if option is None:
        return _basic(row)
    if code == "K":
        sequence = row_vr(row) == "SQ"
        note = "kept (no line); the other rows clean its items" if sequence else "kept (no line)"
        return Mapped(row, code, option, None, note, "sequence" if sequence else "keep")
    if code == "C":
        return _clean(row, option)
    raise ValueError(f"{row.tag} {row.name}: {option} gives {code!r}, expected K or C")


def _order(row: Row) -> tuple[int, str]:
    """Tag order, wildcards as 0; the private row last (its line runs after every other)."""
    return (1, "") if row.private else (0, row.tag.upper().replace("X", "0") + row.tag)


def mapped_rows(options: Sequence[str] = ()) -> list[Mapped]:
    """Every row with its lines under the profile, in the order the recipe writes them."""
    return [map_row(row, options) for row in sorted(e1_1(), key=_order)]


def _row_lines(items: list[Mapped]) -> list[str]:
    """Each row's comment, then its line (or why it has none) and the lines it adds."""
    out: list[str] = []
    for item in items:
        out.append(row_comment(item))
        out.append(item.line if item.line is not None else f"# (no line: {item.note})")
        out.extend(item.items)
    return out


def row_comment(item: Mapped) -> str:
    """The comment line that precedes a row's lines (tests and readers find rows by it)."""
    code = item.row.basic if item.option is None else f"{item.row.basic}; {item.option}: {item.code}"
    return f"# {item.row.tag} {item.row.name} [{code}]"


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
{graphics}
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

GRAPHICS_LABEL = """
# Clean Graphics Option (PS3.15 E.3.3): overlay bitmaps are kept, and text drawn into them
# cannot be read by a recipe; a file that holds one (any overlay group 6000-601E) is
# flagged for a person to review (--clean-pixels quarantines it).
LABEL Overlay kept by the Clean Graphics Option
  present {tags}
""".format(tags=" || present ".join(f"0x60{g:02X}3000" for g in range(0, 0x20, 2)))


def _header(what: Sequence[str]) -> list[str]:
    return [
        "FORMAT dicom",
        "",
        *(f"# {line}" for line in what),
        f"# Table E.1-1 of DICOM PS3.15 edition {EDITION} ({ACKNOWLEDGEMENT}).",
        "#",
        "# GENERATED by deid_workers/recipe/annex_e.py from the tables in",
        "# deid_workers/recipe/data/standard/ (scripts/generate_default_recipe.py writes the",
        "# shipped copies); do not edit by hand.",
        "# Action codes: X, X/Z, X/D and X/Z/D REMOVE (deid-workers' conformance pass keeps",
        "# the attribute, empty or with a dummy, where the file's IOD needs it), Z BLANK,",
        "# D and Z/D REPLACE with a dummy valid for the VR (UIDs: keyed hmac_uid), U REPLACE",
        "# with hmac_uid; D and X/Z/U* on a sequence keep it (the other rows clean its items);",
        "# an option's K keeps (no line), its C cleans. See docs/default-recipe.md and",
        "# docs/profiles.md.",
        "",
    ]


def _method(options: Sequence[str]) -> str:
    """DeidentificationMethod: the profile, in one LO value (the options are named by their
    codes in %labels, which every output carries with their meanings, and by the recipe's
    name, ``profile:basic,<option>...``, in deid-workers' own entry)."""
    more = f" + {len(options)} option{'s' if len(options) > 1 else ''}" if options else ""
    return f"deid-workers basic profile (PS3.15 E.1-1 {EDITION}){more}"


def render_profile(options: Sequence[str] = ()) -> str:
    """The whole recipe of the Basic Profile plus ``options`` (no options: the shipped
    default recipe, ``default.dicom``). Raises :class:`~.options.ProfileError` for options
    that contradict."""
    options = tuple(n for n in OPTIONS if n in set(options))
    check_conflicts(options)
    return _render(options)


@lru_cache(maxsize=64)
def _render(options: tuple[str, ...]) -> str:
    mapped = mapped_rows(options)
    what = ["deid-workers recipe: the DICOM PS3.15 Annex E Basic Application Level",
            "Confidentiality Profile, every attribute row of its table E.1-1,"]
    what += [f"with the {OPTIONS[n].title}," for n in options]
    what += ["plus a header filter for burned-in annotation."]
    out = _header(what)
    graphics = GRAPHICS_LABEL if _GRAPHICS in options else ""
    out += [FILTER_SECTION.format(graphics=graphics).rstrip("\n"), "", "%header", ""]
    public = [m for m in mapped if not m.row.private]
    private = [m for m in mapped if m.row.private]
    out.append(f"# {len(mapped)} rows of table E.1-1, in tag order; each row's comment precedes its line.")
    out.extend(_row_lines(public))
    late = list(dict.fromkeys(line for m in mapped for line in m.late))
    if late:
        out += ["", "# Free text inside the sequences an option cleans (after the rows, so these",
                "# lines win over a dummy that a contained attribute's own row gives)."]
        out += late
    out.append("")
    for item in private:
        out.append(row_comment(item))
        out.append(f"# {item.note}" if item.line is not None else f"# (no line: {item.note})")
        if item.line is not None:
            out.append(item.line)
    out += [
        "",
        "# PS3.15 E.1.1: record that the identity was removed and how.",
        "ADD PatientIdentityRemoved YES",
        f"ADD DeidentificationMethod {_method(options)}",
        "",
        "# PS3.16 CID 7050 codes this recipe implements; deid-workers writes them to",
        "# DeidentificationMethodCodeSequence (see deid_workers/provenance.py).",
        "%labels",
        f"ADD DeidentificationMethodCode {BASIC_CODE}",
        *(f"ADD DeidentificationMethodCode {OPTIONS[n].code}" for n in options),
        "",
    ]
    return "\n".join(out)


def render_option(name: str) -> str:
    """What one option changes in the Basic Profile's recipe, row by row: the shipped
    ``options/<name>.dicom``, for review (a profile is rendered whole, :func:`render_profile`)."""
    option = OPTIONS[name]
    changed = [m for m in mapped_rows((name,)) if m.option == name]
    out = _header([f"deid-workers: the PS3.15 Annex E {option.title}", f"(CID 7050 {option.code})."])
    out += [
        f"# What the option changes in the Basic Profile's recipe (default.dicom): the {len(changed)}",
        "# rows its column names, each with the lines that take the place of the Basic Profile's.",
        "# Not a recipe to use on its own: pick the option with",
        f"#     deid-submit --profile basic,{name}    or    load_recipe(profile=['basic', '{name}'])",
        "# which renders the whole recipe (default.dicom with these rows in place).",
        "",
    ]
    if name == _GRAPHICS:
        out += ["%filter blacklist", GRAPHICS_LABEL.rstrip("\n"), ""]
    out += ["%header", ""]
    out.extend(_row_lines(changed))
    late = list(dict.fromkeys(line for m in changed for line in m.late))
    if late:
        out += ["", "# After every row:"] + late
    out += ["", "%labels", f"ADD DeidentificationMethodCode {option.code}", ""]
    return "\n".join(out)


def source_name(options: Sequence[str]) -> str:
    """The name a rendered profile goes by (recipe sources, provenance, run records)."""
    return f"profile:{profile_name(options)}"
