"""``python -m benchmarks.roundtrips``: how many Redis round trips each task costs, counted.

Why: on a real cluster each round trip a batch waits for is a network latency (the ``--netem``
mode measures what they cost); on a shared 2-core machine that timing is noisy, but the count
is exact. Every ``send`` of a redis-py connection is one round trip (a pipeline is one send),
counted in the worker's processes by a ``sitecustomize`` this tool writes and puts first on
the worker's ``PYTHONPATH``; each pool process reports its count per task, from the task's
start to the end of its bookkeeping (result backend, chord), and the main process its total,
which covers taking, acknowledging and announcing (events) the tasks, and, per thread, what it
sent between the first task it took and the last: its event loop (what a batch may wait for:
taking the next one) apart from the thread that acknowledges and sends events
(``deid_workers/tasks/offloop.py``) and the liveness thread.

    python -m benchmarks.roundtrips                # --action all on 600 small files, batch 100
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from typing import Any

from .cluster import BENCH_SECRET

__all__ = ["count_roundtrips", "main"]

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SITECUSTOMIZE = '''
import json, os, sys, threading

def _install():
    import redis.connection as rc
    sends = {}  # per thread kind: main, or the thread's name
    plain = rc.AbstractConnection.send_packed_command

    def kind():
        current = threading.current_thread()
        return "main" if current is threading.main_thread() else current.name

    def send_packed_command(self, command, check_health=True):
        k = kind()
        sends[k] = sends.get(k, 0) + 1
        return plain(self, command, check_health)

    rc.AbstractConnection.send_packed_command = send_packed_command
    out = os.environ["DEID_ROUNDTRIPS_OUT"]
    try:
        from celery.signals import task_prerun, task_postrun, task_received, worker_shutdown
    except ImportError:
        return
    started = {}
    received = []  # the main process's sends by kind when it received each task

    def pre(task_id=None, **_):
        started[task_id] = sends.get("main", 0)

    def post(task_id=None, task=None, **_):
        with open(out, "a") as fh:
            fh.write(json.dumps({"pid": os.getpid(), "task": task.name,
                                 "sends": sends.get("main", 0) - started.pop(task_id, 0)})
                     + "\\n")

    def took(**_):
        received.append(dict(sends))

    def total(**_):
        first, last = (received[0], received[-1]) if received else ({}, {})
        window = {k: last.get(k, 0) - first.get(k, 0) for k in last}
        with open(out, "a") as fh:
            fh.write(json.dumps({"pid": os.getpid(), "main": True, "sends": sends,
                                 "window": window, "received": len(received)}) + "\\n")

    task_prerun.connect(pre, weak=False)
    task_postrun.connect(post, weak=False)
    task_received.connect(took, weak=False)
    worker_shutdown.connect(total, weak=False)

if os.environ.get("DEID_ROUNDTRIPS_OUT"):
    _install()
'''


def count_roundtrips(*, patients: int = 6, images: int = 100, batch: int = 100) -> dict[str, Any]:
    """Run ``--action all`` on a private Redis with one worker (one pool process) counting
    its round trips; returns the mean per task name, and the main process's per task."""
    from deid_workers.embedded import find_redis_server
    from deid_workers.synth import write_study_tree

    tmp = tempfile.mkdtemp(prefix="deid-rtt-")
    site = os.path.join(tmp, "site")
    os.makedirs(site)
    with open(os.path.join(site, "sitecustomize.py"), "w", encoding="utf-8") as fh:
        fh.write(SITECUSTOMIZE)
    out = os.path.join(tmp, "counts.jsonl")
    root = os.path.join(tmp, "in")
    files = len(write_study_tree(root, patients=patients, images=images, rows=8, cols=8))
    sock = os.path.join(tmp, "redis.sock")
    redis = subprocess.Popen([find_redis_server(), "--port", "0", "--unixsocket", sock,
                              "--dir", tmp, "--save", "", "--appendonly", "no"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = dict(os.environ)
    env.update(DEID_BROKER_URL=f"redis+socket://{sock}", DEID_SECRET=BENCH_SECRET,
               XDG_CONFIG_HOME=tmp, DEID_ROUNDTRIPS_OUT=out, DEID_INPUT_ROOTS=tmp,
               DEID_OUTPUT_ROOTS=tmp,
               PYTHONPATH=os.pathsep.join(p for p in (site, _REPO, env.get("PYTHONPATH")) if p))
    node = f"rtt-{os.getpid()}@localhost"
    worker = None
    try:
        _wait_socket(sock)
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "deid_workers.app", "worker", "-Q",
             "get,inspect,put,finalize,clean", "-n", node, "--concurrency", "1",
             "--loglevel", "WARNING", "--without-gossip", "--without-mingle",
             "--without-heartbeat"], env=env, cwd=_REPO, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        producer_env = {k: v for k, v in env.items() if k != "DEID_ROUNDTRIPS_OUT"}
        producer_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_REPO, os.environ.get("PYTHONPATH")) if p)
        _wait_worker(sock, node)
        subprocess.run([sys.executable, "-m", "deid_workers", "--action", "all", "--input",
                        root, "--outfolder", os.path.join(tmp, "out"), "--batch", str(batch),
                        "--quiet", "--json"], env=producer_env, cwd=_REPO, check=True,
                       capture_output=True, timeout=600)
    finally:
        if worker is not None:
            worker.terminate()  # a warm shutdown: the main process writes its total
            worker.wait(timeout=60)
        unacked_left = _unacked(sock)
        redis.kill()
        redis.wait(timeout=10)
    per_task: dict[str, list[int]] = defaultdict(list)
    main: dict[str, Any] = {}
    with open(out, encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            if rec.get("main"):
                main = rec
            else:
                per_task[rec["task"]].append(rec["sends"])
    tasks = sum(len(v) for v in per_task.values())
    between = max(1, int(main.get("received", 0)) - 1)
    return {"files": files, "batch": batch,
            "pool_per_task": {k: round(sum(v) / len(v), 2) for k, v in sorted(per_task.items())},
            "pool_median": {k: statistics.median(v) for k, v in sorted(per_task.items())},
            "tasks": {k: len(v) for k, v in sorted(per_task.items())},
            "main_per_task": round(sum(main.get("sends", {}).values()) / tasks, 2)
            if tasks else None,
            "main_between_tasks": {k: round(n / between, 2)
                                   for k, n in sorted(main.get("window", {}).items())},
            "unacked_left": unacked_left}


def _unacked(sock: str) -> int | None:
    """Messages left in kombu's unacked set once the worker has stopped (every ack sent)."""
    import redis

    try:
        return int(redis.Redis(unix_socket_path=sock).hlen("unacked"))
    except redis.RedisError:
        return None


def _wait_socket(sock: str) -> None:
    import redis

    deadline = time.monotonic() + 20
    while True:
        try:
            redis.Redis(unix_socket_path=sock).ping()
            return
        except redis.RedisError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _wait_worker(sock: str, node: str) -> None:
    from deid_workers.app import app, configure
    from deid_workers.config import Settings

    configure(app, Settings(broker_url=f"redis+socket://{sock}"))
    deadline = time.monotonic() + 60
    while not app.control.ping(destination=[node], timeout=0.5):
        if time.monotonic() > deadline:
            raise RuntimeError("the counting worker did not start")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.roundtrips",
                                description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    result = count_roundtrips(batch=args.batch)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"--action all, {result['files']} files, batch {result['batch']}: Redis round "
              f"trips per task")
        for name, n in result["pool_per_task"].items():
            print(f"  {name:<14} {n:>6.1f} in the pool process, median "
                  f"{result['pool_median'][name]:g} ({result['tasks'][name]} tasks)")
        print(f"  {'main process':<14} {result['main_per_task']:>6.1f} per task (take, ack, "
              f"events, liveness), start and stop included")
        for kind, n in result["main_between_tasks"].items():
            where = ("its event loop: taking a task" if kind == "main" else
                     f"thread {kind}")
            print(f"  {'':<14} {n:>6.2f} per task between the first and the last taken, in "
                  f"{where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
