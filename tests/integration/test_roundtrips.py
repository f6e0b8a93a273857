"""The Redis round trips a batch waits for, counted on a real worker (benchmarks/roundtrips.py):
on a cluster each is a network latency, so the batching of issue 19 must not regress. A
first batch (connections, the run's context) and the last (chord, run log) cost more; the
median is what every other batch pays. The counts are exact (sends of redis-py connections),
so these tests fail when a round trip is added back, whatever the machine's speed."""

from __future__ import annotations

import threading

import pytest

from benchmarks.roundtrips import count_roundtrips

pytestmark = pytest.mark.integration


def test_a_batch_waits_for_few_round_trips():
    result = count_roundtrips(patients=4, images=100, batch=50)
    median = result["pool_median"]
    assert median["deid.get"] == 3  # its start (with its paths), its commit, the chord
    assert median["deid.put"] == 2  # start (with its paths and ids), commit (with the check)
    assert result["tasks"]["deid.put"] == 8
    # finalize: the run's snapshot, its state, the export (sets, one group of entities), the
    # put batches sent, its commit; a first publish in a process adds kombu's declarations
    assert result["pool_per_task"]["deid.finalize"] <= 9
    # The worker's event loop only takes tasks (BRPOP, kombu's note in unacked: 2 a task; kombu's
    # periodic scan of unacked, about 8 with its new connection, may fall in): the ack and the
    # task events of each (4 or more a task) go out from the offloop thread.
    loop = result["main_between_tasks"]
    assert loop["main"] <= 3.5, loop
    assert loop["deid-offloop"] >= 1, loop  # at least the ack of every task
    assert result["unacked_left"] == 0  # a warm shutdown sent every ack before it stopped


def test_an_ack_leaves_the_event_loop_at_once_and_reaches_redis(tmp_path, monkeypatch):
    """kombu's Redis ack through the patched QoS: the caller's thread sends nothing (the
    message counts as acknowledged in the process at once), the offloop thread removes it
    from Redis' unacked set and its owner with it, and drain() waits for that."""
    import redis.connection as rc
    from celery.worker.consumer.consumer import Consumer
    from integration_procs import RedisServer
    from kombu import Connection
    from kombu.transport import redis as kombu_redis

    from deid_workers.tasks import compat, offloop

    # the patches and the thread last for this test only (other tests ack in place)
    monkeypatch.setattr(kombu_redis.QoS, "ack", kombu_redis.QoS.ack)
    monkeypatch.setattr(Consumer, "on_send_event_buffered", Consumer.on_send_event_buffered)
    monkeypatch.setattr(offloop, "_offloop", None)
    server = RedisServer(tmp_path, aof=False)
    client = server.client()
    sends: dict[str, int] = {}
    counting = threading.Event()
    plain = rc.AbstractConnection.send_packed_command

    def counted(self, command, check_health=True):
        if counting.is_set():
            name = threading.current_thread().name
            sends[name] = sends.get(name, 0) + 1
        return plain(self, command, check_health)

    monkeypatch.setattr(rc.AbstractConnection, "send_packed_command", counted)
    try:
        compat.install()
        compat.set_owner("w1@test#abc", 20)
        assert compat.install_offloop()
        with Connection(server.url) as conn:
            queue = conn.SimpleQueue("offloop-test")
            queue.put({"n": 1})
            message = queue.get(timeout=5)
            assert client.hlen("unacked") == 1 and client.hlen(compat.OWNER_KEY) == 1
            counting.set()
            message.ack()
            on_caller = sends.get(threading.current_thread().name, 0)
            assert compat.drain_offloop(10)
            counting.clear()
            assert on_caller == 0
            assert sends.get("deid-offloop", 0) == 1  # one pipeline: index, entry, owner
            assert client.hlen("unacked") == 0 and client.hlen(compat.OWNER_KEY) == 0
            queue.close()
    finally:
        compat.set_owner(None)
        server.kill()


def test_tasks_go_out_in_one_round_trip_and_one_by_one_when_that_fails(tmp_path, monkeypatch):
    """finalize's put batches: pipelined (kombu's Producer.batch); when the pipeline's flush
    fails, every task is sent again alone, so none is lost (a duplicate is harmless)."""
    import json

    from integration_procs import RedisServer
    from kombu import messaging

    from deid_workers.app import app, configure
    from deid_workers.config import Settings
    from deid_workers.tasks.finalize import send_put

    server = RedisServer(tmp_path, aof=False)
    client = server.client()
    try:
        configure(app, Settings(broker_url=server.url))
        send_put("run1", [0, 1, 2])
        sent = [json.loads(m)["headers"]["argsrepr"] for m in client.lrange("put", 0, -1)]
        assert sorted(sent) == ["('run1', 0)", "('run1', 1)", "('run1', 2)"]
        client.delete("put")
        if hasattr(messaging.Producer, "batch"):
            class Failing(messaging._ProducerBatch):
                def __exit__(self, *exc):
                    super().__exit__(*exc)
                    raise ConnectionError("flush failed")

            monkeypatch.setattr(messaging.Producer, "batch",
                                lambda self, max_size=1000: Failing(self, max_size))
            send_put("run2", [5, 6])
            sent = [json.loads(m)["headers"]["argsrepr"] for m in client.lrange("put", 0, -1)]
            assert sorted(set(sent)) == ["('run2', 5)", "('run2', 6)"]
    finally:
        server.kill()
