"""parse_part10 gives dcmread's dataset exactly, or None; read_dataset's checks still hold."""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import dcmread
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as PydicomSequence
from pydicom.uid import DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian

from deid_workers import synth
from deid_workers.dicom import reader
from deid_workers.dicom.fastread import convert_sequence, parse_headers, parse_part10
from deid_workers.errors import InputError


def _bytes(ds: Dataset, implicit: bool = False) -> bytes:
    if implicit:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True, implicit_vr=implicit)
    return buf.getvalue()


def _small(patient: int = 1, implicit: bool = False, **changes: Any) -> bytes:
    ds = synth.make_dataset(patient, rows=2, cols=2)
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    return _bytes(ds, implicit)


def _element(a: Any, b: Any) -> None:
    assert type(a) is type(b)
    if isinstance(a, RawDataElement):
        assert [type(x) for x in a] == [type(y) for y in b] and tuple(a) == tuple(b)
    else:
        assert isinstance(a, DataElement)
        assert vars(a) == vars(b)


def _same(a: Dataset, b: Dataset) -> None:
    """Same class, attributes, element order, element tuples (types included), file meta."""
    assert type(a) is type(b)
    va = {k: v for k, v in vars(a).items() if k not in ("_dict", "file_meta", "buffer")}
    vb = {k: v for k, v in vars(b).items() if k not in ("_dict", "file_meta", "buffer")}
    assert va == vb
    assert [(k, type(k)) for k in a._dict] == [(k, type(k)) for k in b._dict]
    for x, y in zip(a._dict.values(), b._dict.values()):
        _element(x, y)
    if hasattr(a, "file_meta"):
        assert a.buffer.getvalue() == b.buffer.getvalue()
        _same(a.file_meta, b.file_meta)


def _same_deep(a: Any, b: Any) -> None:
    """Like _same, through converted sequences: items, their attributes and elements."""
    assert type(a) is type(b)
    if isinstance(a, Dataset):
        va = {k: v for k, v in vars(a).items() if k not in ("_dict", "buffer")}
        vb = {k: v for k, v in vars(b).items() if k not in ("_dict", "buffer")}
        assert va.keys() == vb.keys()
        for k, value in va.items():
            _same_deep(value, vb[k])
        assert [(k, type(k)) for k in a._dict] == [(k, type(k)) for k in b._dict]
        for x, y in zip(a._dict.values(), b._dict.values()):
            _same_deep(x, y)
    elif isinstance(a, DataElement):
        va, vb = dict(vars(a)), dict(vars(b))
        value_a, value_b = va.pop("_value"), vb.pop("_value")
        assert va == vb
        _same_deep(value_a, value_b)
    elif isinstance(a, PydicomSequence):
        assert vars(a).keys() == vars(b).keys() and a.is_undefined_length == b.is_undefined_length
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same_deep(x, y)
    elif isinstance(a, RawDataElement):
        _element(a, b)
    else:
        assert a == b


def _dcmread(data: bytes, headers_only: bool) -> Any:
    return dcmread(io.BytesIO(data), stop_before_pixels=headers_only)


@pytest.mark.parametrize("implicit", [False, True])
@pytest.mark.parametrize("headers_only", [False, True])
def test_plain_files_read_as_dcmread_reads_them(implicit: bool, headers_only: bool) -> None:
    data = _small(implicit=implicit)
    fast = parse_part10(data, headers_only=headers_only)
    assert fast is not None
    _same(fast, _dcmread(data, headers_only))
    assert ("PixelData" in fast) is not headers_only
    # Sequences stay raw until used, as dcmread leaves them, and convert alike.
    assert isinstance(fast._dict[0x00400275], RawDataElement)  # RequestAttributesSequence
    assert fast.RequestAttributesSequence[0].RequestedProcedureID == "RPID-0001-000"


@pytest.mark.parametrize("charset", ["ISO_IR 192", "", ["", "ISO 2022 IR 87"], "ISO_IR 100"])
@pytest.mark.parametrize("implicit", [False, True])
def test_character_sets_dcmread_knows(charset: Any, implicit: bool) -> None:
    data = _small(implicit=implicit, SpecificCharacterSet=charset)
    fast = parse_part10(data, headers_only=True)
    assert fast is not None
    _same(fast, _dcmread(data, True))
    assert fast.original_character_set == _dcmread(data, True).original_character_set


def test_unknown_character_set_is_left_to_dcmread() -> None:
    # dcmread warns about it; those warnings must be its own.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns when writing it too
        data = _small(SpecificCharacterSet="NOT A CHARSET")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert parse_part10(data, headers_only=True) is None
    assert not caught


def _refused(data: bytes) -> None:
    assert parse_part10(data, headers_only=True) is None
    assert parse_part10(data, headers_only=False) is None


