"""Warnings about files, from the task bodies to the store, the run log, the summary and the
feed the producer prints (fakeredis; tests/integration/test_user_walk.py runs real workers)."""

from __future__ import annotations

import json
import shutil

from deid_workers.run.notices import decode
from deid_workers.run.record import RunRecord
from deid_workers.run.report import NoticeFeed, render_table, run_ok, summarize
from deid_workers.run.runlog import iter_run_log
from deid_workers.run.store import RunStore
from deid_workers.synth import make_dataset, phi_strings
from deid_workers.tasks.context import worker_keys
from deid_workers.tasks.get import run_get
from deid_workers.tasks.put import run_put

RECIPE = """FORMAT dicom
%header
REPLACE PatientID var:id
REPLACE Rows var:rows
"""


def _run(fake, tmp_path, action, names, *, batch=2, **extra):
    root = tmp_path / "in"
    root.mkdir(exist_ok=True)
    for i, name in enumerate(names):
        if not (root / name).exists():
            make_dataset(0, instance=i).save_as(root / name, enforce_file_format=True)
    record = RunRecord(action, str(root), str(tmp_path / "out"), recipe_texts=(RECIPE,),
                       **extra)
    store = RunStore.create(fake, "t" + action, record.spec(), expiry=600, keys=worker_keys())
    n = 0
    for start in range(0, len(names), batch):
        store.add_batch(n, names[start:start + batch])
        n += 1
    store.update(walk_done=True, n_batches=n)
    return store, root, n


def test_all_run_carries_the_recipes_warnings_to_counters_run_log_and_summary(fake, tmp_path):
    names = ["a.dcm", "b.dcm", "c.dcm"]
    store, root, n = _run(fake, tmp_path, "all", names)
    for b in range(n):
        run_get(store.run_id, b)
    for entity, items in list(store.iter_ids()):  # a rows value that is not a number
        store.save_ids({entity: {item: dict(f, rows="many") for item, f in items}})
    for b in range(n):
        run_put(store.run_id, b)
    c = store.counters()
    assert c["put:notice:not_done"] == 3 and c["put:notice:unfit_vr"] == 3
    counts, first = decode(store.notices("put", [0])[0][1])
    assert counts == {"not_done": 2, "unfit_vr": 2}
    assert [x.line() for x in first][:2] == [
        "REPLACE PatientID not done for a.dcm",
        "a.dcm: Value is not a valid value for VR US field: Rows. Field will be BLANKED."]
    lines = list(iter_run_log(store, store.record()))
    assert [len(x["warnings"]) for x in lines] == [2, 2, 2]
    assert lines[2]["warnings"][0] == "REPLACE PatientID not done for c.dcm"
    summary = summarize(store)
    assert summary["warnings"]["kinds"] == {"not_done": 3, "unfit_vr": 3}
    assert [w["path"] for w in summary["warnings"]["first"]] == ["a.dcm", "a.dcm", "b.dcm",
                                                                "b.dcm", "c.dcm", "c.dcm"]
    assert run_ok(summary) and summary["no_ids"] == 0  # warnings alone do not fail a run
    table = [" ".join(line.split()) for line in render_table(summary).splitlines()]
    at = table.index("warnings 6")
    assert table[at + 1:at + 3] == ["3 REPLACE/JITTER not done (field removed)",
                                    "3 values not valid for their VR (field blanked)"]
    assert table[table.index("warnings:") + 1] == "REPLACE PatientID not done for a.dcm"
    text = json.dumps(summary) + json.dumps(lines)
    for phi in phi_strings(0):
        assert phi not in text


def test_put_says_which_files_the_ids_did_not_cover_and_fails(fake, tmp_path):
    names = ["a.dcm", "b.dcm", "c.dcm"]
    store, root, n = _run(fake, tmp_path, "put", names, ids_path="/x/deid-ids.json")
    from deid_workers.config import Settings
    from deid_workers.files.steps import get_one

    got = get_one(str(root), "b.dcm", Settings())
    store.save_ids({got.entity: {got.item: {"id": "S1", "rows": 2}}})
    for b in range(n):
        run_put(store.run_id, b)
    summary = summarize(store)
    assert summary["no_ids"] == 2 and not run_ok(summary)
    assert [w["text"] for w in summary["warnings"]["first"] if w["kind"] == "no_ids"] == [
        "No identifiers for a.dcm in the ids given to put (no item for its PatientID and "
        "SOPInstanceUID)",
        "No identifiers for c.dcm in the ids given to put (no item for its PatientID and "
        "SOPInstanceUID)"]
    table = [" ".join(line.split()) for line in render_table(summary).splitlines()]
    assert "no ids 2 of 3 valid files (none in the ids given)" in table


def test_get_says_which_files_share_an_ids_item_within_and_across_batches(fake, tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    make_dataset(0, instance=0).save_as(root / "a.dcm", enforce_file_format=True)
    shutil.copy(root / "a.dcm", root / "b.dcm")  # same batch as a.dcm
    shutil.copy(root / "a.dcm", root / "z.dcm")  # the next batch
    store, root, n = _run(fake, tmp_path, "get", ["a.dcm", "b.dcm", "c.dcm", "z.dcm"])
    said: list[str] = []
    feed = NoticeFeed(store, said.append)
    run_get(store.run_id, 0)
    feed.watch(store.record(), store.counters())
    assert said == ["b.dcm has the SOPInstanceUID of a.dcm: their identifiers are one item in "
                    "deid-ids (the last read wins)"]
    run_get(store.run_id, 1)
    feed.watch(store.record(), store.counters())
    assert said[1:] == ["z.dcm has the SOPInstanceUID of another file: their identifiers are "
                        "one item in deid-ids (the last read wins)"]
    feed.drain(final=True)
    assert len(said) == 2  # each once
    assert summarize(store)["warnings"]["kinds"] == {"duplicate_uid": 2}


def test_a_started_again_batch_does_not_take_its_own_ids_for_another_files(fake, tmp_path):
    store, root, n = _run(fake, tmp_path, "get", ["a.dcm", "b.dcm"])
    from deid_workers.config import Settings
    from deid_workers.files.steps import get_one

    # an earlier start wrote the batch's ids, then died before its commit
    store.start_batch("get", 0, 0, "w\tt")
    got = get_one(str(root), "a.dcm", Settings())
    store.save_ids({got.entity: {got.item: got.fields}})
    run_get(store.run_id, 0)
    assert "get:notice:duplicate_uid" not in store.counters()


def test_the_feed_says_what_get_adds_to_a_batch_after_it_was_shown(fake, tmp_path):
    store, root, n = _run(fake, tmp_path, "get", ["a.dcm"])
    said: list[str] = []
    feed = NoticeFeed(store, said.append)
    store.add_notices("get", 0, json.dumps({"counts": {"duplicate_uid": 1},
                                            "first": [["a.dcm", "duplicate_uid", "one"]]}),
                      {"notice:duplicate_uid": 1})
    feed.watch(store.record(), store.counters())
    store.add_notices("get", 0, json.dumps({"counts": {"duplicate_uid": 2},
                                            "first": [["a.dcm", "duplicate_uid", "one"],
                                                      ["a.dcm", "duplicate_uid", "two"]]}),
                      {"notice:duplicate_uid": 1})
    feed.drain(final=True)
    assert said == ["a.dcm: one", "a.dcm: two"]
