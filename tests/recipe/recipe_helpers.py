"""Helpers for recipe tests (imported by bare name), built in memory: valid file meta, nested sequences, a private
block and multi-valued fields, with sentinel PHI values tests can look for."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from io import BytesIO
from typing import Any

import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from deid_workers.recipe import parse_recipe
from deid_workers.recipe.model import Recipe

SOP_CLASS = "1.2.840.10008.5.1.4.1.1.7"
SOP_INSTANCE = "1.2.826.0.1.3680043.8.498.1001"
CREATOR = "Siemens: Thorax/Multix FD Post Processing"


def make_dataset(**elements: Any) -> FileDataset:
    """A small Part-10 dataset; keyword arguments set (or, with None, delete) elements."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SOP_CLASS
    meta.MediaStorageSOPInstanceUID = SOP_INSTANCE
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = "1.2.826.0.1.3680043.8.498.1"
    ds = FileDataset("test.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = SOP_CLASS
    ds.SOPInstanceUID = SOP_INSTANCE
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.2001"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.3001"
    ds.PatientName = "SENTINEL^PATIENT"
    ds.PatientID = "SENTINEL-ID-1"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.AccessionNumber = "ACC-TOP-1"
    ds.StudyDate = "20200115"
    ds.StudyTime = "011635.943"
    ds.AcquisitionDateTime = "20200115120000.000000"
    ds.Manufacturer = "ACME"
    ds.ManufacturerModelName = "Model X"
    ds.InstitutionName = "SENTINEL HOSPITAL"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.OtherPatientIDs = ["OTHER-1", "OTHER-2"]
    ds.Modality = "CT"
    ds.Rows = 2
    ds.Columns = 2
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.SamplesPerPixel = 1
    ds.PixelRepresentation = 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = b"\x01\x02\x03\x04"
    req = Dataset()
    req.AccessionNumber = "ACC-NESTED-1"
    req.RequestedProcedureID = "RP-1"
    code = Dataset()
    code.CodeValue = "C1"
    code.CodeMeaning = "Meaning"
    req.RequestedProcedureCodeSequence = Sequence([code])
    req2 = Dataset()
    req2.AccessionNumber = "ACC-NESTED-2"
    ds.RequestAttributesSequence = Sequence([req, req2])
    ref = Dataset()
    ref.ReferencedSOPClassUID = SOP_CLASS
    ref.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.8.498.9001"
    ds.ReferencedImageSequence = Sequence([ref])
    block = ds.private_block(0x0021, CREATOR, create=True)
    block.add_new(0x15, "LO", "SENTINEL PRIVATE")
    block.add_new(0x16, "DA", "20200115")
    other = ds.private_block(0x0033, "MITRA OBJECT UTF8 ATTRIBUTES 1.0", create=True)
    other.add_new(0x1E, "LO", "SENTINEL^MITRA")
    for key, value in elements.items():
        if value is None:
            if key in ds:
                delattr(ds, key)
        else:
            setattr(ds, key, value)
    return ds


def roundtrip(ds: Dataset, enforce: bool = False) -> Dataset:
    """Write with pydicom and read back: what a downstream reader sees."""
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=enforce)
    buf.seek(0)
    return pydicom.dcmread(buf)


def recipe_of(header: str, extra: str = "") -> Recipe:
    return parse_recipe(f"FORMAT dicom\n{extra}\n%header\n{header}\n", "test.dicom")


@contextlib.contextmanager
def hang_guard(seconds: float) -> Iterator[None]:
    """Fail instead of hanging: the work under test takes milliseconds, the attacks the tests
    replay ran for minutes or hours before their fix. Not a speed target, only a bound on a
    hang (SIGALRM also interrupts the re engine)."""

    def expired(signum: int, frame: object) -> None:
        raise AssertionError(f"still running after {seconds} s: something backtracks")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
