"""docker-compose.yml and .env.example: services, health checks, closed ports, no secrets."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from deployfiles import (
    MASK,
    PLACEHOLDER_PREFIX,
    ROOT,
    SECRET_VARS,
    is_reference_only,
    mask_references,
    mount_target,
    project_version,
    redis_conf,
    referenced_vars,
    without_comments,
)


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment must be a mapping (NAME: value)"
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


def _secret_literals(compose: dict[str, Any]) -> list[str]:
    """Every place where a secret-looking setting holds something other than ${VAR} references."""
    problems = []
    for name, service in compose["services"].items():
        for key, value in _env(service).items():
            if key.endswith("_FILE") or key.endswith("_CA"):
                # a file of a secret: one that compose mounts, never a path of the host
                if not value.startswith("/run/secrets/"):
                    problems.append(f"{name}: {key} is not a mounted secret")
            elif any(word in key for word in ("PASSWORD", "SECRET", "AUTH", "TOKEN")):
                if not is_reference_only(value):
                    problems.append(f"{name}: {key}")
        for text in _strings(service):
            if "://" in text:
                password = urlsplit(mask_references(text)).password
                if password is not None and password != MASK:
                    problems.append(f"{name}: password in URL {text.split('@')[-1]}")
        command = service.get("command", [])
        if isinstance(command, list) and "--requirepass" in command:
            value = command[command.index("--requirepass") + 1]
            if not is_reference_only(value):
                problems.append(f"{name}: --requirepass")
    return problems


def test_compose_has_the_four_services(compose):
    assert {"redis", "worker", "flower", "submit"} <= set(compose["services"])


def test_image_tag_is_the_project_version(compose):
    for name in ("worker", "flower", "submit"):
        assert compose["services"][name]["image"] == f"deid-workers:{project_version()}", name
    assert compose["services"]["worker"]["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (ROOT / "deploy" / "Dockerfile").is_file()


def _secrets(service: dict[str, Any]) -> dict[str, str]:
    """A service's compose secrets as name -> where it is mounted."""
    out = {}
    for entry in service.get("secrets", []):
        if isinstance(entry, str):
            out[entry] = f"/run/secrets/{entry}"
        else:
            target = entry.get("target", entry["source"])
            out[entry["source"]] = target if target.startswith("/") else f"/run/secrets/{target}"
    return out


def test_redis_runs_from_the_deployed_config_file_with_no_secret_on_its_command_line(compose):
    redis = compose["services"]["redis"]
    assert redis["command"] == ["redis-server", "/usr/local/etc/redis/redis.conf"]
    mounts = {target: source for source, target, _ in map(mount_target, redis["volumes"])}
    assert mounts["/usr/local/etc/redis/redis.conf"] == "./deploy/redis/redis.conf"
    assert "environment" not in redis, "no password in Redis' environment"
    conf = redis_conf()
    mounted = set(_secrets(redis).values())
    for directive in ("aclfile", "tls-cert-file", "tls-key-file", "tls-ca-cert-file"):
        assert conf[directive] in mounted, f"{directive} {conf[directive]} is not mounted"


def test_the_redis_config_speaks_tls_only_logs_users_in_and_never_evicts():
    conf = redis_conf()
    assert conf["port"] == "0" and conf["tls-port"] == "6379"
    assert conf["tls-auth-clients"] == "no"  # users log in with passwords; the CA proves Redis
    assert conf["appendonly"] == "yes" and conf["dir"] == "/data"
    assert conf["maxmemory-policy"] == "noeviction" and conf["maxmemory"] == "1gb"
    assert "requirepass" not in conf and "aclfile" in conf


