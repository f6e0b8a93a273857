"""Paths relative to the input are sealed wherever the store keeps them (issue 22 item 3):
every store method that writes one leaves no byte of it in Redis, reads it back as it was
written, and refuses a value that was forged, moved or written in clear."""

from __future__ import annotations

import json

import pytest

from deid_workers.errors import RunRefused
from deid_workers.run.notices import BatchNotices
from deid_workers.run.store import RunStore

NAME, PID = "DOE_JOHN", "PID77341"
"""What an archive's folder and file names carry (``<name>/<PatientID>/...``)."""

P = [f"{NAME}/{PID}/series 1/IM{i}.dcm" for i in range(3)]


def _everything(fake_redis) -> str:
    """Every key name and every value of every key in Redis, as one text."""
    out = []
    for key in fake_redis.scan_iter("*"):
        out.append(key)
        kind = fake_redis.type(key)
        if kind == "hash":
            out += [x for kv in fake_redis.hgetall(key).items() for x in kv]
        elif kind == "set":
            out += list(fake_redis.smembers(key))
        elif kind == "zset":
            out += list(fake_redis.zrange(key, 0, -1))
        elif kind == "list":
            out += list(fake_redis.lrange(key, 0, -1))
        else:
            out.append(str(fake_redis.get(key)))
    return "\n".join(out)


def _assert_hidden(fake_redis) -> None:
    seen = _everything(fake_redis)
    assert NAME not in seen and PID not in seen and "IM0.dcm" not in seen


@pytest.fixture
def store(new_store):
    return new_store({"action": "all", "input": "/in", "outfolder": "/out"})


def test_batch_lists_are_sealed(fake_redis, store):
    store.add_batch(0, P)
    store.save_clean_batch(0, P[:1])
    store.commit_batch("put", 0, {}, ocr=P[1:], clean=P[:2])
    _assert_hidden(fake_redis)
    assert store.batch(0) == P and store.clean_batch(0) == P[:2] and store.ocr_batch(0) == P[1:]
    assert store.start_batch("put", 0, 0, "w\tt", lists=True).paths == P


def test_outcomes_are_sealed_under_keyed_fields_and_recommits_stay_idempotent(fake_redis, store):
    store.add_batch(0, P)
    outcomes = {"skipped": {P[0]: f"not DICOM: {P[0]}"}, "inspect": {P[1]: '{"flagged": false}'}}
    store.commit_batch("get", 0, {}, outcomes=outcomes)
    store.commit_batch("get", 0, {}, outcomes=outcomes)  # a redelivery writes the same fields
    store.add_outcome("unlisted", f"{NAME}/{PID}", "permission denied", counter="walk:unlisted")
    store.add_outcome("poison", P[2], "killed its worker")
    _assert_hidden(fake_redis)
    assert store.outcome_count("skipped") == 1 and store.outcome_count("inspect") == 1
    assert store.outcomes("skipped") == outcomes["skipped"]
    assert store.outcomes("skipped", P) == outcomes["skipped"]
    assert store.outcomes("poison", [P[0], P[2]]) == {P[2]: "killed its worker"}
    assert dict(store.iter_outcomes("unlisted")) == {f"{NAME}/{PID}": "permission denied"}
    assert list(store.iter_batch_outcomes("inspect", 1)) == [(P[1], '{"flagged": false}')]
    field = fake_redis.hkeys(store.keys.outcome("skipped"))[0]
    assert field == store._path_name(P[0]) and len(field) == 32


def test_run_log_entries_notices_and_inflight_are_sealed(fake_redis, store):
    store.add_batch(0, P)
    notices = BatchNotices()
    notices.add(P[0], "kept", f"{P[0]}: kept PatientComments")
    store.commit_batch("put", 0, {}, log=[("written", None, f"{NAME}/out.dcm")],
                       notices=notices.encoded())
    store.save_log("clean", 0, [("failed", f"cannot read {P[1]}")])
    store.add_notices("get", 0, notices.encoded() or "", {})
    store.set_inflight("put", 0, 2, P[2])
    _assert_hidden(fake_redis)
    assert store.inflight("put", 0, 2) == P[2] and store.inflight("put", 0, 1) is None
    (record,) = store.iter_batch_records(1)
    assert record.paths == P and record.put_log == [("written", None, f"{NAME}/out.dcm")]
    assert record.clean_log == [("failed", f"cannot read {P[1]}")]
    assert P[0] in store.notices("put", [0])[0][1] and P[0] in store.notices("get", [0])[0][1]
    store.set_inflight("put", 0, 2, None)
    assert store.inflight("put", 0, 2) is None


def test_the_records_paths_of_outputs_and_error_are_sealed(fake_redis, store, cluster_keys):
    store.update(run_log=f"/ids/{NAME}/deid-run.r1.jsonl", ids_pkl=f"/ids/{NAME}/x.pkl",
                 error=f"the input folder /data/{PID} is outside this worker's roots")
    _assert_hidden(fake_redis)
    again = RunStore.load(fake_redis, "r1", keys=cluster_keys)
    assert again.record()["run_log"] == f"/ids/{NAME}/deid-run.r1.jsonl"
    assert again.record_fields("ids_pkl", "state") == [f"/ids/{NAME}/x.pkl", "created"]
    bare = RunStore(fake_redis, "r1", expiry=10)  # a worker refusing a run of another key
    bare.set_state("failed", error="refused: another key")
    assert again.record()["error"] == "refused: another key"


@pytest.mark.parametrize("forgery", ["clear list", "moved outcome", "clear outcome",
                                     "clear inflight", "clear log", "moved private field"])
def test_a_value_that_does_not_open_is_refused(fake_redis, store, forgery):
    store.add_batch(0, P)
    store.add_outcome("skipped", P[0], "empty file")
    store.add_outcome("skipped", P[1], "empty file")
    store.update(run_log="/ids/a.jsonl", report_tsv="/ids/b.tsv")
    if forgery == "clear list":  # what the old format (signed, in clear) or a forger wrote
        fake_redis.hset(store.keys.batches, "0", json.dumps(P))
        call = lambda: store.batch(0)  # noqa: E731
    elif forgery in ("moved outcome", "clear outcome"):
        key, (a, b) = store.keys.outcome("skipped"), sorted(fake_redis.hkeys(store.keys.outcome(
            "skipped")))
        value = fake_redis.hget(key, b) if forgery == "moved outcome" else f"{P[0]}\0x"
        fake_redis.hset(key, a, value)
        call = lambda: store.outcomes("skipped")  # noqa: E731
    elif forgery == "clear inflight":
        fake_redis.hset(store.keys.inflight, "put:0", f"0\n{P[0]}")
        call = lambda: store.inflight("put", 0, 0)  # noqa: E731
    elif forgery == "clear log":
        fake_redis.hset(store.keys.log("put"), "0", json.dumps([["written", None]]))
        call = lambda: list(store.iter_batch_records(1))  # noqa: E731
    else:
        fake_redis.hset(store.keys.run, "run_log", fake_redis.hget(store.keys.run, "report_tsv"))
        call = store.record
    with pytest.raises(RunRefused, match="not signed with the cluster key"):
        call()
