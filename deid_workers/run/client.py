"""Redis clients for a broker URL, and the one cache of them a process keeps.

Workers and the producer both talk to the Redis that is also Celery's broker; they differ only
in patience (:func:`redis_client`). A worker process keeps one client per URL and kind
(:func:`shared_client`): a client holds a connection pool, so making one per batch would open
a connection per batch.
"""

from __future__ import annotations

from typing import Any

import redis

__all__ = ["PATIENT_RETRIES", "redis_client", "shared_client", "forget_clients"]

PATIENT_RETRIES = 14
"""Reconnection attempts of a worker's client (exponential backoff capped at 5 s: about a
minute), enough to ride out a Redis restart inside a batch instead of failing it."""


def redis_client(url: str, *, patient: bool = False, **options: Any) -> redis.Redis:
    """A redis-py client for a broker URL as Celery spells it; ``options`` (TLS:
    :meth:`~deid_workers.config.Settings.tls_options`) go to redis-py.

    Celery/kombu write a unix socket as ``redis+socket:///path``; redis-py wants ``unix:///path``.
    ``patient`` (workers): every command retries a lost connection for about a minute, so a
    Redis restart delays a batch rather than failing it (which, with the broker down too, Celery
    could not even retry). Writes are safe to repeat: counters commit once per batch (Lua) and
    the rest are overwrites. The producer is not patient: it must fail fast on a wrong URL and
    handles a lost connection itself.
    """
    for prefix in ("redis+socket://", "socket://"):
        if url.startswith(prefix):
            url = "unix://" + url[len(prefix):]
            break
    if not patient:
        return redis.Redis.from_url(url, decode_responses=True, health_check_interval=30,
                                    **options)
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        url, decode_responses=True, health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=5.0, base=0.25), PATIENT_RETRIES),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError], **options)


_SHARED: dict[tuple[str, bool], redis.Redis] = {}


def shared_client(url: str, *, patient: bool = False, **options: Any) -> redis.Redis:
    """This process's client for ``url`` (made by :func:`redis_client` the first time);
    ``options`` count only then (every caller of a URL passes the same TLS options)."""
    key = (url, patient)
    client = _SHARED.get(key)
    if client is None:
        client = _SHARED[key] = redis_client(url, patient=patient, **options)
    return client


def forget_clients() -> None:
    """Drop the cached clients (tests; a process that follows runs on several brokers)."""
    _SHARED.clear()
