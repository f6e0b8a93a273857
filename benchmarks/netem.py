"""``python -m benchmarks --netem``: ``--action all`` with Redis across a network link, at no
delay and with ``tc netem`` delay on the link (2 ms each way, then 10 ms), in the same run.

Why: on a real cluster every Redis call of a worker is a network round trip; the embedded
benchmark (a unix socket) hides them. Here Redis runs in a network namespace of its own and
the worker (one ``celery worker``, N pool processes) and the producer in another, joined by a
veth pair (:mod:`benchmarks.netns`), and the delay is set on both ends of that pair. What a
batch costs per round trip then shows as the files/s lost at 2 and 10 ms.

Needs root and iproute2 (as the namespace tests do). Rounds interleave the delays, so a slow
spell of a shared machine falls on all of them; each figure is the fastest of its rounds.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from deid_workers.config import auto_batch

from .cluster import BENCH_SECRET
from .corpus import build_corpus
from .netns import NetLab, redis_on, unavailable

__all__ = ["DELAYS", "run_netem", "render_netem"]

DELAYS = (0.0, 2.0, 10.0)
"""Milliseconds of delay on each end of the link (a round trip is twice that)."""

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _log(msg: str) -> None:
    sys.stderr.write(f"[bench] {msg}\n")
    sys.stderr.flush()


def _env(url: str, tmp: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(DEID_BROKER_URL=url, DEID_SECRET=BENCH_SECRET, XDG_CONFIG_HOME=tmp,
               DEID_INPUT_ROOTS=tmp, DEID_OUTPUT_ROOTS=tmp,
               PYTHONPATH=os.pathsep.join(p for p in (_REPO, env.get("PYTHONPATH", "")) if p))
    env.pop("MESSAGELEVEL", None)
    return env


PING_PROBE = """
import sys, time
from deid_workers.app import app, configure
from deid_workers.config import Settings
configure(app, Settings(broker_url=sys.argv[1]))
deadline = time.monotonic() + float(sys.argv[3])
while not app.control.ping(destination=[sys.argv[2]], timeout=0.5):
    if time.monotonic() > deadline:
        sys.exit(1)
"""


def _wait_worker(host: Any, env: dict[str, str], url: str, node: str,
                 timeout: float = 60) -> None:
    """Until the worker answers a Celery ping, asked from its own host (through the link)."""
    proc = host.run([sys.executable, "-c", PING_PROBE, url, node, str(timeout)], env=env,
                    cwd=_REPO, timeout=timeout + 30)
    if proc.returncode != 0:
        raise RuntimeError(f"celery worker {node} did not start in its namespace")


RTT_PROBE = """
import sys, time, redis
c = redis.Redis.from_url(sys.argv[1])
for _ in range(100):
    try:
        c.ping(); break
    except redis.ConnectionError:
        time.sleep(0.1)
times = []
for _ in range(200):
    t = time.perf_counter(); c.ping(); times.append(time.perf_counter() - t)
