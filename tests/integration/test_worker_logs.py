"""Worker logs on a real worker: one DEBUG line per file, one INFO line per batch, each with
the run id and the task id; no PHI at INFO or above; ``DEID_LOG_JSON`` makes them JSON lines.

A second worker, at DEBUG and with ``DEID_LOG_JSON=1``, serves its own Redis database, so its
log holds only the runs sent there and the session's worker is not disturbed.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path

import pydicom
import pytest
from integration_procs import Worker

from deid_workers.app import app, configure
from deid_workers.cli import main
from deid_workers.config import Settings
from deid_workers.synth import phi_strings, write_study_tree

pytestmark = pytest.mark.integration

ROOT = str(Path(__file__).resolve().parents[2])


@pytest.fixture(scope="module")
def json_worker(redis_url, worker_env, tmp_path_factory):
    """(broker URL, log path) of a DEBUG worker with JSON logs on database 1."""
    url = redis_url.rsplit("/", 1)[0] + "/1"
    log = tmp_path_factory.mktemp("jsonworker") / "worker.log"
    env = dict(worker_env, DEID_BROKER_URL=url, DEID_LOG_JSON="1")
    worker = Worker(env, log, "itest-json", concurrency=1, loglevel="DEBUG")
    try:
        worker.wait_ready()
        yield url, log
    finally:
        worker.stop()
        configure(app, Settings(broker_url=worker_env["DEID_BROKER_URL"]))


def test_worker_logs_per_file_per_batch_with_ids_and_no_phi(json_worker, worker_env, tmp_path,
                                                            monkeypatch, capsys):
    url, log = json_worker
    monkeypatch.setenv("DEID_SECRET", worker_env["DEID_SECRET"])
    monkeypatch.delenv("MESSAGELEVEL", raising=False)
    root = tmp_path / "in"
    paths = write_study_tree(root, patients=2, images=3, corrupt=1)
    valid = [p for p in paths if not p.startswith("corrupt-")]
    code = main(["--broker", url, "--action", "all", "--quiet", "--json", "--batch", "3",
                 "--input", str(root), "--outfolder", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert code == 0, err
    run_id = json.loads(out)["run_id"]

    records = []
    for line in log.read_text().splitlines():
        if line.strip():
            records.append(json.loads(line))  # every line of the worker's log is JSON
    ours = [r for r in records if r["logger"].startswith("deid_workers")]
    assert ours, "no deid_workers records in the worker log"
    for r in ours:
        assert run_id in r["message"], r
        assert r.get("task_id") and r.get("task_name", "").startswith("deid."), r

    # DEBUG: exactly one line per valid file per stage; the path is relative to --input.
    for stage in ("get", "put"):
        lines = [r for r in ours if r["level"] == "DEBUG" and r["task_name"] == f"deid.{stage}"
                 and r["message"] != "traceback"]
        mentioned = Counter(p for r in lines for p in paths if r["message"].endswith(" " + p))
        assert mentioned == Counter(valid), (stage, [r["message"] for r in lines])
    # INFO: exactly one line per batch per stage (7 files in batches of 3), each from a
    # different task; finalize logs once for the run.
    for stage in ("get", "put"):
        lines = [r for r in ours if r["level"] == "INFO" and r["task_name"] == f"deid.{stage}"]
        assert len(lines) == 3, [r["message"] for r in lines]
        assert len({r["task_id"] for r in lines}) == 3
        assert sorted(r["message"].split(" batch ")[1].split(":")[0] for r in lines) \
            == ["0", "1", "2"]
    # Celery's own received/succeeded lines carry the task id too.
    assert any(r["message"].startswith("Task deid.get[") and r.get("task_id") for r in records)

    phi = phi_strings(0) | phi_strings(1)
    loud = [r for r in records if r["level"] in ("INFO", "WARNING", "ERROR", "CRITICAL")]
    blob = json.dumps(loud)
    for value in phi:
        assert value not in blob, value
    assert str(root) not in json.dumps([r for r in loud if r["logger"].startswith("deid_")])


def test_pydicom_warnings_in_the_worker_log_withhold_the_values(json_worker, worker_env, tmp_path,
                                                                monkeypatch, capsys):
    """An invalid birth date that a JITTER line converts makes pydicom warn, quoting it."""
    url, log = json_worker
    monkeypatch.setenv("DEID_SECRET", worker_env["DEID_SECRET"])
    root = tmp_path / "in"
    paths = write_study_tree(root, patients=1, images=2)
    ds = pydicom.dcmread(root / paths[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns here too, as it will in the worker
        ds.PatientBirthDate = "19991399"  # month 13: not a date
        ds.save_as(root / paths[0])
    recipe = tmp_path / "jitter.dicom"
    recipe.write_text("FORMAT dicom\n\n%header\n\nJITTER PatientBirthDate 5\n")
    code = main(["--broker", url, "--action", "all", "--quiet", "--json", "--deid", str(recipe),
                 "--input", str(root), "--outfolder", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert code == 0, err
    text = log.read_text()
    assert "<value withheld>" in text  # pydicom did warn, in the worker
    assert "19991399" not in text
