"""deid-submit end to end on the embedded cluster, with memory read from the live process tree.

Each run is ``python -m deid_workers --action A ... --workers N --batch B --quiet --json`` in a
child process, as a user would type it. Two times come out of it:

- ``wall_s``: the command from start to exit, embedded redis-server and worker start included;
- ``run_s``: the run's own time as deid-submit reports it (``elapsed_s`` in its JSON summary:
  from the run's creation in Redis to its last batch), i.e. without the fixed start-up cost.

While it runs, a :class:`~benchmarks.procmem.TreeSampler` keeps the peak RSS of the producer,
the celery main process, each pool worker and redis-server, and reads Redis ``used_memory``
through the embedded socket (found in redis-server's working directory).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from .procmem import ProcInfo, TreeSampler

__all__ = ["ClusterRun", "run_cli", "BENCH_SECRET"]

BENCH_SECRET = "deid-workers-benchmark-key-not-secret"
"""A fixed key (DEID_SECRET) so benchmark runs do not create or read the user's key file."""

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class ClusterRun:
    action: str
    workers: int
    batch: int
    files: int
    wall_s: float
    run_s: float
    rc: int
    summary: dict[str, Any] = field(repr=False)
    producer_rss_mb: float = 0.0
    celery_main_rss_mb: float = 0.0
    worker_rss_mb: list[float] = field(default_factory=list)
    redis_rss_mb: float = 0.0
    redis_used_delta_mb: float = 0.0
    stderr_tail: str = ""

    @property
    def redis_bytes_per_file(self) -> float:
        return self.redis_used_delta_mb * 1024 * 1024 / self.files if self.files else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action, "workers": self.workers, "batch": self.batch,
            "files": self.files, "wall_s": round(self.wall_s, 3), "run_s": round(self.run_s, 3),
            "startup_s": round(self.wall_s - self.run_s, 3), "rc": self.rc,
            "files_per_s_run": round(self.files / self.run_s, 1) if self.run_s else None,
            "files_per_s_wall": round(self.files / self.wall_s, 1) if self.wall_s else None,
            "peak_rss_mb": {
                "producer": round(self.producer_rss_mb, 1),
                "celery_main": round(self.celery_main_rss_mb, 1),
                "workers": [round(x, 1) for x in self.worker_rss_mb],
                "redis_server": round(self.redis_rss_mb, 1),
            },
            "redis_used_memory_delta_mb": round(self.redis_used_delta_mb, 3),
            "redis_bytes_per_file": round(self.redis_bytes_per_file, 1),
            "state": self.summary.get("state"),
            "skipped": self.summary.get("skipped"),
            "written": self.summary.get("written"),
        }


class _RedisProbe:
    """Reads ``used_memory`` of the embedded redis-server; remembers the first and the max."""

    def __init__(self) -> None:
        self.client: Any = None
        self.first: int | None = None
        self.peak = 0

    def __call__(self, infos: dict[int, ProcInfo]) -> int | None:
        if self.client is None:
            sock = _socket_of(infos)
            if sock is None or not os.path.exists(sock):
                return None
            import redis

            self.client = redis.Redis(unix_socket_path=sock, socket_timeout=1)
        used = int(self.client.info("memory")["used_memory"])
        if self.first is None:
            self.first = used
        self.peak = max(self.peak, used)
        return used


def _socket_of(infos: dict[int, ProcInfo]) -> str | None:
    """The embedded Redis socket: redis-server rewrites its command line (its title), but it
    runs in its ``--dir``, the embedded temp folder that holds ``redis.sock``."""
    for pid, info in infos.items():
        if info.name == "redis-server":
            try:
                return os.path.join(os.readlink(f"/proc/{pid}/cwd"), "redis.sock")
            except OSError:
                return None
    return None


def run_cli(action: str, input_dir: str, files: int, *, workers: int, batch: int,
            ids: str | None = None, outfolder: str | None = None, records: str | None = None,
            interval: float = 0.2) -> ClusterRun:
    """Run one ``deid-submit`` and measure it; ``files`` is what rates are divided by.
    ``records``: where its identifiers and run log go (default ``<outfolder>-records``)."""
    out = outfolder or tempfile.mkdtemp(prefix=f"bench-{action}-")
    cmd = [sys.executable, "-m", "deid_workers", "--action", action, "--input", input_dir,
           "--outfolder", out, "--workers", str(workers), "--batch", str(batch),
           "--quiet", "--json"]
    if ids:
        cmd += ["--ids", ids]
    if records:
        cmd += ["--records", records]
    env = dict(os.environ)
    env["DEID_SECRET"] = BENCH_SECRET
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_REPO, env.get("PYTHONPATH", "")) if p)
    env.pop("DEID_BROKER_URL", None)
    probe = _RedisProbe()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            text=True)
    with TreeSampler(proc.pid, interval=interval, probe=probe) as sampler:
        stdout, stderr = proc.communicate()
    wall = time.perf_counter() - start
    try:
        summary = json.loads(stdout)
    except json.JSONDecodeError:
        summary = {}
    run = ClusterRun(action, workers, batch, files, wall, float(summary.get("elapsed_s") or 0.0),
                     proc.returncode, summary, stderr_tail="\n".join(stderr.splitlines()[-5:]))
    _assign(run, proc.pid, sampler.infos)
    if probe.first is not None:
        run.redis_used_delta_mb = (probe.peak - probe.first) / (1024 * 1024)
    return run


def _assign(run: ClusterRun, producer: int, infos: dict[int, ProcInfo]) -> None:
    """Sort the sampled processes: producer, redis-server, celery main (the producer's
    child) and pool workers (the celery main's children)."""
    mains = set()
    for pid, info in infos.items():
        if pid == producer:
            run.producer_rss_mb = info.peak_rss_mb
        elif info.name == "redis-server":
            run.redis_rss_mb = info.peak_rss_mb
        elif info.ppid == producer:
            mains.add(pid)
            run.celery_main_rss_mb = max(run.celery_main_rss_mb, info.peak_rss_mb)
    run.worker_rss_mb = sorted((info.peak_rss_mb for info in infos.values() if info.ppid in mains),
                               reverse=True)
