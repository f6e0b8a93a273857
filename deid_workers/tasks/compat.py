"""Celery's and kombu's internals, fenced in: the one module that reaches into them.

Three things deid-workers needs that neither library offers, each written against the
releases in :data:`KOMBU_TESTED` / :data:`CELERY_TESTED`, and each with a plain path, taken on
any other release (the worker says so once when it starts, :func:`check`):

- *Who took each message* (kombu's Redis transport, ``kombu/transport/redis.py``), for worker
  liveness (:mod:`.liveness`). Plain path: nothing is patched, and a dead worker's messages
  come back after the visibility timeout, as kombu does it.
- *A worker that survives Redis going away* (:func:`survive_broker_loss`, kombu's channel).
  Plain path: Celery ends the worker ("Unrecoverable error") and its supervisor restarts it.
- *A hard time limit that requeues a batch* (Celery's worker ``Request``, subclassed in
  :mod:`.limits`). Plain path: Celery fails the task past its hard limit.

Also here, because they read kombu's layout or Celery's caches: the queue lengths
(:func:`queue_lengths`) and dropping an app's connections when it is pointed elsewhere
(:func:`reset_connections`). Patches are installed when a worker starts, never on import.

How kombu acknowledges late on Redis: a consumer that takes a message writes, in one MULTI
(``QoS.append``), the message into the ``unacked`` hash (delivery tag -> JSON ``[payload,
exchange, routing key]``) and the time into the ``unacked_index`` zset; an ack or a reject
removes both (``QoS._remove_from_indices``); every consumer scans the index for entries older
than the visibility timeout and pushes them back to their queue (``QoS.restore_visible`` ->
``restore_by_tag``: WATCH ``unacked``, then in one MULTI remove the entry and push the
payload through ``Channel._do_restore_message``). Nothing records *which* consumer took a
message, so a dead worker's messages can only wait for the timeout (an hour here: it must
exceed the longest batch).

What this module adds: the ``unacked_owner`` hash (delivery tag -> worker id), written in the
same MULTI as kombu's entry and removed with it, so an entry never exists without its owner
(:func:`install`); and :func:`restore_owned`, which hands one message back to its queue only
while the given (dead) worker still owns it, atomically as kombu's own restore does (a WATCH
on ``unacked``): of several workers restoring at once one succeeds and the others find it
gone. The message goes back under a new delivery tag, so a late ack by the presumed-dead
worker (it was only cut off) removes nothing that a live worker now holds.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import celery
import kombu
import redis
from celery.worker.request import Request
from celery.worker.state import task_ready
from kombu.transport import redis as kombu_redis

__all__ = ["KOMBU_TESTED", "CELERY_TESTED", "SUPPORTED", "REQUEST_SUPPORTED", "OWNER_KEY",
           "Taken", "Request", "task_ready", "check", "install", "set_owner", "owner", "taken",
           "restore_owned", "drop_stale_owners", "channel_for", "queue_lengths", "UNACKED",
           "survive_broker_loss", "reset_connections"]

log = logging.getLogger(__name__)

KOMBU_TESTED = ((5, 3), (5, 7))
"""kombu releases (lowest, highest major.minor) the transport patches were written against."""

CELERY_TESTED = ((5, 3), (5, 7))
"""Celery releases the worker ``Request`` subclass (:mod:`.limits`) was written against."""


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(".")[:2] if x.isdigit())


def _within(version: tuple[int, ...], tested: tuple[tuple[int, int], tuple[int, int]]) -> bool:
    return tested[0] <= version <= tested[1]


SUPPORTED = (_within(_version(kombu.__version__), KOMBU_TESTED)
             and all(hasattr(kombu_redis.QoS, name) for name in (
                 "append", "_remove_from_indices", "pipe_or_acquire", "restore_unacked"))
             and all(hasattr(kombu_redis.Channel, name) for name in (
                 "unacked_key", "unacked_index_key", "_do_restore_message", "_connparams")))
"""True when the installed kombu's Redis transport is laid out as described above."""

REQUEST_SUPPORTED = (_within(_version(celery.__version__), CELERY_TESTED)
                     and all(hasattr(Request, name) for name in ("on_failure", "on_timeout",
                                                                 "reject", "request_dict")))
"""True when Celery's worker ``Request`` is the one :mod:`.limits` overrides."""


def check() -> list[str]:
    """What this worker does the plain way, for the installed Celery and kombu (a line each;
    none on the tested releases)."""
    out = []
    if not SUPPORTED:
        out.append(f"kombu {kombu.__version__} is not one deid-workers was tested with "
                   f"({_span(KOMBU_TESTED)}): a dead worker's batches come back after "
                   "DEID_VISIBILITY_TIMEOUT, and a lost broker connection restarts the worker")
    if not REQUEST_SUPPORTED:
        out.append(f"celery {celery.__version__} is not one deid-workers was tested with "
                   f"({_span(CELERY_TESTED)}): a batch past its hard time limit fails instead "
                   "of being started again")
    return out


