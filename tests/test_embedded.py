"""embedded: how the private cluster stops (starting it runs in tests/integration)."""

from __future__ import annotations

import signal

import pytest

from deid_workers import embedded


@pytest.mark.parametrize(("idle", "expected"), [(False, signal.SIGTERM), (True, signal.SIGKILL)])
def test_stop_is_warm_unless_the_run_finished(monkeypatch, idle, expected):
    sent = []
    monkeypatch.setattr(embedded, "_stop_group", lambda proc, sig, timeout: sent.append((proc, sig)))
    cluster = embedded.EmbeddedCluster(1)
    cluster.worker, cluster.redis = "worker", "redis"  # type: ignore[assignment]
    if idle:
        cluster.mark_idle()
    cluster.stop()
    assert sent == [("worker", expected), ("redis", signal.SIGTERM)]
    assert cluster.worker is None and cluster.redis is None
