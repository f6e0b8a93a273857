"""Run status for ``deid-submit --status/--purge/--json``, on fakeredis.

Covers store.queue_lengths, store times and purge, report.run_status/render_status and the
CLI's admin commands (its Redis connection replaced by fakeredis).
"""

from __future__ import annotations

import json

import pytest

from deid_workers import cli, producer
from deid_workers.run.names import RUNS_INDEX, Keys, worker_key
from deid_workers.run.report import render_status, run_status
from deid_workers.run.store import RunStore, list_runs
from deid_workers.tasks.compat import UNACKED, queue_lengths

pytestmark = pytest.mark.usefixtures("cluster_key")

QUEUES = ("get", "inspect", "put", "finalize", "clean")


@pytest.fixture
def status_run(cluster_keys):
    """``status_run(client, run_id, action, files=, batches=, expiry=)``: a run walked into
    batches and running, in ``client`` (the CLI's Redis, or the test's)."""

    def make(client, run_id="r1", action="all", *, files=10, batches=2, expiry=1000):
        store = RunStore.create(client, run_id, {"action": action, "input": "/in"},
                                expiry=expiry, keys=cluster_keys)
        for n in range(batches):
            store.add_batch(n, [f"f{n}-{i}" for i in range(files // batches)])
        store.update(walk_done=True, n_batches=batches, state="running")
        return store

    return make


def test_queue_lengths_sum_kombu_priority_lists_and_count_unacked(fake_redis):
    fake_redis.lpush("get", "m1", "m2")
    fake_redis.lpush("get\x06\x163", "m3")
    fake_redis.lpush("get\x06\x169", "m4")
    fake_redis.lpush("put\x06\x166", "m5")
    fake_redis.hset("unacked", mapping={"tag1": "x", "tag2": "y"})
    fake_redis.lpush("getaway", "not ours")
    assert queue_lengths(fake_redis, QUEUES) == {"get": 4, "inspect": 0, "put": 1, "finalize": 0,
                                             "clean": 0, UNACKED: 2}


def test_queue_lengths_match_kombu_on_a_real_publish(fake_redis):
    """The key names come from kombu itself: publish with priorities, then count."""
    from kombu.transport.redis import PRIORITY_STEPS, Channel

    for pri in PRIORITY_STEPS:
        key = "inspect" if not pri else f"inspect{Channel.sep}{pri}"
        fake_redis.lpush(key, "m")
    assert queue_lengths(fake_redis, ("inspect",))["inspect"] == len(PRIORITY_STEPS)


def test_commit_records_first_and_last_times(fake_redis, status_run):
    store = status_run(fake_redis)
    store.commit_batch("get", 0, {"files": 5})
    t = store.times()
    assert t["get:first"] == t["get:last"]
    store.commit_batch("get", 1, {"files": 5})
    t2 = store.times()
    assert t2["get:first"] == t["get:first"] and t2["get:last"] >= t["get:last"]


def test_every_run_key_and_the_index_expire(fake_redis, status_run):
    store = status_run(fake_redis, expiry=77)
    store.commit_batch("get", 0, {"files": 5}, outcomes={"skipped": {"f0-1": "not DICOM"}},
                       ids={"P": {"I": {"PatientID": "P"}}}, valid=["f0-0"])
    store.mark_started("put", 0)
    store.add_outcome("unlisted", "d", "permission denied", counter="walk:unlisted")
    keys = fake_redis.keys("*")
    assert len(keys) > 8
    for key in keys:
        assert 0 < fake_redis.ttl(key) <= 77, key


def test_index_ttl_follows_the_longest_expiry(fake_redis, status_run):
    status_run(fake_redis, "a", expiry=500)
    status_run(fake_redis, "b", expiry=50)
    assert fake_redis.ttl(RUNS_INDEX) > 50


def test_purge_deletes_every_key_including_unlisted_ones_and_ids(fake_redis, status_run):
    store = status_run(fake_redis, "r1")
    store.commit_batch("get", 0, {"files": 5}, ids={"P1": {"I": {}}, "P2": {"J": {}}},
                       valid=["f0-0"])
    # A key a newer stage would add, and an ids hash whose digest is not in `entities`.
    fake_redis.hset(Keys("r1").run + ":clean:prov", "x", "1")
    fake_redis.hset(Keys("r1").ids("deadbeef"), "k", "v")
    neighbour = status_run(fake_redis, "r10")  # shares the prefix "deid:run:r1"
    n = store.purge()
    assert n >= 8
    assert [k for k in fake_redis.keys("*") if k.startswith("deid:run:r1:") or k == "deid:run:r1"] \
        == []
    assert fake_redis.exists(Keys("r10").run) and fake_redis.hlen(neighbour.keys.batches) == 2
    assert list_runs(fake_redis) == ["r10"]


def test_status_of_a_running_all_run(fake_redis, status_run):
    store = status_run(fake_redis, files=10, batches=2)
    created = float(store.record()["created"])
    store.commit_batch("get", 0, {"files": 5, "valid": 4, "skipped": 1})
    fake_redis.hset(store.keys.times, "get:last", created + 2)
    s = run_status(store, now=created + 4)
    rows = {r["stage"]: r for r in s["stages"]}
    assert list(rows) == ["get", "finalize", "put"]
    assert (rows["get"]["done"], rows["get"]["total"]) == (5, 10)
    assert (rows["get"]["batches_done"], rows["get"]["batches_total"]) == (1, 2)
    assert rows["get"]["skipped"] == 1 and rows["get"]["rate"] == 1.25  # 5 files in 4 s
    assert rows["put"]["total"] is None and rows["put"]["rate"] is None
    assert s["finished"] is None and s["started"].endswith("Z")


def test_status_of_a_finished_all_run_rates_put_from_finalize(fake_redis, status_run):
    store = status_run(fake_redis, files=10, batches=2)
    created = float(store.record()["created"])
    for n in range(2):
        store.commit_batch("get", n, {"files": 5, "valid": 5, "failed": n})
    store.commit_batch("finalize", 0, {})
    for n in range(2):
        store.commit_batch("put", n, {"files": 5, "written": 5})
    fake_redis.hset(store.keys.times, mapping={"get:last": created + 5, "finalize:last": created + 6,
                                           "put:last": created + 8})
    store.set_state("finished")
    s = run_status(store, now=created + 100)
    rows = {r["stage"]: r for r in s["stages"]}
    assert rows["get"]["rate"] == 2.0 and rows["get"]["failed"] == 1
    assert rows["finalize"]["done"] == rows["finalize"]["total"] == 1
    assert rows["put"]["total"] == 10 and rows["put"]["rate"] == 5.0  # 10 files, 6 s -> 8 s
    assert all(r["complete"] for r in s["stages"])
    assert s["finished"] is not None


def test_status_of_a_put_run_shows_its_ids_load_in_items(fake_redis, status_run):
    store = status_run(fake_redis, action="put", files=10, batches=2)
    created = float(store.record()["created"])
    store.update(ids_path="/ids.json")
    store.commit_batch("load", 0, {"items": 1000})
    s = run_status(store, now=created + 4)
    load = s["stages"][0]
    assert [r["stage"] for r in s["stages"]] == ["load", "put"]
    assert (load["done"], load["total"], load["batches_done"], load["batches_total"]) == (
        1000, None, 1, None)
    assert load["unit"] == "items" and not load["complete"] and load["rate"] == 250.0
    store.update(ids_chunks=2, ids_items=1500)
    store.commit_batch("load", 1, {"items": 500})
    fake_redis.hset(store.keys.times, "load:last", created + 3)
    load = run_status(store, now=created + 9)["stages"][0]
    assert (load["done"], load["total"], load["complete"], load["rate"]) == (1500, 1500, True,
                                                                             500.0)
    table = render_status(run_status(store, now=created + 9)).splitlines()
    assert table[2].split() == ["load", "1500/1500", "2/2", "0", "0", "500.0", "items/s"]


def test_status_counts_the_shards_of_a_sharded_export(fake_redis, status_run):
    store = status_run(fake_redis, files=10, batches=2)
    for n in range(2):
        store.commit_batch("get", n, {"files": 5, "valid": 5})
    store.update(export_shards=4)
    for shard in (0, 3):
        store.commit_batch("export", shard, {"entities": 1})
    rows = {r["stage"]: r for r in run_status(store)["stages"]}
    assert (rows["finalize"]["batches_done"], rows["finalize"]["batches_total"]) == (2, 4)
    assert rows["finalize"]["done"] == 0 and not rows["finalize"]["complete"]
    for shard in (1, 2):
        store.commit_batch("export", shard, {"entities": 1})
    rows = {r["stage"]: r for r in run_status(store)["stages"]}
    assert rows["finalize"]["batches_done"] == 4 and not rows["finalize"]["complete"]  # joining
    store.commit_batch("finalize", 0, {})
    rows = {r["stage"]: r for r in run_status(store)["stages"]}
    assert rows["finalize"]["done"] == 1 and rows["finalize"]["complete"]
    assert "export" not in rows


def test_status_while_walking_has_no_total(fake_redis, cluster_keys):
    store = RunStore.create(fake_redis, "w", {"action": "inspect"}, expiry=100, keys=cluster_keys)
    store.add_batch(0, ["a", "b"])
    s = run_status(store)
    assert [r["stage"] for r in s["stages"]] == ["inspect", "finalize"]
    assert s["stages"][0]["total"] is None and s["stages"][0]["batches_total"] is None
    assert "0/?" in render_status(s)


def test_status_lists_a_stage_the_action_does_not_name_once_it_ran(fake_redis, status_run):
    store = status_run(fake_redis, action="put")
    store.commit_batch("clean", 0, {"files": 3})
    assert [r["stage"] for r in run_status(store)["stages"]] == ["put", "clean"]


def test_render_status_table(fake_redis, status_run):
    store = status_run(fake_redis)
    store.commit_batch("get", 0, {"files": 5, "failed": 2})
    text = render_status(run_status(store), {"get": 3, UNACKED: 1})
    lines = text.splitlines()
    assert lines[0].startswith("run r1 (all, running)  started ")
    header = lines[1].split()
    assert header == ["stage", "done/total", "batches", "failed", "skipped", "rate"]
    assert lines[2].split()[:5] == ["get", "5/10", "1/2", "2", "0"]
    assert lines[-1] == f"queues  get 3  {UNACKED} 1"


def test_status_says_which_worker_took_which_batch_and_whether_it_lives(fake_redis, status_run):
    store = status_run(fake_redis, batches=3)
    store.start_batch("get", 0, 0, "w1@a#1\tt0")
    store.commit_batch("get", 0, {"files": 5})
    store.start_batch("get", 1, 0, "w1@a#1\tt1")  # w1 died on it
    store.start_batch("get", 2, 0, "w2@b#7\tt2")
    fake_redis.set(worker_key("w2@b#7"), "w2@b", ex=20)  # only w2's liveness key is there
    s = run_status(store)
    assert s["taken"] == [
        {"stage": "get", "batch": 1, "worker": "w1@a", "alive": False,
         "started_s_ago": s["taken"][0]["started_s_ago"]},
        {"stage": "get", "batch": 2, "worker": "w2@b", "alive": True,
         "started_s_ago": s["taken"][1]["started_s_ago"]}]
    assert s["workers"] == {"w1@a": 2, "w2@b": 1}
    lines = render_status(s).splitlines()
    assert any(x.startswith("  at work: get batch 1 on w1@a (gone, started ") for x in lines)
    assert any(x.startswith("  at work: get batch 2 on w2@b (alive, started ") for x in lines)
    assert "  batches by worker: w1@a 2, w2@b 1" in lines


# -- the CLI's admin commands ---------------------------------------------------------------

@pytest.fixture
def cli_redis(fake_redis, monkeypatch):
    monkeypatch.setattr(producer, "connect", lambda settings: fake_redis)
    monkeypatch.setenv("DEID_BROKER_URL", "redis://fake:6379/0")
    monkeypatch.delenv("MESSAGELEVEL", raising=False)
    return fake_redis


def test_cli_status_json_one_run(cli_redis, capsys, status_run):
    status_run(cli_redis, "r1")
    cli_redis.lpush("put", "m")
    assert cli.main(["--status", "r1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["queues"]["put"] == 1 and set(out["queues"]) >= set(QUEUES)
    (run,) = out["runs"]
    assert run["run_id"] == "r1" and run["stages"][0]["stage"] == "get"
    assert run["summary"]["files_found"] == 10


def test_cli_status_lists_latest_runs_as_tables(cli_redis, capsys, status_run):
    status_run(cli_redis, "r1")
    status_run(cli_redis, "r2", action="inspect")
    assert cli.main(["--status"]) == 0
    out = capsys.readouterr().out
    assert "run r2 (inspect, running)" in out and "run r1 (all, running)" in out
    assert out.index("run r2") < out.index("run r1")  # newest first
    assert "queues  get 0  inspect 0  put 0  finalize 0  clean 0" in out


def test_cli_status_without_runs(cli_redis, capsys):
    assert cli.main(["--status"]) == 0
    assert capsys.readouterr().out.startswith("no runs")


def test_cli_status_unknown_run_is_one_error_line(cli_redis, capsys):
    assert cli.main(["--status", "nope"]) == cli.EXIT_FAILED
    err = capsys.readouterr().err
    assert err.strip() == "deid-submit: error: run nope is unknown to Redis " \
                          "(expired, purged or lost)"


def test_cli_purge_removes_the_run_then_reports_it_unknown(cli_redis, capsys, status_run):
    store = status_run(cli_redis, "r1")
    store.set_state("finished")
    assert cli.main(["--purge", "r1"]) == 0
    assert not cli_redis.keys("deid:run:r1*")
    assert cli.main(["--purge", "r1"]) == cli.EXIT_FAILED
    assert "unknown to Redis" in capsys.readouterr().err


def test_cli_purge_works_after_the_record_expired(cli_redis, status_run):
    store = status_run(cli_redis, "r1")
    store.commit_batch("get", 0, {}, ids={"P": {"I": {}}})
    cli_redis.delete(store.keys.run)
    assert cli.main(["--purge", "r1"]) == 0
    assert not cli_redis.keys("deid:run:r1*")


def test_cli_purge_warns_when_the_run_is_still_going(cli_redis, capsys, status_run):
    status_run(cli_redis, "r1")
    assert cli.main(["--purge", "r1"]) == 0
    assert "WARNING run r1 is running" in capsys.readouterr().err


def test_status_of_an_inspect_run_with_ocr_lists_ocr_before_finalize(fake_redis, cluster_keys):
    store = RunStore.create(fake_redis, "r-ocr", {"action": "inspect", "input": "/in",
                                                  "ocr": "risky"}, expiry=1000, keys=cluster_keys)
    for n in range(2):
        store.add_batch(n, [f"f{n}-{i}" for i in range(3)])
    store.update(walk_done=True, n_batches=2, state="running")
    for n in range(2):
        store.commit_batch("inspect", n, {"files": 3, "to_ocr": 2})
    store.commit_batch("ocr", 0, {"files": 2})
    status = run_status(store)
    rows = {r["stage"]: r for r in status["stages"]}
    assert [r["stage"] for r in status["stages"]] == ["inspect", "ocr", "finalize"]
    assert (rows["ocr"]["done"], rows["ocr"]["total"], rows["ocr"]["batches_done"]) == (2, 4, 1)
    assert "ocr" in render_status(status)
