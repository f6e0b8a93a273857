"""The test-data generator: valid Part-10 files whose PHI sentinels are exactly phi_strings()."""

from __future__ import annotations

import io

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian

from deid_workers import synth


def _bytes(ds: pydicom.Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_make_dataset_is_a_valid_part10_file_with_realistic_phi() -> None:
    ds = synth.make_dataset(3, 1, 2, 4)
    data = _bytes(ds)
    assert data[128:132] == b"DICM"
    back = pydicom.dcmread(io.BytesIO(data))  # force=False: must be conformant
    assert back.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert back.file_meta.MediaStorageSOPInstanceUID == back.SOPInstanceUID
    assert back.file_meta.MediaStorageSOPClassUID == back.SOPClassUID
    assert len(back) >= 35
    assert str(back.PatientName) == "DOE^JANE^P0003"
    assert back.PatientID == "PID-0003-SENT"
    assert list(back.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert len(back.OtherPatientNames) == 2 and len(back.OtherPatientIDs) == 2
    request = back.RequestAttributesSequence[0]
    assert request.AccessionNumber == back.AccessionNumber == "ACC-0003-001"
    assert request.IssuerOfAccessionNumberSequence[0].LocalNamespaceEntityID == "MRN-0003-REQ"
    block = back.private_block(synth.PRIVATE_GROUP, synth.PRIVATE_CREATOR)
    assert block[0x10].value == "PRIVATE-PHI-0003"
    assert back.pixel_array.shape == (8, 8)


def test_every_phi_string_is_in_the_file_and_none_without_phi() -> None:
    with_phi = _bytes(synth.make_dataset(5, 0))
    without = _bytes(synth.make_dataset(5, 0, phi=False))
    strings = synth.phi_strings(5)
    assert len(strings) >= 15
    for s in strings:
        assert s.encode() in with_phi, s
        assert s.encode() not in without, s


def test_phi_strings_differ_between_patients() -> None:
    assert not synth.phi_strings(1) & synth.phi_strings(2) - {synth._birth_date(1)}
    assert synth._accession(1, 2) in synth.phi_strings(1, studies=3)


def test_uids_and_bytes_are_deterministic_and_distinct() -> None:
    assert _bytes(synth.make_dataset(1, 2, 3, 4)) == _bytes(synth.make_dataset(1, 2, 3, 4))
    a, b = synth.make_dataset(1, 0, 0, 0), synth.make_dataset(1, 0, 0, 1)
    assert a.SOPInstanceUID != b.SOPInstanceUID
    assert a.SeriesInstanceUID == b.SeriesInstanceUID and a.StudyInstanceUID == b.StudyInstanceUID
    assert synth.make_dataset(2).StudyInstanceUID != a.StudyInstanceUID
    assert len(a.SOPInstanceUID) <= 64


@pytest.mark.parametrize(
    ("samples", "frames", "shape", "dtype"),
    [(1, 1, (8, 6), "uint16"), (1, 3, (3, 8, 6), "uint16"), (3, 1, (8, 6, 3), "uint8"), (3, 2, (2, 8, 6, 3), "uint8")],
)
def test_pixel_layouts(samples: int, frames: int, shape: tuple[int, ...], dtype: str) -> None:
    ds = pydicom.dcmread(io.BytesIO(_bytes(synth.make_dataset(rows=8, cols=6, frames=frames, samples=samples))))
    arr = ds.pixel_array
    assert arr.shape == shape and arr.dtype == dtype


def test_seed_changes_pixels_only() -> None:
    a, b = synth.make_dataset(seed=1), synth.make_dataset(seed=2)
    assert a.PixelData != b.PixelData and a.SOPInstanceUID == b.SOPInstanceUID


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        synth.make_dataset(samples=2)
    with pytest.raises(ValueError):
        synth.make_dataset(rows=0)


def test_write_study_tree_nested_with_corrupt_files(tmp_path) -> None:
    paths = synth.write_study_tree(tmp_path, patients=2, studies=2, series=1, images=3, corrupt=4)
    assert len(paths) == 2 * 2 * 3 + 4
    assert "patient-0001/study-001/series-000/image-0002.dcm" in paths
    corrupt = sorted(p for p in paths if p.startswith("corrupt-"))
    assert corrupt == ["corrupt-00-empty.dcm", "corrupt-01-truncated.dcm", "corrupt-02-text.dcm",
                       "corrupt-03-empty.dcm"]
    assert (tmp_path / "corrupt-00-empty.dcm").stat().st_size == 0
    for rel in paths:
        assert (tmp_path / rel).is_file()
    ds = pydicom.dcmread(tmp_path / "patient-0001/study-001/series-000/image-0002.dcm")
    assert ds.PatientID == "PID-0001-SENT" and ds.InstanceNumber == 3


def test_write_study_tree_flat(tmp_path) -> None:
    paths = synth.write_study_tree(tmp_path, patients=1, images=2, nested_dirs=False, rows=4, cols=4)
    assert all("/" not in p for p in paths) and len(set(paths)) == 2
    assert pydicom.dcmread(tmp_path / paths[0]).Rows == 4


def test_write_demo_study(tmp_path) -> None:
    paths = synth.write_demo_study(tmp_path / synth.DEMO_NAME)
    assert paths == [f"image{i}.dcm" for i in range(1, 8)]
    datasets = [pydicom.dcmread(tmp_path / synth.DEMO_NAME / p) for p in paths]
    assert {d.PatientID for d in datasets} == {"PID-0047-SENT"}
    assert len({d.SOPInstanceUID for d in datasets}) == 7
    assert all("RequestAttributesSequence" in d and (0x0011, 0x0010) in d for d in datasets)
