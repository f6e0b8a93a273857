"""producer: the chord publisher and waiting through Redis outages (the rest runs in tests/integration)."""

from __future__ import annotations


class _FlakyStore:
    """A store whose Redis is down for ``down`` reads, then comes back (or comes back empty)."""

    run_id = "r1"

    def __init__(self, down: int, *, lost: bool = False) -> None:
        self.down = down
        self.lost = lost
        self.reads = 0

    def record(self):
        import redis

        from deid_workers.errors import StoreError

        self.reads += 1
        if self.reads <= self.down:
            raise redis.ConnectionError("Connection refused")
        if self.lost:
            raise StoreError("run r1 is unknown to Redis (expired, purged or lost)")
        return {"state": "finished"}

    def counters(self):
        return {}


def test_wait_rides_out_a_redis_restart():
    from deid_workers.producer import wait

    store = _FlakyStore(down=3)
    assert wait(store, poll=0.001)["state"] == "finished"
    assert store.reads == 4


def test_wait_gives_up_with_advice_when_redis_stays_away():
    import pytest

    from deid_workers.errors import StoreError
    from deid_workers.producer import wait

    with pytest.raises(StoreError, match=r"Redis unreachable .*--status r1.*--resume r1"):
        wait(_FlakyStore(down=10**6), poll=0.001, reconnect=0.05)


def test_wait_says_the_state_was_lost_and_what_to_do():
    import pytest

    from deid_workers.errors import StoreError
    from deid_workers.producer import wait

    with pytest.raises(StoreError, match="state is gone from Redis .*start the run again"):
        wait(_FlakyStore(down=2, lost=True), poll=0.001)


def test_send_chord_publishes_lazily_with_the_size_set_before_the_last(monkeypatch):
    """The header is consumed one task ahead, each task carries the chord's group, index and
    body, the size is set just before the last publish, and nothing else is kept."""
    from celery.canvas import Signature

    from deid_workers import producer
    from deid_workers.app import app

    events: list[tuple] = []

    def fake_apply_async(self, *args, **options):
        if "chord" not in options:  # the body itself
            events.append(("body", self.id))
            return
        events.append(("publish", self.args[1], self.options["group_id"],
                       self.options["group_index"], options["chord"].id,
                       options["ignore_result"]))

    monkeypatch.setattr(Signature, "apply_async", fake_apply_async)
    monkeypatch.setattr(type(app.backend), "set_chord_size",
                        lambda self, gid, size: events.append(("size", gid, size)))

    def header():
        for n in range(3):
            events.append(("walked", n))
            yield app.signature("deid.get", args=("run", n), immutable=True)

    producer.send_chord(header(), app.signature("deid.finalize", args=("run",), immutable=True),
                        "body-id")
    gid = events[-1][2]
    assert events == [
        ("walked", 0), ("walked", 1), ("publish", 0, gid, 0, "body-id", True),
        ("walked", 2), ("publish", 1, gid, 1, "body-id", True),
        ("size", gid, 3), ("publish", 2, gid, 2, "body-id", True),
    ]
    events.clear()
    producer.send_chord(iter(()), app.signature("deid.finalize", args=("run",), immutable=True),
                        "body-2")
    assert events == [("body", "body-2")]  # an empty header runs the body at once


class _StuckStore:
    """A run whose counters never move, on a broker whose queues are as given."""

    run_id = "stuck"

    def __init__(self, queued: int) -> None:
        import fakeredis

        self.client = fakeredis.FakeRedis()
        if queued:
            self.client.rpush("put", *[b"m"] * queued)
        self.rounds = 0

    def record(self):
        self.rounds += 1
        return {"action": "all", "stage": "get", "state": "finished" if self.rounds > 8 else
                "running"}

    def counters(self):
        return {"get:files": 50}


def test_a_stalled_run_with_nothing_queued_resends_what_is_not_done(caplog):
    from deid_workers.producer import wait

    calls = []
    wait(_StuckStore(queued=0), poll=0.01, stall_after=0.02,
         on_stall=lambda: calls.append(1) or "re-sent the get batches not done")
    assert calls  # each stall re-sends, then waits a full stall again
    assert "a task message was lost" in caplog.text


