from __future__ import annotations

import json

import pytest

from deid_workers.synth import phi_strings
from deid_workers.tasks.get import run_get


def test_get_batches_store_ids_and_skips(make_run):
    store, root, paths, n = make_run("get")
    results = [run_get(store.run_id, b) for b in range(n)]
    c = store.counters()
    assert c["get:files"] == len(paths) and c["get:valid"] == 6 and c["get:skipped"] == 2
    ids = {e: dict(items) for e, items in store.iter_ids()}
    assert set(ids) == {"PID-0000-SENT", "PID-0001-SENT"}
    assert sum(len(v) for v in ids.values()) == 6
    assert set(store.outcomes("skipped")) == {p for p in paths if p.startswith("corrupt-")}
    text = json.dumps(results)
    for phi in phi_strings(0) | phi_strings(1):
        assert phi not in text


def test_get_batch_twice_counts_once(make_run):
    """A committed batch delivered again stops at its guard (the task class returns quietly,
    tests/tasks/test_batch_takers.py) and counts nothing."""
    from deid_workers.tasks.liveness import AlreadyCommitted

    store, *_ = make_run("get")
    run_get(store.run_id, 0)
    with pytest.raises(AlreadyCommitted):
        run_get(store.run_id, 0)
    assert store.counters()["get:files"] == 3
