"""RunStore on fakeredis: key layout, idempotent commits, ids streaming, expiry, purge."""

from __future__ import annotations

import json

import pytest

from deid_workers.errors import RunRefused, StoreError
from deid_workers.keys import ClusterKeys
from deid_workers.run.client import redis_client
from deid_workers.run.names import ENTITY_FIELD, RUNS_INDEX, Keys
from deid_workers.run.store import RunStore, list_runs

EXPIRY = 1000


@pytest.fixture
def store(new_store):
    return new_store({"action": "all", "input": "/in", "n": 3}, expiry=EXPIRY)


def test_every_key_is_under_the_run_prefix(fake_redis, store):
    store.add_batch(0, ["a.dcm"])
    store.commit_batch("get", 0, {"files": 1}, outcomes={"skipped": {"a.dcm": "empty file"}},
                       ids={"PID-SECRET": {"1.2.3": {"PatientName": "DOE^JOHN"}}}, valid=[])
    keys = set(fake_redis.keys("*"))
    assert keys - {RUNS_INDEX}
    assert all(k.startswith("deid:run:r1") for k in keys - {RUNS_INDEX})


def test_key_names_hold_no_header_value(fake_redis, store):
    store.commit_batch("get", 0, {}, ids={"PID-SECRET": {"1.2.3.4": {"PatientName": "DOE^JOHN"}}})
    names = " ".join(fake_redis.keys("*"))
    for value in ("PID-SECRET", "1.2.3.4", "DOE^JOHN"):
        assert value not in names


def test_every_key_expires(fake_redis, store):
    store.add_batch(0, ["a.dcm"])
    store.commit_batch("get", 0, {"files": 1}, outcomes={"missing": {"a.dcm": "PatientID"}},
                       ids={"P": {"I": {"x": 1}}}, valid=["a.dcm"])
    store.mark_started("put", 0)
    store.add_outcome("unlisted", "dir", "permission denied", counter="walk:unlisted")
    for key in fake_redis.keys("deid:run:*"):
        assert 0 < fake_redis.ttl(key) <= EXPIRY, key


def test_record_roundtrip_keeps_types(store):
    rec = store.record()
    assert rec["action"] == "all" and rec["n"] == 3 and rec["state"] == "created"
    store.update(outfolder="123")  # a path that looks like a number stays a string
    assert store.record()["outfolder"] == "123"


def test_load_unknown_run_is_a_store_error(fake_redis, cluster_keys):
    with pytest.raises(StoreError, match="unknown"):
        RunStore.load(fake_redis, "nope", keys=cluster_keys)


def test_load_reuses_the_salt(fake_redis, store, new_store, cluster_keys):
    again = RunStore.load(fake_redis, "r1", keys=cluster_keys)
    assert again.entity_digest("X") == store.entity_digest("X")
    other = new_store({}, "r2")
    assert other.entity_digest("X") != store.entity_digest("X")


def test_commit_counts_a_batch_once(store):
    assert store.commit_batch("get", 4, {"files": 10, "valid": 9})[:2] == (True, 1)
    assert store.commit_batch("get", 4, {"files": 10, "valid": 9})[:2] == (False, 1)
    c = store.counters()
    assert c["get:files"] == 10 and c["get:valid"] == 9 and c["get:batches"] == 1
    assert store.done_batches("get") == {4}
    assert list(store.pending_batches("get", 6)) == [0, 1, 2, 3, 5]


def test_ids_stream_back_as_written(store):
    store.commit_batch("get", 0, {}, ids={"P1": {"i1": {"a": 1}, "i2": {"b": [1, 2]}}})
    store.commit_batch("get", 1, {}, ids={"P1": {"i3": {"c": "x"}}, "P2": {"j": {}}})
    got = {e: dict(items) for e, items in store.iter_ids()}
    assert got == {"P1": {"i1": {"a": 1}, "i2": {"b": [1, 2]}, "i3": {"c": "x"}}, "P2": {"j": {}}}
    assert store.get_ids("P1", "i2") == {"b": [1, 2]}
    assert store.get_ids("P1", "zz") is None and store.get_ids("P9", "i1") is None


