"""The batch side of worker liveness (tasks/liveness.py): each start notes its taker, a start
replaced by a later one commits nothing, a committed batch delivered again does nothing."""

from __future__ import annotations

import pytest

from deid_workers.tasks.context import run_context
from deid_workers.tasks.get import get_batch, run_get
from deid_workers.tasks.guard import BatchGuard
from deid_workers.tasks.liveness import AlreadyCommitted, Superseded, check_taken, worker_id
from deid_workers.tasks.put import run_put


def test_each_start_notes_its_worker_and_a_token_of_its_own(make_run):
    store, *_ = make_run("get")
    ctx = run_context(store.run_id)
    first = BatchGuard(ctx, "get", 0)
    second = BatchGuard(ctx, "get", 0)
    assert first.taker != second.taker
    assert first.taker.partition("\t")[0] == second.taker.partition("\t")[0] == worker_id()
    assert store.taken_by("get", 0) == second.taker
    worker, since = store.takers()["get:0"]
    assert worker == worker_id() and since > 0


def test_a_start_replaced_while_it_ran_commits_nothing_and_the_later_one_commits(make_run):
    """A put (its worker cut off, presumed dead) is on its first file when B starts the batch
    again and commits it; A's end finds B's note and drops its results (which would call B's
    outputs "already exists")."""
    store, root, paths, n = make_run("put")
    ctx = run_context(store.run_id)
    batch = store.batch(0)
    a = BatchGuard(ctx, "put", 0)
    files = a.run(batch, lambda rel: rel, {})
    assert next(files)[0] == batch[0]
    assert run_put(store.run_id, 0)["written"] == len(batch)  # B
    with pytest.raises(Superseded, match="put batch 0 was started again"):
        list(files)
    assert store.counters()["put:files"] == len(batch)


def test_a_replaced_get_start_keeps_its_results_which_are_the_same(make_run):
    """get records the same values whoever reads the files, and counts once: no check."""
    store, *_ = make_run("get")
    ctx = run_context(store.run_id)
    batch = store.batch(0)
    a = BatchGuard(ctx, "get", 0)
    files = a.run(batch, lambda rel: rel, {})
    next(files)
    run_get(store.run_id, 0)
    assert len(list(files)) == len(batch) - 1
    assert store.counters()["get:files"] == len(batch)


def test_a_start_that_finished_its_files_before_the_next_began_keeps_its_results(make_run):
    store, *_ = make_run("get")
    ctx = run_context(store.run_id)
    batch = store.batch(0)
    a = BatchGuard(ctx, "get", 0)
    assert [rel for rel, _ in a.run(batch, lambda rel: rel, {})] == batch  # no raise
    check_taken(store, "get", 0, a.taker)


def test_the_task_class_turns_a_dropped_start_into_a_quiet_result(make_run):
    store, *_ = make_run("get")
    first = get_batch(store.run_id, 0)  # through BatchTask.__call__, as a worker runs it
    assert first["files"] == 3
    assert get_batch(store.run_id, 0) == {"files": 0, "already_done": 1}
    with pytest.raises(AlreadyCommitted):
        run_get(store.run_id, 0)
    assert store.counters()["get:batches"] == 1


def test_a_late_put_redelivery_writes_nothing(make_run, tmp_path):
    store, root, paths, n = make_run("put")
    assert run_put(store.run_id, 0)["files"] == 3
    out = tmp_path / "out"
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.dcm")}
    assert run_put(store.run_id, 0) == {"files": 0, "already_done": 1}
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.dcm")} == before
    assert store.counters()["put:batches"] == 1