def _span(tested: tuple[tuple[int, int], tuple[int, int]]) -> str:
    return "-".join(".".join(map(str, v)) for v in tested)


OWNER_KEY = "unacked_owner"
"""Hash next to kombu's ``unacked``: delivery tag -> id of the worker that took the message."""


_owner: tuple[str, str, int] | None = None  # worker id, its liveness key, the key's TTL


def set_owner(worker: str | None, ttl: int = 0) -> None:
    """The worker id this process records on the messages it takes (None: record nothing).

    Taking a message also refreshes the worker's liveness key (``ttl`` seconds) in the same
    MULTI, so an owner entry is never written for a worker whose key has lapsed: a worker
    back from a network cut takes nothing that others would at once think abandoned.
    """
    global _owner
    from ..run.names import worker_key

    _owner = None if worker is None else (worker, worker_key(worker), max(1, int(ttl)))


def owner() -> str | None:
    """The worker id this process records on the messages it takes (:func:`set_owner`)."""
    return None if _owner is None else _owner[0]


def install() -> bool:
    """Patch kombu's QoS to record owners (idempotent); False when kombu is not supported."""
    if not SUPPORTED:
        return False
    from kombu.transport import virtual
    from kombu.utils.json import dumps

    qos = kombu_redis.QoS
    if getattr(qos.append, "_deid_owner", False):
        return True
    plain_append = qos.append
    plain_remove = qos._remove_from_indices

    def append(self: Any, message: Any, delivery_tag: str) -> None:
        if _owner is None:
            return plain_append(self, message, delivery_tag)
        owner, key, ttl = _owner
        # kombu's QoS.append (5.3-5.7) with the owner and the liveness key in its MULTI.
        delivery = message.delivery_info
        with self.pipe_or_acquire() as pipe:
            pipe.zadd(self.unacked_index_key, {delivery_tag: _now()}) \
                .hset(self.unacked_key, delivery_tag,
                      dumps([message._raw, delivery["exchange"], delivery["routing_key"]])) \
                .hset(OWNER_KEY, delivery_tag, owner) \
                .set(key, owner.partition("#")[0], ex=ttl) \
                .execute()
            virtual.QoS.append(self, message, delivery_tag)
        return None

    def remove(self: Any, delivery_tag: str, pipe: Any = None) -> Any:
        return plain_remove(self, delivery_tag, pipe).hdel(OWNER_KEY, delivery_tag)

    append._deid_owner = True  # type: ignore[attr-defined]
    qos.append = append
    qos._remove_from_indices = remove
    return True


def _now() -> float:
    import time

    return time.time()


@dataclass(frozen=True)
class Taken:
    """One unacknowledged message: its delivery tag, who took it (None: a worker that does
    not record owners), and when."""

    tag: str
    owner: str | None
    since: float


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def taken(channel: Any) -> tuple[list[Taken], list[str]]:
    """Every unacknowledged message with its owner, read in one MULTI (a consistent view),
    and the owner entries left without a message (see :func:`drop_stale_owners`)."""
    pipe = channel.client.pipeline(transaction=True)
    pipe.zrange(channel.unacked_index_key, 0, -1, withscores=True)
    pipe.hgetall(OWNER_KEY)
    index, owners = pipe.execute()
    owners = {_text(k): _text(v) for k, v in owners.items()}
    entries = [Taken(_text(tag), owners.pop(_text(tag), None), float(score))
               for tag, score in index]
    return entries, sorted(owners)


def restore_owned(channel: Any, tag: str, owner: str) -> bool:
    """Put message ``tag`` back on its queue if ``owner`` still holds it; True when it did.

    As kombu's ``restore_by_tag``: WATCH ``unacked``, read, then one MULTI that removes the
    entry (index, hash, owner) and pushes the payload where kombu pushes it (its own
    ``_do_restore_message``: the exchange's bindings, the priority list, ``redelivered``). Any
    change to ``unacked`` in between (an ack, another worker restoring it) runs it again, and
    then the owner no longer matches.
    """
    client = channel.client

    def restore(pipe: Any) -> bool:
        held = pipe.hget(OWNER_KEY, tag)
        if held is None or _text(held) != owner:
            return False
        raw = pipe.hget(channel.unacked_key, tag)
        pipe.multi()
        pipe.zrem(channel.unacked_index_key, tag)
        pipe.hdel(channel.unacked_key, tag)
        pipe.hdel(OWNER_KEY, tag)
        if raw is None:
            return False
        from kombu.utils.json import loads

        payload, exchange, routing_key = loads(_text(raw))
        payload.setdefault("properties", {})["delivery_tag"] = str(uuid.uuid4())
        channel._do_restore_message(payload, exchange, routing_key, pipe, False)
        return True

    return bool(client.transaction(restore, channel.unacked_key, value_from_callable=True))


