"""deid-worker builds the celery worker command line from Settings."""

from __future__ import annotations

from deid_workers.config import Settings
from deid_workers.worker import main, worker_argv


def test_worker_consumes_every_queue():
    argv = worker_argv(Settings(), ["--concurrency", "3"])
    assert argv[:3] == ["worker", "-Q", "get,inspect,put,finalize,clean,ocr"]
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


def test_a_worker_without_its_key_or_roots_refuses_to_start(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("DEID_BROKER_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    for name in ("DEID_SECRET", "DEID_SECRET_FILE", "DEID_INPUT_ROOTS", "DEID_OUTPUT_ROOTS"):
        monkeypatch.delenv(name, raising=False)
    assert main([]) == 2
    assert capsys.readouterr().err.startswith("deid-worker: error: DEID_SECRET_FILE: no cluster key")
    monkeypatch.setenv("DEID_SECRET", "worker-tests-key-0123456789abcdef0123")
    assert main([]) == 2
    assert "DEID_INPUT_ROOTS: not set" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # no key file was made


def test_celery_worker_started_directly_refuses_too(tmp_path):
    """``celery -A deid_workers.app worker`` (what deid-worker runs, and what compose or a
    hand-made unit may run) checks the same before it consumes anything: one line, exit 2."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEID_")}
    env.update(DEID_BROKER_URL="redis://127.0.0.1:1/0", DEID_SECRET="short",
               PYTHONPATH=root, XDG_CONFIG_HOME=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "celery", "-A", "deid_workers.app", "worker",
                           "--pool", "solo"], env=env, cwd=root, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert "deid-worker: error: DEID_SECRET: the key has 5 bytes, fewer than 32" in proc.stderr
