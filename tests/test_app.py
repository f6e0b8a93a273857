"""app: the Celery app's wire settings and its guard against a worker dying with Redis."""

from __future__ import annotations

import pytest
import redis
from kombu.transport import redis as kombu_redis

from deid_workers.app import app


def test_the_wire_is_json_only():
    assert app.conf.task_serializer == "json" and app.conf.result_serializer == "json"
    assert list(app.conf.accept_content) == ["json"]


def test_every_task_goes_to_its_stage_queue_export_shards_to_finalize_ids_chunks_to_put():
    from deid_workers.tasks.finalize import export  # noqa: F401  (registers the task)
    from deid_workers.tasks.load import load_chunk  # noqa: F401

    route = app.amqp.router.route
    for name, queue in [("deid.get", "get"), ("deid.put", "put"), ("deid.finalize", "finalize"),
                        ("deid.export", "finalize"), ("deid.clean", "clean"),
                        ("deid.load", "put"), ("deid.ocr", "ocr")]:
        assert route({}, name)["queue"].name == queue


@pytest.fixture
def patched():
    """The worker's kombu patch, as a worker installs it when it starts."""
    from deid_workers.tasks import compat
    from deid_workers.tasks.liveness import broker_lost

    assert compat.survive_broker_loss(broker_lost)


def test_a_closed_broker_channel_raises_a_connection_error_kombu_recovers_from(patched):
    """An ack after Redis went away used to raise AttributeError: 'Unrecoverable error'."""
    channel = kombu_redis.Channel.__new__(kombu_redis.Channel)
    channel.connection = None
    with pytest.raises(redis.ConnectionError) as caught:
        channel._connparams()
    assert isinstance(caught.value, kombu_redis.Transport.connection_errors)


def test_unacked_hand_back_on_a_closed_channel_is_skipped_not_fatal(patched, caplog):
    qos = kombu_redis.QoS.__new__(kombu_redis.QoS)
    channel = kombu_redis.Channel.__new__(kombu_redis.Channel)
    channel.connection = None
    channel._pool = None
    channel.client = None
    qos.channel = channel
    qos._delivered = {"tag-1": object()}
    qos._dirty = set()
    assert qos.restore_unacked() is None
    assert qos._delivered == {}
    assert "stay in Redis and are redelivered" in caplog.text
