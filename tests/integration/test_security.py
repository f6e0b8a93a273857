"""Issue 5 on the session cluster: the wire accepts JSON only, --verify, key expiry, bad inputs."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pydicom
import pytest

from deid_workers import reasons
from deid_workers.cli import main
from deid_workers.synth import make_dataset, phi_strings, truncated_dicom_bytes, write_study_tree

pytestmark = pytest.mark.integration

WEAK_RECIPE = """FORMAT dicom

%header

REPLACE PatientName ANONYMOUS
"""


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


class _Payload:
    """Unpickling this creates a file: the proof that a pickle was (or was not) loaded."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_worker_refuses_a_pickled_message(cluster, worker_log, redis_client, tmp_path):
    from deid_workers.app import app

    marker = tmp_path / "pickle-ran"
    before = Path(worker_log).read_text()
    app.send_task("deid.get", args=[_Payload(str(marker)), 0], serializer="pickle")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        log = Path(worker_log).read_text()[len(before):]
        if "ContentDisallowed" in log or "untrusted content" in log:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the worker did not report refusing the message")
    assert not marker.exists()
    assert redis_client.llen("get") == 0  # consumed and dropped, not left to retry forever


def test_verify_default_recipe_passes_and_keys_expire(cluster, worker_log, redis_client,
                                                      tmp_path, capsys):
    root = tmp_path / "in"
    write_study_tree(root, patients=3, images=2)
    code, stdout, err = _run(capsys, "--action", "all", "--verify", "--json", "--quiet",
                             "--input", str(root), "--outfolder", str(tmp_path / "out"))
    assert code == 0, err
    s = json.loads(stdout)
    assert s["residual_phi"] == 0 and s["written"] == 6
    keys = list(redis_client.scan_iter(f"deid:run:{s['run_id']}*"))
    assert len(keys) > 10
    for key in keys:  # identifiers live only in keys that expire
        assert redis_client.ttl(key) > 0, key
    assert redis_client.ttl("deid:runs") > 0
    phi = set().union(*(phi_strings(p) for p in range(3)))
    names = "\n".join(redis_client.scan_iter("deid:*"))
    log = Path(worker_log).read_text()
    for value in phi:
        assert value not in names and value not in log and value not in stdout


def test_verify_reports_surviving_phi(cluster, tmp_path, capsys):
    root = tmp_path / "in"
    ds = make_dataset(7)
    ds.ImageComments = f"scan of {ds.PatientName} as requested"  # a copy the recipe misses
    root.mkdir()
    ds.save_as(root / "leaky.dcm", enforce_file_format=True)
    make_dataset(8).save_as(root / "clean.dcm", enforce_file_format=True)
    recipe = tmp_path / "deid.weak"
    recipe.write_text(WEAK_RECIPE)
    code, stdout, err = _run(capsys, "--action", "all", "--verify", "--json", "--deid",
                             str(recipe), "--input", str(root), "--outfolder",
                             str(tmp_path / "out"))
    assert code == 1
    s = json.loads(stdout)
    assert s["residual_phi"] == 1
    assert s["lists"]["residual"] == {"leaky.dcm": "PatientName"}
    assert "DOE^JANE" not in stdout + err


def _bad_tree(root: Path) -> dict[str, str]:
    """Every kind of bad input next to good ones; returns {relpath: expected skip reason}."""
    root.mkdir()
    good = root / "good ones" / "naïve café"
    good.mkdir(parents=True)
    make_dataset(1).save_as(good / "image with spaces ü.dcm", enforce_file_format=True)
    make_dataset(2).save_as(good / "日本語.dcm", enforce_file_format=True)
    (root / "empty.dcm").write_bytes(b"")
    (root / "truncated.dcm").write_bytes(truncated_dicom_bytes(1))
    (root / "text.dcm").write_text("not DICOM at all\n")
    import io

    buf = io.BytesIO()
    make_dataset(3).save_as(buf, enforce_file_format=True)
    (root / "no-preamble.dcm").write_bytes(buf.getvalue()[132:])  # accepted, like a PACS export
    no_pid = make_dataset(4)
    del no_pid.PatientID
    no_pid.save_as(root / "no-patientid.dcm", enforce_file_format=True)
    no_uid = make_dataset(5)
    del no_uid.SOPInstanceUID
    no_uid.save_as(root / "no-sopuid.dcm", enforce_file_format=True)
    (root / "loop").mkdir()
    os.symlink("..", root / "loop" / "up")  # a directory loop: not followed
    os.symlink("self-b.dcm", root / "self-a.dcm")  # a file symlink loop
    os.symlink("self-a.dcm", root / "self-b.dcm")
    return {"empty.dcm": reasons.EMPTY, "truncated.dcm": reasons.CORRUPT,
            "text.dcm": reasons.NOT_DICOM}


def test_bad_inputs_are_reported_and_nothing_is_lost(cluster, tmp_path, capsys, place):
    root = tmp_path / "in"
    expected_skips = _bad_tree(root)
    out = tmp_path / "out"  # never inside the input: that is refused (test_cli_hostile)
    code, stdout, err = _run(capsys, "--action", "all", "--json", "--quiet", "--input",
                             str(root), "--outfolder", str(out))
    s = json.loads(stdout)
    skipped = s["lists"]["skipped"]
    for rel, reason in expected_skips.items():
        assert skipped.pop(rel) == reason
    assert skipped == {}  # the symlink loops end the walk nowhere: it does not follow links
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.dcm"))
    assert written == sorted(place(root, rel) for rel in [
        "good ones/naïve café/image with spaces ü.dcm", "good ones/naïve café/日本語.dcm",
        "no-preamble.dcm", "no-patientid.dcm", "no-sopuid.dcm"])
    assert s["files_found"] == s["written"] + s["skipped"] + s["failed"]
    assert set(s["lists"]["missing"]) == {"no-patientid.dcm", "no-sopuid.dcm"}
    for rel in written:
        pydicom.dcmread(out / rel)
    for path in out.rglob("*"):  # outputs only ever inside the output folder
        assert os.path.realpath(path).startswith(os.path.realpath(out) + os.sep)
    assert code == 0, err
    assert s["files_found"] == 8  # symlinks are not followed (walk.py), loops or not
    code, stdout, err = _run(capsys, "--action", "all", "--json", "--quiet", "--overwrite",
                             "--input", str(root), "--outfolder", str(out))
    assert code == 0, err
    assert json.loads(stdout)["files_found"] == 8  # a re-run finds the same files


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode; "
                    "tests/dicom/test_reader.py::test_permission_denied covers the reason")
def test_unreadable_file_is_skipped(cluster, tmp_path, capsys):
    root = tmp_path / "in"
    root.mkdir()
    make_dataset(1).save_as(root / "locked.dcm", enforce_file_format=True)
    os.chmod(root / "locked.dcm", 0)
    try:
        code, stdout, err = _run(capsys, "--action", "all", "--json", "--quiet",
                                 "--input", str(root), "--outfolder", str(tmp_path / "out"))
    finally:
        os.chmod(root / "locked.dcm", 0o644)
    assert json.loads(stdout)["lists"]["skipped"] == {"locked.dcm": reasons.PERMISSION}
