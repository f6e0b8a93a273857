"""producer: the chord publisher and waiting through Redis outages (the rest runs in tests/integration)."""

from __future__ import annotations

import pytest


class _FlakyStore:
    """A store whose Redis is down for ``down`` reads, then comes back (or comes back empty)."""

    run_id = "r1"

    class client:  # noqa: N801 - a Redis that says its memory is fine
        @staticmethod
        def info(section):
            return {}

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

    from deid_workers.app import app
    from deid_workers.tasks import dispatch

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

    def numbers():
        for n in range(3):
            events.append(("walked", n))
            yield n

    dispatch.send_chord("deid.get", "run", numbers(), "deid.finalize", "body-id")
    gid = events[-1][2]
    assert events == [
        ("walked", 0), ("walked", 1), ("publish", 0, gid, 0, "body-id", True),
        ("walked", 2), ("publish", 1, gid, 1, "body-id", True),
        ("size", gid, 3), ("publish", 2, gid, 2, "body-id", True),
    ]
    events.clear()
    dispatch.send_chord("deid.get", "run", iter(()), "deid.finalize", "body-2")
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


def test_the_run_keeps_each_recipe_text_with_its_file_name(tmp_path, monkeypatch, fake_redis):
    from deid_workers import producer
    from deid_workers.config import Settings

    monkeypatch.setattr(producer, "send_first_stage", lambda *a, **k: None)  # no broker here
    a, b = tmp_path / "site.dicom", tmp_path / "extra" / "deid.dicom"
    b.parent.mkdir()
    a.write_text("FORMAT dicom\n\n%header\n\nREMOVE PatientName\n")
    b.write_text("FORMAT dicom\n\n%header\n\nBLANK PatientID\n")
    (tmp_path / "in").mkdir()
    sub = producer.Submission(action="get", input=str(tmp_path / "in"),
                              outfolder=str(tmp_path / "out"), recipes=(str(a), str(b)))
    rec = producer.submit(Settings(), sub, client=fake_redis).record()
    assert rec["recipe_texts"] == [a.read_text(), b.read_text()]
    assert rec["recipe_files"] == ["site.dicom", "deid.dicom"]
    assert rec["recipe_name"] == "site.dicom+deid.dicom"


@pytest.fixture
def put_setup(tmp_path, monkeypatch, fake_redis):
    """``put_setup(chunk_items=, work=True)``: a producer on fakeredis whose ``deid.load``
    messages are recorded (and, with ``work``, carried out at once as a worker would); put
    batches are not sent. Gives (the fake Redis, the chunks sent)."""
    return lambda **kw: _put_setup(tmp_path, monkeypatch, fake_redis, **kw)


def _put_setup(tmp_path, monkeypatch, client, *, chunk_items: int, work: bool = True):
    import contextlib

    from deid_workers import prepare, producer
    from deid_workers.ids import chunks
    from deid_workers.run.store import RunStore

    monkeypatch.setattr(producer, "send_first_stage", lambda *a, **k: None)  # no broker here
    for module in (prepare, producer):  # prepare cuts the file first, resume again
        monkeypatch.setattr(module, "iter_ids_chunks",
                            lambda path, **kw: chunks.iter_ids_chunks(path, chunk_items, **kw))
    sent: list[int] = []

    @contextlib.contextmanager
    def sender(name, run_id):
        assert name == "deid.load"

        def send(chunk):
            sent.append(chunk)
            if work:
                store = RunStore.load(client, run_id, keys=producer.Settings.from_env().cluster_keys())
                store.write_ids_chunk(chunk, store.ids_chunk(chunk))
        yield send

    monkeypatch.setattr(producer.dispatch, "sender", sender)
    (tmp_path / "in").mkdir(exist_ok=True)
    return client, sent


_READS_ID = "FORMAT dicom\n\n%header\n\nREPLACE PatientID var:id\n"


def _submit_put(client, tmp_path, ids, recipe: str | None = _READS_ID):
    """A put run of ``ids``; its recipe reads the ids field ``id`` (None: the default one)."""
    import json

    from deid_workers import producer
    from deid_workers.config import Settings

    path = tmp_path / "ids.json"
    path.write_text(ids if isinstance(ids, str) else json.dumps(ids))
    recipes: tuple[str, ...] = ()
    if recipe is not None:
        (tmp_path / "deid.dicom").write_text(recipe)
        recipes = (str(tmp_path / "deid.dicom"),)
    sub = producer.Submission(action="put", input=str(tmp_path / "in"),
                              outfolder=str(tmp_path / "out"), ids_path=str(path), recipes=recipes)
    return producer.submit(Settings(), sub, client=client)


