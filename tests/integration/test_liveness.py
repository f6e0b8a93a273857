"""Worker liveness (tasks/liveness.py, tasks/compat.py) on a real redis-server: the owner of
each taken message in kombu's own transaction, the atomic hand-back of a dead owner's messages,
the sweep's rules, and on real workers: a slow batch is never handed out twice, a frozen worker
loses its batch and its late results are dropped.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from contextlib import suppress

import pytest
from integration_procs import SECRET, Producer, RedisServer, Worker, counters, env_for, latest_run, placed, wait_for
from kombu import Connection, Exchange, Queue
from kombu import Producer as KombuProducer

from deid_workers.app import app, configure
from deid_workers.config import Settings
from deid_workers.run.names import WORKERS_INDEX, worker_key
from deid_workers.synth import write_study_tree
from deid_workers.tasks import compat
from deid_workers.tasks.liveness import Liveness

pytestmark = pytest.mark.integration

needs_kombu = pytest.mark.skipif(not compat.SUPPORTED,
                                      reason="kombu is not a version tasks/compat.py knows")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("liveness-redis"), aof=False)
    yield server
    server.stop()


@pytest.fixture
def broker(server):
    """A clean Redis, kombu patched to record owners, and a kombu connection to it."""
    client = server.client()
    client.flushall()
    assert compat.install()
    conn = Connection(server.url)
    yield client, conn
    compat.set_owner(None)
    conn.release()
    client.close()


def _take(conn, owner: str | None, body: str = "batch") -> str:
    """Publish one message to queue ``lt`` and take it without acking (as a worker does);
    returns its delivery tag."""
    exchange = Exchange("lt", type="direct")
    queue = Queue("lt", exchange, routing_key="lt")
    channel = conn.channel()
    queue(channel).declare()
    KombuProducer(channel).publish({"b": body}, exchange=exchange, routing_key="lt",
                                   serializer="json")
    compat.set_owner(owner, ttl=30)
    message = channel.basic_get("lt", no_ack=False)
    assert message is not None
    return str(message.delivery_tag)


@needs_kombu
def test_owner_is_written_with_kombus_entry_and_removed_with_its_ack(broker):
    client, conn = broker
    channel = conn.channel()
    exchange = Exchange("lt", type="direct")
    Queue("lt", exchange, routing_key="lt")(channel).declare()
    KombuProducer(channel).publish({"b": 1}, exchange=exchange, routing_key="lt")
    compat.set_owner("w1@h#abc", ttl=30)
    message = channel.basic_get("lt", no_ack=False)
    tag = message.delivery_tag
    payload, ex, rk = json.loads(client.hget("unacked", tag))
    assert (ex, rk) == ("lt", "lt") and payload["properties"]["delivery_tag"] == tag
    assert client.zscore("unacked_index", tag) is not None
    assert client.hget(compat.OWNER_KEY, tag) == "w1@h#abc"
    assert client.get(worker_key("w1@h#abc")) == "w1@h" and 0 < client.ttl(worker_key("w1@h#abc")) <= 30
    message.ack()
    assert not client.exists("unacked", "unacked_index", compat.OWNER_KEY)

    compat.set_owner(None)  # the plain path: kombu's own entry, no owner
    KombuProducer(channel).publish({"b": 2}, exchange=exchange, routing_key="lt")
    plain = channel.basic_get("lt", no_ack=False)
    assert client.hexists("unacked", plain.delivery_tag)
    assert not client.exists(compat.OWNER_KEY)
    plain.reject(requeue=True)
    assert client.llen("lt") == 1 and not client.exists("unacked")


@needs_kombu
def test_a_dead_owners_message_goes_back_once_under_a_new_tag(broker):
    client, conn = broker
    tag = _take(conn, "dead@h#1")
    assert not compat.restore_owned(conn.channel(), tag, "other@h#2")  # not its owner
    assert client.hexists("unacked", tag)
    results: list[bool] = []

    def sweeper() -> None:
        with Connection(conn.as_uri(include_password=True)) as own:
            results.append(compat.restore_owned(own.channel(), tag, "dead@h#1"))

    threads = [threading.Thread(target=sweeper) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]  # one of them, once
    assert not client.exists("unacked", "unacked_index", compat.OWNER_KEY)
    assert client.llen("lt") == 1
    back = json.loads(client.lindex("lt", 0))
    assert back["properties"]["delivery_tag"] != tag  # a late ack of the old tag is a no-op
    assert back["headers"]["redelivered"] is True and back["body"]


@needs_kombu
def test_the_sweep_takes_only_dead_owners_and_waits_a_ttl_after_its_own_gap(broker):
    client, conn = broker
    configure(app, Settings(broker_url=str(conn.as_uri(include_password=True))))
    alive = Liveness(app, "alive@h", 2)
    alive.refresh()
    sweeper = Liveness(app, "sweeper@h", 2)
    t0 = time.time()
    sweeper.refresh(now=t0)
    tags = {"dead": _take(conn, "dead@h#1", "a"), "alive": _take(conn, alive.worker, "b"),
            "mine": _take(conn, sweeper.worker, "c")}
    client.delete(worker_key("dead@h#1"))  # its key expired
    assert not sweeper.may_sweep(t0 + 1.9)  # its own key is younger than a TTL
    assert sweeper.may_sweep(t0 + 2)
    channel = conn.channel()
    assert sweeper.sweep(channel) == 1
    assert sweeper.sweep(channel) == 0  # nothing left to do: safe to run again
    assert set(client.hkeys("unacked")) == {tags["alive"], tags["mine"]}
    assert client.llen("lt") == 1
    assert client.zscore(WORKERS_INDEX, sweeper.worker) is not None
    # A gap longer than two intervals (Redis or the network away): another TTL first.
    sweeper.refresh(now=t0 + 2 + 3 * sweeper.interval)
    assert not sweeper.may_sweep(t0 + 2 + 3 * sweeper.interval + 1.9)


def _stop(pids: list[int], sig: int) -> None:
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, sig)


def _open_start(client, run_id: str, node: str) -> int | None:
    """A put batch whose latest start is on worker ``node`` and not committed."""
    done = client.smembers(f"deid:run:{run_id}:done:put")
    for name, raw in client.hgetall(f"deid:run:{run_id}:takers").items():
        stage, _, batch = name.partition(":")
        if stage == "put" and batch not in done and raw.partition("#")[0] == node:
            return int(batch)
    return None


def test_a_slow_batch_stays_put_and_a_frozen_worker_loses_its_batch(tmp_path):
    """Worker A's pool process stops mid-batch (a batch of huge files, or a hung decoder) for
    three liveness TTLs while worker B sweeps: A's main process keeps its key alive, so the
    batch is neither handed out again nor started twice. Then A's main process stops too (a
    frozen VM): B takes the batch over within a TTL and a sweep, and when A wakes up its start
    commits nothing. The run ends with every file written once."""
    root = tmp_path / "in"
    paths = write_study_tree(root, patients=6, images=60, rows=64, cols=64)
    out = tmp_path / "out"
    server = RedisServer(tmp_path, aof=False)
    client = server.client()
    ttl = 2
    env = env_for(server.url, tmp_path, DEID_LIVENESS_TTL=str(ttl),
                  DEID_VISIBILITY_TIMEOUT="3600", DEID_TASK_TIME_LIMIT="1800")
    a = Worker(env, tmp_path / "a.log", "slow-a", concurrency=1)
    b = Worker(env, tmp_path / "b.log", "slow-b", concurrency=1)
    frozen: list[int] = []
    try:
        a.wait_ready()
        b.wait_ready()
        producer = Producer(env, tmp_path, "--action", "all", "--input", str(root),
                            "--outfolder", str(out), "--batch", "30", "--json", "--quiet")
        run_id = wait_for(lambda: latest_run(client), 60, "the run")
        child = a.pool()[0]
        for _attempt in range(50):  # stop A's pool process between a start and its commit
            batch = wait_for(lambda: _open_start(client, run_id, a.node), 60, "a start on A",
                             step=0.005)
            _stop([child], signal.SIGSTOP)
            frozen = [child]
            if _open_start(client, run_id, a.node) == batch:
                break
            _stop(frozen, signal.SIGCONT)
            frozen = []
        assert frozen, "never caught A's pool process inside a batch"
        field = f"put:{batch}"
        taker = client.hget(f"deid:run:{run_id}:takers", field)
        stopped = time.monotonic()
        wait_for(lambda: time.monotonic() - stopped > 3 * ttl, 3 * ttl + 5, "three TTLs")
        # Slow, not dead: nobody took it over, it started once.
        assert client.hget(f"deid:run:{run_id}:takers", field) == taker
        assert client.hget(f"deid:run:{run_id}:deliveries", f"{field}:0") == "1"
        assert "is gone" not in (tmp_path / "b.log").read_text()

        _stop([a.proc.pid], signal.SIGSTOP)  # now the whole worker
        frozen.append(a.proc.pid)
        wait_for(lambda: client.sismember(f"deid:run:{run_id}:done:put", str(batch)), 30,
                 "B to redo A's batch", step=0.1)
        assert client.hget(f"deid:run:{run_id}:takers", field).partition("#")[0] == b.node
        _stop(frozen, signal.SIGCONT)
        frozen = []
        code, stdout, err = producer.wait(timeout=120)
        wait_for(lambda: "nothing committed" in (tmp_path / "a.log").read_text(), 30,
                 "A to drop its late start")
        put_files = counters(client, run_id)["put:files"]
    finally:
        _stop(frozen, signal.SIGCONT)
        a.kill()
        b.kill()
        server.kill()
    assert code == 0, err[-3000:]
    s = json.loads(stdout)
    assert (s["files_found"], s["written"], s["failed"], s["refused"]) == (len(paths),) * 2 + (0, 0)
    assert put_files == len(paths)  # the batch counted once
    found = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert found == sorted(placed(root, rel, SECRET) for rel in paths)  # once each, no temp
    records = out.with_name(out.name + "-records")
    log = [json.loads(x) for x in (records / f"deid-run.{run_id}.jsonl").read_text().splitlines()]
    assert {e["outcome"] for e in log} == {"written"} and len(log) == len(paths)


@needs_kombu
def test_a_redis_user_without_the_owner_key_leaves_kombu_as_it_was(broker, server):
    """An ACL from before liveness (no ``unacked_owner``): recording owners would abort
    kombu's every take of a message, so the worker does not record them (and says so)."""
    client, conn = broker
    client.execute_command("ACL", "SETUSER", "oldworker", "on", ">pw", "resetkeys", "-@all",
                           "+@read", "+@write", "+multi", "+exec", "+ping", "+hello",
                           "~deid:*", "~unacked", "~unacked_index")
    old = f"redis://oldworker:pw@127.0.0.1:{server.port}/0"
    try:
        configure(app, Settings(broker_url=old))
        assert not Liveness(app, "old@h", 5).may_record_owners()
        configure(app, Settings(broker_url=server.url))
        assert Liveness(app, "new@h", 5).may_record_owners()
        assert not client.hlen(compat.OWNER_KEY)  # the probe leaves nothing behind
    finally:
        client.execute_command("ACL", "DELUSER", "oldworker")


