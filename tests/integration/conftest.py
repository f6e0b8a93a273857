"""Session fixtures: a real redis-server and a real ``celery worker``, stopped by pid.

Both are started once per session (starting a worker costs seconds); runs are isolated from
each other by their run ids, so tests need not flush Redis.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis
from integration_procs import RedisServer, Worker, placed

SECRET = "integration-secret-0123456789abcdef01"
ROOT = str(Path(__file__).resolve().parents[2])


@pytest.fixture
def place():
    """place(root, rel) -> where the cluster's workers put input ``rel`` (mirror layout)."""
    return lambda root, rel: placed(root, rel, SECRET)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"), aof=False)
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def worker_env(redis_url, tmp_path_factory):
    env = dict(os.environ)
    # The workers may read and write under the session's temp folder only (tests' tmp_path).
    roots = str(tmp_path_factory.getbasetemp().resolve())
    # DEID_TEST_OCR_MISS: the clean stage blacks out none of the OCR boxes of a file whose
    # path holds "ocr-miss", so verification must hold it (test_ocr_pipeline.py).
    env.update(DEID_BROKER_URL=redis_url, DEID_SECRET=SECRET,
               DEID_INPUT_ROOTS=roots, DEID_OUTPUT_ROOTS=roots, DEID_TEST_OCR_MISS="ocr-miss",
               XDG_CONFIG_HOME=str(tmp_path_factory.mktemp("xdg")),
               PYTHONPATH=os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p))
    env.pop("MESSAGELEVEL", None)
    return env


@pytest.fixture(scope="session")
def worker_log(worker_env, tmp_path_factory):
    """A real ``celery worker`` on every deid queue; yields the path of its INFO log."""
    worker = Worker(worker_env, tmp_path_factory.mktemp("worker") / "worker.log", "itest")
    try:
        worker.wait_ready()
    except AssertionError as exc:
        pytest.fail(str(exc))
    yield worker.log
    worker.stop()


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
