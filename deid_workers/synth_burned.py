"""Burned-in text for the OCR tests and benchmark: the file's own PHI rendered into its pixels.

Built on :func:`deid_workers.synth.make_dataset`: a file gets a name, an ID, a birth date and
an accession number in its header (varied per patient: names from a pool, numeric or lettered
IDs), and the same values are drawn into its pixels in the spellings screens use
("DOE, JANE", "Jane Doe", "DOB: 04-Apr-1987", "MRN 00482913"...), together with harmless
annotation (L, R, kVp, Depth 16 cm...). Each text item varies in font (DejaVu TrueType from
Debian's ``fonts-dejavu-core`` when installed, else Pillow's built-in fonts), size, contrast,
background (on the image or on a banner), position and rotation (0, 90 or 270 degrees).

Every drawn item comes back as a :class:`TruthBox`: its ink (the pixels the text darkened or
lit, at least half opaque), its kind (``phi`` or ``harmless``) and the header field it shows,
so the benchmark can ask whether a redaction covered it. Images are grey (12-bit
MONOCHROME2 with or without a CT window, or MONOCHROME1) or ultrasound-like RGB (some stored as
YBR_FULL); text can also go into an overlay plane (its own OverlayData, or bit 15 of the pixel
data). Deterministic for a given ``seed``. Needs Pillow (the ``ocr`` extra).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import FileDataset
from pydicom.pixels import convert_color_space, pack_bits

from . import synth

__all__ = ["BurnedCase", "TextSpec", "TruthBox", "make_burned_dataset", "make_text_dataset", "font_names",
           "header_values", "render_text", "PHI", "HARMLESS"]

PHI, HARMLESS = "phi", "harmless"

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
_TTF = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf",
        "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf")
BUILTIN_BITMAP = "pillow-bitmap"
BUILTIN_TTF = "pillow-default"

_FAMILIES = ("SMITH", "GARCIA", "MULLER", "NGUYEN", "KOWALSKI", "OKAFOR", "ROSSI", "JOHANSSON",
             "DUBOIS", "TANAKA", "OBRIEN", "SCHMIDT", "PATEL", "HERNANDEZ", "IVANOVA", "WILLIAMS",
             "LEFEBVRE", "ANDERSEN", "MARTINEZ", "BECKER", "COHEN", "DOE", "WEBER", "FISCHER",
             "MORENO", "BAKER", "KHAN", "SILVA", "YILMAZ", "NOVAK")
_GIVEN = ("JANE", "MARIA", "AHMED", "OLIVIA", "LUCAS", "SOFIA", "HIROSHI", "EMMA", "NOAH", "FATIMA",
          "PIOTR", "CHLOE", "ELENA", "JOHN", "AMARA", "LIAM", "YUKI", "MATEO", "ANNA", "OMAR",
          "GRACE", "VIKTOR", "LEILA", "SAMUEL", "INGRID")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

HARMLESS_TEXT: dict[str, tuple[str, ...]] = {
    "*": ("L", "R", "AP", "PA", "LAT", "HFS", "5 cm", "10 cm", "Zoom 1.5", "Im: 14", "Se: 3"),
    "CT": ("120 kV", "250 mA", "W 400 L 40", "W:1500 L:-600", "1.25 mm", "Slice 2.5mm", "kVp 120",
           "ARTERIAL", "SOFT TISSUE"),
    "CR": ("kVp 80", "mAs 3.2", "STANDING", "PORTABLE", "ERECT", "CHEST PA", "80 kVp"),
    "US": ("Gain 52", "Depth 16 cm", "MI 1.1", "TIS 0.4", "C5-1", "FR 28Hz", "THI", "Pwr 100%",
           "DR 60", "ABD", "2D", "Freq 3.5MHz"),
    "MR": ("T2 FLAIR", "TE 90", "TR 9000", "FOV 240", "Slice 5mm", "b 1000", "AX T1"),
}
"""Harmless annotation drawn next to the PHI, per modality (plus the ``*`` list)."""


@dataclass(frozen=True)
class TruthBox:
    """One drawn text item: bounding box (x1/y1 exclusive), ink mask of its value (a label
    before it is drawn but not in ``ink``), kind, field.

    ``source`` is "pixels" or "overlay 6000"; text is on every frame of a multi-frame file.
    """

    x0: int
    y0: int
    x1: int
    y1: int
    kind: str           # PHI or HARMLESS
    field: str          # PatientName, PatientID, PatientBirthDate, AccessionNumber, annotation
    ink: np.ndarray     # bool, (y1-y0) x (x1-x0)
    source: str = "pixels"
    rotation: int = 0
    font: str = ""
    size: int = 0


@dataclass
class BurnedCase:
    """A generated file and the ground truth of what was drawn into it."""

    ds: FileDataset
    truth: list[TruthBox]


def font_names() -> list[str]:
    """Fonts the generator can use here: the DejaVu files present, then Pillow's built-ins."""
    return [f for f in _TTF if (FONT_DIR / f).is_file()] + [BUILTIN_TTF, BUILTIN_BITMAP]


