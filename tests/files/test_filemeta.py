"""The output's file meta: true to the de-identified data set, written by deid-workers."""

from __future__ import annotations

import io
import uuid

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
)

from deid_workers.dicom.encoder import encode_part10
from deid_workers.files.filemeta import (
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    NoPixelSyntax,
    complete_meta,
    implementation_version_name,
    original_of,
    output_syntax,
)
from deid_workers.recipe.funcs import hmac_uid
from deid_workers.synth import make_dataset

KEY = b"filemeta-key"


def _read(data: bytes) -> pydicom.FileDataset:
    return pydicom.dcmread(io.BytesIO(data))  # no force: a valid Part-10 file


def _encoded(ds: Dataset, *, implicit: bool = False, little: bool = True) -> pydicom.FileDataset:
    """``ds`` written with no preamble nor file meta, in the given encoding, and read back
    as the reader sees such a file."""
    ds.file_meta = FileMetaDataset()
    ds.preamble = None
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, implicit_vr=implicit, little_endian=little, force_encoding=True)
    return pydicom.dcmread(io.BytesIO(buf.getvalue()), force=True)


def test_implementation_names_deid_workers() -> None:
    url = uuid.uuid5(uuid.NAMESPACE_URL, "https://pypi.org/project/deid-workers/")
    assert IMPLEMENTATION_CLASS_UID == f"2.25.{url.int}" and len(IMPLEMENTATION_CLASS_UID) <= 64
    assert implementation_version_name("0.1.0") == "deidworkers0.1.0"
    assert implementation_version_name("1.2") == "deid-workers 1.2"
    assert len(implementation_version_name("10.20.300.dev4")) == 16
    assert IMPLEMENTATION_VERSION_NAME.startswith(("deid-workers", "deidworkers"))


def test_meta_follows_the_data_set_and_names_us() -> None:
    ds = make_dataset(1)
    ds.file_meta.ImplementationClassUID = "1.2.3.4"
    ds.file_meta.ImplementationVersionName = "OTHER_PRODUCT"
    ds.file_meta.SourceApplicationEntityTitle = "ST_MARYS_CT"
    original = original_of(ds)
    ds.SOPInstanceUID = "2.25.42"  # what a recipe put there
    assert complete_meta(ds, original, lambda: KEY, "a.dcm") == ()
    meta = _read(encode_part10(ds)).file_meta
    assert meta.MediaStorageSOPInstanceUID == "2.25.42"
    assert meta.MediaStorageSOPClassUID == ds.SOPClassUID
    assert meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert meta.ImplementationVersionName == IMPLEMENTATION_VERSION_NAME
    assert "SourceApplicationEntityTitle" not in meta  # the sender's, not ours


@pytest.mark.parametrize("how", ["removed", "emptied"])
def test_a_removed_instance_uid_comes_back_as_its_keyed_pseudonym(how: str) -> None:
    ds = make_dataset(2)
    original = original_of(ds)
    before = str(ds.SOPInstanceUID)
    if how == "removed":
        del ds.SOPInstanceUID  # REMOVE SOPInstanceUID, or a REPLACE var: with no value
    else:
        ds.SOPInstanceUID = ""
    complete_meta(ds, original, lambda: KEY, "a.dcm")
    back = _read(encode_part10(ds))
    assert back.SOPInstanceUID == hmac_uid(KEY, before)  # what deid_func:hmac_uid gives
    assert back.file_meta.MediaStorageSOPInstanceUID == back.SOPInstanceUID
    assert before not in encode_part10(ds).decode("latin-1")


def test_no_file_meta_becomes_valid_part10_in_the_encoding_it_was_read() -> None:
    for implicit, little, syntax in ((False, True, ExplicitVRLittleEndian),
                                     (True, True, ImplicitVRLittleEndian),
                                     (False, False, ExplicitVRBigEndian)):
        ds = _encoded(make_dataset(3), implicit=implicit, little=little)
        assert not ds.file_meta
        original = original_of(ds)
        assert complete_meta(ds, original, lambda: KEY, "x") == ()
        back = _read(encode_part10(ds))
        assert back.file_meta.TransferSyntaxUID == syntax
        assert back.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert back.PatientID == "PID-0003-SENT"


def test_missing_transfer_syntax_is_inferred_from_the_bytes() -> None:
    ds = _encoded(make_dataset(4), implicit=True)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    assert output_syntax(ds) == ImplicitVRLittleEndian
    complete_meta(ds, original_of(ds), lambda: KEY, "x")
    assert _read(encode_part10(ds)).file_meta.TransferSyntaxUID == ImplicitVRLittleEndian


