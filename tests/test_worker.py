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


def test_worker_with_a_bad_liveness_ttl_says_which_variable(monkeypatch, capsys):
    monkeypatch.setenv("DEID_BROKER_URL", "redis://localhost:1/0")
    monkeypatch.setenv("DEID_LIVENESS_TTL", "0")
    assert main([]) == 2
    assert capsys.readouterr().err == ("deid-worker: error: DEID_LIVENESS_TTL: expected a "
                                       "positive integer (seconds)\n")
    assert Settings.from_env({"DEID_LIVENESS_TTL": "7"}).liveness_ttl == 7
    assert Settings().liveness_ttl == 20


def test_prefetch_is_a_setting_of_the_app(monkeypatch):
    from deid_workers.app import _conf

    assert _conf(Settings())["worker_prefetch_multiplier"] == 2
    assert _conf(Settings.from_env({"DEID_PREFETCH": "1"}))["worker_prefetch_multiplier"] == 1
