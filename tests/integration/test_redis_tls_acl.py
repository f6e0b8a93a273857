"""The deployed Redis as deploy/ configures it: TLS only, one ACL user per component, AOF,
maxmemory; secrets made by deploy/secrets.sh; real worker, producer and Flower on it.

What is proved, each against the real files of deploy/:

- a whole pipeline runs with each component holding only its own user (producer, worker);
- someone on the wire between deid-submit and Redis sees neither identifiers nor key names;
- each user can do only its part: Flower's and KEDA's users cannot read a run, none can
  reconfigure Redis, list every key or flush it, the default user is off, plain TCP is refused;
- Flower works with its user (workers listed, tasks seen).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import redis
from integration_procs import (
    ROOT,
    Relay,
    SecureRedis,
    Worker,
    env_for,
    free_port,
    kill_group,
    tls_redis_server,
    wait_for,
)

from deid_workers.cli import main
from deid_workers.synth import make_dataset, phi_strings, write_study_tree

pytestmark = pytest.mark.integration

BINARY = tls_redis_server()
if BINARY is None or not shutil.which("openssl"):
    pytest.skip("needs a redis-server built with TLS (Debian's redis-server; .ci/run installs "
                "it) and openssl", allow_module_level=True)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """(SecureRedis, worker env, roots): Redis from deploy/, a worker logged in as 'worker'."""
    base = tmp_path_factory.mktemp("secure")
    secrets = base / "secrets"
    subprocess.run(["sh", str(Path(ROOT) / "deploy" / "secrets.sh"), str(secrets)], check=True,
                   capture_output=True)
    server = SecureRedis(BINARY, base, secrets)
    roots = base / "data"
    roots.mkdir()
    env = env_for("unused", roots, DEID_SECRET_FILE=str(secrets / "deid-secret.key"),
                  **server.env("worker"))
    env.pop("DEID_SECRET")
    worker = Worker(env, base / "worker.log", "tls")
    try:
        worker.wait_ready()
        yield server, env, roots
        assert b"NOPERM" not in worker.log.read_bytes(), "the worker's user lacks a permission"
    finally:
        worker.stop()
        server.stop()


def _producer_env(monkeypatch, server: SecureRedis, worker_env: dict[str, str],
                  port: int | None = None) -> None:
    for name in ("DEID_SECRET", "MESSAGELEVEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DEID_SECRET_FILE", worker_env["DEID_SECRET_FILE"])
    for name, value in server.env("producer", port).items():
        monkeypatch.setenv(name, value)


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_pipeline_runs_over_tls_and_the_wire_shows_nothing(deployed, monkeypatch, capsys):
    server, worker_env, roots = deployed
    relay = Relay(server.port)  # between deid-submit and Redis: what a sniffer would get
    try:
        _producer_env(monkeypatch, server, worker_env, relay.port)
        root = roots / "in"
        write_study_tree(root, patients=2, images=2)
        make_dataset(7, modality="US", text_block=(1, 1, 6, 3)).save_as(
            root / "us.dcm", enforce_file_format=True)  # to the clean queue
        out, records = roots / "out", roots / "out-records"
        code, stdout, err = _run(capsys, "--action", "all", "--json", "--quiet", "--input",
                                 str(root), "--outfolder", str(out), "--batch", "2",
                                 "--clean-pixels")
        assert code == 0, err
        summary = json.loads(stdout)
        assert summary["written"] + summary["cleaned"] + summary["quarantined"] == 5
        ids = records / "deid-ids.json"
        code, stdout, err = _run(capsys, "--action", "put", "--json", "--quiet", "--ids",
                                 str(ids), "--input", str(root), "--outfolder",
                                 str(roots / "put"))
        assert code == 0 and json.loads(stdout)["written"] == 5, err
        code, stdout, err = _run(capsys, "--status", summary["run_id"], "--json")
        assert code == 0 and json.loads(stdout)["runs"][0]["state"] == "finished", err
        for name, value in server.env("worker").items():  # deploy/README: --status from a worker pod
            monkeypatch.setenv(name, value)
        code, stdout, err = _run(capsys, "--status", "--json")
        assert code == 0 and summary["run_id"] in stdout, err
        _producer_env(monkeypatch, server, worker_env, relay.port)
        assert _run(capsys, "--purge", summary["run_id"])[0] == 0
    finally:
        relay.close()
    wire = bytes(relay.seen)
    assert len(wire) > 10_000  # the whole run went through it
    for text in phi_strings(0) | phi_strings(1) | phi_strings(7) | {"deid:run", "patient-0000",
                                                                    "deid.get"}:
        assert text.encode() not in wire, text


def test_each_user_can_do_only_its_part(deployed):
    server, worker_env, roots = deployed
    worker, producer = server.client("worker"), server.client("producer")
    flower, keda, probe = server.client("flower"), server.client("keda"), server.client("probe")
    producer.hset("deid:run:probe", "state", '"running"')
    # Flower and KEDA never read a run (its record, batches, identifiers)
    for client in (flower, keda, probe):
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.hgetall("deid:run:probe")
    # KEDA: the length of the four queues it scales on, through its Lua script, and no more
    script = "local t = redis.call('type', KEYS[1]).ok; return redis.call('llen', KEYS[1])"
    assert keda.eval(script, 1, "put") == 0
    with pytest.raises(redis.exceptions.NoPermissionError):
        keda.llen("finalize")
    with pytest.raises(redis.exceptions.NoPermissionError):
        keda.lpush("put", "forged task")
    # Flower: queue lengths and control replies, nothing of the store
    assert flower.llen("get") == 0
    with pytest.raises(redis.exceptions.NoPermissionError):
        flower.get("celery-task-meta-x")
    # No user reconfigures Redis, reads every key name at once, flushes it or manages users
    for client in (worker, producer, flower, keda, probe):
        for command in (("CONFIG", "SET", "maxmemory", "0"), ("FLUSHALL",), ("KEYS", "*"),
                        ("ACL", "SETUSER", "x", "on"), ("BGREWRITEAOF",),
                        ("MONITOR",) if client is probe else ("SHUTDOWN",)):
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.execute_command(*command)
    assert probe.ping()
    producer.delete("deid:run:probe")
    # The default user is off, and plain TCP is refused on the TLS port.
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(host="localhost", port=server.port, ssl=True,
                    ssl_ca_certs=str(server.secrets / "tls" / "ca.crt")).ping()
    with pytest.raises(redis.exceptions.ConnectionError):
        redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=2,
                    username="worker", password="x").ping()


def test_flower_works_with_its_own_user(deployed, monkeypatch, capsys, tmp_path):
    server, worker_env, roots = deployed
    port = free_port()
    env = dict(worker_env, **server.env("flower"), FLOWER_BASIC_AUTH="ops:flower-test-pass")
    env.pop("DEID_SECRET_FILE")  # Flower needs no cluster key
    log = tmp_path / "flower.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "deid_workers.app",
                                 "flower", f"--port={port}", "--address=127.0.0.1"],
                                env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    auth = "Basic " + base64.b64encode(b"ops:flower-test-pass").decode()

    def get(path: str) -> object:
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     headers={"Authorization": auth})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read())
        except (OSError, ValueError):
            return None

    try:
        wait_for(lambda: get("/api/workers?refresh=1"), 60, "Flower listing the worker")
        _producer_env(monkeypatch, server, worker_env)
        root = roots / "flower-in"
        write_study_tree(root, patients=1, images=2)
        assert _run(capsys, "--action", "get", "--quiet", "--input", str(root), "--records",
                    str(roots / "flower-ids"))[0] == 0
        tasks = wait_for(lambda: {t["name"] for t in (get("/api/tasks") or {}).values()}
                         >= {"deid.get", "deid.finalize"} and get("/api/tasks"), 30,
                         "Flower seeing the run's tasks")
        assert tasks
        time.sleep(0.5)
        assert b"NOPERM" not in log.read_bytes(), log.read_text()[-2000:]
    finally:
        kill_group(proc, signal.SIGTERM)
    assert os.path.exists(log)
