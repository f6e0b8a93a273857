"""Per-file cost of keeping a run's paths in Redis: a batch recorded by the producer, started
and committed by a worker, in-process, on a redis-server over a unix socket (or fakeredis).

One round is what a 100-file batch costs the store: ``add_batch`` (the producer), then
``start_batch(lists=True)`` and ``commit_batch`` of a put with a run-log entry per file, a
skipped and a failed file (the worker), then a get commit with its valid list and an inspect
commit with a verdict per file. Figures are microseconds per file, fastest of ``rounds``.

    python -m benchmarks.bench_run_paths [--files N] [--rounds R] [--fakeredis]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import timeit
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis

from deid_workers.embedded import find_redis_server
from deid_workers.keys import ClusterKeys
from deid_workers.run.store import RunStore

_VERDICT = {"flagged": True, "results": [{"group": "blacklist", "reason": "burned in"}]}


@contextmanager
def _client(fake: bool) -> Iterator[redis.Redis]:
    if fake:
        import fakeredis

        yield fakeredis.FakeRedis(decode_responses=True)
        return
    with tempfile.TemporaryDirectory() as folder:
        sock = os.path.join(folder, "redis.sock")
        proc = subprocess.Popen([find_redis_server(), "--port", "0", "--unixsocket", sock,
                                 "--save", "", "--appendonly", "no", "--dir", folder],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            client = redis.Redis(unix_socket_path=sock, decode_responses=True)
            for _ in range(200):
                try:
                    client.ping()
                    break
                except redis.RedisError:
                    timeit.time.sleep(0.02)  # type: ignore[attr-defined]
            yield client
            client.close()
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def measure(files: int = 100, rounds: int = 5, fake: bool = False) -> dict[str, float]:
    keys = ClusterKeys.derive(b"bench-run-paths-key-0123456789abcdef")
    paths = [f"DOE_JOHN_{i // 10}/series {i % 10}/IM{i:05d}.dcm" for i in range(files)]
    log = [("written", None) for _ in paths]
    out: dict[str, float] = {}
    with _client(fake) as client:
        store = RunStore.create(client, "bench", {"action": "all"}, expiry=600, keys=keys)
        n = iter(range(10**9))

        def put_round() -> None:
            b = next(n)
            store.add_batch(b, paths)
            start = store.start_batch("put", b, 0, "w\tt", lists=True)
            assert start.paths == paths
            store.commit_batch("put", b, {"files": files}, log=log, taker="w\tt",
                               outcomes={"skipped": {paths[0]: "not DICOM"},
                                         "failed": {paths[1]: "OSError"}})

        def get_round() -> None:
            b = next(n)
            store.commit_batch("get", b, {"files": files}, valid=paths,
                               valid_keys=[("P", f"1.2.{i}") for i in range(files)])

        def inspect_round() -> None:
            b = next(n)
            store.commit_batch("inspect", b, {"files": files},
                               outcomes={"inspect": {p: json.dumps(_VERDICT) for p in paths}})

        def per_file(fn: Callable[[], Any], number: int = 20) -> float:
            best = min(timeit.repeat(fn, number=number, repeat=rounds))
            return round(best / (number * files) * 1e6, 2)

        out["put_batch_us_per_file"] = per_file(put_round)
        out["get_commit_us_per_file"] = per_file(get_round)
        out["inspect_commit_us_per_file"] = per_file(inspect_round)
        store.purge()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--fakeredis", action="store_true")
    args = parser.parse_args()
    print(json.dumps(measure(args.files, args.rounds, args.fakeredis)))


if __name__ == "__main__":
    main()