def test_export_shards_split_the_entities_without_overlap(store):
    ids = {f"P{n}": {f"i{n}": {"id": n}} for n in range(40)}
    store.save_ids(ids)
    for parts in (1, 2, 4, 16):
        shards = [[e for e, _ in store.iter_ids(part, parts)] for part in range(parts)]
        assert sorted(e for shard in shards for e in shard) == sorted(ids)
    assert {len(list(store.iter_ids(p, 4))) > 0 for p in range(4)} == {True}  # 40 spread out


def test_ids_stream_in_few_round_trips_and_whole_across_pages(fake_redis, store, monkeypatch):
    """Many entities (several SSCAN pages, several groups), one with more items than an
    HSCAN page: every item comes back once, and the round trips are per group, not per
    entity."""
    import deid_workers.run.idstore as store_mod

    monkeypatch.setattr(store_mod, "SCAN_COUNT", 50)
    ids = {f"P{n}": {f"i{n}": {"id": n}} for n in range(1500)}
    ids["BIG"] = {f"b{k}": {"k": k} for k in range(400)}
    store.save_ids(ids)
    sent = []
    plain = fake_redis.connection_pool.get_connection
    monkeypatch.setattr(fake_redis.connection_pool, "get_connection",
                        lambda *a, **k: sent.append(1) or plain(*a, **k))
    got = {e: dict(items) for e, items in store.iter_ids()}
    assert got == ids
    groups = -(-1501 // store_mod.IDS_GROUP)
    assert len(sent) < groups + 1501 // 50 + 400 // 50 + 20  # not two per entity (3,002)


def test_save_ids_takes_a_mapping_or_pairs_and_merges_an_entity_given_twice(store):
    ids = {f"P{n}": {f"i{n}": {"id": n}} for n in range(7)}
    assert store.save_ids(ids) == 7
    assert store.get_ids("P5", "i5") == {"id": 5}
    assert ENTITY_FIELD not in dict(next(iter(store.iter_ids()))[1])
    assert store.save_ids([("P1", {"a": {"x": 1}}), ("P1", {"b": {"x": 2}})]) == 2
    assert store.get_ids("P1", "a") == {"x": 1} and store.get_ids("P1", "i1") == {"id": 1}


def test_save_ids_skips_a_gone_run_and_takes_back_a_write_the_purge_overtook(store,
                                                                               monkeypatch):
    import redis

    real = redis.client.Pipeline.execute

    def purged_meanwhile(pipe, *a, **k):
        out = real(pipe, *a, **k)
        store.client.delete(store.keys.run)  # the producer's purge, between write and check
        return out

    store.save_ids({"P0": {"i": {"x": 0}}})
    monkeypatch.setattr(redis.client.Pipeline, "execute", purged_meanwhile)
    assert store.save_ids({"P1": {"i": {"x": 1}}, "P2": {"j": {}}}) is None
    monkeypatch.undo()
    assert store.get_ids("P1", "i") is None and store.get_ids("P2", "j") is None
    assert store.get_ids("P0", "i") == {"x": 0}  # not this write's: left to the purge
    store.purge()
    assert store.save_ids({"P3": {"i": {}}}) is None
    assert store.client.keys("*") == []


def test_ids_chunks_are_kept_until_dropped_and_committed_ones_told_apart(store):
    text = json.dumps([["P\u00e9", {str(n): {"PatientID": "x"} for n in range(500)}]])
    store.stage_ids_chunk(3, text)
    assert store.ids_chunk(3) == text and store.ids_chunk(4) is None
    assert store.client.strlen(store.keys.ids_chunk(3)) < len(text) / 5  # kept deflated
    assert store.client.ttl(store.keys.ids_chunk(3)) > 0
    store.drop_ids_chunk(3)
    assert store.ids_chunk(3) is None
    store.commit_batch("load", 1, {"items": 5})
    assert store.committed("load", [0, 1, 2]) == {1}
    assert store.record_fields("action", "nothing") == [store.record()["action"], None]
    assert store.exists()


def test_outcomes_and_batches(store):
    store.add_batch(0, ["a", "b"])
    store.add_batch(1, ["c"])
    assert store.batch(1) == ["c"] and store.batch_count() == 2
    assert store.counters()["walk:files"] == 3
    assert [(r.number, r.paths) for r in store.iter_batch_records(2)] == [(0, ["a", "b"]), (1, ["c"])]
    with pytest.raises(StoreError):
        store.batch(7)
    store.commit_batch("put", 0, {}, outcomes={"refused": {"a": "already exists"}})
    assert store.outcomes("refused") == {"a": "already exists"}
    assert store.outcomes("refused", ["a", "b"]) == {"a": "already exists"}
    assert store.outcome_count("refused") == 1
    with pytest.raises(ValueError):
        store.commit_batch("put", 1, {}, outcomes={"bogus": {"a": "x"}})


def test_batch_records_read_every_stage_a_few_batches_per_round_trip(store):
    for n in range(5):
        store.add_batch(n, [f"f{n}a", f"f{n}b"])
    store.commit_batch("get", 1, {}, valid=["f1b"])
    store.save_log("put", 1, [("clean", None)])
    store.save_clean_batch(1, ["f1b"])
    store.save_log("clean", 1, [("cleaned", "box")])
    records = list(store.iter_batch_records(6, step=2))  # batch 5 was never walked
    assert [r.number for r in records] == [0, 1, 2, 3, 4]
    assert records[0].paths == ["f0a", "f0b"] and records[0].valid is None
    assert records[0].put_log is None and records[0].to_clean is None
    one = records[1]
    assert (one.valid, one.put_log, one.to_clean, one.clean_log) == (
        ["f1b"], [("clean", None)], ["f1b"], [("cleaned", "box")])


def test_valid_batch_none_without_get(store):
    assert store.valid_batch(0) is None
    store.commit_batch("get", 0, {}, valid=[])
    assert store.valid_batch(0) == ([], [], [])


def test_valid_keys_pair_each_valid_path_with_its_entity_and_item(store):
    store.commit_batch("get", 0, {}, valid=["a", "b"], valid_keys=[("P1", "I1"), ("P2", "I2")])
    assert store.valid_batch(0) == (["a", "b"], [("P1", "I1"), ("P2", "I2")], [(), ()])
    store.commit_batch("get", 2, {}, valid=["a", "b"], valid_keys=[("P1", "I1"), ("", "b")],
                       valid_missing=[(), ("PatientID", "SOPInstanceUID")])
    assert store.valid_batch(2).missing == [(), ("PatientID", "SOPInstanceUID")]
    with pytest.raises(ValueError):
        store.commit_batch("get", 1, {}, valid=["a", "b"], valid_keys=[("P1", "I1")])


def test_a_plain_valid_list_is_refused(fake_redis, store):
    """Only a worker holding the cluster key writes the valid lists (sealed): a plain one, as
    anyone with the Redis password could write, is refused rather than acted on."""
    fake_redis.hset(store.keys.valid, "0", json.dumps({"paths": ["a", "b"], "keys": []}))
    with pytest.raises(RunRefused, match="valid 0"):
        store.valid_batch(0)
    store.add_batch(0, ["a", "b", "c"])
    with pytest.raises(RunRefused):
        next(store.iter_batch_records(1))


def test_get_ids_many_answers_like_get_ids_in_one_round_trip(fake_redis, store):
    store.commit_batch("get", 0, {}, ids={"P": {"I1": {"x": 1}, "I2": {"x": 2}}})
    wanted = [("P", "I1"), ("P", "I2"), ("P", "nope"), ("Q", "I1"), ("P", "I1")]
    calls = []
    real = fake_redis.pipeline
    fake_redis.pipeline = lambda *a, **k: calls.append(1) or real(*a, **k)
    got = store.get_ids_many(wanted)
    assert len(calls) == 1
    assert got == {k: store.get_ids(*k) for k in wanted}
    assert got[("P", "I2")] == {"x": 2} and got[("Q", "I1")] is None
    assert store.get_ids_many([]) == {}


def test_mark_started_detects_a_rerun(store):
    assert store.mark_started("put", 2) is True
    assert store.mark_started("put", 2) is False


def test_a_time_limit_note_is_read_once_and_only_at_its_retry(store):
    assert store.pop_time_limit("get", 3, 0) is None
    store.note_time_limit("get", 3, 0, 30)
    store.set_inflight("get", 3, 0, "a/b.dcm")
    assert store.pop_time_limit("put", 3, 0) is None  # another stage's batch 3
    assert store.pop_time_limit("get", 3, 1) is None  # an older kill: not this retry's
    store.note_time_limit("get", 3, 0, 30)
    assert store.pop_time_limit("get", 3, 0) == 30
    assert store.pop_time_limit("get", 3, 0) is None  # never blamed twice
    assert store.inflight("get", 3, 0) == "a/b.dcm"  # the file note is left alone


def test_maybe_finish_needs_walk_end_and_all_batches(store):
    store.commit_batch("put", 0, {})
    assert store.maybe_finish("put") is False  # walk not done
    store.update(walk_done=True, n_batches=2)
    assert store.maybe_finish("put") is False
    store.commit_batch("put", 1, {})
    assert store.maybe_finish("put") is True
    assert store.record()["state"] == "finished"


def test_purge_deletes_everything_of_the_run(fake_redis, store, new_store):
    store.add_batch(0, ["a"])
    store.commit_batch("get", 0, {"files": 1}, ids={"P": {"I": {}}}, valid=["a"])
    other = new_store({}, "r2")
    assert store.purge() > 0
    assert not [k for k in fake_redis.keys("*") if k.startswith("deid:run:r1")]
    assert fake_redis.exists(Keys("r2").run) and list_runs(fake_redis) == [other.run_id]


def test_list_runs_drops_expired(fake_redis, store, new_store):
    new_store({}, "r2")
    fake_redis.delete(Keys("r1").run)
    assert list_runs(fake_redis) == ["r2"]


@pytest.mark.parametrize("url,path", [("redis+socket:///tmp/r.sock", "/tmp/r.sock"),
                                      ("unix:///tmp/r.sock", "/tmp/r.sock")])
def test_redis_client_understands_socket_urls(url, path):
    kwargs = redis_client(url).connection_pool.connection_kwargs
    assert kwargs["path"] == path


def test_ids_are_packed_small_and_read_back(fake_redis, store):
    from deid_workers import synth
    from deid_workers.ids.codec import pack_fields, unpack_fields
    from deid_workers.recipe import get_identifiers

    fields = get_identifiers(synth.make_dataset(3, 0, 1, 7))
    store.commit_batch("get", 0, {"files": 1}, ids={"PID-3": {"1.2.3": fields}})
    raw = fake_redis.hget(store.keys.ids(store.entity_digest("PID-3")), store.item_digest("1.2.3"))
    assert len(raw) < len(json.dumps(fields)) * 0.6  # deflated, sealed and in base64: ~1.1 KB
    assert "PID-0003" not in raw  # not readable as text either
    assert store.get_ids("PID-3", "1.2.3") == json.loads(json.dumps(fields))
    assert unpack_fields(pack_fields("i", {"a": [1, 2.5, "é"]})) == ("i", {"a": [1, 2.5, "é"]})
    assert pack_fields("1.2", {"id": "S1"}) == b"p\0\0\0\x031.2" + b'{"id": "S1"}'  # short: as is


def test_the_plan_of_each_action():
    from deid_workers.run.plan import first_stage, stages_of

    assert stages_of("all") == ("get", "finalize", "put")
    assert stages_of("all", clean_pixels=True, finalize=False) == ("get", "put", "clean")
    assert stages_of("inspect", clean_pixels=True) == ("inspect", "finalize")
    assert stages_of("put", clean_pixels=True) == ("put", "clean")
    assert [first_stage(a) for a in ("get", "all", "put", "inspect")] == [
        "get", "get", "put", "inspect"]
    assert stages_of("bogus") == () and first_stage("bogus") == "bogus"


# -- signed record, signed lists, sealed identifiers (issue 22) ------------------------------
def test_the_record_is_sealed_and_signed_and_its_plain_fields_cannot_override_it(fake_redis, store, cluster_keys):
    raw = fake_redis.hgetall(store.keys.run)
    assert set(raw) == {"spec", "sig", "key_id", "state"}
    assert "/in" not in raw["spec"]  # paths (and everything decided) are sealed
    fake_redis.hset(store.keys.run, mapping={"input": json.dumps("/elsewhere"), "n": "9"})
    again = RunStore.load(fake_redis, "r1", keys=cluster_keys)
    assert again.record()["input"] == "/in" and again.record()["n"] == 3
    assert again.record_fields("input", "state") == ["/in", "created"]
    with pytest.raises(ValueError, match="signed fields"):
        again.update(input="/elsewhere")
    again.update(state="running")  # what changes is plain
    assert again.record()["state"] == "running"


@pytest.mark.parametrize("tamper", ["spec", "sig", "both gone"])
def test_an_altered_record_is_refused(fake_redis, store, tamper, new_store, cluster_keys):
    other = new_store({"action": "get", "input": "/x"}, "r2")
    if tamper == "spec":  # another run's sealed spec: it names its own run
        fake_redis.hset(store.keys.run, "spec", fake_redis.hget(other.keys.run, "spec"))
    elif tamper == "sig":
        fake_redis.hset(store.keys.run, "sig", "0" * 32)
    else:
        fake_redis.hdel(store.keys.run, "spec", "sig", "key_id")
    with pytest.raises(RunRefused, match="r1: run record is not signed"):
        RunStore.load(fake_redis, "r1", keys=cluster_keys).record()


def test_a_run_of_another_key_is_refused_naming_both_keys(fake_redis, store, cluster_keys):
    other = ClusterKeys.derive(b"another-key-0123456789abcdef0123456789")
    with pytest.raises(RunRefused) as err:
        RunStore.load(fake_redis, "r1", keys=other)
    assert f"submitted with key {cluster_keys.fingerprint}" in str(err.value)
    assert f"holds key {other.fingerprint}" in str(err.value)


def test_lists_are_signed_for_their_own_place(fake_redis, store, new_store):
    store.add_batch(0, ["a.dcm"])
    store.add_batch(1, ["b.dcm"])
    store.save_clean_batch(0, ["a.dcm"])
    store.save_log("put", 0, [("written", None)])
    assert store.batch(0) == ["a.dcm"] and store.clean_batch(0) == ["a.dcm"]
    # a signed list moved to another batch, another list or another run is refused
    fake_redis.hset(store.keys.batches, "1", fake_redis.hget(store.keys.batches, "0"))
    with pytest.raises(RunRefused, match="batches 1"):
        store.batch(1)
    fake_redis.hset(store.keys.clean_batches, "0", fake_redis.hget(store.keys.batches, "0"))
    with pytest.raises(RunRefused, match="clean 0"):
        store.clean_batch(0)
    r2 = new_store({}, "r2")
    fake_redis.hset(r2.keys.batches, "0", fake_redis.hget(store.keys.batches, "0"))
    with pytest.raises(RunRefused):
        r2.batch(0)


def test_identifiers_are_sealed_where_they_were_written(fake_redis, store):
    store.commit_batch("get", 0, {}, ids={"PID-1": {"1.2.3": {"PatientName": "DOE^JOHN"},
                                                    "1.2.4": {"PatientName": "ROE^JANE"}}})
    key = store.keys.ids(store.entity_digest("PID-1"))
    dump = json.dumps(fake_redis.hgetall(key))
    for value in ("PID-1", "1.2.3", "DOE^JOHN"):
        assert value not in dump
    a, b = store.item_digest("1.2.3"), store.item_digest("1.2.4")
    fake_redis.hset(key, a, fake_redis.hget(key, b))  # one patient's item swapped for another's
    with pytest.raises(RunRefused, match="identifiers"):
        store.get_ids("PID-1", "1.2.3")
    assert store.get_ids("PID-1", "1.2.4") == {"PatientName": "ROE^JANE"}
    store.stage_ids_chunk(0, '{"PID-2": {"9": {"id": "S"}}}')
    assert "PID-2" not in fake_redis.get(store.keys.ids_chunk(0))
    assert store.ids_chunk(0) == '{"PID-2": {"9": {"id": "S"}}}'


def test_a_store_without_the_key_can_still_purge(fake_redis, store):
    store.commit_batch("get", 0, {}, ids={"P": {"I": {"x": 1}}})
    bare = RunStore(fake_redis, "r1", expiry=1)
    assert bare.state() == "created"
    with pytest.raises(StoreError, match="no cluster key"):
        bare.record()
    assert bare.purge() > 0 and not fake_redis.keys("deid:run:r1*")


def _counting(fake_redis, monkeypatch) -> list[int]:
    """Round trips to ``fake_redis`` from now on (each command or pipeline takes a
    connection once)."""
    sent: list[int] = []
    plain = fake_redis.connection_pool.get_connection
    monkeypatch.setattr(fake_redis.connection_pool, "get_connection",
                        lambda *a, **k: sent.append(1) or plain(*a, **k))
    return sent


def _get_batch(store, n: int = 0) -> list[tuple[str, str]]:
    keys = [("P1", "I1"), ("P1", "I2"), ("P2", "I3")]
    store.add_batch(n, ["a", "b", "c", "d"])
    store.commit_batch("get", n, {"files": 4},
                       ids={"P1": {"I1": {"x": 1}, "I2": {"x": 2}}, "P2": {"I3": {"x": 3}}},
                       valid=["a", "b", "c"], valid_keys=keys)
    return keys


def test_a_put_start_reads_its_files_ids_in_the_same_round_trip(fake_redis, store, monkeypatch):
    """get notes where each valid file's ids are (digests only); a put batch's start reads
    them there, and the batch's ids then cost no round trip of their own."""
    keys = _get_batch(store)
    places = fake_redis.hget(store.keys.places, "0")
    assert len(places) == 3 * 64 and "P1" not in places and "I1" not in places
    sent = _counting(fake_redis, monkeypatch)
    start = store.start_batch("put", 0, 0, "w\tt", mark_started=True, lists=True, ids=True)
    assert start.valid.paths == ["a", "b", "c"] and len(start.ids) == 3
    got = store.get_ids_many(keys, read=start.ids)
    assert len(sent) == 1
    assert got == {("P1", "I1"): {"x": 1}, ("P1", "I2"): {"x": 2}, ("P2", "I3"): {"x": 3}}


def test_a_wrong_places_note_costs_a_round_trip_never_a_wrong_value(fake_redis, store,
                                                                     monkeypatch):
    """The places note is plain (digests), so anyone who may write to Redis can rewrite it:
    put uses what the start read only for the places it computes itself from the sealed
    ``valid`` keys, and fetches the others; a value moved under another file's place does
    not open there."""
    keys = _get_batch(store)
    _get_batch(store, 1)
    places = fake_redis.hget(store.keys.places, "0")
    sent = _counting(fake_redis, monkeypatch)
    # reordered: all found, no round trip of their own
    fake_redis.hset(store.keys.places, "0", places[128:] + places[64:128] + places[:64])
    start = store.start_batch("put", 0, 0, "w\tt", ids=True)
    sent.clear()
    assert store.get_ids_many(keys, read=start.ids)[("P1", "I1")] == {"x": 1}
    assert not sent
    # one file left out, another's place put in: the missing one is fetched
    fake_redis.hset(store.keys.places, "0", places[:128] + "0" * 64)
    start = store.start_batch("put", 0, 1, "w\tt", ids=True)
    sent.clear()
    assert store.get_ids_many(keys, read=start.ids) == {
        ("P1", "I1"): {"x": 1}, ("P1", "I2"): {"x": 2}, ("P2", "I3"): {"x": 3}}
    assert len(sent) == 1
    # no note at all: fetched as before the start read them
    fake_redis.hdel(store.keys.places, "0")
    start = store.start_batch("put", 0, 2, "w\tt", ids=True)
    assert start.ids == {}
    sent.clear()
    assert store.get_ids_many(keys, read=start.ids)[("P2", "I3")] == {"x": 3}
    assert len(sent) == 1
    # I1's sealed value copied over I2's: it does not open as I2's
    d, f1, f2 = places[:32], places[32:64], places[96:128]
    fake_redis.hset(store.keys.ids(d), f2, fake_redis.hget(store.keys.ids(d), f1))
    fake_redis.hset(store.keys.places, "0", places)
    start = store.start_batch("put", 0, 3, "w\tt", ids=True)
    with pytest.raises(RunRefused):
        store.get_ids_many(keys, read=start.ids)


def test_a_commit_with_a_replaced_taker_writes_nothing(fake_redis, store):
    store.add_batch(0, ["a"])
    store.start_batch("put", 0, 0, "w1\tt1")
    store.start_batch("put", 0, 1, "w2\tt2")  # a later start replaced it
    commit = store.commit_batch("put", 0, {"files": 1, "refused": 1},
                                outcomes={"refused": {"a": "already exists"}},
                                log=[("refused", "already exists")], taker="w1\tt1")
    assert commit.superseded == "w2\tt2" and not commit.first and not commit.complete
    assert not any(k.startswith("put:") for k in store.counters())
    assert store.outcomes("refused") == {}
    assert fake_redis.hget(store.keys.log("put"), "0") is None
    assert store.done_batches("put") == set()
    commit = store.commit_batch("put", 0, {"files": 1, "written": 1}, log=[("written", None)],
                                taker="w2\tt2")
    assert commit.superseded is None and commit.first
    assert store.counters()["put:written"] == 1


def test_a_commit_of_a_big_batch_splits_its_writes_for_the_script(store):
    """Lua's unpack takes a few thousand words: a batch of many outcomes is written in
    several HSETs of the one script, all of them."""
    skipped = {f"f{n:05d}.dcm": "not DICOM" for n in range(4500)}
    store.commit_batch("get", 0, {"files": 4500, "skipped": 4500}, outcomes={"skipped": skipped})
    assert store.outcomes("skipped") == skipped
    assert store.counters()["get:skipped"] == 4500


def test_a_snapshot_reads_record_counters_and_done_sets_in_one_round_trip(fake_redis, store,
                                                                          monkeypatch):
    store.commit_batch("get", 0, {"files": 2})
    store.commit_batch("get", 3, {"files": 1})
    sent = _counting(fake_redis, monkeypatch)
    view = store.snapshot("get", "put")
    assert len(sent) == 1
    assert view.record["action"] == "all" and view.counters["get:files"] == 3
    assert view.done == {"get": {0, 3}, "put": set()}


def test_few_entities_spread_over_the_sets_are_read_in_one_group(fake_redis, store, monkeypatch):
    """A small run's entities fall one or two per entity set: they are grouped across sets,
    so the export waits for one round trip for the sets and one for the group."""
    ids = {f"P{n}": {f"i{n}": {"id": n}} for n in range(20)}
    store.save_ids(ids)
    sent = _counting(fake_redis, monkeypatch)
    assert {e: dict(items) for e, items in store.iter_ids()} == ids
    assert len(sent) == 2
