"""A Redis that refuses writes for lack of memory, noticed and said plainly.

deploy/ runs Redis with ``maxmemory`` and ``noeviction``: once full, every write fails. Each
side says so in one line with what to do, instead of a traceback: a worker's task
(:class:`~deid_workers.tasks.limits.BatchTask`), the producer while it sends
(:func:`~deid_workers.producer.refused_writes`) and while it waits (:class:`MemoryWatch`).
"""

from __future__ import annotations

import redis

__all__ = ["out_of_memory", "redis_reason", "redis_full", "MemoryWatch"]


def out_of_memory(exc: BaseException) -> bool:
    """Whether Redis refused a write for lack of memory (``maxmemory``, ``noeviction``), also
    when the write was inside one of our Lua scripts (then redis-py says ResponseError) or
    when kombu re-raised the refusal as its own ``OperationalError`` (sending a task)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, redis.exceptions.OutOfMemoryError) or (
                isinstance(cur, redis.exceptions.ResponseError)
                and "OOM command not allowed" in str(cur)):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def redis_reason(exc: BaseException, resume: str | None = None) -> str:
    """A Redis error in a few words, out of memory said plainly with what to do (then resume
    run ``resume``, or start again when there is no run to resume)."""
    if out_of_memory(exc):
        then = f"--resume {resume}" if resume else "start again"
        return ("Redis is out of memory (maxmemory reached, nothing is evicted) and refused a "
                f"write: purge runs no longer needed (--purge RUN_ID) or raise maxmemory, then "
                f"{then}")
    return type(exc).__name__


def redis_full(client: redis.Redis) -> str | None:
    """Why Redis refuses writes, when it does: its used memory is at ``maxmemory`` under
    ``noeviction``; None otherwise (or when INFO is not allowed to this user)."""
    try:
        info = client.info("memory")
    except redis.RedisError:
        return None
    limit = int(info.get("maxmemory") or 0)
    used = int(info.get("used_memory") or 0)
    if limit and used >= limit and str(info.get("maxmemory_policy")) == "noeviction":
        return (f"Redis is out of memory ({used >> 20} MB used of maxmemory {limit >> 20} MB, "
                "nothing is evicted) and refuses writes")
    return None


class MemoryWatch:
    """Says whether Redis refused a write for lack of memory since the watch began.

    Why not only the memory in use: once the refused writers have gone (Celery ends a worker
    whose Redis cannot note a task it took), the memory in use falls back a little under
    ``maxmemory`` while the run has lost writes all the same. Redis counts each refusal
    (``INFO errorstats``, ``errorstat_OOM``, Redis 6.2+), so a rise of that count is proof.
    """

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.start = self._refusals()

    def _refusals(self) -> int | None:
        try:
            stat = self.client.info("errorstats").get("errorstat_OOM") or {}
        except redis.RedisError:
            return None
        return int(stat.get("count", 0)) if isinstance(stat, dict) else 0

    def full(self) -> str | None:
        """Why the run cannot go on for lack of Redis memory; None while nothing was refused."""
        now = self._refusals()
        if now is not None and self.start is not None and now > self.start:
            return (f"Redis is out of memory (it refused {now - self.start} write(s) since the run "
                    "was sent: maxmemory reached, nothing is evicted)")
        return redis_full(self.client)
