"""read_dataset's short reasons, the truncation checks, the layout proof and big files."""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import pydicom
import pytest
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from deid_workers import synth
from deid_workers.dicom import reader
from deid_workers.errors import InputError


def _file_bytes(patient: int = 1) -> bytes:
    buf = io.BytesIO()
    synth.make_dataset(patient).save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _reason(path: Path, headers_only: bool = True) -> str:
    with pytest.raises(InputError) as info:
        reader.read_dataset(path, headers_only=headers_only)
    assert info.value.reason in reader.REASONS
    return info.value.reason


def test_reads_headers_only_or_whole(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.dcm", _file_bytes())
    head = reader.read_dataset(path, headers_only=True)
    assert "PixelData" not in head and head.PatientID == "PID-0001-SENT"
    full = reader.read_dataset(path, headers_only=False)
    assert full.pixel_array.shape == (8, 8)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", reader.EMPTY),
        (b"hello, this is text named .dcm\n" * 10, reader.NOT_DICOM),
        (b"\0" * 128 + b"DICM", reader.CORRUPT),  # preamble only
        (b"{\"PatientID\": \"x\"}", reader.NOT_DICOM),
    ],
)


def test_reasons_for_non_dicom(tmp_path: Path, data: bytes, reason: str) -> None:
    path = _write(tmp_path / "x.dcm", data)
    assert _reason(path, True) == reason
    assert _reason(path, False) == reason


def test_corrupt_files_of_the_study_tree(tmp_path: Path) -> None:
    paths = synth.write_study_tree(tmp_path, patients=1, images=1, corrupt=3)
    reasons = {}
    for rel in paths:
        try:
            reader.read_dataset(tmp_path / rel, headers_only=True, name=rel)
        except InputError as exc:
            assert exc.path == rel  # the caller's (relative) name, not the absolute path
            reasons[rel] = exc.reason
    assert reasons == {
        "corrupt-00-empty.dcm": reader.EMPTY,
        "corrupt-01-truncated.dcm": reader.CORRUPT,
        "corrupt-02-text.dcm": reader.NOT_DICOM,
    }


def _offset(data: bytes, needle: bytes) -> int:
    at = data.index(needle)
    assert data.count(needle) == 1
    return at


@pytest.mark.parametrize("headers_only", [True, False])
@pytest.mark.parametrize(
    "where",
    ["inside file meta", "inside a value", "inside an element header", "inside pixel data", "inside pixel header"],
)


def test_truncation_is_detected(tmp_path: Path, where: str, headers_only: bool) -> None:
    data = _file_bytes()
    pixel_tag = _offset(data, b"\xe0\x7f\x10\x00OW")
    cut = {
        "inside file meta": 170,
        "inside a value": _offset(data, b"DOE^JANE^P0001") + 5,
        "inside an element header": _offset(data, b"\x10\x00\x20\x00LO") + 3,  # (0010,0020) PatientID
        "inside pixel data": len(data) - 10,
        "inside pixel header": pixel_tag + 10,
    }[where]
    path = _write(tmp_path / "cut.dcm", data[:cut])
    assert _reason(path, headers_only) == reader.CORRUPT


def test_every_cut_fails_cleanly_or_is_an_element_boundary(tmp_path: Path) -> None:
    """No cut escapes as another exception; the only accepted cuts are between elements
    (such a file is a valid, shorter DICOM), and there are few of those."""
    data = _file_bytes()
    accepted = []
    path = tmp_path / "cut.dcm"
    for cut in range(0, len(data), 3):
        path.write_bytes(data[:cut])
        try:
            ds = reader.read_dataset(path, headers_only=False)
        except InputError:
            continue
        accepted.append(cut)
        assert "PixelData" not in ds  # it ended at a boundary before the pixels
    assert len(accepted) < len(data) // 3 // 10


@pytest.mark.parametrize("headers_only", [True, False])
def test_damage_inside_a_sequence_item_is_detected(tmp_path: Path, headers_only: bool) -> None:
    """Nested elements are not converted at read time; their headers are still checked."""
    data = _file_bytes()
    vr_at = _offset(data, b"\x40\x00\x09\x00SH") + 4  # (0040,0009) inside a sequence item
    path = _write(tmp_path / "vr.dcm", data[:vr_at] + b"S\x00" + data[vr_at + 2:])
    assert _reason(path, headers_only) == reader.CORRUPT
    length_at = vr_at + 2  # its 2-byte length, now past the end of the item
    path = _write(tmp_path / "len.dcm", data[:length_at] + b"\xf0\x00" + data[length_at + 2:])
    assert _reason(path, headers_only) == reader.CORRUPT


