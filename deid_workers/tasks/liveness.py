"""Worker liveness: a dead worker's batches go back to the queues in seconds, not an hour.

Why: with ``acks_late`` a batch stays in kombu's unacked set while a worker runs it, and kombu
hands it back only after the broker's visibility timeout (an hour here: it must exceed the
longest batch, or a slow batch would be run twice). A node that dies (OOM-killed, a spot
instance reclaimed) would stall the tail of every run it was part of for that hour.

How, in four parts:

- *Liveness key.* Each worker process has an id, ``<node name>#<incarnation>`` (a restarted
  container keeps its node name, not its incarnation), and a key ``deid:worker:<id>`` that
  expires after ``DEID_LIVENESS_TTL`` seconds (20) unless refreshed. A thread of the worker's
  *main* process refreshes it every quarter of that, so the signal does not depend on any batch
  finishing: a batch that takes an hour, or a pool process hung in a decoder (the time limits
  deal with that one), never makes its worker look dead. Taking a message refreshes it too.
- *Owner of each taken message.* :mod:`~deid_workers.tasks.compat` records the worker id next
  to kombu's own unacked entry, in the same transaction.
- *Stalls.* The same thread also resends what a run whose walk is done has not done, when
  nothing is queued or taken anywhere and the run has not moved for ``DEID_STALL_SECONDS``:
  a message Redis lost between a worker's pop and kombu's note of it (:mod:`.resend`).
- *Sweep.* The same thread, on every live worker, looks at the unacked messages every quarter
  TTL and hands back, atomically, those whose owner's key is gone. Several workers sweeping at
  once is safe: of all of them one restores each message. No producer is involved, so a run
  sent with ``--no-wait`` recovers too. A worker sweeps only once its own key has been
  refreshed without a gap for a whole TTL: after an outage that every worker shared (Redis
  restarting, a switch), everyone's key may have lapsed, and each gets a TTL to come back.

A worker that was only cut off (a network partition longer than the TTL) comes back to find
its batches redone elsewhere. Its own starts of them are then stale: every start of a batch is
noted with a fresh token (:meth:`~deid_workers.run.store.RunStore.start_batch`), and a start whose
note was replaced drops its results instead of committing them (:class:`Superseded`); the
newest start is the one that commits. Its late ack removes nothing (the message went back
under a new delivery tag). Outputs it wrote are the same bytes the other worker writes
(de-identification is deterministic), each renamed into place whole.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

import redis

from ..run.names import WORKERS_INDEX, worker_key
from . import compat

__all__ = ["Liveness", "Superseded", "AlreadyCommitted", "BatchDropped", "worker_id",
           "new_taker", "WORKERS_KEPT"]

log = logging.getLogger(__name__)

WORKERS_KEPT = 3600
"""Seconds a worker stays listed in ``deid:workers`` (``--status``) after its last refresh."""

_worker: str | None = None
"""This process's worker id; pool processes inherit their main process's."""


def worker_id() -> str:
    """The id of the worker this process belongs to (host and pid outside a worker)."""
    return _worker or f"{socket.gethostname()}:{os.getpid()}"


def new_taker() -> str:
    """What a batch start notes about itself: the worker id and a token new to this start."""
    return f"{worker_id()}\t{uuid.uuid4().hex[:12]}"


class BatchDropped(Exception):
    """A batch start that must not commit; the task returns :attr:`result` quietly."""

    result: dict[str, int] = {"files": 0}


class AlreadyCommitted(BatchDropped):
    """A redelivered batch whose outcome is committed already (a late redelivery)."""

    result = {"files": 0, "already_done": 1}


class Superseded(BatchDropped):
    """The batch was started again elsewhere while this start ran (its worker looked dead).

    Raised by a put or clean start whose commit found its note replaced (the store checks it
    in the commit's own script, :meth:`~deid_workers.run.store.RunStore.commit_batch`). A later
    start (B) notes itself before it reads a file, so if this start (A) still finds its own
    note at its commit, B had not begun when A finished its files: A's outcomes are true and A
    commits; B then finds A's outputs as its own earlier work (not first time) and rewrites
    them, and its commit counts nothing twice.
    """

    result = {"files": 0, "superseded": 1}


class Liveness:
    """The liveness key and the sweep of one worker process (its main process)."""

    def __init__(self, app: Any, node: str, ttl: int, *, url: str | None = None) -> None:
        self.app = app
        self.node = node
        self.worker = f"{node}#{uuid.uuid4().hex[:8]}"
        self.ttl = max(1, int(ttl))
        self.interval = max(0.25, self.ttl / 4)
        self.url = url or str(app.conf.broker_url)
        self.client = self._client()
        self.alive_since: float | None = None  # start of the current run of unbroken refreshes
        self.last_refresh: float | None = None
        self.restored = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def _client(self) -> redis.Redis:
        from ..config import Settings
        from ..run.client import redis_client

        timeout = max(1.0, self.interval)  # a cut network must not hang the thread
        return redis_client(self.url, socket_timeout=timeout, socket_connect_timeout=timeout,
                            **Settings.from_env().tls_options())

    # -- the key ------------------------------------------------------------------------------
    def refresh(self, now: float | None = None) -> bool:
        """Set the liveness key for another TTL; False when Redis could not be reached.

        A gap since the previous refresh longer than two intervals (Redis or the network was
        away) starts the count towards sweeping again (see the module docstring).
        """
        now = time.time() if now is None else now
        pipe = self.client.pipeline(transaction=False)
        pipe.set(worker_key(self.worker), self.node, ex=self.ttl)
        pipe.zadd(WORKERS_INDEX, {self.worker: now})
        pipe.zremrangebyscore(WORKERS_INDEX, 0, now - WORKERS_KEPT)
        pipe.expire(WORKERS_INDEX, WORKERS_KEPT)
        pipe.execute()
        if self.last_refresh is None or now - self.last_refresh > 2 * self.interval:
            if self.last_refresh is not None and now - self.last_refresh > self.ttl:
                log.warning("worker %s: no liveness refresh for %.0f s (Redis or the network was "
                            "away); batches it had taken may have been handed to other workers, "
                            "and its own results of those are dropped",
                            self.node, now - self.last_refresh)
            self.alive_since = now
        self.last_refresh = now
        return True

    def may_sweep(self, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return self.alive_since is not None and now - self.alive_since >= self.ttl

    # -- the sweep ----------------------------------------------------------------------------
    def sweep(self, channel: Any) -> int:
        """Hand back the unacked messages of workers whose key is gone; returns how many."""
        entries, stale = compat.taken(channel)
        owners = sorted({t.owner for t in entries if t.owner and t.owner != self.worker})
        if stale:
            compat.drop_stale_owners(channel, stale)
        if not owners:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for owner in owners:
            pipe.exists(worker_key(owner))
        dead = {o for o, alive in zip(owners, pipe.execute()) if not alive}
        restored = 0
        for owner in sorted(dead):
            mine = [t for t in entries if t.owner == owner]
            n = sum(compat.restore_owned(channel, t.tag, owner) for t in mine)
            if n:
                oldest = min(t.since for t in mine)
                log.warning("worker %s is gone (no liveness for over %d s): %d task(s) it had "
                            "taken (the oldest %.0f s ago) are back in their queues",
                            owner.partition("#")[0], self.ttl, n, time.time() - oldest)
            restored += n
        self.restored += restored
        return restored

    def rotate(self, messages: int = 0) -> None:
        """Take a new worker id (see :func:`broker_lost`); the old id's key is left to expire."""
        global _worker
        old = self.worker
        self.worker = f"{self.node}#{uuid.uuid4().hex[:8]}"
        _worker = self.worker
        if compat.owner() is not None:
            compat.set_owner(self.worker, self.ttl)
        log.warning("worker %s: broker connection lost with %d task(s) taken; they go back to "
                    "their queues once the liveness of %s lapses (about %d s)", self.node,
                    messages, old.partition("#")[2], self.ttl)

    # -- the thread ---------------------------------------------------------------------------
    def start(self) -> None:
        """Set the key once (so owners are recorded only for a worker that has one), then keep
        it alive and sweep from a daemon thread."""
        try:
            self.refresh()
        except redis.RedisError as exc:
            log.warning("worker %s: liveness key not set yet (%s); retrying",
                        self.node, type(exc).__name__)
        self._thread = threading.Thread(target=self._run, name="deid-liveness", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and remove the key (a clean shutdown hands its messages back itself)."""
        self._stop.set()
        compat.set_owner(None)
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 2)
        try:
            self.client.delete(worker_key(self.worker))
        except redis.RedisError:
            pass

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception as exc:  # keep the thread alive whatever happens
                if not self._failing:
                    log.warning("worker %s: liveness check failed: %s", self.node,
                                type(exc).__name__)
                    log.debug("traceback", exc_info=True)
                self._failing = True
                self._channel_close()
            else:
                if self._failing:
                    log.info("worker %s: liveness checks work again", self.node)
                self._failing = False
            self._stop.wait(self.interval)
        self._channel_close()

    _conn: Any = None
    _channel: Any = None

    def may_record_owners(self) -> bool:
        """Whether this worker's Redis user may write what taking a message now writes.

        Checked once, with the commands kombu's MULTI then sends: a user without them (an ACL
        from before liveness) would make every take of a message fail in EXECABORT, and the
        worker would consume nothing. Without them the worker takes messages as kombu does
        and its batches, should it die, wait for the visibility timeout.
        """
        if self._owners_allowed is None:
            from ..run.names import worker_key

            probe = f"probe-{self.worker}"
            try:
                pipe = self.client.pipeline(transaction=True)
                pipe.hset(compat.OWNER_KEY, probe, self.worker)
                pipe.hdel(compat.OWNER_KEY, probe)
                pipe.set(worker_key(self.worker), self.node, ex=self.ttl)
                pipe.execute()
                self._owners_allowed = True
            except redis.ResponseError as exc:  # NOPERM: the ACL of deploy/redis is older
                log.warning("worker %s: its Redis user may not write %s (%s): a dead worker's "
                            "batches wait for DEID_VISIBILITY_TIMEOUT; see "
                            "deploy/redis/users.acl.template", self.node, compat.OWNER_KEY,
                            str(exc).split(":")[0])
                self._owners_allowed = False
        return bool(self._owners_allowed)

    _owners_allowed: bool | None = None

    def _tick(self) -> None:
        self.refresh()
        if self.may_record_owners():
            compat.set_owner(self.worker, self.ttl)
        if self.may_sweep():
            if compat.SUPPORTED:
                self.sweep(self._sweep_channel())
            self._stalls().check()

    _stall_watch: Any = None

    def _stalls(self) -> Any:
        """The watch for runs a lost task message left standing (:mod:`.resend`), made on
        first use (it reads the worker's settings and key)."""
        if self._stall_watch is None:
            from .context import worker_keys, worker_settings
            from .resend import StallWatch

            self._stall_watch = StallWatch(self.client, worker_keys(),
                                           worker_settings().stall_seconds)
        return self._stall_watch

    def _sweep_channel(self) -> Any:
        if self._channel is None:
            options = dict(self.app.conf.broker_transport_options or {})
            options.update(socket_timeout=max(1.0, self.interval),
                           socket_connect_timeout=max(1.0, self.interval))
            self._conn = self.app.connection_for_write(transport_options=options)
            self._channel = self._conn.default_channel
        return self._channel

    def _channel_close(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None:
            try:
                conn.release()
            except Exception:  # a connection that is already broken
                pass


_liveness: Liveness | None = None


def start_worker(app: Any, node: str, ttl: int) -> Liveness:
    """Worker start (main process): record owners, keep the key alive, sweep."""
    global _liveness, _worker
    if _liveness is not None:
        return _liveness
    compat.install()  # on a kombu it was not written for, nothing (compat.check says so)
    _liveness = Liveness(app, node, ttl)
    _worker = _liveness.worker
    _liveness.start()
    try:
        if _liveness.last_refresh is not None and _liveness.may_record_owners():
            compat.set_owner(_liveness.worker, _liveness.ttl)
    except redis.RedisError:
        pass  # Redis went away just now: the thread sets the owner once it is back
    log.info("worker %s: liveness every %.1f s (ttl %d s)", node, _liveness.interval,
             _liveness.ttl)
    return _liveness


def broker_lost(messages: int) -> bool:
    """The worker's broker connection broke with ``messages`` taken (kombu could not hand them
    back): those it had taken ahead will never run here, and those running cannot be
    acknowledged any more. The worker takes a new id; the old one is no longer kept alive, so
    within about a TTL the sweep (of any worker, this one included) hands them back, instead of
    the visibility timeout. A batch still running here when its message goes back is redone
    elsewhere; this start then commits nothing if it writes outputs, and the same values
    otherwise. False when no liveness runs in this process."""
    if _liveness is None:
        return False
    _liveness.rotate(messages)
    return True


def stop_worker() -> None:
    global _liveness
    if _liveness is not None:
        _liveness.stop()
        _liveness = None


def _on_worker_init(sender: Any = None, **_: Any) -> None:
    from ..config import Settings

    start_worker(sender.app, str(sender.hostname), Settings.from_env().liveness_ttl)


def _on_worker_shutdown(**_: Any) -> None:
    compat.drain_offloop()  # acks on their way go out while this worker is still alive
    stop_worker()


def connect_signals() -> None:
    """Hook worker start and stop (idempotent: Celery keeps one receiver per function)."""
    from celery.signals import worker_init, worker_shutdown

    worker_init.connect(_on_worker_init, weak=False)
    worker_shutdown.connect(_on_worker_shutdown, weak=False)


connect_signals()
