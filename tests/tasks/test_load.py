"""deid.load: chunks of a put --ids file written by workers, and put batches waiting for them."""

from __future__ import annotations

import json

import pytest
from celery.exceptions import Reject

from deid_workers.errors import StoreError
from deid_workers.ids.chunks import iter_ids_chunks
from deid_workers.tasks import load
from deid_workers.tasks.context import run_context
from deid_workers.tasks.load import await_ids, ids_ready, run_load
from deid_workers.tasks.put import run_put


@pytest.fixture(autouse=True)
def _no_ready_cache():
    load._ready.clear()
    yield
    load._ready.clear()


def _stage(store, tmp_path, ids, items=1):
    path = tmp_path / "ids.json"
    path.write_text(json.dumps(ids))
    n = 0
    for n, (text, _) in enumerate(iter_ids_chunks(path, items)):
        store.stage_ids_chunk(n, text)
    store.update(ids_chunks=n + 1)
    return n + 1


def test_a_chunk_is_written_committed_and_dropped_once(make_run, tmp_path):
    store, *_ = make_run("put")
    _stage(store, tmp_path, {"P1": {"1.1": {"id": "S1"}, "1.2": {"id": "S2"}}, "P2": {"2.1": {}}},
           items=2)
    assert run_load(store.run_id, 0) == {"items": 2}
    assert store.get_ids("P1", "1.2") == {"id": "S2"} and store.get_ids("P2", "2.1") is None
    assert store.ids_chunk(0) is None and store.done_batches("load") == {0}
    assert run_load(store.run_id, 0) == {"items": 0, "already_done": 1}  # redelivered
    assert run_load(store.run_id, 1) == {"items": 1}
    assert store.counters()["load:items"] == 3


def test_a_chunk_of_a_purged_run_is_dropped_quietly(make_run, tmp_path):
    store, *_ = make_run("put")
    _stage(store, tmp_path, {"P1": {"1.1": {}}})
    run_context(store.run_id)  # this process has met the run
    store.purge()
    assert run_load(store.run_id, 0) == {"items": 0, "gone": 1}
    assert store.client.keys("*") == []  # nothing written back for a run that is gone


def test_a_write_racing_the_purge_leaves_nothing(make_run, tmp_path):
    store, *_ = make_run("put")
    _stage(store, tmp_path, {"P1": {"1.1": {}}})
    # The purge lands between the worker's read of its chunk and its write: the write, which
    # checks the run first, does not happen.
    real = store.ids_chunk

    def read_then_purge(chunk):
        text = real(chunk)
        store.purge()
        return text

    run_context(store.run_id).store.ids_chunk = read_then_purge
    assert run_load(store.run_id, 0) == {"items": 0, "gone": 1}
    assert store.client.keys("*") == []


def test_a_chunk_missing_from_a_live_run_is_an_error(make_run):
    store, *_ = make_run("put")
    store.update(ids_chunks=1)
    with pytest.raises(StoreError, match="ids chunk 0 is gone from Redis .*resume"):
        run_load(store.run_id, 0)


def test_put_waits_for_the_ids_then_goes_back_to_the_queue(make_run, tmp_path, monkeypatch):
    store, *_ = make_run("put")
    ctx = run_context(store.run_id)
    assert ids_ready(ctx, wait=0)  # no ids file: nothing to wait for
    load._ready.clear()
    _stage(store, tmp_path, {"P1": {"1.1": {}}, "P2": {"2.1": {}}})
    run_load(store.run_id, 0)
    assert not ids_ready(ctx, wait=0.05, poll=0.01)
    monkeypatch.setattr(load, "IDS_WAIT", 0.0)
    with pytest.raises(Reject):
        run_put(store.run_id, 0)
    assert not store.client.smembers(store.keys.started("put"))  # not counted as a start
    run_load(store.run_id, 1)
    assert ids_ready(ctx, wait=0)
    assert run_put(store.run_id, 0)["files"] == 3


def test_put_of_a_run_whose_ids_failed_writes_nothing(make_run, tmp_path):
    store, *_ = make_run("put")
    _stage(store, tmp_path, {"P1": {"1.1": {}}})
    store.set_state("failed", error="ids load failed: OSError")
    assert await_ids(run_context(store.run_id)) is False
    assert run_put(store.run_id, 0) == {"files": 0, "run_failed": 1}
    assert not store.done_batches("put")


def test_the_runs_known_ready_stay_few(make_run, monkeypatch):
    store, *_ = make_run("put")
    monkeypatch.setattr(load, "_READY_KEPT", 3)
    load._ready.update({"a", "b", "c"})
    assert ids_ready(run_context(store.run_id), wait=0)
    assert load._ready == {store.run_id}


def test_a_load_that_fails_for_real_fails_its_run_in_one_line(make_run):
    from deid_workers.tasks.load import load_chunk

    store, *_ = make_run("put")
    store.update(ids_chunks=1)  # chunk 0 was never kept (expired, say)
    with pytest.raises(StoreError):
        load_chunk(store.run_id, 0)
    rec = store.record()
    assert rec["state"] == "failed" and rec["error"] == "ids load (chunk 0) failed: StoreError"
