from __future__ import annotations

import pydicom
import pytest

from deid_workers.config import Settings
from deid_workers.files.steps import get_one
from deid_workers.tasks import put as put_task
from deid_workers.tasks.get import run_get
from deid_workers.tasks.put import run_put
from deid_workers.tasks.readahead import ReadAhead


def test_put_uses_stored_ids_and_writes_mirrored_tree(make_run, tmp_path, placed):
    store, root, paths, n = make_run("all")
    for b in range(n):
        run_get(store.run_id, b)
    for entity, items in list(store.iter_ids()):
        store.save_ids({entity: {item: dict(f, id="SUBJ-" + entity[-6:]) for item, f in items}})
    for b in range(n):
        run_put(store.run_id, b)
    c = store.counters()
    assert c["put:written"] == 6 and c.get("put:refused", 0) == 0
    assert store.record()["state"] == "finished"
    ds = pydicom.dcmread(tmp_path / "out" / placed(root, paths[0]))
    assert ds.PatientID.startswith("SUBJ-") and not ds.get("PatientName")  # Type 2: kept empty


def test_put_counts_a_file_with_an_empty_item_as_having_ids(make_run):
    # put --ids with a recipe that reads no ids field keeps each item empty: the file still
    # has its ids; only a file whose item is absent counts as without
    store, root, paths, n = make_run("put", corrupt=0, images=5)
    keys = [get_one(root, rel, Settings(entity_field="PatientID")) for rel in paths]
    store.save_ids([(got.entity, {got.item: {}}) for got in keys[1:]])
    assert sum(run_put(store.run_id, b)["no_ids"] for b in range(n)) == 1
    assert store.counters()["put:written"] == len(paths)


def test_put_after_get_fetches_ids_per_batch_not_per_file(make_run, monkeypatch):
    store, root, paths, n = make_run("all", corrupt=0)
    for b in range(n):
        run_get(store.run_id, b)
    windows = []
    monkeypatch.setattr(put_task, "ReadAhead",
                        lambda *a, **k: windows.append(a[2]) or ReadAhead(*a, **k))
    for b in range(n):
        assert run_put(store.run_id, b)["no_ids"] == 0
    assert store.counters()["put:written"] == len(paths)
    # nothing to fetch, so nothing read ahead (it would only hold more datasets at once)
    assert windows == [1] * n


def test_put_with_ids_but_no_get_fetches_ids_per_read_ahead_window(make_run, monkeypatch,
                                                                   tmp_path, placed):
    # action put: no get stage noted the files' keys, so put reads ahead, then asks for the
    # window's ids at once instead of once per file
    store, root, paths, n = make_run("put", corrupt=0, images=5)
    ids: dict = {}
    for rel in paths:
        got = get_one(root, rel, Settings(entity_field="PatientID"))
        ids.setdefault(got.entity, {})[got.item] = dict(got.fields, id="SUBJ-" + got.entity[-6:])
    store.save_ids(ids)
    many = []
    cls = type(store)
    real_many = cls.get_ids_many
    monkeypatch.setattr(cls, "get_ids_many",
                        lambda self, keys: many.append(list(keys)) or real_many(self, many[-1]))
    monkeypatch.setattr("deid_workers.tasks.put.WINDOW", 2)
    for b in range(n):
        assert run_put(store.run_id, b)["no_ids"] == 0
    # per batch of 3 files: the keys get noted (none), then a window of 2 and one of 1
    assert [len(k) for k in many] == [0, 2, 1] * (n - 1) + [0, 1]
    assert store.counters()["put:written"] == len(paths) == 10
    ds = pydicom.dcmread(tmp_path / "out" / placed(root, paths[0]))
    assert ds.PatientID.startswith("SUBJ-")