@lru_cache(maxsize=128)
def _font(name: str, size: int) -> Any:
    from PIL import ImageFont

    if name == BUILTIN_BITMAP:
        return ImageFont.load_default_imagefont()
    if name == BUILTIN_TTF:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(str(FONT_DIR / name), size)


def render_text(text: str, font: str, size: int, rotation: int = 0) -> np.ndarray:
    """The text's coverage (float 0-1, tight around the ink), turned by ``rotation`` degrees
    counter-clockwise (0, 90, 180 or 270)."""
    return render_labelled("", text, font, size, rotation)[0]


def render_labelled(label: str, value: str, font: str, size: int, rotation: int = 0
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Coverage of ``label + value`` as :func:`render_text`, and the mask (bool, same shape) of
    the value's part: the columns right of the label's last ink, before turning."""
    from PIL import Image, ImageDraw

    text = label + value
    f = _font(font, size)
    left, top, right, bottom = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), text, font=f)
    pad = 2
    size_px = (right - left + 2 * pad, bottom - top + 2 * pad)
    canvas = Image.new("L", size_px, 0)
    ImageDraw.Draw(canvas).text((pad - left, pad - top), text, fill=255, font=f)
    alpha = np.asarray(canvas, dtype=np.float32) / 255.0
    value_cols = np.ones(alpha.shape[1], bool)
    if label.strip():
        lab = Image.new("L", size_px, 0)
        ImageDraw.Draw(lab).text((pad - left, pad - top), label, fill=255, font=f)
        lab_cols = np.nonzero(np.asarray(lab).max(axis=0) > 0)[0]
        value_cols[:lab_cols.max() + 2] = False
    ys, xs = np.nonzero(alpha > 0)
    alpha = alpha[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    part = np.broadcast_to(value_cols[xs.min():xs.max() + 1], alpha.shape)
    if font == BUILTIN_BITMAP and size >= 16:
        alpha = alpha.repeat(2, axis=0).repeat(2, axis=1)   # the bitmap font is 11 px: double it
        part = part.repeat(2, axis=0).repeat(2, axis=1)
    k = rotation // 90
    return np.rot90(alpha, k=k).copy(), np.rot90(part, k=k).copy()


# -- header values and their spellings on screen --------------------------------------------

def header_values(patient: int, rng: np.random.Generator) -> dict[str, str]:
    family = _FAMILIES[patient % len(_FAMILIES)]
    given = _GIVEN[(patient * 7 + 3) % len(_GIVEN)]
    style = patient % 3
    if style == 0:
        pid = f"{(patient * 7919 + 104729) % 10**8:08d}"
    elif style == 1:
        pid = f"PID-{patient:04d}-SENT"
    else:
        pid = f"{chr(65 + patient % 26)}{chr(65 + (patient // 26) % 26)}{(patient * 31337) % 10**6:06d}"
    birth = dt.date(1935 + patient % 70, 1 + patient % 12, 1 + (patient * 5) % 28)
    if patient % 2:
        acc = f"{2015 + patient % 10}{(patient * 104723) % 10**7:07d}"
    else:
        acc = f"ACC-{patient:04d}-{patient % 7:03d}"
    return {"PatientName": f"{family}^{given}", "PatientID": pid,
            "PatientBirthDate": birth.strftime("%Y%m%d"), "AccessionNumber": acc,
            "family": family, "given": given}


def _identify(ds: Any, values: dict[str, Any]) -> None:
    """The file's header names the patient whose text is burned into its pixels."""
    ds.PatientName = values["PatientName"]
    ds.PatientID = values["PatientID"]
    ds.PatientBirthDate = values["PatientBirthDate"]
    ds.AccessionNumber = values["AccessionNumber"]
    ds.RequestAttributesSequence[0].AccessionNumber = values["AccessionNumber"]


def spell(field: str, values: dict[str, str], rng: np.random.Generator) -> tuple[str, str]:
    """How a screen shows ``field``: (label, value), e.g. ("DOB: ", "04-Apr-1987"); the label
    may be empty. Only the value is PHI: the benchmark asks whether its ink was covered."""
    def pick(forms: tuple[tuple[str, str], ...]) -> tuple[str, str]:
        return forms[int(rng.integers(len(forms)))]

    if field == "PatientName":
        f, g = values["family"], values["given"]
        return pick((("", f"{f}, {g}"), ("", f"{g} {f}"), ("", f"{f} {g}"), ("", f"{f}^{g}"),
                     ("Name: ", f"{f}, {g}"), ("", f"{f.title()}, {g.title()}"),
                     ("", f"{g.title()} {f.title()}"), ("Patient: ", f"{g} {f}")))
    if field == "PatientID":
        pid = values["PatientID"]
        return pick((("", pid), ("ID: ", pid), ("MRN ", pid), ("Pat ID: ", pid)))
    if field == "PatientBirthDate":
        d = dt.datetime.strptime(values["PatientBirthDate"], "%Y%m%d").date()
        mon = _MONTHS[d.month - 1]
        forms = (d.strftime("%Y-%m-%d"), d.strftime("%d/%m/%Y"), d.strftime("%m/%d/%Y"),
                 d.strftime("%d.%m.%Y"), f"{d.day:02d}-{mon}-{d.year}", f"{mon} {d.day}, {d.year}",
                 f"{d.day} {mon.upper()} {d.year}", d.strftime("%Y%m%d"))
        text = forms[int(rng.integers(len(forms)))]
        prefix = ("", "DOB: ", "Born ", "DOB ")[int(rng.integers(4))]
        return prefix, text
    acc = values["AccessionNumber"]
    return pick((("", acc), ("Acc: ", acc), ("ACC# ", acc), ("Accession ", acc)))


# -- backgrounds ------------------------------------------------------------------------------

def _grey_background(rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """A display-domain (0-255) grey picture: a body-like ellipse with soft blobs and noise."""
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    cy, cx = rows * rng.uniform(0.4, 0.6), cols * rng.uniform(0.4, 0.6)
    ry, rx = rows * rng.uniform(0.3, 0.45), cols * rng.uniform(0.3, 0.45)
    body = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    img = np.where(body, rng.uniform(70, 130), rng.uniform(0, 25)).astype(np.float32)
    for _ in range(int(rng.integers(2, 6))):
        by, bx = rng.uniform(cy - ry, cy + ry), rng.uniform(cx - rx, cx + rx)
        r = rng.uniform(0.05, 0.2) * min(rows, cols)
        img += rng.uniform(-60, 110) * np.exp(-(((yy - by) ** 2 + (xx - bx) ** 2) / (2 * r * r))) * body
    img += rng.normal(0, rng.uniform(2, 14), size=img.shape).astype(np.float32)
    return np.clip(img, 0, 255)


def _us_background(rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """A display-domain RGB ultrasound screen: black, a speckled sector, sometimes a colour box."""
    img = np.zeros((rows, cols, 3), np.float32)
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    apex_y, apex_x = rows * 0.08, cols * rng.uniform(0.45, 0.55)
    r = np.hypot(yy - apex_y, xx - apex_x)
    angle = np.degrees(np.arctan2(xx - apex_x, yy - apex_y))
    half = rng.uniform(30, 40)
    sector = (np.abs(angle) <= half) & (r > rows * 0.05) & (r < rows * rng.uniform(0.75, 0.9))
    speckle = rng.rayleigh(rng.uniform(25, 45), size=(rows, cols)).astype(np.float32)
    depth_fade = np.clip(1.2 - r / rows, 0.3, 1.0)
    grey = np.clip(speckle * depth_fade, 0, 255) * sector
    img[:] = grey[:, :, None]
    if rng.random() < 0.4:  # a colour Doppler box
        y0, x0 = int(rows * 0.3), int(apex_x - cols * 0.08)
        patch = (slice(y0, y0 + rows // 6), slice(x0, x0 + cols // 7))
        red = rng.random(img[patch][..., 0].shape) < 0.3
        img[patch][..., 0] = np.where(red, 200, img[patch][..., 0])
        img[patch][..., 2] = np.where(~red & (rng.random(red.shape) < 0.2), 220, img[patch][..., 2])
    return img


# -- placement and drawing --------------------------------------------------------------------

def _place(h: int, w: int, rows: int, cols: int, taken: list[tuple[int, int, int, int]],
           rng: np.random.Generator) -> tuple[int, int] | None:
    """Top-left of an h x w item clear of ``taken`` (inflated), near an edge 70% of the time."""
    gap = 8
    if h + 4 > rows or w + 4 > cols:
        return None
    for _ in range(60):
        if rng.random() < 0.7:
            top = int(rng.integers(2, max(3, rows // 6)))
            bottom = int(rng.integers(max(2, rows - rows // 6 - h), rows - h - 1))
            y = top if rng.random() < 0.5 else bottom
            x = int(rng.integers(2, cols - w - 1))
            if rng.random() < 0.3:   # along a side instead
                left = int(rng.integers(2, max(3, cols // 8)))
                right = max(2, cols - w - 2 - int(rng.integers(0, max(1, cols // 8))))
                x = left if rng.random() < 0.5 else right
                y = int(rng.integers(2, rows - h - 1))
        else:
            y, x = int(rng.integers(2, rows - h - 1)), int(rng.integers(2, cols - w - 1))
        box = (x - gap, y - gap, x + w + gap, y + h + gap)
        if all(box[2] <= t[0] or t[2] <= box[0] or box[3] <= t[1] or t[3] <= box[1] for t in taken):
            taken.append((x, y, x + w, y + h))
            return y, x
    return None


def _draw(img: np.ndarray, alpha: np.ndarray, y: int, x: int, colour: np.ndarray, banner: np.ndarray | None) -> None:
    h, w = alpha.shape
    region = img[y:y + h, x:x + w]
    if banner is not None:
        by0, bx0 = max(0, y - 3), max(0, x - 3)
        img[by0:y + h + 3, bx0:x + w + 3] = banner
        region = img[y:y + h, x:x + w]
    a = alpha[:, :, None] if img.ndim == 3 else alpha
    region[...] = region * (1 - a) + colour * a


def _colour(img: np.ndarray, y: int, x: int, h: int, w: int, rgb: bool, rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray | None]:
    """Text colour (and banner colour or None) with a contrast drawn from high to low."""
    local = float(img[y:y + h, x:x + w].mean())
    banner = None
    if rng.random() < 0.25:
        level = rng.uniform(0, 60) if rng.random() < 0.7 else rng.uniform(180, 255)
        banner = np.array([level] * 3 if rgb else level, np.float32)
        local = level
    contrast = rng.choice([rng.uniform(150, 255), rng.uniform(90, 150), rng.uniform(60, 90)], p=[0.6, 0.3, 0.1])
    value = local + contrast if local < 128 else local - contrast
    value = float(np.clip(value, 0, 255))
    if not rgb:
        return np.array(value, np.float32), banner
    tint = [(1, 1, 1), (1, 1, 0.2), (0.3, 1, 0.3), (0.3, 1, 1), (1, 0.8, 0.3)][int(rng.integers(5))]
    if value < 128:
        tint = (1, 1, 1)
    return np.array([value * t for t in tint], np.float32), banner


def make_burned_dataset(
    patient: int = 0,
    instance: int = 0,
    *,
    rgb: bool = False,
    rows: int | None = None,
    cols: int | None = None,
    frames: int = 1,
    modality: str | None = None,
    seed: int | None = None,
    phi_fields: Sequence[str] = ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber"),
    harmless: int | None = None,
    overlay: str | None = None,
    fonts: Sequence[str] | None = None,
    rotations: Sequence[int] = (0, 0, 0, 0, 90, 270),
    photometric: str | None = None,
) -> BurnedCase:
    """A file whose header PHI is also drawn into its pixels; see the module docstring.

    - ``rgb``: an ultrasound-like RGB screen (default 800 x 600, US) instead of a grey image
      (default 512 x 512, CT, CR or MR by ``patient``).
    - ``phi_fields``: which header values to draw (each once); ``harmless``: how many
      annotation items (default 2-4).
    - ``overlay``: None, ``"data"`` (the first PHI item goes into overlay 6000's own
      OverlayData instead of the pixels) or ``"highbit"`` (into bit 15 of the pixel data).
    - ``photometric`` (grey only): ``"MONOCHROME2-window"``, ``"MONOCHROME2"`` or
      ``"MONOCHROME1"``; RGB files are RGB or YBR_FULL. Default: varied by ``seed``.
    """
    if seed is None:
        seed = patient * 1009 + instance
    rng = np.random.default_rng(seed)
    if modality is None:
        modality = "US" if rgb else ("CT", "CR", "MR")[patient % 3]
    rows = rows or (600 if rgb else 512)
    cols = cols or (800 if rgb else 512)
    ds = synth.make_dataset(patient, 0, 0, instance, rows=1, cols=1, frames=1, samples=3 if rgb else 1,
                            modality=modality, seed=seed)
    values = header_values(patient, rng)
    _identify(ds, values)
    ds.OtherPatientNames = [f"{values['family']}^{values['given'][0]}"]
    ds.Rows, ds.Columns = rows, cols
    if frames > 1:
        ds.NumberOfFrames = frames

    background = _us_background(rows, cols, rng) if rgb else _grey_background(rows, cols, rng)
    fonts = list(fonts or font_names())
    items = [(PHI, f) for f in phi_fields]
    pool = HARMLESS_TEXT["*"] + HARMLESS_TEXT.get(modality, ())
    n_harmless = int(rng.integers(2, 5)) if harmless is None else harmless
    items += [(HARMLESS, str(pool[int(rng.integers(len(pool)))])) for _ in range(n_harmless)]

    img = background.copy()
    over_bits = np.zeros((rows, cols), bool)
    truth: list[TruthBox] = []
    taken: list[tuple[int, int, int, int]] = []
    overlay_pending = overlay
    for kind, what in items:
        label, text = spell(what, values, rng) if kind == PHI else ("", what)
        font = fonts[int(rng.integers(len(fonts)))]
        size = int(rng.integers(11, 27))
        rotation = int(rotations[int(rng.integers(len(rotations)))])
        alpha, part = render_labelled(label, text, font, size, rotation)
        h, w = alpha.shape
        spot = _place(h, w, rows, cols, taken, rng)
        if spot is None:
            continue
        y, x = spot
        ink = (alpha >= 0.5) & part        # a label ("DOB: ") is not PHI: only the value's ink counts
        source = "pixels"
        if kind == PHI and overlay_pending:
            over_bits[y:y + h, x:x + w] |= alpha >= 0.5
            source = "overlay 6000"
            overlay_pending = None
        else:
            colour, banner = _colour(img, y, x, h, w, rgb, rng)
            _draw(img, alpha, y, x, colour, banner)
        truth.append(TruthBox(x, y, x + w, y + h, kind, what if kind == PHI else "annotation", ink,
                              source, rotation, font, size))

    _store_pixels(ds, img, frames, rgb, rng, photometric, over_bits if overlay == "highbit" else None)
    if overlay is not None and over_bits.any():
        _store_overlay(ds, over_bits, rows, cols, highbit=overlay == "highbit")
    return BurnedCase(ds, truth)


@dataclass(frozen=True)
class TextSpec:
    """One text item placed by hand (tests): what, where (top-left of the ink), how."""

    text: str
    x: int
    y: int
    size: int = 20
    rotation: int = 0
    kind: str = HARMLESS
    field: str = "annotation"
    source: str = "pixels"     # or "overlay 6000"


def make_text_dataset(
    specs: Sequence[TextSpec],
    *,
    patient: int = 0,
    rows: int = 256,
    cols: int = 256,
    rgb: bool = False,
    frames: int = 1,
    photometric: str = "MONOCHROME2",
    font: str | None = None,
    modality: str | None = None,
    overlay: str = "data",
) -> BurnedCase:
    """A file with exactly ``specs`` drawn, white on a dark, slightly noisy background.

    The header carries :func:`header_values` of ``patient`` (so a spec can spell them).
    Items whose source is an overlay go into overlay 6000 (``overlay`` "data" or "highbit").
    """
    rng = np.random.default_rng(patient)
    modality = modality or ("US" if rgb else "CT")
    ds = synth.make_dataset(patient, 0, 0, 0, rows=1, cols=1, samples=3 if rgb else 1, modality=modality,
                            seed=patient)
    values = header_values(patient, rng)
    _identify(ds, values)
    ds.Rows, ds.Columns = rows, cols
    if frames > 1:
        ds.NumberOfFrames = frames
    shape = (rows, cols, 3) if rgb else (rows, cols)
    img = np.clip(rng.normal(30, 4, size=shape), 0, 255).astype(np.float32)
    over_bits = np.zeros((rows, cols), bool)
    truth = []
    chosen = font or (font_names()[0])
    for spec in specs:
        alpha = render_text(spec.text, chosen, spec.size, spec.rotation)
        h, w = alpha.shape
        if spec.y + h > rows or spec.x + w > cols:
            raise ValueError(f"text item does not fit at ({spec.x}, {spec.y}): {w} x {h} pixels")
        if spec.source == "pixels":
            _draw(img, alpha, spec.y, spec.x, np.array([235.0] * 3 if rgb else 235.0, np.float32), None)
        else:
            over_bits[spec.y:spec.y + h, spec.x:spec.x + w] |= alpha >= 0.5
        truth.append(TruthBox(spec.x, spec.y, spec.x + w, spec.y + h, spec.kind, spec.field, alpha >= 0.5,
                              spec.source, spec.rotation, chosen, spec.size))
    high = over_bits if overlay == "highbit" and over_bits.any() else None
    _store_pixels(ds, img, frames, rgb, rng, photometric, high)
    if over_bits.any():
        _store_overlay(ds, over_bits, rows, cols, highbit=overlay == "highbit")
    return BurnedCase(ds, truth)


def _store_pixels(ds: FileDataset, img: np.ndarray, frames: int, rgb: bool, rng: np.random.Generator,
                  photometric: str | None, highbit: np.ndarray | None) -> None:
    """Display image -> stored pixel data (frames differ only by a little noise)."""
    layers = []
    for f in range(frames):
        noisy = img if f == 0 else np.clip(img + rng.normal(0, 2, size=img.shape), 0, 255)
        layers.append(noisy)
    stack = np.stack(layers)
    if rgb:
        data8 = np.clip(stack + 0.5, 0, 255).astype(np.uint8)
        ds.PhotometricInterpretation = "RGB"
        if (photometric or ("YBR_FULL" if rng.random() < 0.25 else "RGB")) == "YBR_FULL":
            data8 = convert_color_space(data8, "RGB", "YBR_FULL")
            ds.PhotometricInterpretation = "YBR_FULL"
        ds.PixelData = _even(data8.tobytes())
        return
    kind = photometric or ("MONOCHROME2-window", "MONOCHROME2", "MONOCHROME1")[int(rng.integers(3))]
    for name in ("RescaleIntercept", "RescaleSlope", "WindowCenter", "WindowWidth"):
        if name in ds:
            delattr(ds, name)
    if kind == "MONOCHROME2-window":
        center, width = float(rng.choice([40, 50, 300, -600])), float(rng.choice([350, 400, 1500, 2000]))
        hu = center - width / 2 + stack / 255.0 * width
        stored = np.clip(np.round(hu + 1024), 0, 4095)
        ds.RescaleIntercept, ds.RescaleSlope = "-1024", "1"
        ds.WindowCenter, ds.WindowWidth = f"{center:g}", f"{width:g}"
        ds.PhotometricInterpretation = "MONOCHROME2"
    elif kind == "MONOCHROME2":
        stored = np.round(stack * 16)
        ds.PhotometricInterpretation = "MONOCHROME2"
    else:
        stored = np.round((255 - stack) * 16)
        ds.PhotometricInterpretation = "MONOCHROME1"
    words = np.clip(stored, 0, 4095).astype(np.uint16)
    if highbit is not None:
        words[:, highbit] |= np.uint16(1 << 15)
    ds.PixelData = _even(words.astype("<u2").tobytes())


def _store_overlay(ds: FileDataset, bits: np.ndarray, rows: int, cols: int, *, highbit: bool) -> None:
    ds.add_new(0x60000010, "US", rows)
    ds.add_new(0x60000011, "US", cols)
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", [1, 1])
    ds.add_new(0x60000100, "US", 16 if highbit else 1)
    ds.add_new(0x60000102, "US", 15 if highbit else 0)
    if not highbit:
        ds.add_new(0x60003000, "OW", _even(pack_bits(bits.astype(np.uint8).ravel())))


def _even(data: bytes) -> bytes:
    return data + b"\0" if len(data) % 2 else data
