"""tasks/limits.py and BatchGuard.on_time_limit: a batch out of time is requeued and counted;
in careful mode the file it hung on is quarantined (real processes: test_reliability.py)."""

from __future__ import annotations

import pytest
from celery.exceptions import Reject, SoftTimeLimitExceeded
from celery.worker.request import Request

from deid_workers.app import _conf, app
from deid_workers.config import Settings
from deid_workers.tasks import get as get_module
from deid_workers.tasks.context import run_context
from deid_workers.tasks.get import get_batch, run_get
from deid_workers.tasks.guard import BatchGuard, poison_reason
from deid_workers.tasks.limits import BatchRequest, BatchTask, note_time_limit


@pytest.fixture
def limit_env(monkeypatch):
    monkeypatch.setenv("DEID_TASK_TIME_LIMIT", "7")
    monkeypatch.setenv("DEID_VISIBILITY_TIMEOUT", "9")


def _hang_on(guard: BatchGuard, paths: list[str], victim: str) -> None:
    """A start whose soft time limit strikes while it is on ``victim``."""
    for rel in guard.files(paths):
        if rel == victim:
            raise SoftTimeLimitExceeded()


def test_batch_mode_only_asks_for_another_start(limit_env, make_run):
    store, *_ = make_run("get", corrupt=0, settings={"max_retries": 1})
    batch = store.batch(0)
    guard = BatchGuard(run_context(store.run_id), "get", 0)
    with pytest.raises(SoftTimeLimitExceeded):
        _hang_on(guard, batch, batch[1])
    assert guard.on_time_limit() is True
    assert store.outcomes("poison") == {}


def test_careful_mode_quarantines_the_file_it_hung_on_and_the_next_start_completes(
        limit_env, make_run):
    store, *_ = make_run("get", corrupt=0, settings={"max_retries": 1})
    ctx = run_context(store.run_id)
    batch = store.batch(0)
    for _start in (1, 2):
        guard = BatchGuard(ctx, "get", 0)
        with pytest.raises(SoftTimeLimitExceeded):
            _hang_on(guard, batch, batch[2])
        assert not guard.careful and guard.on_time_limit()
    guard = BatchGuard(ctx, "get", 0)
    assert guard.careful
    with pytest.raises(SoftTimeLimitExceeded):
        _hang_on(guard, batch, batch[2])
    assert guard.on_time_limit() is True
    reason = poison_reason("get", 7)
    assert store.outcomes("poison") == {batch[2]: reason}
    assert store.inflight("get", 0, 0) is None
    result = run_get(store.run_id, 0)
    assert (result["files"], result["valid"], result["poison"]) == (3, 2, 1)
    assert store.outcomes("poison") == {batch[2]: reason}


def test_careful_mode_with_no_file_to_blame_gives_up(limit_env, make_run):
    store, *_ = make_run("get", corrupt=0, settings={"max_retries": 0})
    ctx = run_context(store.run_id)
    BatchGuard(ctx, "get", 0)
    guard = BatchGuard(ctx, "get", 0)
    assert guard.careful
    assert list(guard.files(store.batch(0))) == store.batch(0)
    assert guard.on_time_limit() is False  # out of time after the last file: fail loudly
    assert store.outcomes("poison") == {}


def test_a_hard_kill_noted_by_the_main_process_names_the_time_limit(limit_env, make_run, fake):
    store, *_ = make_run("get", corrupt=0, settings={"max_retries": 0})
    ctx = run_context(store.run_id)
    batch = store.batch(0)
    BatchGuard(ctx, "get", 0)
    guard = BatchGuard(ctx, "get", 0)
    for rel in guard.files(batch):
        if rel == batch[0]:
            break  # the process is killed while on batch[0]: the note stays
    from deid_workers.run import client as run_client

    run_client._SHARED[(str(app.conf.broker_url), False)] = fake
    try:
        assert note_time_limit(str(app.conf.broker_url), store.run_id, "get", 0, 0, 7)
    finally:
        del run_client._SHARED[(str(app.conf.broker_url), False)]
    result = run_get(store.run_id, 0)
    assert result["poison"] == 1
    assert store.outcomes("poison") == {batch[0]: poison_reason("get", 7)}
    assert not fake.exists(store.keys.inflight)  # note and time-limit note both gone


