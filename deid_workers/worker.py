"""``deid-worker``: a Celery worker on every deid queue, configured from the environment.

Equivalent to ``celery -A deid_workers.app worker -Q get,inspect,put,finalize,clean,ocr``; extra
arguments go to ``celery worker`` (``deid-worker --concurrency 8 -n w1@%h``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .config import Settings
from .errors import ConfigError

__all__ = ["main", "worker_argv"]


def worker_argv(settings: Settings, extra: Sequence[str] = ()) -> list[str]:
    """The ``celery worker`` arguments for these settings (tested without starting a worker)."""
    import logging

    from .app import QUEUES
    from .logs import level_for

    level = logging.getLevelName(min(level_for(settings.message_level), logging.INFO))
    argv = ["worker", "-Q", ",".join(QUEUES), "--loglevel", str(level)]
    return argv + list(extra)


def main(argv: Sequence[str] | None = None) -> int:
    """Start the worker; returns only when it stops."""
    extra = list(sys.argv[1:] if argv is None else argv)
    try:
        settings = Settings.from_env()
        if settings.broker_url:
            settings.require_worker_config()
            settings.effective_broker_url()
    except ConfigError as exc:
        sys.stderr.write(f"deid-worker: error: {exc}\n")
        return 2
    if not settings.broker_url:
        sys.stderr.write("deid-worker: error: DEID_BROKER_URL is not set (the Redis of the "
                         "cluster, e.g. rediss://worker@redis:6379/0)\n")
        return 2
    from .app import app

    app.worker_main(worker_argv(settings, extra))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
