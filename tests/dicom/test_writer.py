"""write_atomic's all-or-nothing writes: exclusive, durable on request, never through a link."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pydicom
import pytest

from deid_workers import synth
from deid_workers.dicom import writer
from deid_workers.dicom.encoder import encode_part10
from deid_workers.errors import InputError, OutputExistsError
from deid_workers.fs import publish
from deid_workers.reasons import THROUGH_LINK


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _no_temps(folder: Path) -> bool:
    return not [p for p in folder.rglob(".*.tmp")]


def test_write_atomic_creates_parents_keeps_preamble(tmp_path: Path) -> None:
    ds = synth.make_dataset(2)
    ds.preamble = b"P" * 128
    dest = tmp_path / "out" / "a" / "b.dcm"
    writer.write_atomic(ds, dest, overwrite=False)
    data = dest.read_bytes()
    assert data[:132] == b"P" * 128 + b"DICM"
    assert pydicom.dcmread(dest).SOPInstanceUID == ds.SOPInstanceUID
    assert _no_temps(tmp_path)
    umask = os.umask(0)  # reading the umask means setting it; no thread writes here
    os.umask(umask)
    assert dest.stat().st_mode & 0o777 == 0o666 & ~umask


def test_write_atomic_without_sync_leaves_syncing_to_the_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    dests = [tmp_path / "a" / "1.dcm", tmp_path / "a" / "2.dcm", tmp_path / "b" / "3.dcm"]
    for i, dest in enumerate(dests):
        writer.write_atomic(synth.make_dataset(i), dest, overwrite=False, sync=False)
    assert synced == [] and _no_temps(tmp_path)
    writer.write_atomic(synth.make_dataset(), tmp_path / "c.dcm", overwrite=False)
    assert len(synced) == 2  # the default syncs the file and its folder


def test_write_atomic_skips_a_leftover_temp_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A temp left by a dead process whose pid came back is neither reused nor clobbered."""
    monkeypatch.setattr(publish, "_temp_counter", iter(range(5)))
    stale = _write(tmp_path / f".a.dcm.{os.getpid()}-0.tmp", b"stale")
    writer.write_atomic(synth.make_dataset(), tmp_path / "a.dcm", overwrite=False)
    assert stale.read_bytes() == b"stale"
    assert pydicom.dcmread(tmp_path / "a.dcm").PatientID == "PID-0000-SENT"
    assert not (tmp_path / f".a.dcm.{os.getpid()}-1.tmp").exists()


def test_write_atomic_refuses_existing_unless_overwrite(tmp_path: Path) -> None:
    dest = _write(tmp_path / "a.dcm", b"old")
    with pytest.raises(OutputExistsError) as info:
        writer.write_atomic(synth.make_dataset(), dest, overwrite=False)
    assert info.value.path == str(dest)
    assert dest.read_bytes() == b"old" and _no_temps(tmp_path)
    writer.write_atomic(synth.make_dataset(), dest, overwrite=True)
    assert pydicom.dcmread(dest).PatientID == "PID-0000-SENT"