def test_put_keeps_only_the_ids_fields_its_recipe_can_read(tmp_path, monkeypatch, put_setup):
    from deid_workers import producer
    from deid_workers.config import Settings

    client, sent = put_setup(chunk_items=1, work=False)
    ids = {f"P{n}": {f"1.{n}": {"id": f"S{n}", "PatientName": "DOE^JO", "n": [1, 2]}}
           for n in range(6)}
    store = _submit_put(client, tmp_path, ids)
    assert store.record()["ids_fields"] == ["id"]
    assert store.get_ids("P0", "1.0") == {"id": "S0"}  # the producer wrote it (no worker)
    sent.clear()
    producer.resume(Settings(), store.run_id, client=client)  # the rest, cut the same way
    for chunk in sent:  # as the workers would
        store.write_ids_chunk(chunk, store.ids_chunk(chunk))
    assert [store.get_ids(f"P{n}", f"1.{n}") for n in (2, 5)] == [{"id": "S2"}, {"id": "S5"}]
    default = _submit_put(client, tmp_path, ids, recipe=None)  # reads no ids field
    assert default.record()["ids_fields"] == []
    assert default.get_ids("P1", "1.1") == {} and default.get_ids("P1", "1.9") is None


def test_put_sends_its_ids_file_in_chunks_and_a_bad_entity_leaves_no_run(tmp_path, monkeypatch, put_setup):
    import pytest

    from deid_workers.errors import IdentifiersError
    from deid_workers.run.store import list_runs

    client, sent = put_setup(chunk_items=1)
    store = _submit_put(client, tmp_path, {"P1": {"1.2": {"id": "S1"}}, "P2": {"1.3": {}}})
    assert sent == [0, 1] and store.record_fields("ids_chunks", "ids_path") == [2, str(tmp_path / "ids.json")]
    assert store.get_ids("P1", "1.2") == {"id": "S1"} and store.get_ids("P2", "1.3") == {}
    assert not client.keys("*idschunk*")  # each chunk goes once written
    with pytest.raises(IdentifiersError, match=r"entity #2: expected a mapping of items"):
        _submit_put(client, tmp_path, {"P1": {"1.2": {}}, "P2": 5})  # after chunk 0 was sent
    assert sent[2:] == [0]
    assert list_runs(client) == [store.run_id]  # the second run was removed, ids and all
    assert len(client.keys("deid:run:*")) == len(client.keys(f"deid:run:{store.run_id}*"))
    with pytest.raises(IdentifiersError, match="not valid JSON"):
        _submit_put(client, tmp_path, "{oops")
    assert list_runs(client) == [store.run_id]


def test_put_ids_wait_for_workers_but_never_more_than_a_window(tmp_path, monkeypatch, put_setup):
    """With no worker, the producer writes the oldest chunk itself whenever IDS_WINDOW wait."""
    from deid_workers import producer

    client, sent = put_setup(chunk_items=1, work=False)
    ids = {f"P{n}": {f"1.{n}": {"id": f"S{n}"}} for n in range(7)}
    store = _submit_put(client, tmp_path, ids)
    window = producer.IDS_WINDOW
    assert sent == list(range(7))
    assert store.done_batches("load") == set(range(7 - window))  # written by the producer
    assert len(client.keys("*idschunk*")) == window  # the rest wait for a worker
    assert store.get_ids("P0", "1.0") == {"id": "S0"} and store.get_ids("P6", "1.6") is None


def test_resume_of_a_put_run_sends_the_ids_chunks_not_written(tmp_path, monkeypatch, put_setup):
    from deid_workers import producer
    from deid_workers.config import Settings

    client, sent = put_setup(chunk_items=1, work=False)
    ids = {f"P{n}": {f"1.{n}": {"id": f"S{n}"}} for n in range(6)}
    store = _submit_put(client, tmp_path, ids)
    sent.clear()
    producer.resume(Settings(), store.run_id, client=client)
    missing = sorted(set(range(6)) - set(range(6 - producer.IDS_WINDOW)))
    assert sent == missing  # cut the same way again; the written ones are skipped
    assert store.record_fields("ids_chunks") == [6]


