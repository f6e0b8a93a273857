"""dicom.compat: the pydicom fence, its version gate and DEID_FAST_IO's plain path."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pydicom
import pytest
from pydicom.sequence import Sequence
from pydicom.uid import DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian

from deid_workers.config import Settings
from deid_workers.dicom import compat
from deid_workers.dicom.reader import read_dataset
from deid_workers.files.steps import put_one
from deid_workers.recipe import load_recipe
from deid_workers.synth import make_dataset

SECRET = "compat-tests-key-0123456789abcdef0123"


@pytest.fixture
def fast_io():
    """``fast_io(on)`` switches the fast reader and writer for the test; restored after."""
    yield compat.use_fast_io
    compat.use_fast_io(None)


def _save(ds: pydicom.Dataset, path: Path, *, preamble: bool = True) -> None:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    path.write_bytes(buf.getvalue() if preamble else buf.getvalue()[132:])


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[str, list[str]]:
    """Files that take every read path: small explicit and implicit VR, deflated, no preamble,
    a big one (read from its first bytes for headers), undefined-length sequences."""
    root = tmp_path / "in"
    root.mkdir()
    _save(make_dataset(1, instance=0), root / "explicit.dcm")
    ds = make_dataset(1, instance=1)
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    _save(ds, root / "implicit.dcm")
    ds = make_dataset(1, instance=2)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    _save(ds, root / "deflated.dcm")
    _save(make_dataset(2, instance=3), root / "nopreamble.dcm", preamble=False)
    _save(make_dataset(2, instance=4, rows=256, cols=256), root / "big.dcm")
    ds = make_dataset(3, instance=5)
    ds.RequestAttributesSequence.is_undefined_length = True
    ds.ReferencedStudySequence = Sequence([pydicom.Dataset()])
    _save(ds, root / "undefined.dcm")
    return str(root), sorted(os.listdir(root))


def test_the_plain_path_reads_the_same_datasets(inputs, fast_io) -> None:
    root, names = inputs
    for headers_only in (True, False):
        read = {}
        for on in (True, False):
            fast_io(on)
            assert compat.fast_io() is on
            read[on] = [read_dataset(os.path.join(root, n), headers_only=headers_only, name=n)
                        for n in names]
        for name, fast, plain in zip(names, read[True], read[False]):
            assert fast == plain, name
            assert fast.file_meta == plain.file_meta, name
            assert fast.original_encoding == plain.original_encoding, name
            assert fast.preamble == plain.preamble, name


def test_the_plain_path_writes_the_same_outputs(inputs, fast_io, tmp_path) -> None:
    """put_one end to end (read, recipe, provenance, file meta, encode, publish), byte for
    byte, with DEID_FAST_IO on and off."""
    root, names = inputs
    settings = Settings.from_env({"DEID_SECRET": SECRET})
    recipe = load_recipe()
    written = {}
    for on in (True, False):
        fast_io(on)
        out = tmp_path / f"out-{on}"
        outcomes = [put_one(root, n, str(out), recipe, lambda e, i: None, settings,
                            overwrite=False) for n in names]
        assert [o.status for o in outcomes] == ["written"] * len(names)
        written[on] = {o.output: Path(o.dest).read_bytes() for o in outcomes}
    assert written[True] == written[False]


def test_deid_fast_io_0_turns_the_fast_paths_off(monkeypatch, fast_io) -> None:
    assert Settings.from_env({"DEID_FAST_IO": "0"}).fast_io is False
    assert Settings.from_env({}).fast_io is True
    monkeypatch.setenv("DEID_FAST_IO", "0")
    fast_io(None)
    assert compat.fast_io() is False
    monkeypatch.setenv("DEID_FAST_IO", "1")
    fast_io(None)
    assert compat.fast_io() is compat.tested()


def test_an_untested_pydicom_takes_the_plain_path(monkeypatch, fast_io) -> None:
    monkeypatch.setattr(compat, "TESTED", ((2, 4),))
    assert not compat.tested()
    fast_io(None)
    assert compat.fast_io() is False
    fast_io(True)  # not even when asked: the fast path was written for another pydicom
    assert compat.fast_io() is False


def test_the_gate_names_what_pydicom_lacks(monkeypatch) -> None:
    assert compat.check() is None
    monkeypatch.setattr(compat, "ELEMENTS", "_elements_renamed")
    problem = compat.check()
    assert problem is not None and "Dataset._elements_renamed" in problem
    assert "install pydicom 3.0" in problem


def test_accessors_read_what_pydicom_reads() -> None:
    ds = make_dataset(4)
    assert set(compat.elements(ds)) == set(ds.keys())
    elem = ds["PatientID"]
    assert compat.stored_value(elem) == elem.value
    compat.set_stored_value(elem, "OTHER")
    assert ds.PatientID == "OTHER"
    assert compat.keyword_value(ds, "PatientName", 0x00100010) == ds.PatientName
    assert compat.element_value(ds, 0x00420011) is None  # EncapsulatedDocument: absent
    copy = compat.shallow_copy(ds)
    del copy.PatientID
    assert "PatientID" in ds and "PatientID" not in copy
