"""Memory at scale without a million DICOM files (issue 6, point 3).

Three probes, each run in a child process so its RSS is its own:

``producer``: the real submit path (:func:`deid_workers.producer.submit`: run record, walk,
batches into Redis, the chord of ``deid.get`` tasks) against a private redis-server with no
worker, fed by a generator of relative paths in place of the walk of a real tree
(``producer.iter_batches`` is swapped for it). RSS is read when 10,000 files have been
enqueued and at the end; flat means the producer streams. Redis ``used_memory`` per file is
what the batches and queued task messages cost before any worker runs.

``ids``: :class:`deid_workers.ids.export.IdsWriter` exporting N files' identifiers from a
generator (entities of 100 items, fields shaped like ``get_identifiers`` on a synth file, as
JSON text the way the run store hands them to the export);
peak RSS must stay far below 1 GB.

``ids-load``: ``put --ids deid-ids.json`` through the real submit path against a private
redis-server: the producer reads, checks and cuts the file (written first as the ``ids`` probe
writes it) into chunks for the workers; with no worker it writes them into Redis itself, the
last few (left to workers) at the end; flat RSS at 10,000 items and at the end means it never
holds the whole file.

    python -m benchmarks.memprobe producer --files 1000000 [--batch 100]
    python -m benchmarks.memprobe ids --files 1000000
    python -m benchmarks.memprobe ids-load --files 1000000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from .cluster import BENCH_SECRET
from .procmem import peak_rss_mb, rss_mb

__all__ = ["run_probe", "probe_producer", "probe_ids", "probe_ids_load", "write_ids_file"]

CHECKPOINT = 10_000


def _fake_batches(n_files: int, batch: int, marks: dict[str, float]) -> Iterator[list[str]]:
    """Batches of plausible relative paths (patient/study/series/image), RSS at checkpoints."""
    made = 0
    while made < n_files:
        size = min(batch, n_files - made)
        out = []
        for k in range(made, made + size):
            out.append(f"patient-{k // 1000:05d}/study-{k // 100 % 10:03d}/"
                       f"series-{k // 10 % 10:03d}/image-{k:07d}.dcm")
        made += size
        yield out
        if made >= CHECKPOINT and "rss_at_10k_mb" not in marks:
            marks["rss_at_10k_mb"] = rss_mb()
            marks["t_at_10k_s"] = time.perf_counter()


@contextlib.contextmanager
def _private_redis() -> Iterator[tuple[str, str, Any]]:
    """A redis-server of the probe's own in a temp folder: (temp folder, URL, client)."""
    from deid_workers.embedded import find_redis_server
    from deid_workers.run.client import redis_client

    tmp = tempfile.mkdtemp(prefix="bench-probe-")
    sock = os.path.join(tmp, "redis.sock")
    redis = subprocess.Popen(
        [find_redis_server(), "--port", "0", "--unixsocket", sock, "--save", "",
         "--appendonly", "no", "--dir", tmp], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = "redis+socket://" + sock
        client = redis_client(url)
        for _ in range(200):
            try:
                if os.path.exists(sock) and client.ping():
                    break
            except Exception:
                pass
            time.sleep(0.05)
        yield tmp, url, client
    finally:
        os.killpg(redis.pid, 15)
        redis.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


def probe_producer(n_files: int, batch: int) -> dict[str, Any]:
    from deid_workers import producer
    from deid_workers.app import app, configure
    from deid_workers.config import Settings

    with _private_redis() as (tmp, url, client):
        settings = Settings(broker_url=url, batch_size=batch, secret=BENCH_SECRET.encode())
        configure(app, settings)
        used0 = int(client.info("memory")["used_memory"])
        marks: dict[str, float] = {}
        producer.iter_batches = lambda *a, **k: _fake_batches(n_files, batch, marks)  # type: ignore[assignment]
        input_dir = os.path.join(tmp, "in")
        os.makedirs(input_dir)
        rss_start = rss_mb()
        t0 = time.perf_counter()
        sub = producer.Submission(action="get", input=input_dir,
                                  outfolder=os.path.join(tmp, "out"))
        store = producer.submit(settings, sub, client)
        t1 = time.perf_counter()
        used1 = int(client.info("memory")["used_memory"])
        counted = int(store.counters().get("walk:files", 0))
        return {
            "files": n_files, "batch": batch, "enqueued_files": counted,
            "seconds": round(t1 - t0, 2),
            "files_per_s": round(n_files / (t1 - t0), 1),
            "rss_start_mb": round(rss_start, 1),
            "rss_at_10k_mb": round(marks.get("rss_at_10k_mb", 0.0), 1),
            "rss_end_mb": round(rss_mb(), 1),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "redis_used_delta_mb": round((used1 - used0) / 2**20, 2),
            "redis_bytes_per_file_queued": round((used1 - used0) / n_files, 1),
        }


def probe_ids_load(n_files: int) -> dict[str, Any]:
    """``put --ids deid-ids.json`` of ``n_files`` files: the producer's RSS while it streams
    the file into Redis (the file is written first, by the ids export's own writer)."""
    from deid_workers import prepare, producer
    from deid_workers.app import app, configure
    from deid_workers.config import Settings
    from deid_workers.ids.export import IDS_JSON

    with _private_redis() as (tmp, url, client):
        write_ids_file(tmp, n_files)
        path = os.path.join(tmp, IDS_JSON)
        size_mb = os.path.getsize(path) / 1e6
        settings = Settings(broker_url=url, secret=BENCH_SECRET.encode())
        os.environ["DEID_SECRET"] = BENCH_SECRET  # the in-process deid.load reads its own key
        configure(app, settings)
        marks: dict[str, float] = {}
        real = prepare.iter_ids_chunks  # prepare cuts the file before submit sends it

        def watched(p: str, **kw: Any) -> Iterator[tuple[str, int]]:
            items = 0
            for text, count in real(p, **kw):
                yield text, count
                items += count
                if items >= CHECKPOINT and "rss_at_10k_mb" not in marks:
                    marks["rss_at_10k_mb"] = rss_mb()

        prepare.iter_ids_chunks = watched  # type: ignore[assignment]
        os.makedirs(os.path.join(tmp, "in"))
        rss_start = rss_mb()
        t0 = time.perf_counter()
        sub = producer.Submission(action="put", input=os.path.join(tmp, "in"),
                                  outfolder=os.path.join(tmp, "out"), ids_path=path)
        store = producer.submit(settings, sub, client)
        from deid_workers.tasks.load import run_load  # the chunks left to (absent) workers

        for chunk in range(int(store.record_fields("ids_chunks")[0])):
            run_load(store.run_id, chunk)
        t1 = time.perf_counter()
        loaded = sum(1 for _, items in store.iter_ids_json() for _ in items)
        return {
            "files": n_files, "loaded": loaded, "json_mb": round(size_mb, 1),
            "seconds": round(t1 - t0, 2),
            "rss_start_mb": round(rss_start, 1),
            "rss_at_10k_mb": round(marks.get("rss_at_10k_mb", 0.0), 1),
            "rss_end_mb": round(rss_mb(), 1),
            "peak_rss_mb": round(peak_rss_mb(), 1),
        }


def _fields_template() -> dict[str, Any]:
    from deid_workers.recipe import get_identifiers
    from deid_workers.synth import make_dataset

    return dict(get_identifiers(make_dataset(1, 0, 0, 0)))


def write_ids_file(folder: str, n_files: int, per_entity: int = 100,
                   marks: dict[str, float] | None = None) -> tuple[str, str, int]:
    """Export ``n_files`` generated files' ids into ``folder``; (pkl, json, entities)."""
    from deid_workers.ids.export import IdsWriter

    template = _fields_template()
    keys = list(template)

    def items(e: int, count: int) -> Iterator[tuple[str, bytes]]:
        for i in range(count):
            n = e * per_entity + i
            fields = {k: (f"{template[k]}-{n}" if isinstance(template[k], str) else template[k])
                      for k in keys}
            yield f"2.25.{n:012d}", json.dumps(fields).encode()  # as the run store keeps them
            if n + 1 == CHECKPOINT and marks is not None:
                marks["rss_at_10k_mb"] = rss_mb()

    with IdsWriter(folder) as writer:
        e = 0
        left = n_files
        while left > 0:
            count = min(per_entity, left)
            writer.add_entity_json(f"PID-{e:07d}", items(e, count))
            left -= count
            e += 1
    return str(writer.pkl_path), str(writer.json_path), e


def probe_ids(n_files: int) -> dict[str, Any]:
    tmp = tempfile.mkdtemp(prefix="bench-ids-")
    marks: dict[str, float] = {}
    try:
        rss_start = rss_mb()
        t0 = time.perf_counter()
        pkl, js, entities = write_ids_file(tmp, n_files, marks=marks)
        t1 = time.perf_counter()
        return {
            "files": n_files, "entities": entities, "fields_per_item": len(_fields_template()),
            "seconds": round(t1 - t0, 2),
            "rss_start_mb": round(rss_start, 1),
            "rss_at_10k_mb": round(marks.get("rss_at_10k_mb", 0.0), 1),
            "rss_end_mb": round(rss_mb(), 1),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "pkl_mb": round(os.path.getsize(pkl) / 1e6, 1),
            "json_mb": round(os.path.getsize(js) / 1e6, 1),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_probe(kind: str, files: int, batch: int = 100) -> dict[str, Any]:
    """Run a probe in a child process (fresh RSS); returns its JSON result."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH", "")) if p)
    out = subprocess.run([sys.executable, "-m", "benchmarks.memprobe", kind, "--files",
                          str(files), "--batch", str(batch)], capture_output=True, text=True,
                         env=env, check=False)
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        return {"error": (out.stderr.strip().splitlines() or ["no output"])[-1]}
    return dict(json.loads(lines[-1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=("producer", "ids", "ids-load"))
    p.add_argument("--files", type=int, default=1_000_000)
    p.add_argument("--batch", type=int, default=100)
    a = p.parse_args(argv)
    probes = {"producer": lambda: probe_producer(a.files, a.batch),
              "ids": lambda: probe_ids(a.files), "ids-load": lambda: probe_ids_load(a.files)}
    result = probes[a.kind]()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