def test_batches_taken_ahead_when_redis_restarts_go_back_without_the_producer(tmp_path):
    """Redis restarts (AOF) during put, the run sent with --no-wait and the default visibility
    timeout: the batch the worker had taken ahead never runs on the old connection, and no
    producer re-sends it; the worker's new id makes the old one lapse, the sweep hands it
    back, and the run finishes."""
    root = tmp_path / "in"
    paths = write_study_tree(root, patients=4, images=60, rows=4, cols=4)
    out = tmp_path / "out"
    server = RedisServer(tmp_path, aof=True)
    client = server.client()
    env = env_for(server.url, tmp_path, DEID_LIVENESS_TTL="2", DEID_VISIBILITY_TIMEOUT="3600",
                  DEID_TASK_TIME_LIMIT="1800")
    worker = Worker(env, tmp_path / "w.log", "restart", concurrency=1)
    try:
        worker.wait_ready()
        code, _, err = Producer(env, tmp_path, "--action", "all", "--input", str(root),
                                "--outfolder", str(out), "--batch", "10", "--no-wait",
                                "--quiet").wait(timeout=60)
        assert code == 0, err
        run_id = latest_run(client)
        wait_for(lambda: counters(client, run_id).get("put:files", 0) >= 20, 60, "put progress",
                 step=0.02)
        server.kill()
        time.sleep(1)  # Redis down for a moment, as in a restart
        server.start()
        client = server.client()
        wait_for(lambda: client.hget(f"deid:run:{run_id}", "state") == '"finished"', 180,
                 "the run to finish", step=0.2)
        assert counters(client, run_id)["put:files"] == len(paths)
    finally:
        worker.kill()
        server.kill()
    assert "broker connection lost with" in (tmp_path / "w.log").read_text()
    found = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert found == sorted(placed(root, rel, SECRET) for rel in paths)