def test_file_without_preamble_is_accepted(tmp_path: Path) -> None:
    data = _file_bytes(4)
    path = _write(tmp_path / "nopre.dcm", data[132:])
    ds = reader.read_dataset(path, headers_only=False)
    assert ds.PatientID == "PID-0004-SENT" and ds.file_meta.TransferSyntaxUID


def test_bare_dataset_without_file_meta_is_accepted(tmp_path: Path) -> None:
    ds = synth.make_dataset(6)
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, True
    write_dataset(fp, ds)
    path = _write(tmp_path / "bare.dcm", fp.getvalue())
    assert reader.read_dataset(path, headers_only=True).PatientID == "PID-0006-SENT"


def test_binary_that_only_starts_like_dicom_is_refused(tmp_path: Path) -> None:
    # (0008,0005) CS with a sane header, then garbage: forced read gives no SOP UIDs.
    path = _write(tmp_path / "fake.dcm", b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100" + b"\xff" * 40)
    assert _reason(path) in (reader.NOT_DICOM, reader.CORRUPT)


def test_not_regular_missing_and_fifo(tmp_path: Path) -> None:
    assert _reason(tmp_path) == reader.NOT_REGULAR
    assert _reason(tmp_path / "nope.dcm") == reader.MISSING
    fifo = tmp_path / "fifo.dcm"
    os.mkfifo(fifo)
    assert _reason(fifo) == reader.NOT_REGULAR  # and did not block on open()


def test_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "a.dcm", _file_bytes())

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "denied")

    monkeypatch.setattr(reader, "open", refuse, raising=False)  # root ignores chmod
    assert _reason(path) == reader.PERMISSION


def test_reasons_never_quote_header_values(tmp_path: Path) -> None:
    data = _file_bytes(8)
    messages = []
    for cut in (200, 400, 600, 900, len(data) - 3):
        path = _write(tmp_path / f"c{cut}.dcm", data[:cut])
        with pytest.raises(InputError) as info:
            reader.read_dataset(path, headers_only=False)
        messages.append(str(info.value))
    for s in synth.phi_strings(8):
        assert not any(s in m for m in messages)


# --- reading from memory: the layout proof, its replay, big files -----------------------------


def _variants() -> dict[str, bytes]:
    """Files whose reads take each path: the layout proof, and each case left to the replay."""
    from pydicom.sequence import Sequence
    from pydicom.uid import DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian

    out = {"explicit": _file_bytes(), "nopre": _file_bytes(2)[132:]}
    for name, ts in (("implicit", ImplicitVRLittleEndian), ("deflated", DeflatedExplicitVRLittleEndian)):
        ds = synth.make_dataset(3)
        ds.file_meta.TransferSyntaxUID = ts
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        out[name] = buf.getvalue()
    ds = synth.make_dataset(4)
    ds.RequestAttributesSequence.is_undefined_length = True
    ds.ReferencedStudySequence = Sequence([pydicom.Dataset()])
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    out["undefined"] = buf.getvalue()
    out["trailing"] = out["explicit"] + b"\0" * 9
    return out


def _outcome(path: Path, headers_only: bool) -> object:
    try:
        ds = reader.read_dataset(path, headers_only=headers_only)
    except InputError as exc:
        return exc.reason
    return sorted(ds.keys()), len(ds.get("PixelData", b"")), ds.original_encoding


@pytest.mark.parametrize("variant", ["explicit", "nopre", "implicit", "deflated", "undefined", "trailing", "big"])
def test_layout_proof_agrees_with_the_read_watch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variant: str) -> None:
    """Every cut of the file gives the same outcome whether the layout proves the reads
    complete or every read is replayed through _ShortReadWatch (the former behaviour)."""
    if variant == "big":  # parsed from the open file, not from memory
        data = _big_bytes(100_000)
        pixel_tag = data.rindex(b"\xe0\x7f\x10\x00OW")
        cuts = [*range(reader._WHOLE_MAX + 1, pixel_tag, 1999), *range(pixel_tag - 20, pixel_tag + 20),
                *range(len(data) - 20, len(data) + 1)]
    else:
        data = _variants()[variant]
        cuts = [*range(0, len(data), 13), *range(len(data) - 20, len(data) + 1)]
    path = tmp_path / "v.dcm"
    fast = {}
    for cut in cuts:
        path.write_bytes(data[:cut])
        fast[cut] = (_outcome(path, True), _outcome(path, False))
    monkeypatch.setattr(reader, "_sequential_end", lambda *args: None)
    monkeypatch.setattr(reader, "parse_part10", lambda *args, **kwargs: None)
    for cut in cuts:
        path.write_bytes(data[:cut])
        assert (_outcome(path, True), _outcome(path, False)) == fast[cut], cut
    headers, whole = fast[len(data)]
    assert isinstance(headers, tuple)  # not a reason
    if variant == "trailing":  # 8 bytes read as an empty element, then 1 byte: a cut header
        assert whole == reader.CORRUPT
    else:
        assert whole[1] > 0  # the whole file reads, pixels included


