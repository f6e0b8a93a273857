"""Realistic synthetic DICOM data, made by code, for tests, benchmarks and the demo.

Why our own generator: tests must build their data (no downloads), and leak tests need PHI that
is easy to find again. Every PHI value here is a *sentinel*: a string made from the patient (and
study) number that cannot occur by chance, listed by :func:`phi_strings`, so a test can search
logs, task results, ids files and outputs for any of them.

Everything is deterministic: UIDs derive from ``(patient, study, series, instance)`` and pixel
values from ``seed`` (or from the same numbers when no seed is given), so two workers, or two
test runs, make byte-identical files.
"""

from __future__ import annotations

import io
import os
import uuid
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

__all__ = [
    "DEMO_NAME",
    "PRIVATE_CREATOR",
    "make_dataset",
    "make_high_bit_overlay",
    "phi_strings",
    "truncated_dicom_bytes",
    "uid_for",
    "write_demo_study",
    "write_study_tree",
]

DEMO_NAME = "dicom-cookies"
"""Name of the bundled demo study (after deid's demo data; ours is generated, not copied)."""

PRIVATE_CREATOR = "DEIDWORKERS SYNTH"
"""Private creator of the block (0011,10xx) that carries a PHI value."""

PRIVATE_GROUP = 0x0011

DEMO_PATIENT = 47
"""Patient number of the demo study (so its sentinels differ from a default tree's)."""

DEMO_IMAGES = 7

_SOP_CLASSES = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
    "MR": "1.2.840.10008.5.1.4.1.1.4",  # MR Image Storage
    "US": "1.2.840.10008.5.1.4.1.1.6.1",  # Ultrasound Image Storage
    "CR": "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image Storage
}
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
_UID_NAMESPACE = uuid.UUID("5f0c2b1e-3d4a-4b8e-9a51-7d2f6c0e9b13")


def uid_for(kind: str, *numbers: int) -> str:
    """Deterministic UID for ``kind`` ("study", "series", "instance", ...) and its numbers.

    A ``2.25.`` UID from a name-based (SHA-1) UUID of the inputs: stable across runs and
    machines, unique per input. (pydicom's ``generate_uid(prefix=None)`` ignores its entropy
    sources and is random, so it cannot serve here.)
    """
    name = "/".join(["deid-workers-synth", kind, *map(str, numbers)])
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, name).int}"


def _date(base_year: int, n: int) -> str:
    """A valid DA value that varies with ``n`` (month 1-12, day 1-28)."""
    return f"{base_year:04d}{n % 12 + 1:02d}{n % 28 + 1:02d}"


def _birth_date(patient: int) -> str:
    return _date(1940 + patient % 50, patient)


def _study_date(patient: int, study: int) -> str:
    return _date(2010 + (patient + study) % 14, patient * 7 + study)


def _accession(patient: int, study: int) -> str:
    return f"ACC-{patient:04d}-{study:03d}"


def phi_strings(patient: int, *, studies: int = 1) -> set[str]:
    """Every PHI sentinel :func:`make_dataset` puts in a file of ``patient``.

    ``studies`` adds the study-level values (accession numbers, study dates) of studies
    ``0..studies-1``. Leak tests search logs and results for each of these strings.
    """
    p = f"{patient:04d}"
    out = {
        f"DOE^JANE^P{p}",
        f"PID-{p}-SENT",
        f"OPID-{p}-A",
        f"OPID-{p}-B",
        f"ROE^JANE^P{p}",
        f"DOE^J^P{p}",
        _birth_date(patient),
        f"{p} SENTINEL ST^ANYTOWN",
        f"+1-555-{p}",
        f"SAINT SENTINEL HOSPITAL {p}",
        f"HOUSE^GREGORY^R{p}",
        f"WATSON^JOHN^O{p}",
        f"PRIVATE-PHI-{p}",
        f"MRN-{p}-REQ",
    }
    for study in range(studies):
        out.add(_accession(patient, study))
        out.add(_study_date(patient, study))
        out.add(f"RPID-{p}-{study:03d}")
    return out