def test_submit_ticks_per_ids_chunk_and_per_batch_so_progress_shows_while_it_sends(
        tmp_path, monkeypatch, put_setup):
    import json

    from deid_workers import producer
    from deid_workers.config import Settings
    from deid_workers.run.totals import stage_totals

    client, sent = put_setup(chunk_items=1)
    walk = producer._walk  # the walk as send_first_stage runs it, minus the broker
    monkeypatch.setattr(producer, "send_first_stage", lambda store, settings, sub, tick=None, **kw:
                        list(walk(store, sub, settings, tick=tick)))
    for n in range(3):
        (tmp_path / "in" / f"f{n}.dcm").write_bytes(b"")
    path = tmp_path / "ids.json"
    path.write_text(json.dumps({f"P{n}": {f"1.{n}": {"id": f"S{n}"}} for n in range(2)}))
    seen = []

    def tick(store):
        rec, c = store.record(), store.counters()
        seen.append((c.get("load:items", 0), c.get("walk:files", 0), rec.get("ids_items")))

    sub = producer.Submission(action="put", input=str(tmp_path / "in"),
                              outfolder=str(tmp_path / "out"), ids_path=str(path))
    store = producer.submit(Settings(batch_size=1), sub, client=client, tick=tick)
    assert seen == [(1, 0, None), (2, 0, None), (2, 1, 2), (2, 2, 2), (2, 3, 2)]
    load = stage_totals(store.record(), store.counters())[0]
    assert (load.name, load.done, load.total, load.final, load.unit) == ("load", 2, 2, True,
                                                                         "items")


def test_a_run_on_a_distant_redis_gets_bigger_batches_and_keeps_them_on_resume(
        tmp_path, monkeypatch, put_setup, cluster_key):
    """No size given, on a cluster: the producer measures the round trip to Redis and sizes
    the run's batches for it (config.auto_batch); the record keeps the size and the tail, so
    a resume, wherever it runs, cuts the walk the same way. A size given, or embedded mode,
    is left as it is."""
    from deid_workers import producer
    from deid_workers.config import DEFAULT_BATCH_SIZE, MAX_AUTO_BATCH, Settings
    from deid_workers.run.record import RunRecord

    client, _ = put_setup(chunk_items=1000)
    walks = []
    walk = producer._walk
    monkeypatch.setattr(producer, "send_first_stage", lambda store, settings, sub, skip=None,
                        **kw: walks.append([store.batch(n) for n in walk(store, sub, settings)]))
    monkeypatch.setattr(producer, "round_trip_ms", lambda client: 4.4)
    for n in range(2 * MAX_AUTO_BATCH + 150):
        (tmp_path / "in" / f"f{n:04d}.dcm").write_bytes(b"")
    path = tmp_path / "ids.json"
    path.write_text('{"P": {"1.1": {"id": "S"}}}')
    sub = producer.Submission(action="put", input=str(tmp_path / "in"),
                              outfolder=str(tmp_path / "out"), ids_path=str(path))
    broker = Settings(broker_url="redis://far:6379/0", secret=cluster_key.encode(),
                      input_roots=(str(tmp_path),), output_roots=(str(tmp_path),))
    store = producer.submit(broker, sub, client=client)
    cut = [MAX_AUTO_BATCH] + [100] * 6 + [50]  # under two batches left: small ones
    assert [len(b) for b in walks[-1]] == cut
    settings = RunRecord.of(store.record()).settings
    assert (settings["batch_size"], settings["batch_tail"]) == (MAX_AUTO_BATCH, DEFAULT_BATCH_SIZE)
    monkeypatch.setattr(producer, "round_trip_ms", lambda client: 0.1)  # resumed from nearby
    client.delete(store.keys.done("put"))
    producer.resume(broker, store.run_id, client=client)
    assert [len(b) for b in walks[-1]] == cut
    for given, batches in ((broker.with_overrides(batch_size=700), [700, 450]),
                           (Settings(secret=cluster_key.encode()),
                            [DEFAULT_BATCH_SIZE] * 11 + [50])):
        producer.submit(given, sub, client=client)
        assert [len(b) for b in walks[-1]] == batches


def test_at_debug_the_producer_says_each_stages_committed_batches_as_they_grow(caplog):
    import logging

    from deid_workers.producer import _debug_batches

    said: dict[str, int] = {}
    caplog.set_level(logging.DEBUG, logger="deid_workers.producer")
    _debug_batches("r1", {"get:batches": 1, "get:files": 100}, said)
    _debug_batches("r1", {"get:batches": 1, "get:files": 100}, said)  # nothing new
    _debug_batches("r1", {"get:batches": 2, "get:files": 150, "load:batches": 1,
                          "load:items": 7}, said)
    assert [r.getMessage() for r in caplog.records] == [
        "run r1: get: 1 batch(es) committed, 100 files",
        "run r1: load: 1 batch(es) committed, 7 items",
        "run r1: get: 2 batch(es) committed, 150 files"]