def test_put_refuses_existing_and_counts(make_run, tmp_path, placed):
    store, root, paths, n = make_run("put", corrupt=0)
    dest = tmp_path / "out" / placed(root, paths[0])
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"old")
    result = run_put(store.run_id, 0)
    assert result["refused"] == 1 and result["written"] == 2
    assert dest.read_bytes() == b"old"
    assert store.outcomes("refused") == {paths[0]: "already exists"}


def test_put_redelivery_rewrites_its_own_outputs(make_run, tmp_path, placed):
    store, root, paths, n = make_run("put", corrupt=0)
    store.mark_started("put", 0)  # a worker started batch 0 and died before committing
    dest = tmp_path / "out" / placed(root, paths[0])
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"partial from this run")
    result = run_put(store.run_id, 0)
    assert result["written"] == 3 and result["refused"] == 0
    assert run_put(store.run_id, 0) == {"files": 0, "already_done": 1}


def test_put_makes_the_batch_durable_before_its_commit(make_run, tmp_path, monkeypatch):
    """Outputs are written without per-file fsyncs and synced together, before commit_batch."""
    import deid_workers.fs.durable as durable
    import deid_workers.tasks.tally as tally_module

    store, root, paths, n = make_run("put", corrupt=1)
    calls: list[str] = []
    monkeypatch.setattr(durable.os, "fsync", lambda fd: calls.append("fsync"))
    monkeypatch.setattr(durable, "_syncfs", lambda fd: calls.append("syncfs") or 0)
    real_sync, real_commit = tally_module.sync_paths, type(store).commit_batch

    def sync_paths(outputs):
        calls.append(f"sync {len(list(outputs))}")
        real_sync(outputs)

    monkeypatch.setattr(tally_module, "sync_paths", sync_paths)
    monkeypatch.setattr(type(store), "commit_batch",
                        lambda self, *a, **k: (calls.append("commit"), real_commit(self, *a, **k))[1])
    result = run_put(store.run_id, 0)
    assert result["written"] >= 1
    assert calls == [f"sync {result['written']}", "syncfs", "commit"]  # none while writing


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS:UserWarning")
def test_a_recipe_value_that_does_not_fit_fails_its_files_naming_the_recipe_line(make_run):
    recipe = "FORMAT dicom\n\n%header\n\nREPLACE SliceThickness REDACTED\n"
    store, root, paths, n = make_run("put", corrupt=0, recipe_texts=[recipe],
                                     recipe_files=["site.dicom"])
    for b in range(n):
        run_put(store.run_id, b)
    failed = store.outcomes("failed")
    assert set(failed) == set(paths)
    assert set(failed.values()) == {"site.dicom:5: REPLACE SliceThickness: the value is not a valid DS"}


def test_put_after_get_reads_each_files_keys_once_and_resolves_each_output_once(
        make_run, tmp_path, monkeypatch):
    """get noted each file's (entity, item) and what it lacked: put reads neither again, and
    reports the same missing fields; each output's path is resolved once per file, also on a
    redelivered batch (which checks whether an output is its own)."""
    from deid_workers.files import steps

    store, root, paths, n = make_run("all", corrupt=0)
    lacking = paths[1]
    ds = pydicom.dcmread(f"{root}/{lacking}")
    del ds.PatientID
    ds.save_as(f"{root}/{lacking}", enforce_file_format=True)
    for b in range(n):
        run_get(store.run_id, b)
    assert store.outcomes("missing") == {lacking: "PatientID"}

    def read_again(*args, **kwargs):
        raise AssertionError("put read a file's entity and item that get had noted")

    resolved: list[str] = []
    real = steps.output_path
    monkeypatch.setattr(steps, "entity_item", read_again)
    monkeypatch.setattr(steps, "output_path", lambda *a: resolved.append(a[1]) or real(*a))
    for b in range(n):
        store.mark_started("put", b)  # as if a worker had died on it: a redelivery
        run_put(store.run_id, b)
    assert store.counters()["put:written"] == len(paths) == len(resolved) == len(set(resolved))
    assert store.outcomes("missing") == {lacking: "PatientID"}