def test_the_task_turns_a_soft_limit_into_a_requeue_only_when_the_guard_agrees(
        limit_env, make_run, monkeypatch):
    store, *_ = make_run("get", corrupt=0, settings={"max_retries": 0})

    def hangs(run_id, batch_no, retry=0):
        guard = BatchGuard(run_context(run_id), "get", batch_no, retry)
        _hang_on(guard, store.batch(batch_no), store.batch(batch_no)[1])

    monkeypatch.setattr(get_module, "run_get", hangs)
    with pytest.raises(Reject) as info:
        get_batch(store.run_id, 0)  # first start, batch mode: start again
    assert info.value.requeue is True
    with pytest.raises(Reject):
        get_batch(store.run_id, 0)  # careful: quarantine batch[1], then start again
    assert list(store.outcomes("poison")) == [store.batch(0)[1]]
    assert BatchGuard.active is None

    def no_guard(run_id, batch_no, retry=0):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(get_module, "run_get", no_guard)
    with pytest.raises(SoftTimeLimitExceeded):  # nothing to requeue safely: fail as before
        get_batch(store.run_id, 0)


def test_a_slow_step_does_not_make_its_file_a_failure(limit_env, make_run):
    store, *_ = make_run("get", corrupt=0)
    guard = BatchGuard(run_context(store.run_id), "get", 0)
    failed: dict[str, str] = {}

    def step(rel: str) -> None:
        raise SoftTimeLimitExceeded()

    with pytest.raises(SoftTimeLimitExceeded):
        list(guard.run(store.batch(0), step, failed))
    assert failed == {}


def test_every_task_of_the_app_is_a_batch_task():
    app.loader.import_default_modules()  # registers every stage's task, as a worker does

    assert all(isinstance(app.tasks[f"deid.{q}"], BatchTask)
               for q in ("get", "inspect", "put", "clean", "finalize"))
    assert app.tasks["deid.get"].Request == "deid_workers.tasks.limits:BatchRequest"
    assert issubclass(BatchRequest, Request)


@pytest.mark.parametrize("limit, soft", [(3, 2), (4, 3), (20, 15), (1800, 1770), (1, 1)])
def test_the_soft_limit_comes_first(limit, soft):
    conf = _conf(Settings(task_time_limit=limit, visibility_timeout=limit + 10))
    assert (conf["task_time_limit"], conf["task_soft_time_limit"]) == (limit, soft)


def test_a_failed_task_shows_celery_the_error_type_not_its_text(caplog):
    """What the result backend stores and Flower shows of a failure: no path, no value."""
    from deid_workers.tasks.limits import TaskFailed

    @app.task(name="deid.test.leaky", bind=True, base=BatchTask, shared=False)
    def leaky(self, run_id, batch_no):
        raise PermissionError(13, "Permission denied", "/nas/DOE_JOHN/image1.dcm")

    result = leaky.apply(args=("r1", 0))
    assert result.failed() and isinstance(result.result, TaskFailed)
    shown = f"{result.result!r} {result.traceback}"
    assert "PermissionError" in shown and "DOE_JOHN" not in shown
    # the worker's own log keeps what happened, for whoever runs it
    assert any("DOE_JOHN" in (r.exc_text or "") or (r.exc_info and "DOE_JOHN" in str(r.exc_info[1]))
               for r in caplog.records)


def test_celery_control_flow_and_store_errors_pass_as_they_are():
    from celery.exceptions import Retry

    from deid_workers.errors import StoreError

    @app.task(name="deid.test.flow", bind=True, base=BatchTask, shared=False)
    def flow(self, run_id, which):
        raise {"retry": Retry("again"), "store": StoreError("run r1 is gone from Redis")}[which]

    with pytest.raises(Retry):
        flow("r1", "retry")
    with pytest.raises(StoreError, match="gone from Redis"):
        flow("r1", "store")
