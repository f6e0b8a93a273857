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