def test_refuses_what_it_cannot_prove() -> None:
    data = _small()
    group_length = struct.unpack_from("<L", data, 140)[0]
    _refused(data[128:])  # no preamble
    _refused(data + b"\0")  # a byte after the last element
    _refused(data[:140] + struct.pack("<L", group_length + 2) + data[144:])  # wrong group length
    deflated = synth.make_dataset(1, rows=2, cols=2)
    deflated.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    _refused(_bytes(deflated))
    # The implicit VR file with a transfer syntax that says explicit.
    implicit = _small(implicit=True)
    _refused(implicit.replace(b"1.2.840.10008.1.2\0", b"1.2.840.10008.1.2.1", 1))


@pytest.mark.parametrize("implicit", [False, True])
def test_truncations_are_refused_unless_between_elements(implicit: bool) -> None:
    data = _small(implicit=implicit)
    accepted = 0
    for cut in range(len(data)):
        fast = parse_part10(data[:cut], headers_only=cut % 2 == 0)
        if fast is not None:
            # Cut between two elements: a shorter file, but a whole one, for dcmread too.
            accepted += 1
            _same(fast, _dcmread(data[:cut], cut % 2 == 0))
    assert 0 < accepted < 80


def test_undefined_length_sequence_is_refused() -> None:
    ds = synth.make_dataset(1, rows=2, cols=2)
    ds["RequestAttributesSequence"].is_undefined_length = True
    _refused(_bytes(ds))


def _nested_length_offset(data: bytes) -> int:
    """Offset of the 2-byte length of RequestedProcedureID (0040,1001) inside the sequence."""
    return data.index(b"\x40\x00\x01\x10SH") + 6


def test_damaged_nested_item_is_still_corrupt(tmp_path: Path) -> None:
    data = bytearray(_small())
    at = _nested_length_offset(bytes(data))
    # The sequence keeps its length, so the top level is whole; the item inside is not.
    data[at:at + 2] = struct.pack("<H", struct.unpack_from("<H", data, at)[0] + 40)
    path = tmp_path / "nested.dcm"
    path.write_bytes(bytes(data))
    assert parse_part10(bytes(data), headers_only=True) is not None
    for headers_only in (True, False):
        with pytest.raises(InputError) as info:
            reader.read_dataset(path, headers_only=headers_only)
        assert info.value.reason == reader.CORRUPT


def test_read_dataset_takes_the_fast_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.dcm"
    path.write_bytes(_small())
    seen = []

    def no_dcmread(*args: Any, **kwargs: Any) -> None:
        seen.append(args)
        raise AssertionError("dcmread called")

    monkeypatch.setattr(reader, "dcmread", no_dcmread)
    ds = reader.read_dataset(path, headers_only=True)
    assert ds.PatientID == "PID-0001-SENT" and not seen
    assert ds.filename == str(path) and ds.buffer is None


