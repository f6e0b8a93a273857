from __future__ import annotations

import csv
import json
import math
import os

import pydicom

from deid_workers.idsfile import load_ids
from deid_workers.tasks.finalize import run_finalize
from deid_workers.tasks.get import run_get
from deid_workers.tasks.inspect import run_inspect


def test_finalize_get_writes_ids_files(make_run, tmp_path):
    store, root, paths, n = make_run("get")
    for b in range(n):
        run_get(store.run_id, b)
    run_finalize(store.run_id, enqueue=lambda *a: None)
    rec = store.record()
    assert rec["state"] == "finished"
    ids = load_ids(rec["ids_pkl"])
    assert ids == load_ids(rec["ids_json"])
    item = next(iter(ids["PID-0000-SENT"].values()))
    assert item["PatientID"] == "PID-0000-SENT"


def test_a_nan_float_in_one_file_does_not_fail_the_export(make_run):
    store, root, paths, n = make_run("get", corrupt=0)
    path = os.path.join(root, paths[0])
    ds = pydicom.dcmread(path)
    ds.add_new(0x0018602C, "FD", float("nan"))  # PhysicalDeltaX, a float element
    ds.save_as(path)
    for b in range(n):
        run_get(store.run_id, b)
    run_finalize(store.run_id, enqueue=lambda *a: None)
    rec = store.record()
    assert rec["state"] == "finished"
    values = [f.get("PhysicalDeltaX") for items in load_ids(rec["ids_pkl"]).values()
              for f in items.values()]
    assert sum(isinstance(v, float) and math.isnan(v) for v in values) == 1
    assert "NaN" in [f.get("PhysicalDeltaX") for items in load_ids(rec["ids_json"]).values()
                     for f in items.values()]


def test_finalize_all_enqueues_pending_put_batches(make_run):
    store, root, paths, n = make_run("all")
    for b in range(n):
        run_get(store.run_id, b)
    sent = []
    run_finalize(store.run_id, enqueue=lambda run_id, batches: sent.append(list(batches)))
    assert sent == [list(range(n))]
    assert store.record()["state"] == "put"
    # A redelivered finalize does nothing: put was sent once.
    assert run_finalize(store.run_id, enqueue=lambda *a: None) == {"already_done": 1}


def test_finalize_inspect_writes_report(make_run, tmp_path):
    store, root, paths, n = make_run("inspect")
    for b in range(n):
        run_inspect(store.run_id, b)
    run_finalize(store.run_id)
    rec = store.record()
    with open(rec["report_tsv"], newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    assert rows[0] == ["file", "flagged", "group", "reason"] and len(rows) == 7
    with open(rec["report_json"]) as fh:
        assert len(json.load(fh)) == 6
