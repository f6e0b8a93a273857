"""put + deid.clean with --clean-pixels on fakeredis: triage, clean batches, quarantine, run log."""

from __future__ import annotations

import json
from collections import Counter

import pydicom
import pytest

from deid_workers.run.record import RunRecord
from deid_workers.run.report import render_table, run_ok, summarize
from deid_workers.run.runlog import run_log_name
from deid_workers.run.store import RunStore
from deid_workers.synth import make_dataset
from deid_workers.tasks import dispatch
from deid_workers.tasks.clean import run_clean
from deid_workers.tasks.context import worker_keys
from deid_workers.tasks.put import run_put

BOX = (1, 1, 6, 3)
RECIPE = f"""FORMAT dicom
%filter blacklist
LABEL Screen capture
  equals Modality ot
%filter graylist
LABEL Banner
  equals Modality us
  coordinates {",".join(map(str, BOX))}
%header
REMOVE PatientName
"""
FILES = {"a-ct.dcm": "CT", "b-us.dcm": "US", "c-ot.dcm": "OT", "d-us.dcm": "US"}


@pytest.fixture
def run(fake, tmp_path, monkeypatch):
    root = tmp_path / "in"
    root.mkdir()
    for i, (name, modality) in enumerate(FILES.items()):
        make_dataset(3, instance=i, modality=modality, text_block=BOX).save_as(
            root / name, enforce_file_format=True)
    (root / "e-bad.dcm").write_text("not dicom")
    paths = sorted(p.name for p in root.iterdir())
    record = RunRecord("put", str(root), str(tmp_path / "out"), recipe_texts=(RECIPE,),
                       recipe_name="test.dicom", clean_pixels=True,
                       quarantine_groups=("blacklist",))
    store = RunStore.create(fake, "tclean", record.spec(), expiry=600, keys=worker_keys())
    store.add_batch(0, paths[:3])
    store.add_batch(1, paths[3:])
    store.update(walk_done=True, n_batches=2)
    sent: list[int] = []
    monkeypatch.setattr(dispatch, "send", lambda name, run_id, n: sent.append(n))
    return store, root, tmp_path / "out", sent


def test_put_defers_pixel_files_then_clean_finishes_the_run(run, placed):
    store, root, out, sent = run
    at = {name: placed(str(root), name) for name in FILES}  # synth's names hold its IDs' tokens
    r0 = run_put(store.run_id, 0)
    assert (r0["written"], r0["to_clean"], r0["quarantined"]) == (1, 1, 1)
    assert sent == [0] and store.clean_batch(0) == ["b-us.dcm"]
    assert not (out / at["b-us.dcm"]).exists()
    r1 = run_put(store.run_id, 1)
    assert (r1["to_clean"], r1["skipped"]) == (1, 1) and sent == [0, 1]
    assert store.record()["state"] != "finished"
    assert run_clean(store.run_id, 0)["cleaned"] == 1
    assert store.record()["state"] != "finished"
    assert run_clean(store.run_id, 1)["cleaned"] == 1
    assert store.record()["state"] == "finished"
    assert run_clean(store.run_id, 1) == {"files": 0, "already_done": 1}

    ds = pydicom.dcmread(out / at["d-us.dcm"])
    x0, y0, x1, y1 = BOX
    assert not ds.pixel_array[y0:y1, x0:x1].any()
    assert "113101" in [i.CodeValue for i in ds.DeidentificationMethodCodeSequence]
    q = out.parent / "out-quarantine" / at["c-ot.dcm"]
    assert q.exists() and not (out / at["c-ot.dcm"]).exists()
    assert not pydicom.dcmread(q).get("PatientName")  # removed; Type 2, so kept empty

    summary = summarize(store)
    assert (summary["written"], summary["cleaned"], summary["quarantined"]) == (1, 2, 1)
    assert summary["lists"]["quarantined"] == {"c-ot.dcm": "blacklist: Modality equals ot"}
    assert run_ok(summary)
    assert "quarantine folder" in render_table(summary)

    lines = [json.loads(x) for x in (out.parent / "out-records" / run_log_name(store.run_id)).read_text().splitlines()]
    assert [x["path"] for x in lines] == sorted(FILES) + ["e-bad.dcm"]
    by = {x["path"]: x for x in lines}
    assert by["a-ct.dcm"]["outcome"] == "written" and by["a-ct.dcm"]["output"] == at["a-ct.dcm"]
    assert by["b-us.dcm"]["outcome"] == "cleaned" and by["b-us.dcm"]["output"] == at["b-us.dcm"]
    assert by["c-ot.dcm"]["output"] == "../out-quarantine/" + at["c-ot.dcm"]
    assert by["e-bad.dcm"]["outcome"] == "skipped" and by["e-bad.dcm"]["output"] is None
    counts = Counter(x["outcome"] for x in lines)
    for outcome in ("written", "cleaned", "quarantined", "skipped", "refused", "failed"):
        assert counts.get(outcome, 0) == summary.get(outcome, 0), outcome


def test_batch_without_pixel_work_commits_its_clean_batch(run, monkeypatch):
    store, root, out, sent = run
    store.add_batch(0, ["a-ct.dcm", "c-ot.dcm"])  # nothing to clean in batch 0
    run_put(store.run_id, 0)
    assert sent == [] and 0 in store.done_batches("clean")


def test_redelivered_put_resends_a_clean_batch_it_did_not_send(run):
    store, root, out, sent = run
    run_put(store.run_id, 0)
    sent.clear()
    assert run_put(store.run_id, 0)["already_done"] == 1
    assert sent == [0]


def test_unfinished_clean_shows_as_failed_in_the_run_log(run):
    from deid_workers.run.runlog import NOT_FINISHED, iter_run_log

    store, root, out, sent = run
    run_put(store.run_id, 0)
    run_put(store.run_id, 1)
    lines = {x["path"]: x for x in iter_run_log(store, store.record())}
    assert lines["b-us.dcm"]["outcome"] == "failed"
    assert lines["b-us.dcm"]["reason"] == NOT_FINISHED


def test_no_header_value_in_run_log(run):
    from deid_workers.synth import phi_strings

    store, root, out, sent = run
    for n in (0, 1):
        run_put(store.run_id, n)
    for n in (0, 1):
        run_clean(store.run_id, n)
    text = (out.parent / "out-records" / run_log_name(store.run_id)).read_text()
    assert not [s for s in phi_strings(3) if s in text]
