"""Keep the benchmark code from rotting: corpus builder and floor on a tiny corpus (no cluster,
no timing asserts)."""

from __future__ import annotations

import os
from pathlib import Path

from benchmarks.corpus import build_corpus
from benchmarks.floor import run_floor
from benchmarks.procmem import children, peak_rss_mb, rss_mb


def test_tiny_corpus_and_floor(tmp_path: Path) -> None:
    corpus = build_corpus(str(tmp_path / "corpus"), "tiny")
    assert corpus.files == 23 and corpus.valid == 20 and corpus.corrupt == 3
    paths = corpus.valid_paths()
    assert len(paths) == corpus.valid and not any("corrupt-" in p for p in paths)
    result = run_floor(corpus.root, paths, str(tmp_path / "out"), 2)
    assert result["ok"] == corpus.valid
    written = [n for _, _, names in os.walk(tmp_path / "out") for n in names]
    assert len(written) == corpus.valid


def test_floor_counts_unreadable_files_as_not_ok(tmp_path: Path) -> None:
    corpus = build_corpus(str(tmp_path / "corpus"), "tiny")
    bad = [os.path.join(corpus.root, "small", "corrupt-02-text.dcm")]
    assert run_floor(corpus.root, bad, str(tmp_path / "out"), 1)["ok"] == 0


def test_proc_memory_readers() -> None:
    assert 0 < rss_mb() <= peak_rss_mb()
    assert os.getpid() not in children(os.getpid())


def test_children_finds_children_and_grandchildren() -> None:
    """The sampler follows a run's whole process tree (deid-submit, its redis-server, the
    worker and its pool): children() must find grandchildren, not only an empty list."""
    import signal
    import subprocess
    import sys

    inner = "import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', " \
            "'import time; time.sleep(30)']); print(p.pid, flush=True); p.wait()"
    child = subprocess.Popen([sys.executable, "-c", inner], stdout=subprocess.PIPE, text=True)
    grandchild = 0
    try:
        grandchild = int(child.stdout.readline())
        found = children(os.getpid())
        assert child.pid in found and grandchild in found
        assert children(child.pid) == [grandchild]
    finally:
        if grandchild:
            os.kill(grandchild, signal.SIGKILL)
        child.kill()
        child.wait()
        child.stdout.close()


def test_repeated_rounds_keep_the_fastest_successful_run() -> None:
    from benchmarks.__main__ import keep_fastest
    from benchmarks.cluster import ClusterRun

    def run(action: str, workers: int, run_s: float, rc: int = 0) -> ClusterRun:
        return ClusterRun(action, workers, 50, 10, run_s + 1, run_s, rc, {})

    best: dict = {}
    keep_fastest(best, [run("all", 1, 5.0), run("all", 2, 3.0, rc=1)])
    keep_fastest(best, [run("all", 1, 6.0), run("all", 2, 4.0)])
    keep_fastest(best, [run("all", 1, 4.5), run("all", 2, 1.0, rc=1)])
    assert best[("all", 1)].run_s == 4.5
    assert best[("all", 2)].run_s == 4.0 and best[("all", 2)].rc == 0


def test_memory_probes_run_on_a_few_files() -> None:
    from benchmarks.memprobe import run_probe

    loaded = run_probe("ids-load", 300)
    assert loaded.get("loaded") == 300 and loaded["peak_rss_mb"] > 0, loaded


def test_cluster_runs_put_each_actions_worker_counts_back_to_back(monkeypatch, tmp_path) -> None:
    # a slow spell must fall on both sides of a scaling ratio; put reads the first get's ids
    import benchmarks.__main__ as bench
    from benchmarks.cluster import ClusterRun
    from benchmarks.corpus import Corpus

    calls = []

    def run_cli(action, root, files, *, workers, batch, ids, outfolder, records):
        calls.append((action, workers, ids))
        if action == "get":
            Path(records or outfolder + "-records").mkdir(exist_ok=True)
            Path(records or outfolder + "-records", "deid-ids.json").write_text("{}")
        return ClusterRun(action, workers, batch, files, 1.0, 1.0, 0, {})

    monkeypatch.setattr(bench, "run_cli", run_cli)
    corpus = Corpus(str(tmp_path), 10, 10, 10, 0, 0, 0)
    runs = bench.cluster_runs(corpus, [1, 2], 5)
    assert [(r.action, r.workers) for r in runs] == [
        (a, w) for a in ("all", "get", "inspect", "put") for w in (1, 2)]
    ids = {i for a, _, i in calls if a == "put"}
    assert len(ids) == 1 and all(i is None for a, _, i in calls if a != "put")
    assert not os.path.exists(ids.pop())  # the exports are removed afterwards


def test_floor_scaling_is_the_fewest_processes_time_over_the_most() -> None:
    from benchmarks.__main__ import floor_scaling

    assert floor_scaling({"2": {"seconds": 1.0}, "1": {"seconds": 1.8}}) == 1.8
    assert floor_scaling({"1": {"seconds": 1.8}}) is None


def test_delay_relay_holds_each_direction_and_keeps_order(tmp_path: Path) -> None:
    """The relay the --netem mode falls back on (kernels without tc netem): a real redis-server
    behind it, a PING's round trip gains about twice the delay, and pipelined replies come
    back complete and in order."""
    import socket
    import subprocess
    import sys
    import time

    import redis

    from deid_workers.embedded import find_redis_server

    def port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    rport, lport = port(), port()
    server = subprocess.Popen([find_redis_server(), "--port", str(rport), "--bind", "127.0.0.1",
                              "--save", "", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    relay = subprocess.Popen([sys.executable, "-m", "benchmarks.delayrelay", "--to",
                              f"127.0.0.1:{rport}", "--listen", f"127.0.0.1:{lport}=20"],
                             cwd=str(Path(__file__).resolve().parents[1]))
    try:
        client = redis.Redis(port=lport, socket_timeout=5)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "the relay did not start"
                time.sleep(0.1)
        start = time.perf_counter()
        client.ping()
        assert time.perf_counter() - start >= 0.04  # 20 ms each way
        pipe = client.pipeline(transaction=False)
        for n in range(2000):
            pipe.set(f"k{n}", "x" * n)
            pipe.get(f"k{n}")
        out = pipe.execute()
        assert out[1::2] == [b"x" * n for n in range(2000)]
    finally:
        relay.kill()
        server.kill()
        relay.wait()
        server.wait()


def test_walk_memory_probe_measures_both_walks(tmp_path: Path) -> None:
    from benchmarks.walk_memory import walk_memory

    result = walk_memory(tmp_path, 600)
    assert result["files"] == 600 and 0 < result["lazy_peak_kb"] and 0 < result["held_peak_kb"]
    assert 0 < result["ratio"] <= 1  # a measure, not a target: the ratio lives in benchmarks/
