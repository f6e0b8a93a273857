"""A worker's acknowledgements and task events, sent from a thread beside Celery's event loop.

Why: a prefork worker's main process runs one event loop that hands batches to its pool
processes, and it used to wait there for two Redis round trips after every batch (kombu's ack,
then the buffered task events) before it gave the pool process its next batch. On a cluster each
round trip is a network latency, paid per batch and per pool process; with Redis 10 ms away the
loop itself became the bottleneck. Neither write has to finish before the next batch starts:

- an ack (``acks_late``) only removes a message that has already committed from kombu's
  ``unacked`` set. Late or lost (the worker dies first), the message goes back to a queue and
  its redelivery finds the batch committed and does nothing (``AlreadyCommitted``), exactly as
  when a worker died between commit and ack before;
- task events are what Flower shows; Celery already buffers them and flushes the buffer later.

So both are handed to :class:`OffLoop`, one daemon thread per worker process that sends them in
order; the acks pending together go in one pipeline. :mod:`.compat` does the handing over (it
patches kombu's and Celery's methods, on the releases it knows) and drains the thread before
kombu's channel closes, so a clean shutdown leaves no taken message behind.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import redis

__all__ = ["OffLoop", "offloop"]

log = logging.getLogger(__name__)

Ack = tuple[Any, str]
"""A message to acknowledge: kombu's Redis ``QoS`` that took it, and its delivery tag."""


class OffLoop:
    """Broker writes done in order by one thread: acknowledgements (grouped: the acks waiting
    together go in one pipeline per channel) and callables (an events flush, coalesced: one
    waits at most).

    ``remove(qos, tags, pipe)`` adds the removal of ``tags`` from ``qos``'s unacked set to
    ``pipe`` (kombu's own ``_remove_from_indices``, as patched by :mod:`.compat`).
    """

    def __init__(self, remove: Callable[[Any, list[str], Any], None]) -> None:
        self._remove = remove
        self._acks: deque[Ack] = deque()
        self._calls: deque[Callable[[], object]] = deque()
        self._queued: set[Callable[[], object]] = set()
        self._cond = threading.Condition()
        self._busy = False
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="deid-offloop", daemon=True)
        self._thread.start()
        self.acked = 0
        self.failed = 0

    def usable(self) -> bool:
        """False in a process forked from the one that started the thread (pool processes):
        there the thread does not exist, and work is done in place."""
        return self._pid == os.getpid() and self._thread.is_alive()

    def ack(self, qos: Any, tag: str) -> None:
        """Remove ``tag`` from ``qos``'s unacked set soon."""
        with self._cond:
            self._acks.append((qos, tag))
            self._cond.notify()

    def call_once(self, fn: Callable[[], object]) -> None:
        """Call ``fn`` soon, once however often it is asked for before it starts."""
        with self._cond:
            if fn in self._queued:
                return
            self._queued.add(fn)
            self._calls.append(fn)
            self._cond.notify()

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until everything handed over so far is sent; False on timeout."""
        if not self.usable():
            return True
        with self._cond:
            return self._cond.wait_for(
                lambda: not (self._acks or self._calls or self._busy), timeout=timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._acks or self._calls))
                acks, self._acks = list(self._acks), deque()
                calls, self._calls = list(self._calls), deque()
                self._queued.clear()
                self._busy = True
            try:
                self._send_acks(acks)
                for fn in calls:
                    try:
                        fn()
                    except Exception as exc:  # an events flush on a closing connection
                        log.debug("offloop: %s failed: %s", fn, type(exc).__name__)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _send_acks(self, acks: list[Ack]) -> None:
        by_qos: dict[int, tuple[Any, list[str]]] = {}
        for qos, tag in acks:
            by_qos.setdefault(id(qos), (qos, []))[1].append(tag)
        for qos, tags in by_qos.values():
            try:
                with qos.pipe_or_acquire() as pipe:
                    self._remove(qos, tags, pipe)
                    pipe.execute()
                self.acked += len(tags)
            except (redis.RedisError, OSError, AttributeError) as exc:
                # As kombu's ack_log_error says it; the messages stay in Redis' unacked set and
                # come back (liveness, or the visibility timeout), committed: they do nothing.
                self.failed += len(tags)
                log.critical("Couldn't ack %d task(s), reason: %s; they are redelivered and "
                             "find their batches committed", len(tags), type(exc).__name__)


_offloop: OffLoop | None = None
_lock = threading.Lock()


def offloop(remove: Callable[[Any, list[str], Any], None]) -> OffLoop:
    """This process's :class:`OffLoop`, started on first use (a forked child gets its own)."""
    global _offloop
    with _lock:
        if _offloop is None or _offloop._pid != os.getpid():
            _offloop = OffLoop(remove)
        return _offloop