def test_syntax_decisions() -> None:
    def ds_with(ts: str | None, implicit: bool, pixels: bytes | None, undefined: bool) -> Dataset:
        ds = _encoded(make_dataset(5), implicit=implicit)
        if ts:
            ds.file_meta.TransferSyntaxUID = ts
        elif "TransferSyntaxUID" in ds.file_meta:
            del ds.file_meta.TransferSyntaxUID
        if pixels is None:
            del ds.PixelData
        else:
            ds.PixelData = pixels
            ds["PixelData"].is_undefined_length = undefined
        return ds

    frag = b"\xfe\xff\x00\xe0\x00\x00\x00\x00"
    # the meta says explicit, the bytes are implicit: the bytes win
    assert output_syntax(ds_with(ExplicitVRLittleEndian, True, b"\0\0", False)) == \
        ImplicitVRLittleEndian
    # compressed pixels keep their compressed syntax (written Explicit VR, as it requires)
    assert output_syntax(ds_with(JPEGBaseline8Bit, True, frag, True)) == JPEGBaseline8Bit
    # a compressed syntax over native pixels: the bytes win
    assert output_syntax(ds_with(RLELossless, False, b"\0\0", False)) == ExplicitVRLittleEndian
    # compressed pixels with no syntax naming the compression: nothing can describe them
    with pytest.raises(NoPixelSyntax):
        output_syntax(ds_with(None, False, frag, True))
    with pytest.raises(NoPixelSyntax):
        output_syntax(ds_with(ExplicitVRLittleEndian, False, frag, True))
    # a private syntax read as explicit little endian is kept; no pixels: no question
    assert output_syntax(ds_with("1.2.3.4.5", False, None, False)) == "1.2.3.4.5"


def test_implicit_data_set_under_a_jpeg_meta_is_written_as_its_syntax_requires(tmp_path) -> None:
    from deid_workers.dicom.reader import read_dataset

    ds = make_dataset(6)
    head = _read_meta_bytes(ds, JPEGBaseline8Bit)
    ds.file_meta = FileMetaDataset()
    ds.preamble = None
    buf = io.BytesIO()
    ds.save_as(buf, implicit_vr=True, little_endian=True)
    data = bytearray(buf.getvalue())
    # A JPEG Baseline meta over the implicit VR data set (what a real file ships with).
    (tmp_path / "x.dcm").write_bytes(head + bytes(data))
    read = read_dataset(tmp_path / "x.dcm", headers_only=False)
    assert read.original_encoding == (True, True)  # the bytes, not the meta
    del read.PixelData  # (the synthetic pixels are native: only the header matters here)
    complete_meta(read, original_of(read), lambda: KEY, "x.dcm")
    back = _read(encode_part10(read))
    assert back.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    assert back.original_encoding == (False, True) and back.PatientID == "PID-0006-SENT"


def _read_meta_bytes(ds: Dataset, syntax: str) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = syntax
    holder = Dataset()
    holder.file_meta = meta
    holder.preamble = b"\0" * 128
    buf = io.BytesIO()
    holder.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_class_and_instance_known_nowhere_are_left_out_and_listed() -> None:
    ds = Dataset()
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds = _encoded(ds, implicit=True)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    missing = complete_meta(ds, original_of(ds), lambda: pytest.fail("no key needed"), "x")
    assert set(missing) == {"SOPClassUID", "SOPInstanceUID"}
    data = encode_part10(ds)  # written all the same, as deid writes it
    assert data[128:132] == b"DICM"
    back = pydicom.dcmread(io.BytesIO(data))
    assert "MediaStorageSOPClassUID" not in back.file_meta
    assert "MediaStorageSOPInstanceUID" not in back.file_meta
    assert back.file_meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert list(back.ImageType) == ["ORIGINAL", "PRIMARY"]


def test_an_instance_uid_only_in_the_meta_is_pseudonymized() -> None:
    ds = Dataset()
    ds.Modality = "CT"
    ds = _encoded(ds)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.999"
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    original = original_of(ds)
    assert complete_meta(ds, original, lambda: KEY, "x") == ()
    back = _read(encode_part10(ds))
    assert back.file_meta.MediaStorageSOPInstanceUID == hmac_uid(KEY, "1.2.3.999")
    assert "SOPInstanceUID" not in back  # the data set stays as it came