def drop_stale_owners(channel: Any, tags: list[str]) -> int:
    """Remove owner entries whose message is no longer unacknowledged (a path that bypassed
    the patched removal); each only if its message is still absent. Returns how many."""
    dropped = 0
    for tag in tags:
        def drop(pipe: Any, tag: str = tag) -> bool:
            if pipe.hexists(channel.unacked_key, tag):
                return False
            pipe.multi()
            pipe.hdel(OWNER_KEY, tag)
            return True
        dropped += bool(channel.client.transaction(drop, channel.unacked_key,
                                                   value_from_callable=True))
    return dropped


@contextmanager
def channel_for(app: Any) -> Iterator[Any]:
    """A kombu Redis channel of ``app``'s broker, for this thread alone."""
    conn = app.connection_for_write()
    try:
        yield conn.default_channel
    finally:
        conn.release()


def queue_lengths(client: redis.Redis, queues: Sequence[str]) -> dict[str, int]:
    """Messages waiting in each Celery queue, read from the broker's lists directly.

    kombu's Redis transport keeps a queue as several lists, one per priority step: ``get`` for
    priority 0 and ``get\\x06\\x163``, ``...6``, ``...9`` for the others (``Channel.sep`` and
    ``PRIORITY_STEPS`` in ``kombu/transport/redis.py``); a queue's length is their sum. Tasks
    a worker has taken but not acknowledged (``acks_late``) are not in these lists but in
    kombu's ``unacked`` hash, counted under :data:`UNACKED`.
    """
    steps_ = kombu_redis.PRIORITY_STEPS
    sep, unacked_key = kombu_redis.Channel.sep, kombu_redis.Channel.unacked_key
    pipe = client.pipeline(transaction=False)
    for q in queues:
        for pri in steps_:
            pipe.llen(q if not pri else f"{q}{sep}{pri}")
    pipe.hlen(unacked_key)
    sizes = [int(x or 0) for x in pipe.execute()]
    steps = len(steps_)
    out = {q: sum(sizes[i * steps:(i + 1) * steps]) for i, q in enumerate(queues)}
    out[UNACKED] = sizes[-1]
    return out


UNACKED = "(unacked)"
"""Key of :func:`queue_lengths`'s result counting taken, not yet acknowledged, tasks."""


def survive_broker_loss(on_lost: Callable[[int], bool]) -> bool:
    """Keep a worker alive when Redis goes away (a restart, a failover); False when kombu is
    not one this was written for (then nothing is patched).

    Once the consumer's connection is lost, kombu's Redis transport (5.x) closes the channel
    and drops its connection; anything that then touches the channel (the hand-back of unacked
    messages on close, the ack of a task that just finished) builds a client from connection
    info that is gone and fails with an ``AttributeError``. Celery does not count that as a
    connection error: "Unrecoverable error", and the worker exits. So a closed channel now
    raises redis' ``ConnectionError``, which kombu lists among its connection errors: a late ack
    is logged as "Couldn't ack" and the consumer reconnects. The messages are safe either way:
    they stay in Redis' unacked hash and any worker restores them after the visibility timeout
    (redoing a committed batch is a no-op). The hand-back itself is skipped:
    ``on_lost(messages)`` is told how many the worker had taken (liveness then hands them back
    within a TTL, :func:`~deid_workers.tasks.liveness.broker_lost`), or a warning says so when
    it returns False. Idempotent.
    """
    if not SUPPORTED:
        return False
    if getattr(kombu_redis.Channel._connparams, "_deid_patched", False):
        return True
    connparams = kombu_redis.Channel._connparams
    restore = kombu_redis.QoS.restore_unacked

    def _connparams(self: Any, asynchronous: bool = False) -> Any:
        if self.connection is None:
            raise redis.ConnectionError("the broker channel is closed (connection lost)")
        return connparams(self, asynchronous=asynchronous)

    def restore_unacked(self: Any, client: Any = None) -> Any:
        try:
            return restore(self, client)
        except (AttributeError, redis.ConnectionError):
            if not on_lost(len(self._delivered)):
                log.warning("broker connection lost: %d unacked message(s) stay in Redis and are "
                            "redelivered after the visibility timeout", len(self._delivered))
            self._delivered.clear()
            return None

    _connparams._deid_patched = True  # type: ignore[attr-defined]
    kombu_redis.Channel._connparams = _connparams
    kombu_redis.QoS.restore_unacked = restore_unacked
    return True


def reset_connections(app: Any) -> None:
    """Drop the connections, producer pool and result backend ``app`` opened, so that the
    next use opens them on its (new) broker. Dropped, not closed: kombu's global producer
    pools may still hand out the old pool for the same URL, and a closed one refuses to serve."""
    app._pool = None
    amqp = app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None
    app._backend_cache = None
    app._local = threading.local()