def test_race_lost_after_the_existence_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another worker creates dest between our check and our publish: os.link refuses."""
    dest = _write(tmp_path / "a.dcm", b"theirs")
    monkeypatch.setattr(os.path, "lexists", lambda p: False)
    with pytest.raises(OutputExistsError):
        writer.write_atomic(synth.make_dataset(), dest, overwrite=False)
    assert dest.read_bytes() == b"theirs" and _no_temps(tmp_path)


def test_concurrent_writers_exactly_one_wins(tmp_path: Path) -> None:
    dest = tmp_path / "same.dcm"
    datasets = [synth.make_dataset(i) for i in range(8)]
    results: list[str] = []
    barrier = threading.Barrier(len(datasets))

    def worker(ds: pydicom.Dataset) -> None:
        barrier.wait()
        try:
            writer.write_atomic(ds, dest, overwrite=False)
            results.append("won")
        except OutputExistsError:
            results.append("exists")

    threads = [threading.Thread(target=worker, args=(ds,)) for ds in datasets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["exists"] * 7 + ["won"]
    assert pydicom.dcmread(dest).PatientID.startswith("PID-") and _no_temps(tmp_path)


def test_fallback_without_hard_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_link(src: str, dst: str, **dir_fds: object) -> None:
        raise OSError(errno.EPERM, "hard links not supported")

    monkeypatch.setattr(os, "link", no_link)
    dest = tmp_path / "a.dcm"
    writer.write_atomic(synth.make_dataset(), dest, overwrite=False)
    assert pydicom.dcmread(dest).PatientID == "PID-0000-SENT"
    monkeypatch.setattr(writer, "exists_at", lambda folder, name: False)  # another worker's race
    with pytest.raises(OutputExistsError):
        writer.write_atomic(synth.make_dataset(1), dest, overwrite=False)
    assert pydicom.dcmread(dest).PatientID == "PID-0000-SENT" and _no_temps(tmp_path)


def test_disk_full_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write
    calls = []

    def half_then_full(fd: int, data: bytes) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data[:100]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    dest = tmp_path / "sub" / "a.dcm"
    with pytest.raises(OSError) as info:
        writer.write_atomic(synth.make_dataset(), dest, overwrite=True)
    assert info.value.errno == errno.ENOSPC and len(calls) == 2  # a short write is continued
    assert not dest.exists() and _no_temps(tmp_path)


def test_short_writes_are_continued_to_the_last_byte(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data[:7])))
    ds = synth.make_dataset()
    writer.write_atomic(ds, tmp_path / "new" / "deeper" / "a.dcm", overwrite=False)
    assert (tmp_path / "new" / "deeper" / "a.dcm").read_bytes() == encode_part10(ds)
    assert _no_temps(tmp_path)


def test_write_goes_through_no_symlinked_folder(tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "a").mkdir(parents=True)
    (out / "a" / "b").symlink_to(elsewhere)  # swapped in after enforce_inside looked
    with pytest.raises(InputError) as info:
        writer.write_atomic(synth.make_dataset(1), out / "a" / "b" / "x.dcm", overwrite=True,
                             root=out)
    assert info.value.reason == THROUGH_LINK
    assert list(elsewhere.iterdir()) == [] and _no_temps(out)
    # A name that is a link is replaced as a name (overwrite) or refused, never followed.
    target = _write(elsewhere / "victim.dcm", b"keep me")
    (out / "a" / "y.dcm").symlink_to(target)
    with pytest.raises(OutputExistsError):
        writer.write_atomic(synth.make_dataset(1), out / "a" / "y.dcm", overwrite=False, root=out)
    writer.write_atomic(synth.make_dataset(1), out / "a" / "y.dcm", overwrite=True, root=out)
    assert target.read_bytes() == b"keep me" and not (out / "a" / "y.dcm").is_symlink()
    # The output folder itself may be reached through a link (the user's choice), and a dest
    # spelled under its real path (what enforce_inside gives) is found under it.
    (tmp_path / "alias").symlink_to(out)
    writer.write_atomic(synth.make_dataset(1), out.resolve() / "a" / "c" / "z.dcm",
                         overwrite=False, root=tmp_path / "alias")
    assert (out / "a" / "c" / "z.dcm").is_file()
    with pytest.raises(InputError):
        writer.write_atomic(synth.make_dataset(1), tmp_path / "x.dcm", overwrite=False, root=out)


def test_a_folder_swapped_during_the_write_cannot_redirect_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The attack: between the folder being opened and the file being published, the folder is
    # renamed away and a symlink to elsewhere put in its place. The write still lands in the
    # folder that was opened, never through the link.
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    (out / "d").mkdir(parents=True)
    elsewhere.mkdir()
    real_open_temp = publish._open_temp

    def swap_then_open(folder: int, name: str) -> tuple[int, str]:
        os.rename(out / "d", out / "moved")
        (out / "d").symlink_to(elsewhere)
        return real_open_temp(folder, name)

    monkeypatch.setattr(publish, "_open_temp", swap_then_open)
    writer.write_atomic(synth.make_dataset(1), out / "d" / "x.dcm", overwrite=False, root=out)
    assert list(elsewhere.iterdir()) == []
    assert pydicom.dcmread(out / "moved" / "x.dcm").PatientID == "PID-0001-SENT"
