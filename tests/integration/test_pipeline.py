"""deid-submit end to end on a real Redis and a real celery worker."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pydicom
import pytest

from deid_workers.cli import main
from deid_workers.config import Settings
from deid_workers.ids.read import load_ids
from deid_workers.synth import phi_strings, write_study_tree

pytestmark = pytest.mark.integration

VAR_RECIPE = """FORMAT dicom

%header

REPLACE PatientID var:id
REPLACE PatientName var:source_id
REMOVE PatientBirthDate
"""


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "in"
    paths = write_study_tree(root, patients=2, images=3, corrupt=3)
    return root, paths


def test_get_writes_ids_pickle_and_json(cluster, tree, tmp_path, capsys):
    root, paths = tree
    records = tmp_path / "ids"
    code, stdout, err = _run(capsys, "--action", "get", "--input", str(root),
                             "--records", str(records), "--batch", "4")
    assert code == 0, err
    assert f"Writing ids to {records / 'deid-ids.pkl'}" in err
    ids = load_ids(records / "deid-ids.pkl")
    assert ids == load_ids(records / "deid-ids.json")
    # identifiers are private: the folder 0700 (it was created for them), the files 0600
    assert os.stat(records).st_mode & 0o777 == 0o700
    assert {os.stat(records / n).st_mode & 0o777 for n in os.listdir(records)} == {0o600}
    assert set(ids) == {"PID-0000-SENT", "PID-0001-SENT"}
    items = ids["PID-0000-SENT"]
    assert len(items) == 3
    uid, fields = next(iter(items.items()))
    assert fields["SOPInstanceUID"] == uid and fields["PatientID"] == "PID-0000-SENT"


def test_all_exports_ids_in_shards_on_the_workers(cluster, redis_client, tmp_path, capsys,
                                                  monkeypatch):
    root = tmp_path / "in"
    write_study_tree(root, patients=8, images=2)
    monkeypatch.setenv("DEID_EXPORT_SHARD_FILES", "4")  # 16 files: 4 shards
    out = tmp_path / "out"
    code, stdout, err = _run(capsys, "--action", "all", "--input", str(root), "--outfolder",
                             str(out), "--batch", "5", "--json", "--quiet")
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["written"] == 16
    counters = redis_client.hgetall(f"deid:run:{summary['run_id']}:counters")
    assert counters["export:batches"] == "4" and counters["export:entities"] == "8"
    records = tmp_path / "out-records"
    ids = load_ids(records / "deid-ids.pkl")
    assert ids == load_ids(records / "deid-ids.json")
    assert len(ids) == 8 and sum(len(items) for items in ids.values()) == 16
    assert not [p for p in os.listdir(records) if p.startswith(".")]  # no piece or temp left
    assert not list(out.rglob("deid-*")) and len(list(out.rglob("*.dcm"))) == 16  # images only


def test_get_print_writes_json_to_stdout(cluster, tree, tmp_path, capsys):
    root, _ = tree
    code, stdout, err = _run(capsys, "--action", "get", "--print", "--quiet",
                             "--input", str(root), "--outfolder", str(tmp_path / "o"))
    assert code == 0, err
    assert set(json.loads(stdout)) == {"PID-0000-SENT", "PID-0001-SENT"}
    assert not (tmp_path / "o-records" / "deid-ids.pkl").exists()


def test_put_with_edited_ids_uses_vars(cluster, redis_client, tree, tmp_path, capsys,
                                       monkeypatch, place):
    """The edited ids go to the worker in chunks (an entity each here) ahead of the put batches."""
    from deid_workers import prepare, producer
    from deid_workers.ids import chunks
    from deid_workers.run.store import RunStore

    monkeypatch.setattr(prepare, "iter_ids_chunks",
                        lambda p, **kw: chunks.iter_ids_chunks(p, 1, **kw))
    monkeypatch.setattr(producer, "IDS_WINDOW", 100)  # all of them to the worker
    root, paths = tree
    ids_dir = tmp_path / "ids"
    assert _run(capsys, "--action", "get", "--quiet", "--input", str(root),
                "--records", str(ids_dir))[0] == 0
    ids = json.loads((ids_dir / "deid-ids.json").read_text())
    for n, (_entity, items) in enumerate(sorted(ids.items())):
        for fields in items.values():
            fields["id"] = f"SUBJ-{n}"
            fields["source_id"] = f"ANON^{n}"
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(ids))
    recipe = tmp_path / "deid.var"
    recipe.write_text(VAR_RECIPE)
    out = tmp_path / "out"
    code, stdout, err = _run(capsys, "--action", "put", "--quiet", "--json", "--ids", str(edited),
                             "--deid", str(recipe), "--input", str(root), "--outfolder", str(out))
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["written"] == 6 and summary["skipped"] == 3
    store = RunStore.load(redis_client, summary["run_id"], keys=Settings.from_env().cluster_keys())
    assert store.done_batches("load") == {0, 1} and store.record_fields("ids_chunks") == [2]
    assert store.counters()["load:items"] == 6 and not redis_client.keys("*idschunk*")
    ds = pydicom.dcmread(out / place(root, paths[0]))
    assert ds.PatientID == "SUBJ-0" and str(ds.PatientName) == "ANON^0"
    assert not ds.get("PatientBirthDate")  # REMOVEd; Type 2, so kept empty (conformance pass)
    assert pydicom.dcmread(out / place(root, paths[3])).PatientID == "SUBJ-1"


def test_all_with_corrupt_files_exits_0_and_lists_skips(cluster, tree, tmp_path, capsys,
                                                        place):
    root, paths = tree
    out = tmp_path / "out"
    code, stdout, err = _run(capsys, "--action", "all", "--quiet", "--json",
                             "--input", str(root), "--outfolder", str(out), "--batch", "2")
    assert code == 0, err
    s = json.loads(stdout)
    assert (s["files_found"], s["valid"], s["skipped"], s["written"]) == (9, 6, 3, 6)
    assert set(s["lists"]["skipped"]) == {p for p in paths if p.startswith("corrupt-")}
    assert (tmp_path / "out-records" / "deid-ids.pkl").exists() and not (out / "deid-ids.pkl").exists()
    for rel in paths[:6]:
        ds = pydicom.dcmread(out / place(root, rel))
        assert "PID-0000-SENT" not in str(ds) and "PID-0001-SENT" not in str(ds)


def test_overwrite_refusal_leaves_file_untouched(cluster, tmp_path, capsys, place):
    root = tmp_path / "in"
    paths = write_study_tree(root, patients=1, images=2)
    out = tmp_path / "out"
    assert _run(capsys, "--action", "all", "--quiet", "--input", str(root),
                "--outfolder", str(out))[0] == 0
    target = out / place(root, paths[0])
    target.write_bytes(b"edited by a human")
    ids = tmp_path / "out-records" / "deid-ids.json"
    ids.write_text("{}")  # edited by a human too, as the README says to
    # The identifiers are refused before anything starts, like outputs: nothing is touched.
    code, stdout, err = _run(capsys, "--action", "all", "--input", str(root),
                             "--outfolder", str(out))
    assert code == 2 and f"{ids}: identifiers of an earlier run are there" in err
    assert ids.read_text() == "{}" and target.read_bytes() == b"edited by a human"
    code, stdout, err = _run(capsys, "--action", "all", "--input", str(root),
                             "--outfolder", str(out), "--records", str(tmp_path / "rec2"))
    assert code == 1
    assert f"ERROR {paths[0]} already exists, overwrite set to False. Not writing." in err
    assert target.read_bytes() == b"edited by a human"
    code, _, err = _run(capsys, "--action", "all", "--quiet", "--overwrite",
                        "--input", str(root), "--outfolder", str(out))
    assert code == 0, err
    assert target.read_bytes() != b"edited by a human"


def test_inspect_writes_reports_and_deid_lines(cluster, tree, tmp_path, capsys):
    root, paths = tree
    out = tmp_path / "out"
    code, stdout, err = _run(capsys, "--action", "inspect", "--input", str(root),
                             "--outfolder", str(out))
    assert code == 0, err
    tsv = (out / "deid-inspect.tsv").read_text().splitlines()
    assert tsv[0] == "file\tflagged\tgroup\treason" and len(tsv) == 7
    assert len(json.loads((out / "deid-inspect.json").read_text())) == 6
    lines = [x for x in err.splitlines() if "header filters indicate" in x]
    assert len(lines) == 6
    assert all(x.endswith(("indicate burned pixels.", "indicate pixels are clean.")) for x in lines)


def test_no_phi_in_task_results_or_info_logs(cluster, worker_log, redis_client, tmp_path,
                                             capsys):
    root = tmp_path / "in"
    write_study_tree(root, patients=2, images=2)
    assert _run(capsys, "--action", "all", "--quiet", "--input", str(root),
                "--outfolder", str(tmp_path / "out"))[0] == 0
    phi = phi_strings(0) | phi_strings(1)
    # Batch results are not stored on success (the chord's join takes them from the tasks,
    # see app.py), so whatever the backend holds is checked, and the logs must have content.
    metas = [redis_client.get(k) for k in redis_client.scan_iter("celery-task-meta-*")]
    blob = "\n".join(m for m in metas if m)
    names = "\n".join(redis_client.scan_iter("deid:*"))
    log = Path(worker_log).read_text()
    assert " get batch 0: " in log and " finalized " in log
    for value in phi:
        assert value not in blob
        assert value not in names
        assert value not in log


def test_embedded_mode_on_demo_data(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DEID_BROKER_URL", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    out = tmp_path / "out"
    code, stdout, err = _run(capsys, "--action", "all", "--workers", "1", "--json",
                             "--outfolder", str(out))
    assert code == 0, err
    assert "No input folder specified, will use demo dicom-cookies." in err
    s = json.loads(stdout)
    assert s["written"] == 7 and s["key"] == str(tmp_path / "xdg" / "deid-workers" / "secret.key")
    # The release folder holds the images only; identifiers and the run log are apart.
    assert sorted(os.listdir(out)) == [f"image{i}.dcm" for i in range(1, 8)]
    assert sorted(os.listdir(tmp_path / "out-records")) == [
        "deid-ids.json", "deid-ids.pkl", f"deid-run.{s['run_id']}.jsonl"]


def test_profile_with_a_recipe_on_top_runs_on_the_workers(cluster, tmp_path, capsys, place):
    """--profile travels to the workers as the run's first recipe text; the user's recipe
    merges on top; every output says what was applied."""
    root = tmp_path / "in"
    paths = write_study_tree(root, patients=1, images=2, studies=2)
    mine = tmp_path / "deid.mine"
    mine.write_text("FORMAT dicom\n%header\nREPLACE PatientID deid_func:hmac_id prefix=P\n")
    out = tmp_path / "out"
    code, stdout, err = _run(capsys, "--action", "all", "--quiet", "--json", "--input", str(root),
                             "--outfolder", str(out), "--deid", str(mine),
                             "--profile", "basic,retain-uids,retain-longitudinal-modified-dates")
    assert code == 0, err
    assert json.loads(stdout)["written"] == len(paths)
    shifts = set()
    for rel in paths:
        before = pydicom.dcmread(root / rel)
        after = pydicom.dcmread(out / place(root, rel))
        assert after.SOPInstanceUID == before.SOPInstanceUID  # retain-uids
        assert after.PatientID.startswith("P") and after.PatientID != before.PatientID
        assert [i.CodeValue for i in after.DeidentificationMethodCodeSequence] == ["113100", "113110", "113107"]
        assert after.LongitudinalTemporalInformationModified == "MODIFIED"
        assert "profile:basic,ret" in after.DeidentificationMethod[-1]
        shifts.add((pydicom.valuerep.DA(before.StudyDate) - pydicom.valuerep.DA(after.StudyDate)).days)
    assert len(shifts) == 1 and shifts != {0}  # one patient: one shift, for every study