def _big_bytes(header_bytes: int = 0) -> bytes:
    ds = synth.make_dataset(5, rows=256, cols=256)  # 128 KiB of pixels
    if header_bytes:
        ds.add_new(0x00291050, "OB", b"\x07" * header_bytes)
        ds.add_new(0x00290010, "LO", "BIG HEADER")
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


class _CountingFile(io.FileIO):
    read_bytes = 0

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        data = super().read(size)
        _CountingFile.read_bytes += len(data)
        return data


@pytest.mark.parametrize("header_bytes", [0, 100_000])
def test_headers_of_a_big_file_come_from_its_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, header_bytes: int
) -> None:
    data = _big_bytes(header_bytes)
    path = _write(tmp_path / "big.dcm", data)
    monkeypatch.setattr(reader, "open", lambda p, mode, opener: _CountingFile(p, "r", opener=opener),
                        raising=False)
    _CountingFile.read_bytes = 0
    head = reader.read_dataset(path, headers_only=True)
    pixels = len(data) - data.rindex(b"\xe0\x7f\x10\x00OW")
    if header_bytes:  # the headers go past the start: they are parsed from the file
        assert len(head[0x00291050].value) == header_bytes
        slack = 1024  # pydicom reads some bytes twice (peeks, then a seek back)
        most = len(data) + reader._WHOLE_MAX - pixels + slack
        assert reader._WHOLE_MAX + header_bytes < _CountingFile.read_bytes < most
    else:
        assert _CountingFile.read_bytes == reader._WHOLE_MAX < len(data)
    _CountingFile.read_bytes = 0
    whole = reader.read_dataset(path, headers_only=False)
    assert _CountingFile.read_bytes < len(data) + reader._WHOLE_MAX + 1024  # pixels read once
    assert whole.PixelData == pydicom.dcmread(io.BytesIO(data)).PixelData
    assert "PixelData" not in head and head.PatientID == "PID-0005-SENT"
    assert sorted(head.keys()) == sorted(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).keys())


@pytest.mark.parametrize("header_bytes", [0, 100_000])
def test_big_file_cut_in_its_pixels_or_headers(tmp_path: Path, header_bytes: int) -> None:
    data = _big_bytes(header_bytes)
    pixel_tag = data.rindex(b"\xe0\x7f\x10\x00OW")
    for cut in (len(data) - 1, pixel_tag + 70_000, pixel_tag + 11, pixel_tag - 3):
        path = _write(tmp_path / "cut.dcm", data[:cut])
        assert _reason(path, True) == reader.CORRUPT, cut
        assert _reason(path, False) == reader.CORRUPT, cut


@pytest.mark.parametrize("exc, skipped", [
    (OSError("No tag to read"), True),  # pydicom on damaged bytes: the file's fault
    (OSError(errno.EIO, "Input/output error"), False),  # the disk's fault: retried
])


def test_errno_less_oserrors_from_pydicom_mean_a_corrupt_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: OSError, skipped: bool
) -> None:
    path = _write(tmp_path / "a.dcm", _file_bytes())

    def failing(*args: object, **kwargs: object) -> None:
        raise exc

    monkeypatch.setattr(reader, "dcmread", failing)
    monkeypatch.setattr(reader, "parse_part10", lambda *args, **kwargs: None)  # use dcmread
    if skipped:
        assert _reason(path) == reader.CORRUPT
    else:
        with pytest.raises(OSError) as info:
            reader.read_dataset(path, headers_only=True)
        assert info.value.errno == errno.EIO


# --- issue 22: links, sizes and folders that change under a worker ---------------------------


def _sparse_dicom(path: Path, pixel_bytes: int) -> Path:
    """A valid header whose PixelData declares ``pixel_bytes``, the rest a hole (a few KB on
    disk): read whole, it would allocate ``pixel_bytes`` of zeros."""
    ds = synth.make_dataset(3)
    del ds.PixelData
    head = io.BytesIO()
    ds.save_as(head, enforce_file_format=True)
    element = b"\xe0\x7f\x10\x00OW\x00\x00" + pixel_bytes.to_bytes(4, "little")
    path.write_bytes(head.getvalue() + element)
    os.truncate(path, path.stat().st_size + pixel_bytes)
    return path


