"""Fixtures shared by the whole suite."""

from __future__ import annotations

import pytest

TEST_KEY = "suite-cluster-key-0123456789abcdef0123"
"""A cluster key that passes the key checks (deid_workers.keys.check_secret)."""


@pytest.fixture
def cluster_key(monkeypatch):
    """DEID_SECRET set, as every broker-mode producer and worker must have it."""
    monkeypatch.setenv("DEID_SECRET", TEST_KEY)
    monkeypatch.delenv("DEID_SECRET_FILE", raising=False)
    return TEST_KEY
