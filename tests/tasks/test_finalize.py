from __future__ import annotations

import csv
import json
import math
import os

import pydicom
import pytest

from deid_workers.ids.read import load_ids
from deid_workers.tasks import context
from deid_workers.tasks.finalize import export, export_shards, run_export, run_finalize
from deid_workers.tasks.get import run_get
from deid_workers.tasks.inspect import run_inspect


def test_finalize_get_writes_ids_files(make_run, tmp_path):
    store, root, paths, n = make_run("get")
    for b in range(n):
        run_get(store.run_id, b)
    run_finalize(store.run_id, send_puts=lambda *a: None)
    rec = store.record()
    assert rec["state"] == "finished"
    ids = load_ids(rec["ids_pkl"])
    assert ids == load_ids(rec["ids_json"])
    item = next(iter(ids["PID-0000-SENT"].values()))
    assert item["PatientID"] == "PID-0000-SENT"


def test_ids_go_to_the_private_records_folder_and_an_earlier_runs_are_kept(make_run, tmp_path):
    store, root, paths, n = make_run("get")
    records = tmp_path / "out-records"  # the default: beside the output tree, never in it
    records.mkdir()
    older = records / "deid-ids.json"
    older.write_text('{"edited": "by a human"}')
    os.utime(older, (1, 1))  # written long before this run
    for b in range(n):
        run_get(store.run_id, b)
    with pytest.raises(FileExistsError):
        run_finalize(store.run_id, send_puts=lambda *a: None)
    assert older.read_text() == '{"edited": "by a human"}'
    older.unlink()
    context.forget()
    run_finalize(store.run_id, send_puts=lambda *a: None)
    rec = store.record()
    assert os.path.dirname(rec["ids_pkl"]) == str(records)
    assert {os.stat(records / f).st_mode & 0o777 for f in os.listdir(records)} == {0o600}
    assert not (tmp_path / "out").exists()


def test_a_nan_float_in_one_file_does_not_fail_the_export(make_run):
    store, root, paths, n = make_run("get", corrupt=0)
    path = os.path.join(root, paths[0])
    ds = pydicom.dcmread(path)
    ds.add_new(0x0018602C, "FD", float("nan"))  # PhysicalDeltaX, a float element
    ds.save_as(path)
    for b in range(n):
        run_get(store.run_id, b)
    run_finalize(store.run_id, send_puts=lambda *a: None)
    rec = store.record()
    assert rec["state"] == "finished"
    values = [f.get("PhysicalDeltaX") for items in load_ids(rec["ids_pkl"]).values()
              for f in items.values()]
    assert sum(isinstance(v, float) and math.isnan(v) for v in values) == 1
    assert "NaN" in [f.get("PhysicalDeltaX") for items in load_ids(rec["ids_json"]).values()
                     for f in items.values()]


def test_finalize_all_sends_pending_put_batches(make_run):
    store, root, paths, n = make_run("all")
    for b in range(n):
        run_get(store.run_id, b)
    sent = []
    run_finalize(store.run_id, send_puts=lambda run_id, batches: sent.append(list(batches)))
    assert sent == [list(range(n))]
    assert store.record()["state"] == "put"
    # A redelivered finalize does nothing: put was sent once.
    assert run_finalize(store.run_id, send_puts=lambda *a: None) == {"already_done": 1}


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


def _sharded_run(make_run, action, per_shard=4, patients=6):
    """A run whose get is done, set to export ids in shards of ``per_shard`` files."""
    store, root, paths, n = make_run(action, patients=patients, corrupt=0,
                                     settings={"entity_field": "PatientID",
                                               "export_shard_files": per_shard})
    for b in range(n):
        run_get(store.run_id, b)
    return store, n


def _one_piece_ids(store, tmp_path):
    """What the unsharded export writes for the same store."""
    from deid_workers.ids.export import IdsWriter

    with IdsWriter(tmp_path / "one") as writer:
        for entity, items in store.iter_ids():
            writer.add_entity(entity, items)
    return load_ids(writer.pkl_path)


def test_export_shards_are_powers_of_two_up_to_the_entity_sets():
    assert [export_shards(f, 1000) for f in (0, 999, 1000, 1999, 2000, 3999, 4000)] \
        == [1, 1, 1, 1, 2, 2, 4]
    assert export_shards(10**6, 1000) == 16 and export_shards(10**6, 10**6) == 1