def test_sparse_file_is_refused_before_anything_is_read(tmp_path: Path) -> None:
    import tracemalloc

    path = _sparse_dicom(tmp_path / "sparse.dcm", 1_500_000_000)
    if path.stat().st_blocks * 512 > 1 << 20:
        pytest.skip("this filesystem does not keep holes")
    tracemalloc.start()
    try:
        for headers_only in (True, False):
            assert _reason(path, headers_only) == reader.TOO_LARGE  # 1.5 GB over the 1 GiB default
            with pytest.raises(InputError) as info:  # a limit raised for big files still sees holes
                reader.read_dataset(path, headers_only=headers_only, max_bytes=4 << 30)
            assert info.value.reason == reader.SPARSE
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    real = _write(tmp_path / "real.dcm", _file_bytes())
    with pytest.raises(InputError) as info:
        reader.read_dataset(real, headers_only=False, max_bytes=len(real.read_bytes()) - 1)
    assert info.value.reason == reader.TOO_LARGE


def test_a_symlink_is_never_followed(tmp_path: Path) -> None:
    secret = _write(tmp_path / "elsewhere.dcm", _file_bytes(4))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "link.dcm").symlink_to(secret)
    for headers_only in (True, False):
        assert _reason(tmp_path / "in" / "link.dcm", headers_only) == reader.LINK


def test_a_folder_swapped_for_a_link_reads_nothing_outside_root(tmp_path: Path) -> None:
    # The walk listed in/sub/a.dcm; then sub was replaced by a link to a folder outside --input.
    (tmp_path / "outside").mkdir()
    _write(tmp_path / "outside" / "a.dcm", _file_bytes(5))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "sub").symlink_to(tmp_path / "outside")
    with pytest.raises(InputError) as info:
        reader.read_dataset(tmp_path / "in" / "sub" / "a.dcm", headers_only=True,
                             root=tmp_path / "in", name="sub/a.dcm")
    assert info.value.reason == reader.OUTSIDE and info.value.path == "sub/a.dcm"
    inside = _write(tmp_path / "in" / "b.dcm", _file_bytes(5))
    assert reader.read_dataset(inside, headers_only=True, root=tmp_path / "in").PatientID


# --- real-world shapes: other encodings, media indexes ---


def test_big_endian_file_without_preamble_or_meta_is_read(tmp_path: Path) -> None:
    ds = synth.make_dataset(4)
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.preamble = None
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, implicit_vr=False, little_endian=False, force_encoding=True)
    path = tmp_path / "be.dcm"
    path.write_bytes(buf.getvalue())
    read = reader.read_dataset(path, headers_only=False)
    assert read.original_encoding == (False, False) and read.PatientID == "PID-0004-SENT"


def test_encoding_is_what_the_bytes_are_not_what_the_meta_says(tmp_path: Path) -> None:
    ds = synth.make_dataset(5)
    meta = io.BytesIO()
    holder = pydicom.dataset.Dataset()
    holder.file_meta = pydicom.dataset.FileMetaDataset()
    holder.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    holder.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    holder.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    holder.preamble = b"\0" * 128
    holder.save_as(meta, enforce_file_format=True)
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.preamble = None
    body = io.BytesIO()
    pydicom.dcmwrite(body, ds, implicit_vr=True, little_endian=True, force_encoding=True)
    path = tmp_path / "mixed.dcm"
    path.write_bytes(meta.getvalue() + body.getvalue())  # explicit meta, implicit data set
    for headers_only in (True, False):
        read = reader.read_dataset(path, headers_only=headers_only)
        assert read.original_encoding == (True, True)
        assert read.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian


def test_a_dicomdir_is_skipped_as_a_media_index(tmp_path: Path) -> None:
    # pydicom's own DICOMDIR (its FileSet leaves a temporary folder to a finalizer)
    path = Path(pydicom.__file__).parent / "data" / "test_files" / "dicomdirtests" / "DICOMDIR"
    for headers_only in (True, False):
        with pytest.raises(InputError) as info:
            reader.read_dataset(path, headers_only=headers_only, name="DICOMDIR")
        assert info.value.reason == reader.MEDIA_INDEX
    # its records are not even looked at when the meta is lost: its own elements tell
    ds = pydicom.dcmread(path)
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    assert reader.is_media_index(ds)
    assert not reader.is_media_index(synth.make_dataset(6))
