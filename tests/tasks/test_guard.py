"""BatchGuard (tasks/guard.py): batches that kill their worker, and reruns of any batch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deid_workers.errors import RunRefused
from deid_workers.run.store import RunStore
from deid_workers.tasks import context
from deid_workers.tasks import put as put_task
from deid_workers.tasks.context import run_context
from deid_workers.tasks.get import run_get
from deid_workers.tasks.guard import KEPT_DYING, BatchGuard, poison_reason
from deid_workers.tasks.put import run_put


def _die_on(guard: BatchGuard, paths: list[str], victim: str) -> None:
    """A delivery whose worker is killed while on ``victim``: the generator is abandoned."""
    for rel in guard.files(paths):
        if rel == victim:
            return


def test_a_file_that_kills_its_worker_is_quarantined_after_max_retries(make_run):
    store, root, paths, n = make_run("get", corrupt=0, settings={"max_retries": 1})
    ctx = run_context(store.run_id)
    batch = store.batch(0)
    victim = batch[1]
    for _start in (1, 2):  # the first start and max_retries more: whole batch, no notes
        guard = BatchGuard(ctx, "get", 0)
        assert not guard.careful
        _die_on(guard, batch, victim)
    guard = BatchGuard(ctx, "get", 0)  # file by file now: it notes the victim, then dies
    assert guard.careful
    _die_on(guard, batch, victim)
    result = run_get(store.run_id, 0)  # the next start quarantines the victim and completes
    assert result["poison"] == 1 and result["files"] == 3 and result["valid"] == 2
    assert store.outcomes("poison") == {victim: poison_reason("get")}
    assert store.counters()["get:files"] == 3
    assert victim not in store.valid_batch(0)[0]
    assert store.client.hget(store.keys.inflight, "get:0") is None


def test_celery_retries_count_apart_and_ignore_older_notes(make_run):
    store, root, paths, n = make_run("get", corrupt=0, settings={"max_retries": 0})
    ctx = run_context(store.run_id)
    batch = store.batch(0)
    BatchGuard(ctx, "get", 0)
    guard = BatchGuard(ctx, "get", 0)
    _die_on(guard, batch, batch[0])  # noted at retry 0
    fresh = BatchGuard(ctx, "get", 0, retry=1)  # a Redis blip made Celery retry the task
    assert not fresh.careful
    assert list(fresh.files(batch)) == batch and fresh.poison == {}


def test_healthy_batches_never_write_notes(make_run, fake):
    store, root, paths, n = make_run("get")
    for b in range(n):
        run_get(store.run_id, b)
    assert not fake.exists(store.keys.inflight)
    assert set(fake.hvals(store.keys.deliveries)) == {"1"}


def test_put_batch_that_died_before_commit_gives_the_same_outputs_and_counts(
        make_run, tmp_path, monkeypatch, placed):
    store, root, paths, n = make_run("put", corrupt=1)
    out = tmp_path / "out"
    real = RunStore.commit_batch
    calls = []

    def dies_first(self, stage, *args, **kwargs):
        calls.append(stage)
        if len(calls) == 1:
            raise SystemExit("killed after writing, before committing")
        return real(self, stage, *args, **kwargs)

    monkeypatch.setattr(RunStore, "commit_batch", dies_first)
    with pytest.raises(SystemExit):
        run_put(store.run_id, 0)
    first = {p: p.read_bytes() for p in out.rglob("*.dcm")}
    placed_1 = Path(placed(root, paths[1]))
    stale = out / placed_1.parent / f".{placed_1.name}.x1y2.tmp"
    stale.write_bytes(b"half a file")  # what a kill inside write_atomic leaves
    again = run_put(store.run_id, 0)
    assert {p: p.read_bytes() for p in out.rglob("*.dcm")} == first
    assert again["written"] == 3 and again["refused"] == 0
    assert not stale.exists()
    assert store.counters()["put:written"] == 3
    assert run_put(store.run_id, 0) == {"files": 0, "already_done": 1}
    assert store.counters()["put:written"] == 3


@pytest.mark.parametrize("signed", [False, True])
def test_paths_that_leave_the_folders_are_refused(make_run, tmp_path, signed):
    """A batch list naming files outside the input is refused whole, before any file is
    read: unsigned (someone with only the Redis password wrote it), or signed but not
    relative (a producer bug)."""
    store, root, paths, n = make_run("put", corrupt=0)
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "leak.dcm").write_bytes((Path(root) / paths[0]).read_bytes())
    before = (secret / "leak.dcm").read_bytes()
    bad = ["../secret/leak.dcm", "/etc/passwd"]
    if signed:
        store.add_batch(0, bad)
    else:
        store.client.hset(store.keys.batches, "0", json.dumps(bad))
    context.forget()
    with pytest.raises(RunRefused, match="batches 0"):
        run_put(store.run_id, 0)
    assert (secret / "leak.dcm").read_bytes() == before
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.dcm"))


def test_a_batch_that_keeps_dying_with_no_file_to_blame_ends_with_its_files_failed(make_run):
    store, root, paths, n = make_run("get", corrupt=0, settings={"max_retries": 1})
    ctx = run_context(store.run_id)
    batch = store.batch(0)
    # Killed after its last file every time (say, while committing): no note to act on.
    for _ in range(1 + 1 + len(batch) + 1):
        guard = BatchGuard(ctx, "get", 0)
        assert list(guard.files(batch)) == batch
    result = run_get(store.run_id, 0)
    assert result["files"] == 3 and result["valid"] == 0 and result["failed"] == 3
    assert store.outcomes("failed") == {rel: KEPT_DYING for rel in batch}
    assert store.done_batches("get") == {0}


def test_a_careful_put_reads_each_file_only_once_the_guard_has_noted_it(make_run, monkeypatch):
    # put reads ahead of the file it writes; in careful mode a crash must be blamed on the
    # file being read, so there it reads each file only after the guard noted that file
    store, root, paths, n = make_run("put", corrupt=0, settings={"max_retries": 0})
    ctx = run_context(store.run_id)
    BatchGuard(ctx, "put", 0)  # the first start died: the next one goes file by file
    noted = []
    real = put_task.open_put

    def open_put(root, rel, *args, **kw):
        noted.append((rel, store.inflight("put", 0, 0)))
        return real(root, rel, *args, **kw)

    monkeypatch.setattr(put_task, "open_put", open_put)
    assert run_put(store.run_id, 0)["written"] == 3
    assert noted == [(rel, rel) for rel in store.batch(0)]


def test_a_file_that_raises_fails_with_a_worded_reason_and_the_batch_goes_on(make_run, caplog):
    store, root, paths, n = make_run("get", corrupt=0)
    ctx = run_context(store.run_id)
    batch = store.batch(0)
    guard = BatchGuard(ctx, "put", 0)

    def step(rel: str) -> str:
        if rel == batch[1]:
            raise KeyError("PID-0000-SENT")  # a message may quote a value
        return rel

    failed: dict[str, str] = {}
    with caplog.at_level("WARNING"):
        done = [rel for rel, _ in guard.run(batch, step, failed)]
    assert done == [batch[0], batch[2]]
    reason = failed[batch[1]]
    assert reason.startswith("could not be processed: internal error while de-identifying")
    assert "(KeyError); please report it" in reason and "PID-0000" not in reason
    assert reason in caplog.text and "PID-0000" not in caplog.text
