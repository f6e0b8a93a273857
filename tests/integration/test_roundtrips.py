"""The Redis round trips a batch waits for, counted on a real worker (benchmarks/roundtrips.py):
on a cluster each is a network latency, so the batching of issue 19 must not regress. A
first batch (connections, the run's context) and the last (chord, run log) cost more; the
median is what every other batch pays."""

from __future__ import annotations

import pytest

from benchmarks.roundtrips import count_roundtrips

pytestmark = pytest.mark.integration


def test_a_batch_waits_for_few_round_trips():
    result = count_roundtrips(patients=4, images=100, batch=50)
    median = result["pool_median"]
    assert median["deid.get"] <= 3  # its start (with its paths), its commit, the chord
    assert median["deid.put"] <= 4  # start, ids, whether it is still its own, commit
    assert result["tasks"]["deid.put"] == 8


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