def test_a_quiet_run_with_work_queued_is_not_a_stall():
    from deid_workers.producer import wait

    calls = []
    wait(_StuckStore(queued=3), poll=0.01, stall_after=0.02,
         on_stall=lambda: calls.append(1) or "")
    assert calls == []  # a long batch or no worker yet: the messages are still there


def test_a_failed_chord_is_answered_by_a_resume_then_fails_the_run(monkeypatch):
    from deid_workers import producer

    class Store(_StuckStore):
        def __init__(self):
            super().__init__(queued=1)
            self.state = None
            self.chord = "c1"

        def record(self):
            return {"action": "all", "stage": "get", "state": self.state or "running",
                    "finalize_task": self.chord}

        def set_state(self, state, **_):
            self.state = state

    store = Store()
    monkeypatch.setattr(producer, "_chord_state", lambda task_id: "FAILURE")
    monkeypatch.setattr(producer, "CHORD_CHECK_SECONDS", 0.0)
    resumes = []

    def resume():
        resumes.append(store.chord)
        store.chord = f"c{len(resumes) + 1}"  # resume sent a new chord, which fails again
        return "re-sent the get batches not done"

    rec = producer.wait(store, poll=0.001, on_stall=resume)
    assert resumes == ["c1", "c2"]  # CHORD_RECOVERIES answers, then the run is failed
    assert rec["state"] == "failed"


def test_the_run_keeps_each_recipe_text_with_its_file_name(tmp_path):
    from deid_workers.producer import _recipe_texts

    a, b = tmp_path / "site.dicom", tmp_path / "extra" / "deid.dicom"
    b.parent.mkdir()
    a.write_text("FORMAT dicom\n\n%header\n\nREMOVE PatientName\n")
    b.write_text("FORMAT dicom\n\n%header\n\nBLANK PatientID\n")
    texts, files, sha, name = _recipe_texts([str(a), str(b)])
    assert texts == [a.read_text(), b.read_text()]
    assert files == ["site.dicom", "deid.dicom"] and name == "site.dicom+deid.dicom"


def test_put_streams_its_ids_file_and_a_bad_entity_leaves_no_run(tmp_path, monkeypatch):
    import json

    import fakeredis
    import pytest

    from deid_workers import producer
    from deid_workers.config import Settings
    from deid_workers.errors import IdentifiersError
    from deid_workers.store import list_runs

    client = fakeredis.FakeRedis(decode_responses=True)
    monkeypatch.setattr(producer, "enqueue", lambda *a, **k: None)  # no broker here
    (tmp_path / "in").mkdir()

    def put(ids) -> producer.RunStore:
        path = tmp_path / "ids.json"
        path.write_text(json.dumps(ids))
        sub = producer.Submission(action="put", input=str(tmp_path / "in"),
                                  outfolder=str(tmp_path / "out"), ids_path=str(path))
        return producer.submit(Settings(), sub, client=client)

    store = put({"P1": {"1.2": {"id": "S1"}}, "P2": {"1.3": {}}})
    assert store.get_ids("P1", "1.2") == {"id": "S1"} and store.get_ids("P2", "1.3") == {}
    with pytest.raises(IdentifiersError, match=r"entity #2: expected a mapping of items"):
        put({"P1": {"1.2": {}}, "P2": 5})  # found after P1 went to Redis
    assert list_runs(client) == [store.run_id]  # the second run was removed
    assert len(client.keys("deid:run:*")) == len(client.keys(f"deid:run:{store.run_id}*"))
    with pytest.raises(IdentifiersError, match="not valid JSON"):
        (tmp_path / "ids.json").write_text("{oops")
        producer.submit(Settings(), producer.Submission(
            action="put", input=str(tmp_path / "in"), outfolder=str(tmp_path / "out"),
            ids_path=str(tmp_path / "ids.json")), client=client)
    assert list_runs(client) == [store.run_id]