def test_a_task_message_lost_in_redis_is_sent_again_by_the_workers(tmp_path):
    """What a Redis dying between a worker's pop of a message and kombu's note of it leaves:
    one get batch in no queue and not taken. Sent with --no-wait, nobody waits for the run;
    the workers see it stand still with nothing queued or taken, send again what it has not
    done (the lost batch, and finalize, which the chord would never fire), and it finishes."""
    root = tmp_path / "in"
    paths = write_study_tree(root, patients=2, images=15, rows=4, cols=4)
    out = tmp_path / "out"
    server = RedisServer(tmp_path, aof=False)
    client = server.client()
    env = env_for(server.url, tmp_path, DEID_LIVENESS_TTL="2", DEID_STALL_SECONDS="2")
    worker = None
    try:
        code, _, err = Producer(env, tmp_path, "--action", "all", "--input", str(root),
                                "--outfolder", str(out), "--batch", "10", "--no-wait",
                                "--quiet").wait(timeout=60)
        assert code == 0, err
        run_id = latest_run(client)
        assert client.llen("get") == 3 and client.rpop("get")  # one message lost
        worker = Worker(env, tmp_path / "w.log", "stall", concurrency=1)
        worker.wait_ready()
        wait_for(lambda: client.hget(f"deid:run:{run_id}", "state") == '"finished"', 60,
                 "the run to finish", step=0.2)
        assert counters(client, run_id)["put:files"] == len(paths)
    finally:
        if worker is not None:
            worker.kill()
        server.kill()
    assert "no progress for" in (tmp_path / "w.log").read_text()
    found = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert found == sorted(placed(root, rel, SECRET) for rel in paths)