def _pixels(rows: int, cols: int, frames: int, samples: int, seed: int,
            text_block: tuple[int, int, int, int] | None = None) -> bytes:
    rng = np.random.default_rng(seed)
    if samples == 1:
        arr = rng.integers(0, 4096, size=(frames, rows, cols), dtype=np.uint16)
    else:
        arr = rng.integers(0, 256, size=(frames, rows, cols, samples), dtype=np.uint8)
    if text_block is not None:
        # A saturated box standing in for burned-in text, at the same place in every frame.
        x0, y0, x1, y1 = text_block
        arr[:, y0:y1, x0:x1, ...] = 4095 if samples == 1 else 255
    data = arr.tobytes()
    return data + b"\0" if len(data) % 2 else data  # DICOM values have even length


def make_dataset(
    patient: int = 0,
    study: int = 0,
    series: int = 0,
    instance: int = 0,
    *,
    rows: int = 8,
    cols: int = 8,
    frames: int = 1,
    samples: int = 1,
    modality: str = "CT",
    phi: bool = True,
    seed: int | None = None,
    text_block: tuple[int, int, int, int] | None = None,
) -> FileDataset:
    """A Part-10 dataset (Explicit VR Little Endian) with realistic, findable PHI.

    ``samples`` is 1 (uint16 MONOCHROME2) or 3 (uint8 RGB). ``phi=False`` gives the same file
    with placeholder identity (PatientID ``ANON-<patient>``), dates fixed at 20000101 and no
    other PHI element, for tests that need a file with none of :func:`phi_strings` in it.
    ``text_block=(x0, y0, x1, y1)`` (x1, y1 exclusive) saturates that box in every frame, as
    burned-in text would be, for pixel-cleaning tests.
    """
    if samples not in (1, 3):
        raise ValueError("samples must be 1 (grey) or 3 (RGB)")
    if rows < 1 or cols < 1 or frames < 1:
        raise ValueError("rows, cols and frames must be >= 1")
    p = f"{patient:04d}"
    sop_class = _SOP_CLASSES.get(modality, _SECONDARY_CAPTURE) if samples == 1 else _SECONDARY_CAPTURE
    sop_instance = uid_for("instance", patient, study, series, instance)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "DEIDW_SYNTH"

    ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    study_date = _study_date(patient, study) if phi else "20000101"
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.InstanceCreationDate = study_date
    ds.InstanceCreationTime = "101500"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance
    ds.StudyDate = study_date
    ds.SeriesDate = study_date
    ds.AcquisitionDate = study_date
    ds.ContentDate = study_date
    ds.StudyTime = f"{9 + series % 8:02d}{instance % 60:02d}12.250000"
    ds.SeriesTime = "093012"
    ds.AcquisitionTime = "093512.5"
    ds.ContentTime = "093513"
    ds.Modality = modality
    ds.Manufacturer = "SYNTHETIC MEDICAL SYSTEMS"
    ds.ManufacturerModelName = "SYNTH-1000"
    ds.StationName = f"SYNTHSTATION{series:02d}"
    ds.StudyDescription = "CHEST W/O CONTRAST"
    ds.SeriesDescription = f"AXIAL {series}"
    ds.BodyPartExamined = "CHEST"
    ds.StudyInstanceUID = uid_for("study", patient, study)
    ds.SeriesInstanceUID = uid_for("series", patient, study, series)
    ds.FrameOfReferenceUID = uid_for("frame", patient, study, series)
    ds.StudyID = f"S{study:04d}"
    ds.SeriesNumber = series + 1
    ds.InstanceNumber = instance + 1
    ds.PatientSex = "F"
    ds.PatientAge = f"{40 + patient % 50:03d}Y"
    ds.SliceThickness = "1.25"
    ds.ImagePositionPatient = [-120.0, -120.0, float(-instance)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PatientPosition = "HFS"
    if phi:
        ds.AccessionNumber = _accession(patient, study)
        ds.InstitutionName = f"SAINT SENTINEL HOSPITAL {p}"
        ds.InstitutionAddress = f"{p} SENTINEL ST^ANYTOWN"
        ds.ReferringPhysicianName = f"HOUSE^GREGORY^R{p}"
        ds.OperatorsName = f"WATSON^JOHN^O{p}"
        ds.PatientName = f"DOE^JANE^P{p}"
        ds.PatientID = f"PID-{p}-SENT"
        ds.PatientBirthDate = _birth_date(patient)
        ds.OtherPatientIDs = [f"OPID-{p}-A", f"OPID-{p}-B"]
        ds.OtherPatientNames = [f"ROE^JANE^P{p}", f"DOE^J^P{p}"]
        ds.PatientAddress = f"{p} SENTINEL ST^ANYTOWN"
        ds.PatientTelephoneNumbers = f"+1-555-{p}"
        request = Dataset()
        request.AccessionNumber = _accession(patient, study)
        request.RequestedProcedureID = f"RPID-{p}-{study:03d}"
        request.ScheduledProcedureStepID = f"SPS-{study:03d}"
        issuer = Dataset()
        issuer.LocalNamespaceEntityID = f"MRN-{p}-REQ"
        request.IssuerOfAccessionNumberSequence = Sequence([issuer])
        ds.RequestAttributesSequence = Sequence([request])
        block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
        block.add_new(0x10, "LO", f"PRIVATE-PHI-{p}")
        block.add_new(0x11, "DS", "42.5")
    else:
        ds.AccessionNumber = ""
        ds.ReferringPhysicianName = ""
        ds.PatientName = "ANONYMOUS"
        ds.PatientID = f"ANON-{p}"
        ds.PatientBirthDate = ""

    if modality == "CT" and samples == 1:
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
    ds.SamplesPerPixel = samples
    ds.Rows = rows
    ds.Columns = cols
    if frames > 1:
        ds.NumberOfFrames = frames
    if samples == 1:
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        vr = "OW"
    else:
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
        ds.BitsAllocated = 8
        ds.BitsStored = 8
        ds.HighBit = 7
        vr = "OB"
    ds.PixelRepresentation = 0
    if seed is None:
        seed = patient * 1_000_003 + study * 10_007 + series * 101 + instance
    ds.add_new(0x7FE00010, vr, _pixels(rows, cols, frames, samples, seed, text_block))
    return ds


def _mark(frames: int, rows: int, cols: int, k: int) -> np.ndarray:
    """A visible mark, different on each frame and for each overlay ``k``: a bar and a stem."""
    bits = np.zeros((frames, rows, cols), np.uint8)
    for f in range(frames):
        bits[f, min(2 + k, rows - 1), 1:max(2, cols - 2 - f)] = 1
        bits[f, 4:max(5, rows - 3), min(3 + 2 * k + f, cols - 1)] = 1
    return bits


def make_high_bit_overlay(
    patient: int = 0,
    *,
    rows: int = 12,
    cols: int = 10,
    frames: int = 1,
    bits_allocated: int = 16,
    bits_stored: int = 12,
    signed: bool = False,
    positions: dict[int, int] | None = None,
    modality: str = "CT",
    seed: int = 0,
) -> tuple[FileDataset, dict[int, np.ndarray]]:
    """:func:`make_dataset` with overlays in the retired form: in unused high bits of the pixel
    words (``positions``: group -> bit, default ``{0x6000: bits_allocated - 1}``), no
    OverlayData; with each overlay's plane as drawn (frames x rows x cols of 0 and 1).

    Pixel values are random within BitsStored (two's complement there when ``signed``, the
    bits above it clear but the overlays'), so a test can tell pixel bits from overlay bits.
    """
    if positions is None:
        positions = {0x6000: bits_allocated - 1}
    ds = make_dataset(patient, rows=rows, cols=cols, frames=frames, modality=modality)
    rng = np.random.default_rng(seed)
    low, high = (-(1 << (bits_stored - 1)), 1 << (bits_stored - 1)) if signed else (0, 1 << bits_stored)
    values = rng.integers(low, high, (frames, rows, cols))
    dtype = np.dtype(f"<u{bits_allocated // 8}")
    words = (values & ((1 << bits_stored) - 1)).astype(dtype)
    planes = {}
    for k, (group, pos) in enumerate(positions.items()):
        planes[group] = _mark(frames, rows, cols, k)
        words |= (planes[group].astype(dtype) << pos).astype(dtype)
        for elem, vr, value in ((0x0010, "US", rows), (0x0011, "US", cols), (0x0040, "CS", "G"),
                                (0x0050, "SS", [1, 1]), (0x0100, "US", bits_allocated),
                                (0x0102, "US", pos)):
            ds.add_new((group << 16) | elem, vr, value)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits_allocated, bits_stored, bits_stored - 1
    ds.PixelRepresentation = int(signed)
    data = words.tobytes()
    ds.add_new(0x7FE00010, "OW" if bits_allocated > 8 else "OB", data + b"\0" * (len(data) % 2))
    return ds, planes


def _save(ds: FileDataset, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def write_study_tree(
    root: str | os.PathLike[str],
    patients: int = 2,
    studies: int = 1,
    series: int = 1,
    images: int = 5,
    *,
    rows: int = 8,
    cols: int = 8,
    corrupt: int = 0,
    nested_dirs: bool = True,
) -> list[str]:
    """Write ``patients x studies x series x images`` files under ``root``; return posix relpaths.

    With ``nested_dirs`` files go to ``patient-PPPP/study-SSS/series-RRR/image-IIII.dcm``,
    otherwise flat in ``root``. ``corrupt`` adds that many broken files at the top, cycling
    through a zero-byte file, a truncated DICOM and a text file named ``.dcm``; their names
    start with ``corrupt-`` and say which kind they are (``corrupt-00-empty.dcm``...).
    """
    base = Path(root)
    written: list[str] = []
    for p in range(patients):
        for st in range(studies):
            for se in range(series):
                for i in range(images):
                    if nested_dirs:
                        rel = f"patient-{p:04d}/study-{st:03d}/series-{se:03d}/image-{i:04d}.dcm"
                    else:
                        rel = f"p{p:04d}-st{st:03d}-se{se:03d}-image-{i:04d}.dcm"
                    _save(make_dataset(p, st, se, i, rows=rows, cols=cols), base / rel)
                    written.append(rel)
    base.mkdir(parents=True, exist_ok=True)
    for k in range(corrupt):
        kind = ("empty", "truncated", "text")[k % 3]
        rel = f"corrupt-{k:02d}-{kind}.dcm"
        target = base / rel
        if kind == "empty":
            target.write_bytes(b"")
        elif kind == "truncated":
            target.write_bytes(truncated_dicom_bytes(k))
        else:
            target.write_text("this is not a DICOM file, just text with a .dcm name\n")
        written.append(rel)
    return written


def truncated_dicom_bytes(n: int = 0) -> bytes:
    """Bytes of a valid Part-10 file cut in the middle of its dataset (headers included).

    Cut inside the header, not in PixelData, so that even a headers-only read must fail.
    """
    buf = io.BytesIO()
    make_dataset(9000 + n).save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    # 128 preamble + 4 "DICM" + file meta (~200 bytes): cut well after, inside the dataset.
    return data[:420]


def write_demo_study(root: str | os.PathLike[str]) -> list[str]:
    """Write the demo study (:data:`DEMO_NAME`): 7 images of one patient into ``root``.

    Like deid's "dicom-cookies" demo (one patient, ``image1.dcm``..``image7.dcm``, PHI in the
    header, a nested sequence and a private tag), but generated here. Returns the relpaths.
    """
    base = Path(root)
    written = []
    for i in range(DEMO_IMAGES):
        rel = f"image{i + 1}.dcm"
        _save(make_dataset(DEMO_PATIENT, 0, 0, i, rows=16, cols=16), base / rel)
        written.append(rel)
    return written
