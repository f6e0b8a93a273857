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
SECRET = "reliability-secret"


def placed(root: Any, rel: str, secret: str) -> str:
    """Where the default (mirror) layout puts input ``rel`` of ``root``, relative to the
    output folder, for workers whose DEID_SECRET is ``secret``."""
    import pydicom

    from deid_workers.layout import Layout

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
    """A redis-server on a free port in ``folder``; ``aof`` turns on the append-only file."""

    def __init__(self, folder: Path, *, aof: bool) -> None:
        self.folder = folder
        self.aof = aof
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        args = [find_redis_server(), "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.folder), "--save", ""]
        args += (["--appendonly", "yes", "--appendfsync", "always"] if self.aof
                 else ["--appendonly", "no"])
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

        configure(app, Settings(broker_url=self.url))
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


def counters(client: redis.Redis, run_id: str) -> dict[str, int]:
    return {k: int(v) for k, v in client.hgetall(f"deid:run:{run_id}:counters").items()}


def latest_run(client: redis.Redis) -> str | None:
    ids = client.zrevrange("deid:runs", 0, 0)
    return ids[0] if ids else None
