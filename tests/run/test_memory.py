"""A Redis out of memory is named as such wherever it surfaces, also behind kombu's wrapper."""

from __future__ import annotations

import pytest
import redis
from kombu.exceptions import OperationalError

from deid_workers.run.lifecycle import fail_run
from deid_workers.run.memory import out_of_memory

OOM = "OOM command not allowed when used memory > 'maxmemory'."


def _kombu_wrapped(exc: BaseException) -> OperationalError:
    """What kombu raises when publishing a task meets a Redis error (``raise ... from exc``)."""
    try:
        try:
            raise exc
        except redis.exceptions.ResponseError as inner:
            raise OperationalError(str(inner)) from inner
    except OperationalError as outer:
        return outer


@pytest.mark.parametrize("exc", [
    redis.exceptions.OutOfMemoryError(OOM),
    redis.exceptions.ResponseError(f"Error running script: {OOM}"),
    _kombu_wrapped(redis.exceptions.ResponseError(OOM)),
])
def test_out_of_memory_is_recognised_however_it_arrives(exc):
    assert out_of_memory(exc)


@pytest.mark.parametrize("exc", [
    redis.exceptions.ResponseError("WRONGTYPE Operation against a key"),
    _kombu_wrapped(redis.exceptions.ResponseError("NOSCRIPT No matching script")),
    OSError("disk full"),
])
def test_other_errors_are_not_out_of_memory(exc):
    assert not out_of_memory(exc)


def test_a_run_failed_by_a_full_redis_says_so_with_what_to_do(store_for_fail):
    fail_run(store_for_fail, "finalize", _kombu_wrapped(redis.exceptions.ResponseError(OOM)))
    error = store_for_fail.record()["error"]
    assert error.startswith("finalize failed: Redis is out of memory")
    assert "maxmemory" in error and f"--resume {store_for_fail.run_id}" in error


def test_other_failures_keep_their_short_name(store_for_fail):
    fail_run(store_for_fail, "finalize", ValueError("a value with PHI in it: DOE^JOHN"))
    assert store_for_fail.record()["error"] == "finalize failed: ValueError"


@pytest.fixture
def store_for_fail(new_store):
    return new_store({"action": "all", "input": "/in", "n": 1}, expiry=100)
