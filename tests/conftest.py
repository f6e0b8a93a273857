"""Fixtures shared by the whole suite: the cluster key, a fake Redis and runs in it.

fakeredis serves the unit tests of the store and the tasks only; the distributed path runs on
a real redis-server (tests/integration/conftest.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import fakeredis
import pytest

from deid_workers.keys import ClusterKeys
from deid_workers.run.record import RunRecord
from deid_workers.run.store import RunStore

TEST_KEY = "suite-cluster-key-0123456789abcdef0123"
"""A cluster key that passes the key checks (deid_workers.keys.check_secret)."""


@pytest.fixture
def cluster_key(monkeypatch) -> str:
    """DEID_SECRET set, as every broker-mode producer and worker must have it."""
    monkeypatch.setenv("DEID_SECRET", TEST_KEY)
    monkeypatch.delenv("DEID_SECRET_FILE", raising=False)
    return TEST_KEY


@pytest.fixture
def cluster_keys() -> ClusterKeys:
    """The keys derived from :data:`TEST_KEY`: what signs and seals the test runs."""
    return ClusterKeys.derive(TEST_KEY.encode())


@pytest.fixture
def fake_redis() -> fakeredis.FakeRedis:
    """A fresh fake Redis, decoding replies as the store's clients do."""
    return fakeredis.FakeRedis(decode_responses=True)


NewStore = Callable[..., RunStore]


@pytest.fixture
def new_store(fake_redis, cluster_keys) -> NewStore:
    """``new_store(record=None, run_id="r1", expiry=1000)``: a run written in ``fake_redis``
    with :data:`TEST_KEY`'s keys; ``record`` a :class:`RunRecord` or a mapping of the fields a
    test needs (default: an ``all`` run of ``/in``)."""

    def make(record: RunRecord | Mapping[str, Any] | None = None, run_id: str = "r1", *,
             expiry: int = 1000) -> RunStore:
        if isinstance(record, RunRecord):
            spec = record.spec()
        else:
            spec = dict(record if record is not None else {"action": "all", "input": "/in"})
        return RunStore.create(fake_redis, run_id, spec, expiry=expiry, keys=cluster_keys)

    return make
