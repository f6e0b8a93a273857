"""The Celery app, configured from :class:`~deid_workers.config.Settings`.

``celery -A deid_workers.app worker -Q get,inspect,put,finalize,clean,ocr`` finds :data:`app` here
(the ``deid-worker`` console script runs the same worker with the queues filled in).

Why these settings:

- JSON only, both ways: a pickle-accepting worker runs whatever code a broker client sends.
- ``task_acks_late`` + ``task_reject_on_worker_lost``: a batch whose worker dies is
  redelivered, not lost; tasks are idempotent (see :mod:`deid_workers.run.store`), so a rerun is safe.
  A dead node's batches come back within a minute (:mod:`deid_workers.tasks.liveness`).
- Prefetch ``DEID_PREFETCH`` (2) per pool process: the next batch is taken while one runs, so the
  round trips of taking it do not leave the pool process idle (see ``config.DEFAULT_PREFETCH``).
- ``visibility_timeout`` above ``task_time_limit``: a hung batch is killed before Redis hands it
  to a second worker; a batch that is merely slow is not run twice. A batch past its time limit
  (soft or hard) is requeued, not failed, and counted like a crash (``tasks.limits``).
- Events on (``worker_send_task_events``, ``task_send_sent_event``) so Flower shows every task.
- No task results stored on success: the chord's join takes each get/inspect batch's counts
  straight from the task (the producer sends them with ``ignore_result``), put/clean/finalize
  ignore theirs; a failure's state is stored (counts and exception types, never PHI) and
  expires with the run.
- ``DEID_LOG_JSON``: worker logs as JSON lines (see :func:`_worker_log_format`).
- A worker in broker mode refuses to start (one line, exit 2) without the cluster key and its
  folder roots (:func:`_check_worker`): a worker minting its own key would give one
  patient different pseudonyms on different hosts, and one without roots would run nothing.
- ``rediss://`` brokers get certificate-checked TLS from ``DEID_REDIS_TLS_*``; the password may
  come from ``DEID_REDIS_PASSWORD_FILE`` (:meth:`~deid_workers.config.Settings.effective_broker_url`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis
from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger, celeryd_init
from kombu import Exchange, Queue

from .config import Settings

__all__ = ["app", "QUEUES", "TASK_NAMES", "TASK_QUEUES", "RETRY_ON", "REDIS_RETRIES", "deid_task",
           "configure", "make_app", "broker_urls"]

QUEUES = ("get", "inspect", "put", "finalize", "clean", "ocr")
"""One queue per stage, named as the stage, so operators can scale and watch each one
(``clean``, the pixel work of ``--clean-pixels``, and ``ocr``, the burned-in text of
``--ocr``, are the ones worth scaling apart)."""

TASK_NAMES = {q: f"deid.{q}" for q in QUEUES}
"""Task names are the wire contract (Flower, routes); module or function renames change nothing."""

TASK_QUEUES = {**{name: q for q, name in TASK_NAMES.items()}, "deid.export": "finalize",
               "deid.load": "put"}
"""The queue of every task: the stage's own; finalize's for the shards of an ids export; put's
for the chunks of a ``put --ids`` file, so that they come out before the run's put batches."""

RETRY_ON = (redis.ConnectionError, redis.TimeoutError)
"""Errors worth a retry: Redis restarting or a network blip. Anything else fails the task."""

REDIS_RETRIES = 3
"""Celery's retries (with backoff) of a task that met :data:`RETRY_ON`; not DEID_MAX_RETRIES,
which counts a batch's starts before it goes file by file (:mod:`deid_workers.tasks.guard`)."""

PLACEHOLDER_BROKER = "redis://localhost:6379/0"
"""Used only until the CLI points the app at a real (or embedded) broker."""

SOFT_LIMIT_MARGIN = 30
"""Seconds between the soft time limit (the task may log and clean up) and the hard kill."""


def broker_urls(url: str) -> tuple[str, str]:
    """(broker URL for kombu, result backend URL for Celery) from one Redis URL.

    A unix socket is ``redis+socket:///path`` for both kombu and Celery's result backend (which
    strips ``redis+`` and reads ``socket://``); ``unix:///path`` (redis-py's spelling) is
    accepted too.
    """
    for prefix in ("redis+socket://", "unix://", "socket://"):
        if url.startswith(prefix):
            path = url[len(prefix):]
            return "redis+socket://" + path, "redis+socket://" + path
    return url, url


