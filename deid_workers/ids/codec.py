"""One file's identifiers as the run store keeps them: its item and fields, packed.

The packing is part of the store's format: every worker of a run reads what any other packed
(:meth:`~deid_workers.run.store.RunStore.save_ids` seals what :func:`pack_fields` makes).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from typing import Any

__all__ = ["pack_fields", "unpack_json", "unpack_fields"]

# Keywords (and a few values) that most files' identifiers share, as a deflate preset
# dictionary: each file's fields are compressed alone (any worker reads any item), and without
# it the keywords, a third of the JSON, would be spelled out in every file. Changing this text
# makes the ids of live runs unreadable: add a new prefix for a new dictionary instead.
_IDS_ZDICT = (json.dumps(dict.fromkeys((
    "KVP", "ExposureTime", "XRayTubeCurrent", "Exposure", "ConvolutionKernel", "PixelSpacing",
    "WindowCenter", "WindowWidth", "RepetitionTime", "EchoTime", "MagneticFieldStrength",
    "ProtocolName", "SoftwareVersions", "DeviceSerialNumber", "PerformingPhysicianName",
    "InstitutionalDepartmentName", "RequestingPhysician", "AcquisitionNumber", "PatientWeight",
    "PatientSize", "PatientComments", "EthnicGroup", "SpacingBetweenSlices", "SliceLocation",
    "PositionReferenceIndicator", "ContrastBolusAgent", "ScanOptions", "DataCollectionDiameter",
    "ReconstructionDiameter", "GantryDetectorTilt", "TableHeight", "RotationDirection",
    "FilterType", "GeneratorPower", "FocalSpots", "ImagesInAcquisition", "LossyImageCompression",
    "SpecificCharacterSet", "ImageType", "InstanceCreationDate", "InstanceCreationTime",
    "SOPClassUID", "SOPInstanceUID", "StudyDate", "SeriesDate", "AcquisitionDate",
    "ContentDate", "StudyTime", "SeriesTime", "AcquisitionTime", "ContentTime",
    "AccessionNumber", "Modality", "Manufacturer", "InstitutionName", "InstitutionAddress",
    "ReferringPhysicianName", "StationName", "StudyDescription", "SeriesDescription",
    "OperatorsName", "ManufacturerModelName", "PatientName", "PatientID", "PatientBirthDate",
    "PatientSex", "OtherPatientIDs", "OtherPatientNames", "PatientAge", "PatientAddress",
    "PatientTelephoneNumbers", "BodyPartExamined", "SliceThickness", "PatientPosition",
    "StudyInstanceUID", "SeriesInstanceUID", "StudyID", "SeriesNumber", "InstanceNumber",
    "ImagePositionPatient", "ImageOrientationPatient", "FrameOfReferenceUID",
    "SamplesPerPixel", "PhotometricInterpretation", "Rows", "Columns", "BitsAllocated",
    "BitsStored", "HighBit", "PixelRepresentation", "RescaleIntercept", "RescaleSlope",
), "")) + '["ORIGINAL","PRIMARY","AXIAL"],"ISO_IR 100","MONOCHROME2","1.2.840.10008.5.1.4.1.1.'
).encode()
_PLAIN_MAX = 48
"""A packed item's JSON up to this length is not deflated (see :func:`pack_fields`)."""
_DEFLATED = b"z"
_STORED = b"p"


def pack_fields(item: str, fields: Mapping[str, Any]) -> bytes:
    """One file's identifiers as sealed in Redis: its item and fields, deflated when long.

    Why deflated: the ids are most of a live run's Redis memory; deflated with a dictionary of
    common keywords they take well under half (benchmarks/measurements.md). Level 3, not the
    default 6: every item of a get or an ids load is packed, and 6 costs more time than the
    little it saves. A short text (a put --ids item holds only what the recipe
    reads: often nothing) is stored as it is. The fields' JSON is spelled as the ids export
    spells it (``json.dumps``' default separators), so the export copies it as it is. The item
    goes inside (its field name is a keyed digest), length-prefixed.
    """
    text = json.dumps(fields)
    raw = item.encode("utf-8")
    body = len(raw).to_bytes(4, "big") + raw + text.encode("utf-8")
    if len(text) <= _PLAIN_MAX:
        return _STORED + body
    co = zlib.compressobj(3, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, _IDS_ZDICT)
    return _DEFLATED + co.compress(body) + co.flush()


def unpack_json(data: bytes) -> tuple[str, bytes]:
    """``(item, fields as JSON text)`` of what :func:`pack_fields` packed."""
    if data[:1] == _DEFLATED:
        do = zlib.decompressobj(15, _IDS_ZDICT)
        body = do.decompress(data[1:]) + do.flush()
    else:
        body = data[1:]
    n = int.from_bytes(body[:4], "big")
    return body[4:4 + n].decode("utf-8"), body[4 + n:]


def unpack_fields(data: bytes) -> tuple[str, dict[str, Any]]:
    """The inverse of :func:`pack_fields`."""
    item, text = unpack_json(data)
    return item, dict(json.loads(text))