def test_each_service_gets_only_its_own_secrets(compose):
    declared = compose["secrets"]
    for name, spec in declared.items():
        assert spec["file"].startswith("${DEID_SECRETS:-./secrets}/"), name
    wanted = {"redis": {"redis-acl", "redis-ca", "redis-cert", "redis-key", "redis-probe"},
              "worker": {"deid-key", "redis-ca", "redis-worker"},
              "submit": {"deid-key", "redis-ca", "redis-producer"},
              "flower": {"redis-ca", "redis-flower"}}
    for service, names in wanted.items():
        assert set(_secrets(compose["services"][service])) == names, service
    assert set(declared) == set().union(*wanted.values())


def test_redis_data_is_a_named_volume(compose):
    mounts = [mount_target(m) for m in compose["services"]["redis"]["volumes"]]
    sources = [source for source, target, _ in mounts if target == "/data"]
    named = compose.get("volumes") or {}
    assert sources and sources[0] in named, "redis /data must be a named volume"


def test_redis_healthcheck_checks_for_pong(compose):
    test = " ".join(compose["services"]["redis"]["healthcheck"]["test"])
    # redis-cli exits 0 on NOAUTH, so only looking for PONG proves the password is accepted;
    # as the PING-only user, over TLS, with the password read from its file, not argv.
    assert "redis-cli" in test and "PONG" in test and "--user probe" in test and "--tls" in test
    assert 'REDISCLI_AUTH="$$(cat /run/secrets/redis-probe)"' in test and "-a " not in test


def test_only_localhost_ports_are_published(compose):
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"
    assert "ports" not in compose["services"]["redis"]


def test_worker_scales(compose):
    worker = compose["services"]["worker"]
    # container_name or a fixed host port makes `docker compose up --scale worker=8` fail.
    assert "container_name" not in worker
    assert "ports" not in worker
    assert worker["command"][0] == "deid-worker"
    # Pinned: Celery's default (one process per host CPU) in each of N containers overcommits.
    assert worker["command"][1].startswith("--concurrency=${WORKER_CONCURRENCY:-")
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "celery@$$HOSTNAME" in " ".join(worker["healthcheck"]["test"])


@pytest.mark.parametrize("name", ["worker", "submit"])
def test_input_is_read_only_and_output_writable(compose, name):
    volumes = compose["services"][name]["volumes"]
    mounts = {target: (source, mode) for source, target, mode in map(mount_target, volumes)}
    assert mounts["/data/in"][0].startswith("${DEID_INPUT:-") and mounts["/data/in"][1] == "ro"
    for target, var in (("/data/out", "DEID_OUTPUT"), ("/data/records", "DEID_RECORDS"),
                        ("/data/quarantine", "DEID_QUARANTINE_DIR")):
        assert mounts[target][0].startswith("${" + var + ":-") and mounts[target][1] != "ro"
    # The worker's roots are exactly its mounts: everything it may write, and only the input
    # to read.
    env = _env(compose["services"][name])
    assert env["DEID_INPUT_ROOTS"] == "/data/in"
    writable = {t for t, (_, mode) in mounts.items() if mode != "ro"}
    assert set(env["DEID_OUTPUT_ROOTS"].split(":")) == writable


@pytest.mark.parametrize("name", ["worker", "submit"])
def test_quarantine_is_a_writable_mount_apart_from_the_output(compose, name):
    # --clean-pixels' default, the output's sibling /data/out-quarantine, is not writable in
    # the image: the setting points at a mount of its own, the same for producer and workers.
    service = compose["services"][name]
    mounts = {target: (source, mode) for source, target, mode in map(mount_target, service["volumes"])}
    where = _env(service)["DEID_QUARANTINE"]
    assert where == "/data/quarantine" and mounts[where][1] != "ro"
    assert mounts[where][0].startswith("${DEID_QUARANTINE_DIR:-")
    assert not where.startswith("/data/out/") and not where.startswith("/data/in/")