def _conf(settings: Settings) -> dict[str, Any]:
    broker, backend = broker_urls(settings.effective_broker_url() or PLACEHOLDER_BROKER)
    tls = settings.tls_options()
    exchange = Exchange("deid", type="direct")
    # A short hard limit (tests, tiny batches) keeps most of its time: the margin is at most a
    # quarter of it, else a 20 s limit would give a batch a 1 s soft limit; but at least 1 s,
    # else the soft limit (which lets a hung batch requeue itself) would never fire first.
    limit = settings.task_time_limit
    soft = max(1, limit - min(SOFT_LIMIT_MARGIN, max(1, limit // 4)))
    conf = {
        "broker_url": broker,
        "result_backend": backend,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": settings.prefetch,
        # kombu scans for unacked messages past their visibility timeout every 10 s but, by
        # default, acts only on every 10th scan: a dead worker's batches then waited up to
        # 100 s more. A scan is one ZRANGE; do it every time.
        "broker_transport_options": {"visibility_timeout": settings.visibility_timeout,
                                     "unacked_restore_throttle": 1},
        "result_backend_transport_options": {"visibility_timeout": settings.visibility_timeout},
        "task_time_limit": settings.task_time_limit,
        "task_soft_time_limit": soft,
        "result_expires": settings.run_expiry,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_default_queue": "get",
        "task_default_exchange": "deid",
        "task_queues": tuple(Queue(q, exchange, routing_key=q) for q in QUEUES),
        "task_routes": {name: {"queue": q, "routing_key": q} for name, q in TASK_QUEUES.items()},
        "broker_connection_retry_on_startup": True,
        # Ride out a Redis restart: storing a chord result or publishing (put batches, a
        # retry) waits for Redis to come back instead of failing the batch.
        "result_backend_always_retry": True,
        "result_backend_max_retries": 20,
        "result_backend_max_sleep_between_retries_ms": 5000,
        "task_publish_retry_policy": {"max_retries": 20, "interval_start": 0.5,
                                      "interval_step": 0.5, "interval_max": 5},
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "task_track_started": False,
        "result_extended": False,
        "enable_utc": True,
        # rediss://: the CA (and client certificate) of DEID_REDIS_TLS_*, certificates checked
        "broker_use_ssl": tls or False,
        "redis_backend_use_ssl": tls or False,
    }
    return conf


def configure(celery_app: Celery, settings: Settings) -> Celery:
    """Point ``celery_app`` at the settings' broker (the CLI does this after parsing flags).

    Connections and the result backend the app had already opened are dropped, so one
    process can follow runs on different brokers (tests; embedded mode after a cluster run).
    """
    from .tasks.compat import reset_connections

    celery_app.conf.update(_conf(settings))
    reset_connections(celery_app)
    return celery_app


def deid_task(name: str, *, ignore_result: bool = True) -> Callable[[Callable[..., Any]], Any]:
    """Declare one of deid's tasks (``@deid_task("deid.put")``): bound, acknowledged once it
    is done (a batch whose worker dies is redelivered), retried on a Redis blip. Only get and
    inspect keep their result: the chord that fires finalize joins them."""
    return app.task(name=name, bind=True, autoretry_for=RETRY_ON, retry_backoff=True,
                    max_retries=REDIS_RETRIES, acks_late=True, ignore_result=ignore_result)


def make_app(settings: Settings) -> Celery:
    # BatchTask: a batch that passes its time limit is started again (see tasks.limits).
    # tasks.liveness: the worker's liveness key and sweep, hooked on worker start.
    celery_app = Celery("deid_workers",
                        include=[f"deid_workers.tasks.{q}" for q in (*QUEUES, "load", "liveness")],
                        task_cls="deid_workers.tasks.limits:BatchTask")
    return configure(celery_app, settings)


app: Celery = make_app(Settings.from_env())
"""The app workers load; built from the environment (``DEID_BROKER_URL`` ...)."""


@after_setup_logger.connect
@after_setup_task_logger.connect
def _worker_log_format(logger: Any = None, **_: Any) -> None:
    """``DEID_LOG_JSON=1``: the worker's handlers (root and task loggers) write JSON lines.

    Celery adds its handlers itself (``worker_hijack_root_logger`` is off, so it only adds);
    these signals fire right after, in the main process and in each pool child. A requeued
    batch is logged by Celery without its traceback (:class:`~deid_workers.logs.RequeueTracebackFilter`),
    and pydicom's warnings without the values they quote (:class:`~deid_workers.logs.QuotedValueFilter`).
    """
    from .logs import VALUE_QUOTING_LOGGERS, QuotedValueFilter, RequeueTracebackFilter

    for name, kind in [("celery.app.trace", RequeueTracebackFilter)] + [
            (name, QuotedValueFilter) for name in VALUE_QUOTING_LOGGERS]:
        target = logging.getLogger(name)
        if not any(isinstance(f, kind) for f in target.filters):
            target.addFilter(kind())
    if logger is not None and Settings.from_env().log_json:
        from .logs import use_json

        use_json(logger)


@celeryd_init.connect
def _check_worker(**_: Any) -> None:
    """``celery worker`` (and ``deid-worker``) starting: what it needs, checked before it
    consumes anything, kombu patched so that it survives Redis going away, and its acks and
    task events sent beside its event loop (:mod:`deid_workers.tasks.offloop`).

    In broker mode, without the cluster key or the folder roots, and with a pydicom that
    lacks what the recipe engine uses, it says which in one line and exits 2. Celery's signal
    dispatch logs and swallows an ``Exception`` from a receiver; SystemExit is not one, so it
    ends the worker here. Releases of pydicom, Celery or kombu the fast paths were not written
    for are said once, and the worker takes the plain paths (:mod:`deid_workers.dicom.compat`,
    :mod:`deid_workers.tasks.compat`).
    """
    import sys

    import pydicom

    from .dicom import compat as dicom_compat
    from .errors import ConfigError
    from .tasks import compat
    from .tasks.liveness import broker_lost

    try:
        settings = Settings.from_env()
        if settings.broker_mode:
            settings.require_worker_config()
        problem = dicom_compat.check()
        if problem:
            raise ConfigError(problem)
    except ConfigError as exc:
        sys.stderr.write(f"deid-worker: error: {exc}\n")
        sys.stderr.flush()
        raise SystemExit(2) from None
    log = logging.getLogger(__name__)
    for line in compat.check():
        log.warning("%s", line)
    if not dicom_compat.tested():
        log.warning("pydicom %s is not one deid-workers was tested with; files are read with "
                    "dcmread and written with save_as", pydicom.__version__)
    elif not dicom_compat.fast_io():
        log.info("DEID_FAST_IO=0: files are read with dcmread and written with save_as")
    compat.survive_broker_loss(broker_lost)
    if settings.offloop:
        compat.install_offloop()
    else:
        log.info("DEID_OFFLOOP=0: acks and task events are sent by Celery's event loop")
