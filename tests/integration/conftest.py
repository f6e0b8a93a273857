"""Session fixtures: a real redis-server and a real ``celery worker``, stopped by pid.

Both are started once per session (starting a worker costs seconds); runs are isolated from
each other by their run ids, so tests need not flush Redis.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from deid_workers.app import QUEUES

SECRET = "integration-secret"
ROOT = str(Path(__file__).resolve().parents[2])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=5)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    folder = tmp_path_factory.mktemp("redis")
    port = _free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    else:
        _stop(proc)
        pytest.fail("redis-server did not start")
    yield url
    client.close()
    _stop(proc)


@pytest.fixture(scope="session")
def worker_env(redis_url, tmp_path_factory):
    env = dict(os.environ)
    env.update(DEID_BROKER_URL=redis_url, DEID_SECRET=SECRET,
               XDG_CONFIG_HOME=str(tmp_path_factory.mktemp("xdg")),
               PYTHONPATH=os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p))
    env.pop("MESSAGELEVEL", None)
    return env


@pytest.fixture(scope="session")
def worker_log(worker_env, tmp_path_factory):
    """A real ``celery worker`` on every deid queue; yields the path of its INFO log."""
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    node = f"itest-{os.getpid()}@localhost"
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "deid_workers.app", "worker",
         "-Q", ",".join(QUEUES), "-n", node, "--concurrency", "2", "--loglevel", "INFO",
         "--logfile", str(log), "--without-gossip", "--without-mingle", "--without-heartbeat"],
        env=worker_env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    from deid_workers.app import app, configure
    from deid_workers.config import Settings

    configure(app, Settings(broker_url=worker_env["DEID_BROKER_URL"]))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail("celery worker exited: " + log.read_text() if log.exists() else "")
        if app.control.ping(destination=[node], timeout=0.5):
            break
    else:
        _stop(proc)
        pytest.fail("celery worker did not answer")
    yield log
    _stop(proc)


@pytest.fixture
def cluster(worker_log, worker_env, monkeypatch):
    """The CLI's environment pointed at the session's Redis and worker."""
    for name in ("DEID_BROKER_URL", "DEID_SECRET", "XDG_CONFIG_HOME"):
        monkeypatch.setenv(name, worker_env[name])
    monkeypatch.delenv("MESSAGELEVEL", raising=False)
    # Tests that talk to Celery directly use the module's app: point it here, since an earlier
    # test may have left it on a Redis of its own that is gone by now.
    from deid_workers.app import app, configure
    from deid_workers.config import Settings

    configure(app, Settings(broker_url=worker_env["DEID_BROKER_URL"]))
    return worker_env


@pytest.fixture
def redis_client(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()