SAMPLE = _small(3)
_patches = st.lists(st.tuples(st.integers(128, len(SAMPLE) - 1), st.binary(min_size=1, max_size=4)),
                    min_size=1, max_size=3)


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(patches=_patches, implicit=st.booleans(), headers_only=st.booleans())
def test_damaged_bytes_give_none_or_dcmreads_dataset(patches: list[tuple[int, bytes]],
                                                     implicit: bool, headers_only: bool) -> None:
    data = bytearray(_small(3, implicit=implicit) if implicit else SAMPLE)
    for at, chunk in patches:
        data[at:at + len(chunk)] = chunk[: max(0, len(data) - at)]
    data = bytes(data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fast = parse_part10(data, headers_only=headers_only)
    if fast is None:
        return
    assert not caught
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        slow = _dcmread(data, headers_only)
    assert not caught
    _same(fast, slow)


def _with_sequences(implicit: bool) -> bytes:
    ds = synth.make_dataset(4, rows=2, cols=2)
    inner = Dataset()
    inner.CodeValue, inner.CodeMeaning = "X", "Y"
    items = []
    for n in range(3):
        item = Dataset()
        item.ConceptNameCodeSequence = [inner]
        item.ValueType, item.TextValue = "TEXT", f"t{n}"
        items.append(item)
    ds.ContentSequence = items
    ds.PixelRepresentation = 1  # items inherit it (_pixel_rep)
    return _bytes(ds, implicit)


@pytest.mark.parametrize("implicit", [False, True])
def test_convert_sequence_converts_as_pydicom_does(implicit: bool) -> None:
    data = _with_sequences(implicit)
    fast, slow = _dcmread(data, True), _dcmread(data, True)
    for tag in (0x00400275, 0x0040A730):  # RequestAttributesSequence, ContentSequence
        elem = convert_sequence(fast, fast._dict[tag].tag)
        assert elem is not None and elem is fast._dict[tag]
        assert slow[tag].VR == "SQ"
    for item in fast.ContentSequence:  # the nested ones too
        assert convert_sequence(item, item._dict[0x0040A043].tag) is not None
    for item in slow.ContentSequence:
        slow_nested = item[0x0040A043]
        assert slow_nested.VR == "SQ"
    _same_deep(fast, slow)


def test_convert_sequence_leaves_what_it_cannot_prove() -> None:
    ds = synth.make_dataset(1, rows=2, cols=2)
    ds.RequestAttributesSequence[0].is_undefined_length_sequence_item = True
    read = _dcmread(_bytes(ds), True)
    tag = read._dict[0x00400275].tag
    assert convert_sequence(read, tag) is None  # an undefined-length item
    assert isinstance(read._dict[tag], RawDataElement)  # untouched
    assert convert_sequence(read, read._dict[0x00100020].tag) is None  # not a sequence
    # A damaged item (its element runs past the item's end): pydicom's reader decides.
    data = bytearray(_small())
    at = _nested_length_offset(bytes(data))
    data[at:at + 2] = struct.pack("<H", struct.unpack_from("<H", data, at)[0] + 40)
    read = _dcmread(bytes(data), True)
    assert convert_sequence(read, read._dict[0x00400275].tag) is None


def test_convert_sequence_leaves_big_endian_to_pydicom() -> None:
    read = _dcmread(_small(), True)
    tag = read._dict[0x00400275].tag
    # Little endian bytes marked big endian: only the flag tells (pydicom would misread them).
    read._dict[tag] = read._dict[tag]._replace(is_little_endian=False)
    assert convert_sequence(read, tag) is None
    assert isinstance(read._dict[tag], RawDataElement)


def _sequence_span(data: bytes) -> tuple[int, int]:
    """Start and end of RequestAttributesSequence's value in an explicit VR file."""
    at = data.index(b"\x40\x00\x75\x02SQ\x00\x00") + 12
    return at, at + struct.unpack_from("<L", data, at - 4)[0]


SEQ_START, SEQ_END = _sequence_span(SAMPLE)


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(patches=st.lists(st.tuples(st.integers(SEQ_START, SEQ_END - 1),
                                  st.binary(min_size=1, max_size=2)), min_size=1, max_size=2))
def test_damaged_items_give_none_or_pydicoms_sequence(patches: list[tuple[int, bytes]]) -> None:
    data = bytearray(SAMPLE)
    for at, chunk in patches:
        data[at:at + len(chunk)] = chunk
    fast, slow = _dcmread(bytes(data), True), _dcmread(bytes(data), True)
    tag = fast._dict[0x00400275].tag
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        converted = convert_sequence(fast, tag)
    if converted is None:
        assert isinstance(fast._dict[tag], RawDataElement)
        return
    assert not caught
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert slow[tag].VR == "SQ"  # pydicom converts it too, without a word
    assert not caught

    def convert_items(ds: Dataset) -> list[str]:
        # The values themselves (text with an escape byte...) may warn: the same in both.
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            for item in ds[tag].value:
                for nested in list(item._dict):
                    item[nested]
        return [str(w.message) for w in said]

    assert convert_items(fast) == convert_items(slow)
    _same_deep(fast, slow)


# --- parse_headers: the headers of a file bigger than the first read ---------------------


def _big(implicit: bool = False) -> bytes:
    return _bytes(synth.make_dataset(3, rows=256, cols=256), implicit)


@pytest.mark.parametrize("implicit", [False, True])
def test_parse_headers_gives_dcmreads_headers_of_the_whole_file(implicit: bool) -> None:
    data = _big(implicit)
    assert len(data) > reader._WHOLE_MAX
    parsed = parse_headers(data[: reader._WHOLE_MAX])
    assert parsed is not None
    got, stop = parsed
    assert data[stop:stop + 4] == b"\xe0\x7f\x10\x00"  # where PixelData's header starts
    ref = dcmread(io.BytesIO(data), stop_before_pixels=True)
    got.buffer = ref.buffer  # the bytes each was parsed from: the prefix, the whole file
    _same(got, ref)


def test_parse_headers_refuses_a_prefix_without_the_pixel_element() -> None:
    data = _big()
    stop = data.rfind(b"\xe0\x7f\x10\x00")
    assert parse_headers(data[: stop + 4]) is None  # the pixel element's header is cut
    assert parse_headers(data[:stop]) is None  # the headers may go on past the prefix
    ds = synth.make_dataset(3, rows=256, cols=256)
    ds.add_new(0x00290010, "LO", "BIG HEADERS")
    ds.add_new(0x00291010, "OB", b"\x01" * (reader._WHOLE_MAX + 10))
    assert parse_headers(_bytes(ds)[: reader._WHOLE_MAX]) is None


def test_a_big_files_headers_come_from_parse_headers_and_a_short_pixel_element_still_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers: list[bool] = []
    real = reader.parse_headers
    monkeypatch.setattr(reader, "parse_headers",
                        lambda data: answers.append(real(data) is not None) or real(data))
    data = _big()
    path = tmp_path / "a.dcm"
    path.write_bytes(data)
    ds = reader.read_dataset(path, headers_only=True)
    assert answers == [True] and "PixelData" not in ds and ds.PatientID
    path.write_bytes(data[:-100])  # cut inside the pixels, far past the first read
    with pytest.raises(InputError) as info:
        reader.read_dataset(path, headers_only=True)
    assert info.value.reason == reader.CORRUPT and answers == [True, True]
