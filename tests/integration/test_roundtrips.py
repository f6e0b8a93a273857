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