times.sort(); print(times[len(times) // 2] * 1000)
"""


def netem_works(link: Any) -> bool:
    """Whether the kernel has ``tc netem`` (``CONFIG_NET_SCH_NETEM``): some VM kernels do not."""
    try:
        link.delay(1)
    except subprocess.CalledProcessError:
        return False
    link.delay(0)
    return True


def run_netem(*, size: str = "full", workers: int = 2, batch: int | None = None,
              repeat: int = 1, delays: tuple[float, ...] = DELAYS) -> dict[str, Any]:
    """Time ``--action all`` at each delay, ``repeat`` interleaved rounds; the fastest each.

    ``batch`` None: no ``--batch``, so deid-submit sizes batches for the link it measures
    (:func:`~deid_workers.config.auto_batch`; each row says what that gives at its RTT).

    With ``tc netem`` the delay is set on both ends of the link; without it (the kernel lacks
    it) every delay, 0 included, goes through :mod:`benchmarks.delayrelay` in the Redis
    host's namespace, and the link without the relay is timed too (what the relay itself
    costs). Ratios compare each delay with 0 ms by the same means. Each condition has its own
    worker and Redis database; the round trip it sees is measured (median of 200 PINGs).
    """
    reason = unavailable()
    if reason:
        return {"error": reason}
    started = time.perf_counter()
    load_start = os.getloadavg()
    tmp = tempfile.mkdtemp(prefix="deid-netem-")
    try:
        _log(f"building the {size} corpus in {tmp}")
        corpus = build_corpus(os.path.join(tmp, "corpus"), size)
        with NetLab() as lab, redis_on(lab.hub, tmp):
            link = lab.connect("workers")
            host = lab.hosts["workers"]
            hub = link.hub_address
            how = "tc netem" if netem_works(link) else "delay relay"
            # Each condition has a worker of its own on a database of its own (kombu's queues
            # are per database), all started once, so rounds are runs only.
            conditions = [(f"{d:g} ms", d, f"redis://{hub}:6379/{i + 1}")
                          for i, d in enumerate(delays)]
            if how == "delay relay":
                _log("this kernel has no tc netem (CONFIG_NET_SCH_NETEM): delaying in a relay")
                ports = {d: 6380 + i for i, d in enumerate(delays)}
                # Real-time priority where allowed (root: the lab needs it anyway): netem delays
                # in the kernel, ahead of every process; a relay that waits for a CPU behind
                # busy workers would add its own latency to every round trip.
                rt = ["chrt", "-f", "20"] if shutil.which("chrt") else []
                lab.hub.popen(rt + [sys.executable, "-m", "benchmarks.delayrelay", "--to",
                                    "127.0.0.1:6379"]
                              + [a for d in delays
                                 for a in ("--listen", f"{hub}:{ports[d]}={d:g}")],
                              cwd=_REPO, env=_env("", tmp), stdout=subprocess.DEVNULL)
                conditions = [("no relay", 0.0, f"redis://{hub}:6379/1")] + [
                    (f"{d:g} ms", d, f"redis://{hub}:{ports[d]}/{i + 2}")
                    for i, d in enumerate(delays)]
            runs: dict[str, list[dict[str, Any]]] = {c[0]: [] for c in conditions}
            rtt: dict[str, float] = {}
            for i, (label, delay, url) in enumerate(conditions):
                if how == "tc netem":
                    link.delay(delay)
                rtt[label] = _rtt(host, _env(url, tmp), url)
                _start_worker(host, _env(url, tmp), url, workers, f"netem{i}", tmp)
            for rnd in range(1, repeat + 1):
                for label, delay, url in conditions:
                    if how == "tc netem":
                        link.delay(delay)
                    _log(f"round {rnd}/{repeat}: --action all, {label} "
                         f"(measured round trip {rtt[label]:.2f} ms)")
                    runs[label].append(_submit(host, _env(url, tmp), corpus.root, tmp, batch))
            if how == "tc netem":
                link.delay(0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    best = {label: min((r for r in rs if r["rc"] == 0), key=lambda r: r["run_s"],
                       default=rs[0]) for label, rs in runs.items()}
    base = best[f"{delays[0]:g} ms"]
    rows = []
    for label, delay, _url in conditions:
        r = best[label]
        fps = corpus.files / r["run_s"] if r["run_s"] else 0.0
        base_fps = corpus.files / base["run_s"] if base["run_s"] else 0.0
        rows.append({"condition": label, "delay_ms_each_way": delay,
                     "rtt_ms_measured": round(rtt.get(label, 0.0), 3),
                     "batch": batch if batch is not None else auto_batch(rtt.get(label, 0.0))[0],
                     "run_s": round(r["run_s"], 3), "wall_s": round(r["wall_s"], 3),
                     "files_per_s": round(fps, 1),
                     "x_no_delay": round(fps / base_fps, 3) if base_fps else None,
                     "median_run_s": round(statistics.median(x["run_s"] for x in runs[label]), 3),
                     "rc": r["rc"], "all_run_s": [round(x["run_s"], 3) for x in runs[label]]})
    return {"files": corpus.files, "workers": workers, "batch": batch, "repeat": repeat,
            "delay_by": how, "rows": rows, "loadavg_start": load_start,
            "loadavg_end": os.getloadavg(), "cores": os.cpu_count(),
            "bench_seconds": round(time.perf_counter() - started, 1)}


def _start_worker(host: Any, env: dict[str, str], url: str, workers: int,
                  name: str, tmp: str) -> None:
    """A worker on ``host`` for the broker at ``url`` (the lab kills it at the end)."""
    node = f"{name}-{os.getpid()}@workers"
    host.popen(
        [sys.executable, "-m", "celery", "-A", "deid_workers.app", "worker",
         "-Q", "get,inspect,put,finalize,clean", "-n", node, "--concurrency", str(workers),
         "--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        env=env, cwd=_REPO, stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(tmp, "worker.log"), "ab"))
    _wait_worker(host, env, url, node)


def _rtt(host: Any, env: dict[str, str], url: str) -> float:
    """Median PING round trip (ms) from ``host`` to Redis at ``url``."""
    proc = host.run([sys.executable, "-c", RTT_PROBE, url], env=env, timeout=120)
    try:
        return float(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return float("nan")


def _submit(host: Any, env: dict[str, str], root: str, tmp: str,
            batch: int | None) -> dict[str, Any]:
    out = tempfile.mkdtemp(prefix="out-", dir=tmp)
    start = time.perf_counter()
    size = [] if batch is None else ["--batch", str(batch)]
    proc = host.run([sys.executable, "-m", "deid_workers", "--action", "all", "--input", root,
                     "--outfolder", out, *size, "--quiet", "--json"],
                    env=env, cwd=_REPO, timeout=900)
    wall = time.perf_counter() - start
    shutil.rmtree(out, ignore_errors=True)
    summary: dict[str, Any] = {}
    with contextlib.suppress(json.JSONDecodeError):
        summary = json.loads(proc.stdout)
    if proc.returncode != 0:
        _log(f"  exit {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return {"run_s": float(summary.get("elapsed_s") or 0.0), "wall_s": wall,
            "rc": proc.returncode}


def render_netem(results: dict[str, Any]) -> str:
    if "error" in results:
        return f"netem: not run: {results['error']}"
    batch = results["batch"] if results["batch"] is not None else "auto"
    lines = [f"--action all across a veth link to Redis: {results['files']} files, "
             f"{results['workers']} pool processes, batch {batch}"
             + (f", fastest of {results['repeat']} rounds" if results["repeat"] > 1 else "")
             + f"; load {results['loadavg_start'][0]:.2f} -> {results['loadavg_end'][0]:.2f}"
             f" on {results['cores']} cores",
             f"delay by {results['delay_by']}",
             f"{'delay each way':<16}{'RTT':>10}{'batch':>7}{'run s':>8}{'files/s':>9}"
             f"{'x no delay':>11}  all rounds (run s)"]
    for r in results["rows"]:
        ratio = "-" if r["x_no_delay"] is None else f"{r['x_no_delay']:.2f}"
        lines.append(f"{r['condition']:>14}{r['rtt_ms_measured']:>9.2f} ms{r['batch']:>7}"
                     f"{r['run_s']:>8.2f}"
                     f"{r['files_per_s']:>9.1f}{ratio:>11}  "
                     + " ".join(f"{x:.2f}" for x in r["all_run_s"])
                     + ("" if r["rc"] == 0 else f"  EXIT {r['rc']}"))
    lines.append(f"(benchmark took {results['bench_seconds']} s)")
    return "\n".join(lines)
