"""deid-worker builds the celery worker command line from Settings."""

from __future__ import annotations

from deid_workers.config import Settings
from deid_workers.worker import main, worker_argv


def test_worker_consumes_every_queue():
    argv = worker_argv(Settings(), ["--concurrency", "3"])
    assert argv[:3] == ["worker", "-Q", "get,inspect,put,finalize,clean"]
    assert argv[-2:] == ["--concurrency", "3"] and "INFO" in argv


def test_worker_without_broker_is_an_error(monkeypatch, capsys):
    monkeypatch.delenv("DEID_BROKER_URL", raising=False)
    assert main([]) == 2
    assert "DEID_BROKER_URL is not set" in capsys.readouterr().err