@pytest.mark.parametrize(("name", "user"), [("worker", "worker"), ("submit", "producer")])
def test_workers_share_broker_and_key(compose, name, user):
    service = compose["services"][name]
    env = _env(service)
    url = urlsplit(env["DEID_BROKER_URL"])
    assert (url.scheme, url.username, url.password) == ("rediss", user, None)
    assert url.hostname == "redis" and url.port == 6379
    secrets = _secrets(service)
    assert env["DEID_REDIS_PASSWORD_FILE"] == secrets[f"redis-{user}"]
    assert env["DEID_REDIS_TLS_CA"] == secrets["redis-ca"]
    assert env["DEID_SECRET_FILE"] == secrets["deid-key"] and "DEID_SECRET" not in env


def test_flower_requires_basic_auth_and_binds_localhost(compose):
    flower = compose["services"]["flower"]
    env = _env(flower)
    command = " ".join(flower["command"])
    assert "flower" in command and "deid_workers.app" in command
    auth = env.get("FLOWER_BASIC_AUTH", "")
    assert auth.startswith("${FLOWER_USER:?") and "${FLOWER_PASSWORD:?" in auth
    assert "--basic-auth" not in command, "keep the password out of the process arguments"
    assert flower["ports"] and all(p.startswith("127.0.0.1:") for p in flower["ports"])
    assert "DEID_SECRET" not in env, "Flower does not need the HMAC key"
    assert "DEID_SECRET_FILE" not in env and "deid-key" not in _secrets(flower)
    assert urlsplit(env["DEID_BROKER_URL"]).username == "flower"
    assert env["DEID_REDIS_PASSWORD_FILE"] == _secrets(flower)["redis-flower"]
    assert "/healthcheck" in " ".join(flower["healthcheck"]["test"])


def test_submit_runs_only_on_demand(compose):
    submit = compose["services"]["submit"]
    assert submit["profiles"] == ["submit"]
    command = submit["command"]
    assert command[:3] == ["deid-submit", "--action", "all"]
    assert command[command.index("--input") + 1] == "/data/in"
    assert command[command.index("--outfolder") + 1] == "/data/out"
    assert command[command.index("--records") + 1] == "/data/records"  # never inside /data/out
    assert submit["healthcheck"] == {"disable": True}


def test_no_secret_literal_in_compose(compose, compose_text):
    assert _secret_literals(compose) == []
    assert PLACEHOLDER_PREFIX not in without_comments(compose_text)


def test_secret_check_catches_literals():
    """The check above must be able to fail: feed it the mistakes it exists to catch."""
    bad = {
        "services": {
            "a": {"environment": {"DEID_SECRET": "0123abcd"}},
            "b": {"environment": {"DEID_BROKER_URL": "redis://:hunter2@redis:6379/0"}},
            "c": {"command": ["redis-server", "--requirepass", "hunter2"]},
            "d": {"environment": {"REDIS_PASSWORD": "${REDIS_PASSWORD:-hunter2}"}},
            "e": {"environment": {"DEID_SECRET_FILE": "/home/me/deid.key"}},
        }
    }
    assert len(_secret_literals(bad)) == 5
    good = {"services": {"a": {"environment": {"FLOWER_BASIC_AUTH": "${U:?x}:${P:?y}"}}}}
    assert _secret_literals(good) == []


def test_env_example_defines_every_referenced_variable(compose_text, env_example):
    missing = referenced_vars(compose_text) - set(env_example)
    assert not missing, f".env.example lacks {sorted(missing)}"
    assert "HOSTNAME" not in referenced_vars(compose_text), "$$HOSTNAME must stay escaped"


def test_env_example_holds_placeholders_only(env_example):
    for name in SECRET_VARS:
        assert env_example[name].startswith(PLACEHOLDER_PREFIX), name
    # The key and the Redis passwords are files (deploy/secrets.sh), never .env values.
    assert not {"DEID_SECRET", "REDIS_PASSWORD", "REDISCLI_AUTH"} & set(env_example)


def test_real_env_file_is_gitignored():
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").split()
    assert ".env" in ignored
