"""tasks.offloop: the thread that sends a worker's acks and task events beside its event loop
(the Redis side of an ack runs against a real Redis in tests/integration/test_roundtrips.py)."""

from __future__ import annotations

import os
import threading

import pytest
import redis

from deid_workers.tasks import compat, offloop
from deid_workers.tasks.offloop import OffLoop


class FakeQoS:
    """What OffLoop uses of kombu's Redis QoS: a pipeline to add removals to."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.executed: list[list[str]] = []
        self.threads: set[str] = set()

    def pipe_or_acquire(self):
        qos = self

        class Pipe:
            def __init__(self) -> None:
                self.tags: list[str] = []

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def execute(self) -> None:
                qos.threads.add(threading.current_thread().name)
                if qos.fail:
                    raise redis.ConnectionError("gone")
                qos.executed.append(self.tags)

        return Pipe()


def remove(qos, tags, pipe) -> None:
    pipe.tags.extend(tags)


def test_acks_waiting_together_go_in_one_pipeline_per_channel_from_the_thread():
    loop = OffLoop(remove)
    a, b = FakeQoS(), FakeQoS()
    with loop._cond:  # hold the thread back so the acks wait together
        for tag in ("t1", "t2", "t3"):
            loop.ack(a, tag)
        loop.ack(b, "u1")
    assert loop.drain(5)
    assert a.executed == [["t1", "t2", "t3"]] and b.executed == [["u1"]]
    assert a.threads == b.threads == {"deid-offloop"}
    assert loop.acked == 4 and loop.failed == 0


def test_a_failed_ack_is_said_and_the_thread_goes_on(caplog):
    loop = OffLoop(remove)
    bad, good = FakeQoS(fail=True), FakeQoS()
    loop.ack(bad, "t1")
    assert loop.drain(5)
    loop.ack(good, "t2")
    assert loop.drain(5)
    assert good.executed == [["t2"]] and loop.failed == 1
    assert any("Couldn't ack 1 task(s), reason: ConnectionError" in r.getMessage()
               for r in caplog.records)


def test_a_call_asked_for_again_before_it_starts_runs_once():
    loop = OffLoop(remove)
    calls: list[str] = []
    flush = lambda: calls.append(threading.current_thread().name)  # noqa: E731
    with loop._cond:
        for _ in range(5):
            loop.call_once(flush)
    assert loop.drain(5)
    assert calls == ["deid-offloop"]
    loop.call_once(flush)  # after it ran, it runs again
    assert loop.drain(5) and len(calls) == 2


def test_a_forked_process_does_its_work_in_place():
    loop = OffLoop(remove)
    assert loop.usable()
    loop._pid = os.getpid() + 1  # as a pool process sees its parent's thread
    assert not loop.usable() and loop.drain(0.1)


def test_buffered_task_events_are_flushed_by_the_thread(monkeypatch):
    """Celery's Consumer asks its loop to flush buffered task events; the patched method hands
    the flush to the thread, once however often it is asked before it runs."""
    from celery.worker.consumer.consumer import Consumer
    from kombu.transport import redis as kombu_redis

    if not compat.EVENTS_SUPPORTED:
        pytest.skip("Celery is not a release tasks/compat.py knows")
    monkeypatch.setattr(Consumer, "on_send_event_buffered", Consumer.on_send_event_buffered)
    monkeypatch.setattr(kombu_redis.QoS, "ack", kombu_redis.QoS.ack)
    monkeypatch.setattr(offloop, "_offloop", None)
    assert compat.install_offloop()
    flushed: list[str] = []

    class Stub:
        hub = object()

        def _flush_events(self) -> None:
            flushed.append(threading.current_thread().name)

    stub = Stub()
    Consumer.on_send_event_buffered(stub)
    assert compat.drain_offloop(5)
    assert flushed == ["deid-offloop"]
