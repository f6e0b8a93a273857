"""tasks.compat: the Celery and kombu fence, its version gates and the plain paths.

The patches themselves run against a real Redis in tests/integration/test_liveness.py and
tests/test_app.py; here, what a worker does on releases they were not written for.
"""

from __future__ import annotations

import logging

import pytest
from kombu.transport import redis as kombu_redis

from deid_workers import app as app_module
from deid_workers.dicom import compat as dicom_compat
from deid_workers.tasks import compat


def test_the_installed_releases_are_the_tested_ones():
    assert compat.SUPPORTED and compat.REQUEST_SUPPORTED
    assert compat.check() == []


def test_an_untested_kombu_patches_nothing_and_says_what_the_worker_does_instead(monkeypatch):
    monkeypatch.setattr(compat, "SUPPORTED", False)
    connparams, append = kombu_redis.Channel._connparams, kombu_redis.QoS.append
    assert not compat.install()
    assert not compat.survive_broker_loss(lambda n: True)
    assert (kombu_redis.Channel._connparams, kombu_redis.QoS.append) == (connparams, append)
    [line] = compat.check()
    assert line.startswith("kombu ") and "DEID_VISIBILITY_TIMEOUT" in line


def test_a_celery_not_known_for_threaded_event_flushes_leaves_them_to_its_loop(monkeypatch):
    from celery.worker.consumer.consumer import Consumer

    from deid_workers.tasks import offloop

    monkeypatch.setattr(compat, "EVENTS_SUPPORTED", False)
    monkeypatch.setattr(kombu_redis.QoS, "ack", kombu_redis.QoS.ack)
    monkeypatch.setattr(offloop, "_offloop", None)
    buffered = Consumer.on_send_event_buffered
    assert compat.install_offloop()  # the acks still go beside the loop
    assert Consumer.on_send_event_buffered is buffered
    [line] = compat.check()
    assert "task events are sent by the worker's event loop" in line


def test_an_untested_celery_fails_a_batch_past_its_hard_limit_as_celery_does(monkeypatch):
    monkeypatch.setattr(compat, "REQUEST_SUPPORTED", False)
    [line] = compat.check()
    assert line.startswith("celery ") and "hard time limit fails" in line


def test_a_worker_refuses_to_start_on_a_pydicom_without_what_the_engine_uses(monkeypatch, capsys):
    monkeypatch.delenv("DEID_BROKER_URL", raising=False)
    monkeypatch.setattr(dicom_compat, "check", lambda: "pydicom 9.9 lacks Dataset._dict")
    with pytest.raises(SystemExit) as exit_:
        app_module._check_worker()
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "deid-worker: error: pydicom 9.9 lacks Dataset._dict\n"


def test_a_worker_on_an_untested_pydicom_starts_on_the_plain_path(monkeypatch, caplog):
    monkeypatch.delenv("DEID_BROKER_URL", raising=False)
    monkeypatch.setattr(dicom_compat, "TESTED", ((2, 4),))
    dicom_compat.use_fast_io(None)
    try:
        app_module._check_worker()
        assert not dicom_compat.fast_io()
    finally:
        dicom_compat.use_fast_io(None)
    assert "is not one deid-workers was tested with" in caplog.text


@pytest.mark.parametrize(("value", "installed"), [("1", True), ("0", False)])
def test_deid_offloop_0_leaves_acks_and_events_to_celerys_loop(monkeypatch, caplog, value,
                                                               installed):
    """The way back to the plain path: with DEID_OFFLOOP=0 the worker installs nothing of
    tasks/offloop.py and says so once."""
    calls: list[bool] = []
    monkeypatch.delenv("DEID_BROKER_URL", raising=False)
    monkeypatch.setenv("DEID_OFFLOOP", value)
    monkeypatch.setattr(compat, "install_offloop", lambda: calls.append(True) or True)
    monkeypatch.setattr(compat, "survive_broker_loss", lambda hook: True)
    caplog.set_level(logging.INFO)
    app_module._check_worker()
    assert calls == ([True] if installed else [])
    assert ("DEID_OFFLOOP=0" in caplog.text) is not installed
