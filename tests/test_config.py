"""config: where the cluster key, the Redis password and the folder roots come from."""

from __future__ import annotations

import logging
import os
import ssl

import pytest

from deid_workers.config import DEFAULT_RUN_EXPIRY, Settings
from deid_workers.errors import ConfigError

KEY = "config-tests-key-0123456789abcdef0123"


def test_broker_mode_never_makes_a_key_of_its_own(tmp_path, monkeypatch):
    """A worker minting its own key gave one patient different pseudonyms on different pods."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    settings = Settings.from_env({"DEID_BROKER_URL": "redis://redis:6379/0"})
    with pytest.raises(ConfigError, match="^DEID_SECRET_FILE: no cluster key configured"):
        settings.resolve_secret()
    missing = tmp_path / "nope.key"
    with pytest.raises(ConfigError, match=f"DEID_SECRET_FILE: {missing} does not exist"):
        settings.with_overrides(secret_file=str(missing)).resolve_secret()
    assert not list(tmp_path.iterdir())


def test_a_key_file_is_read_and_checked(tmp_path):
    path = tmp_path / "secret.key"
    path.write_text(KEY + "\n")
    settings = Settings.from_env({"DEID_BROKER_URL": "redis://r/0", "DEID_SECRET_FILE": str(path)})
    assert settings.resolve_secret() == (KEY.encode(), str(path))
    path.write_text("change-me-deid-secret")
    with pytest.raises(ConfigError, match=f"^DEID_SECRET_FILE {path}: the key is the example"):
        settings.resolve_secret()


def test_embedded_mode_makes_its_key_once_and_says_where_once(tmp_path, caplog):
    path = tmp_path / "deid" / "secret.key"
    settings = Settings.from_env({"DEID_SECRET_FILE": str(path)})
    with caplog.at_level(logging.WARNING):
        key, where = settings.resolve_secret()
        assert settings.resolve_secret() == (key, where)
    assert where == str(path) and len(key) == 64 and os.stat(path).st_mode & 0o777 == 0o600
    said = [r.getMessage() for r in caplog.records if "Created a new secret key" in r.getMessage()]
    assert len(said) == 1 and str(path) in said[0]


def test_roots_are_absolute_real_paths(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    env = {"DEID_INPUT_ROOTS": f"{tmp_path / 'link'}{os.pathsep}/data/in",
           "DEID_OUTPUT_ROOTS": "/data/out"}
    settings = Settings.from_env(env)
    assert settings.input_roots == (str((tmp_path / "real").resolve()), "/data/in")
    with pytest.raises(ConfigError, match="^DEID_OUTPUT_ROOTS: expected absolute folders"):
        Settings.from_env({"DEID_OUTPUT_ROOTS": "data/out"})


def test_a_broker_mode_worker_needs_its_key_and_roots(tmp_path):
    base = {"DEID_BROKER_URL": "redis://r/0", "DEID_SECRET": KEY}
    with pytest.raises(ConfigError, match="^DEID_INPUT_ROOTS: not set"):
        Settings.from_env(base).require_worker_config()
    with pytest.raises(ConfigError, match="^DEID_OUTPUT_ROOTS: not set"):
        Settings.from_env(dict(base, DEID_INPUT_ROOTS="/in")).require_worker_config()
    Settings.from_env(dict(base, DEID_INPUT_ROOTS="/in", DEID_OUTPUT_ROOTS="/out")
                      ).require_worker_config()


def test_the_redis_password_comes_from_its_file(tmp_path):
    secret = tmp_path / "redis.password"
    secret.write_text("p@ss:w/rd\n")
    settings = Settings.from_env({"DEID_BROKER_URL": "rediss://worker@redis:6379/0",
                                  "DEID_REDIS_PASSWORD_FILE": str(secret)})
    assert settings.effective_broker_url() == "rediss://worker:p%40ss%3Aw%2Frd@redis:6379/0"
    assert "p@ss" not in repr(settings)
    broken = settings.with_overrides(redis_password_file=str(tmp_path / "none"))
    with pytest.raises(ConfigError, match="^DEID_REDIS_PASSWORD_FILE: cannot read"):
        broken.effective_broker_url()


def test_tls_is_checked_against_the_given_ca_and_only_for_rediss():
    settings = Settings.from_env({"DEID_BROKER_URL": "rediss://w@redis:6379/0",
                                  "DEID_REDIS_TLS_CA": "/run/secrets/redis/ca.crt"})
    assert settings.tls_options() == {"ssl_cert_reqs": ssl.CERT_REQUIRED,
                                      "ssl_ca_certs": "/run/secrets/redis/ca.crt"}
    assert Settings.from_env({"DEID_BROKER_URL": "redis://r/0"}).tls_options() == {}


def test_runs_expire_after_two_days_by_default():
    assert DEFAULT_RUN_EXPIRY == Settings().run_expiry == 2 * 24 * 3600


@pytest.mark.parametrize("env, message", [
    ({"DEID_BATCH_SIZE": "0"}, "--batch / DEID_BATCH_SIZE: expected a positive integer"),
    ({"DEID_BATCH_SIZE": "ten"}, "DEID_BATCH_SIZE: expected an integer"),
    ({"DEID_EXPORT_SHARD_FILES": "0"}, "DEID_EXPORT_SHARD_FILES: expected a positive integer"),
    ({"DEID_MAX_FILE_BYTES": "0"}, "DEID_MAX_FILE_BYTES: expected a positive integer"),
    ({"DEID_MAX_PIXEL_BYTES": "-1"}, "DEID_MAX_PIXEL_BYTES: expected a positive integer"),
    ({"DEID_WORKERS": "0"}, "DEID_WORKERS: expected a positive integer"),
    ({"DEID_DATE_SHIFT_MIN": "5", "DEID_DATE_SHIFT_MAX": "1"},
     "DEID_DATE_SHIFT_MIN: must not exceed DEID_DATE_SHIFT_MAX"),
    ({"DEID_DATE_SHIFT_MIN": "0", "DEID_DATE_SHIFT_MAX": "0"},
     "DEID_DATE_SHIFT_MIN: a shift range of only 0 leaves dates unchanged"),
    ({"DEID_PREFETCH": "0"}, "DEID_PREFETCH: expected a positive integer"),
    ({"DEID_LIVENESS_TTL": "0"}, "DEID_LIVENESS_TTL: expected a positive integer"),
    ({"DEID_TASK_TIME_LIMIT": "3600", "DEID_VISIBILITY_TIMEOUT": "3600"},
     "DEID_TASK_TIME_LIMIT: must be below DEID_VISIBILITY_TIMEOUT"),
])
def test_each_rule_names_its_variable(env, message):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert str(caught.value).startswith(message)


def test_a_flag_beats_the_environment_which_beats_the_default():
    assert Settings.from_env({}).batch_size == Settings().batch_size
    assert Settings.from_env({"DEID_BATCH_SIZE": "7"}).batch_size == 7
    assert Settings.from_env({"DEID_BATCH_SIZE": "7"}, batch_size=9).batch_size == 9
    assert Settings.from_env({"DEID_BATCH_SIZE": "7"}, batch_size=None).batch_size == 7
    assert Settings.from_env({"DEID_BATCH_SIZE": ""}).batch_size == Settings().batch_size
    with pytest.raises(ConfigError, match="^--batch / DEID_BATCH_SIZE"):
        Settings().with_overrides(batch_size=0)  # overrides are checked too


def test_switches_and_levels_are_read_as_deid_and_shells_spell_them():
    for on in ("1", "true", "YES", "on"):
        assert Settings.from_env({"DEID_LOG_JSON": on}).log_json
    for off in ("0", "false", "no", "off"):
        assert not Settings.from_env({"DEID_LOG_JSON": off}).log_json
        assert not Settings.from_env({"DEID_FAST_IO": off}).fast_io
    assert Settings().fast_io and not Settings().log_json
    assert Settings.from_env({"MESSAGELEVEL": "debug"}).message_level == "DEBUG"


def test_the_secret_is_never_shown():
    settings = Settings.from_env({"DEID_SECRET": KEY})
    assert KEY not in repr(settings) and settings.secret == KEY.encode()


def test_a_made_key_is_private_and_one_key_for_processes_starting_together(tmp_path):
    import threading

    from deid_workers.config import load_secret

    path = tmp_path / "conf" / "deid-workers" / "secret.key"
    keys: list[bytes] = []
    threads = [threading.Thread(target=lambda: keys.append(load_secret(path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(keys)) == 1 and path.read_bytes().strip() == keys[0]
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.stat(path.parent).st_mode & 0o077 == 0  # the folder is its owner's only


def test_batches_grow_with_the_round_trip_to_redis_up_to_a_bound():
    """A batch waits for a fixed number of round trips: near Redis the default stays; a few
    milliseconds away batches grow until those round trips are about 5% of a batch's work,
    with the run's last files back in default-sized batches."""
    from deid_workers.config import (
        BATCH_FILE_MS,
        BATCH_LATENCY_SHARE,
        BATCH_ROUND_TRIPS,
        DEFAULT_BATCH_SIZE,
        MAX_AUTO_BATCH,
        auto_batch,
    )

    assert auto_batch(0.05) == (DEFAULT_BATCH_SIZE, 0)  # a unix socket, a LAN
    assert auto_batch(0.8) == (DEFAULT_BATCH_SIZE, 0)
    size, tail = auto_batch(1.5)
    assert DEFAULT_BATCH_SIZE < size < MAX_AUTO_BATCH and tail == DEFAULT_BATCH_SIZE
    assert BATCH_ROUND_TRIPS * 1.5 <= BATCH_LATENCY_SHARE * size * BATCH_FILE_MS * 1.01
    assert auto_batch(4.4) == auto_batch(20.0) == (MAX_AUTO_BATCH, DEFAULT_BATCH_SIZE)
    assert Settings.from_env({}).batch_size is None  # chosen per run by the producer
    with pytest.raises(ConfigError, match="DEID_BATCH_TAIL"):
        Settings(batch_tail=-1).validate()
