"""tasks/resend.py: what a stalled run has not done is sent again, by one worker, only when
nothing is queued or taken (real processes: test_liveness.py)."""

from __future__ import annotations

import pytest

from deid_workers.tasks import context, dispatch
from deid_workers.tasks.get import run_get
from deid_workers.tasks.resend import StallWatch, resend_stored


@pytest.fixture
def sent(monkeypatch):
    got: list[tuple] = []
    monkeypatch.setattr(dispatch, "send", lambda name, *args: got.append((name, *args)))
    monkeypatch.setattr(dispatch, "send_many",
                        lambda name, arglists: got.extend((name, *a) for a in arglists))
    return got


def _running(store):
    store.update(state="running")
    return store


def test_a_lost_first_stage_batch_is_sent_again_with_finalize(make_run, sent):
    store, _, _, n = make_run("all")
    _running(store)
    for b in range(n):
        if b != 1:  # batch 1's message was lost
            run_get(store.run_id, b)
    assert resend_stored(store) == "re-sent 1 get batch(es) and finalize"
    assert sent == [("deid.get", store.run_id, 1), ("deid.finalize", store.run_id)]


def test_nothing_is_sent_before_the_walk_is_done(make_run, sent):
    store, *_ = make_run("all")
    _running(store).update(walk_done=False)
    assert resend_stored(store) is None and sent == []


def test_the_watch_waits_for_a_standstill_on_an_idle_cluster_and_acts_once(make_run, sent, fake):
    store, _, _, n = make_run("all")
    _running(store)
    watch = StallWatch(fake, context.worker_keys(), after=30)
    other = StallWatch(fake, context.worker_keys(), after=30)  # a second worker
    assert watch.check(now=0) == [] and other.check(now=0) == []  # first look: noted
    assert watch.check(now=29) == [] and sent == []  # not long enough
    fake.lpush("get", "a message")  # work queued: a standstill counts from when it ends
    assert watch.check(now=31) == []
    fake.delete("get")
    assert watch.check(now=32) == [] and watch.check(now=61) == []
    assert watch.check(now=62) == [store.run_id]
    assert sent[0] == ("deid.get", store.run_id, 0) and len(sent) == n + 1
    assert other.check(now=62) == []  # the lock: one worker resends
    fake.delete(f"deid:run:{store.run_id}:unstall")  # the lock's time is up
    run_get(store.run_id, 0)  # progress: the standstill counts again from here
    sent.clear()
    assert watch.check(now=100) == [] and watch.check(now=129) == [] and sent == []
    assert watch.check(now=130) == [store.run_id] and ("deid.get", store.run_id, 0) not in sent


def test_finished_runs_are_left_alone(make_run, sent, fake):
    store, *_ = make_run("all")
    store.set_state("finished")
    watch = StallWatch(fake, context.worker_keys(), after=1)
    assert watch.check(now=0) == [] and watch.check(now=10) == [] and sent == []