def test_a_sharded_export_writes_the_same_ids_and_sends_put_once(make_run, tmp_path):
    store, n = _sharded_run(make_run, "all")
    sent_shards, sent_put = [], []
    result = run_finalize(store.run_id, send_puts=lambda r, b: sent_put.append(list(b)),
                          send_shards=lambda r, shards, count: sent_shards.append((shards, count)))
    [(shards, count)] = sent_shards
    assert count == 4 and shards == [1, 2, 3]  # 18 files in shards of 4: a power of 2
    assert result == {"shard": 0, "entities": result["entities"]}  # shard 0 ran, not the join
    assert store.record()["state"] == "finalize" and sent_put == []
    results = [run_export(store.run_id, s, count, send_puts=lambda r, b: sent_put.append(list(b)))
               for s in reversed(shards)]
    assert [r.get("shard") for r in results] == [3, 2, None]  # the last commit joined
    assert results[-1]["entities"] == 6
    assert sent_put == [list(range(n))]
    rec = store.record()
    assert rec["state"] == "put"
    ids = load_ids(rec["ids_pkl"])
    assert ids == load_ids(rec["ids_json"]) == _one_piece_ids(store, tmp_path)
    assert len(ids) == 6 and sum(len(v) for v in ids.values()) == 18
    out = os.listdir(os.path.dirname(rec["ids_pkl"]))
    assert not [f for f in out if f.endswith(".part")]  # pieces hold PHI: gone once joined
    # Redelivered shards and finalize after the join do nothing.
    assert run_export(store.run_id, 1, count, send_puts=lambda r, b: sent_put.append(b)) \
        == {"already_done": 1}
    assert run_finalize(store.run_id, send_puts=lambda r, b: sent_put.append(b)) == {"already_done": 1}
    assert len(sent_put) == 1


def test_a_redelivered_finalize_resends_only_unwritten_shards(make_run):
    store, n = _sharded_run(make_run, "get")
    sent = []
    run_finalize(store.run_id, send_shards=lambda r, shards, count: sent.append(shards))
    run_export(store.run_id, 2, 4)
    store.update(state="finalize")
    # Its worker died before the other shards ran: the redelivery sends 1 and 3 again.
    run_finalize(store.run_id, send_shards=lambda r, shards, count: sent.append(shards))
    assert sent == [[1, 2, 3], [1, 3]]
    for s in (1, 3):
        run_export(store.run_id, s, 4)
    rec = store.record()
    assert rec["state"] == "finished" and load_ids(rec["ids_pkl"])


def test_a_shard_redelivered_after_its_join_died_joins_again(make_run, monkeypatch):
    from deid_workers.tasks import finalize as fin

    store, n = _sharded_run(make_run, "get", per_shard=9)  # 2 shards
    run_finalize(store.run_id, send_shards=lambda *a: None)

    def dies(*a, **k):
        raise KeyboardInterrupt("worker killed")

    monkeypatch.setattr(fin, "join_pieces", dies)
    try:
        run_export(store.run_id, 1, 2)
    except KeyboardInterrupt:
        pass
    assert store.record()["state"] == "finalize"
    monkeypatch.undo()
    assert run_export(store.run_id, 1, 2)["entities"] == 6  # counted once, by the first commit
    assert store.record()["state"] == "finished"


def test_a_failing_shard_fails_the_run_in_one_line_and_leaves_no_piece(make_run, tmp_path):
    store, n = _sharded_run(make_run, "get", per_shard=9)
    run_finalize(store.run_id, send_shards=lambda *a: None)
    out = tmp_path / "out-records"  # identifiers never go to the output tree
    for piece in [p for p in os.listdir(out) if p.startswith(".deid-ids") and ".pkl" in p]:
        os.unlink(out / piece)  # half of shard 0's piece vanished (the folder was cleaned)
    assert [p for p in os.listdir(out) if p.endswith(".part")]
    with pytest.raises(FileNotFoundError):
        export.run(store.run_id, 1, 2)
    rec = store.record()
    assert rec["state"] == "failed"
    assert rec["error"] == "identifiers export failed: No such file or directory"
    assert os.listdir(out) == []  # the pieces hold identifiers: none is left behind


def test_a_failing_finalize_fails_the_run_itself(make_run, monkeypatch):
    from deid_workers.tasks import finalize as fin

    store, root, paths, n = make_run("get")
    for b in range(n):
        run_get(store.run_id, b)

    def no_space(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fin, "write_ids", no_space)
    with pytest.raises(OSError):
        fin.finalize.run(store.run_id)
    rec = store.record()
    assert rec["state"] == "failed" and rec["error"] == "finalize failed: No space left on device"


def test_a_run_failed_by_its_export_is_taken_up_again_by_resume(make_run, tmp_path, monkeypatch):
    from deid_workers import producer
    from deid_workers.config import Settings
    from deid_workers.tasks import finalize as fin

    store, n = _sharded_run(make_run, "get", per_shard=9)
    run_finalize(store.run_id, send_shards=lambda *a: None)
    settings = Settings.from_env()  # the producer's, holding the cluster key

    def no_space(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fin, "write_piece", no_space)
    with pytest.raises(OSError):
        export.run(store.run_id, 1, 2)
    assert store.record()["error"] == "identifiers export failed: No space left on device"
    monkeypatch.undo()  # the disk has room again
    sent = []
    monkeypatch.setattr(producer.dispatch, "send", lambda name, run_id: sent.append(run_id))
    _, said = producer.resume(settings, store.run_id, client=store.client)
    assert said == "re-sent finalize" and sent == [store.run_id]
    rec = store.record()
    assert rec["state"] == "running" and not rec.get("error") and not rec.get("finished")
    run_finalize(store.run_id, send_shards=lambda r, shards, count: sent.append(shards))
    assert sent[-1] == [1]  # shard 0 was removed with the failure, and written again
    run_export(store.run_id, 1, 2)
    rec = store.record()
    assert rec["state"] == "finished" and len(load_ids(rec["ids_pkl"])) == 6
    assert store.counters()["export:entities"] == 6  # counted once over both attempts
