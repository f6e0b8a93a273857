"""Time limits: a batch that hangs is started again and counted, like one that crashes.

Why: out of the box Celery (5.7, ``Request.on_timeout`` and ``on_failure``) marks a task that
passes its hard time limit FAILED in the result backend, which fails the get stage's chord (the
run can never finish), and acknowledges its message, so it is never redelivered. A file that
hangs its worker every time would then sink the whole run instead of being quarantined.

So every task of the app is a :class:`BatchTask` (``task_cls`` in :mod:`deid_workers.app`):

- Soft limit (``task_soft_time_limit``, a little below the hard one): the exception reaches
  :meth:`BatchTask.__call__`, which asks the batch's :class:`~deid_workers.tasks.guard.BatchGuard`
  (:meth:`~deid_workers.tasks.guard.BatchGuard.on_time_limit`; in careful mode it quarantines the
  file it was on) and rejects the message with ``requeue``: no failure is recorded, the batch
  starts again and the start is counted, so ``max_retries`` bounds the retries as for a crash.
- Hard limit (the hang ignores the soft one, e.g. inside C code): billiard kills the pool
  process; :class:`BatchRequest` then requeues the message instead of failing it, and notes the
  kill in Redis so that the next careful start quarantines the file with the right reason.

Tasks without a guard (finalize) keep Celery's behaviour: past a limit they fail.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery import Task
from celery.exceptions import Ignore, MaxRetriesExceededError, Reject, Retry, SoftTimeLimitExceeded, TimeLimitExceeded

from ..app import RETRY_ON
from ..errors import ConfigError, RunRefused, StoreError
from ..run.client import shared_client
from ..run.memory import out_of_memory, redis_reason
from ..run.store import RunStore
from .compat import REQUEST_SUPPORTED, Request, task_ready
from .context import refuse, worker_keys, worker_settings
from .guard import TIMED_OUT, BatchGuard
from .liveness import BatchDropped

__all__ = ["GUARDED_TASKS", "BatchRequest", "BatchTask", "TaskFailed"]

log = logging.getLogger(__name__)

GUARDED_TASKS = frozenset({"deid.get", "deid.inspect", "deid.put", "deid.clean"})
"""Tasks that run a batch under a BatchGuard (args ``(run_id, batch_no)``), so a rerun is safe
and counted; only these are requeued past their time limit."""


class TaskFailed(Exception):
    """What a task that failed raises to Celery: the error's type, never its text."""


_PASS_THROUGH = (Retry, Reject, Ignore, MaxRetriesExceededError, *RETRY_ON, StoreError)
"""Raised on as they are: Celery's own flow, the errors it retries, and our store's errors
(whose words are written to say no path or value)."""


class BatchTask(Task):  # type: ignore[misc]
    """The app's task class: a batch out of time is requeued (see the module docstring)."""

    # On a Celery the override was not written for, Celery's own request (the plain path).
    Request = "deid_workers.tasks.limits:BatchRequest" if REQUEST_SUPPORTED else Task.Request

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        BatchGuard.active = None
        try:
            return super().__call__(*args, **kwargs)
        except BatchDropped as exc:  # liveness hook: a late or superseded start commits nothing
            log.warning("%s %s: %s; nothing committed", self.name, args[:2], exc)
            return dict(exc.result)
        except SoftTimeLimitExceeded:
            guard = BatchGuard.active
            if guard is None or not guard.on_time_limit():
                raise
            raise Reject(TIMED_OUT, requeue=True) from None
        except RunRefused as exc:
            # Unsigned, another key, or folders outside this worker's roots: one line, the run
            # failed, the message dropped (not failed: a traceback would say nothing more).
            refuse(str(args[0]) if args else "?", exc)
            raise Reject(str(exc), requeue=False) from None
        except _PASS_THROUGH:
            raise
        except Exception as exc:
            run_id = str(args[0]) if args else "?"
            if out_of_memory(exc):  # redis-py's ResponseError, or kombu's OperationalError over it
                # maxmemory with noeviction (deploy/): every write fails until memory is freed;
                # one plain line, then the task fails (marking the run failed would be a write
                # too; the producer notices the full Redis itself and says so).
                log.error("run %s: %s", run_id, redis_reason(exc, run_id))
                raise
            # The worker's log (ERROR, with the traceback) says what happened; the failure that
            # Celery stores in the result backend and sends to Flower names only the error's
            # type: its text may quote a path or a value (an OSError names its file).
            log.error("run %s: %s %s failed", run_id, self.name, args[1:2], exc_info=True)
            raise TaskFailed(f"{self.name} failed: {type(exc).__name__} (the worker's log "
                             "says more)") from None
        finally:
            BatchGuard.active = None


class BatchRequest(Request):  # type: ignore[misc]
    """A request whose hard time limit requeues a guarded batch rather than failing it.

    Runs in the worker's main process. Billiard reports a hard timeout twice, first as a
    failure with :class:`TimeLimitExceeded` (``on_failure``), then through ``on_timeout``; the
    first call does the work, the second finds it done.
    """

    _deid_limit_handled = False

    def on_failure(self, exc_info: Any, send_failed_event: bool = True,
                   return_ok: bool = False) -> Any:
        exc = getattr(exc_info, "exception", None)
        exc = getattr(exc, "exc", exc)  # ExceptionWithTraceback
        if isinstance(exc, TimeLimitExceeded) and self.task.name in GUARDED_TASKS:
            seconds = exc.args[0] if exc.args else self.task.time_limit
            return self._requeue_after_limit(seconds)
        return super().on_failure(exc_info, send_failed_event=send_failed_event,
                                  return_ok=return_ok)

    def on_timeout(self, soft: bool, timeout: Any) -> Any:
        if soft or self.task.name not in GUARDED_TASKS:
            return super().on_timeout(soft, timeout)
        return self._requeue_after_limit(timeout)

    def _requeue_after_limit(self, seconds: Any) -> None:
        if self._deid_limit_handled:
            return
        self._deid_limit_handled = True
        task_ready(self)
        run_id, batch_no = self.args[0], int(self.args[1])
        stage = self.task.name.partition(".")[2]
        retry = int(self.request_dict.get("retries") or 0)
        try:
            limit = int(float(seconds))
        except (TypeError, ValueError):
            limit = 0
        log.error("run %s: %s batch %d passed the hard time limit (%s s); its process is "
                  "killed and the batch started again", run_id, stage, batch_no, limit or "?")
        note_time_limit(str(self.task.app.conf.broker_url), run_id, stage, batch_no, retry, limit)
        self.reject(requeue=True)


def note_time_limit(url: str, run_id: str, stage: str, batch_no: int, retry: int,
                    seconds: int) -> bool:
    """Tell the next careful start of the batch that a time limit, not a crash, ended this one.

    Best effort and quick (the worker's main process must not wait on a Redis that is down):
    without the note the file is still quarantined, only with the crash reason.
    """
    if not seconds:
        return False
    try:
        client = shared_client(url, **worker_settings().tls_options())
        store = RunStore.load(client, run_id, keys=worker_keys())
        store.note_time_limit(stage, batch_no, retry, seconds)
    except (redis.RedisError, StoreError, ConfigError) as exc:
        log.warning("run %s: could not note the time limit of %s batch %d: %s",
                    run_id, stage, batch_no, type(exc).__name__)
        return False
    return True
