"""Per-item cost of keeping a file's identifiers in Redis: sealing them (get, the ids load) and
opening them (put), in-process, without Redis.

Each item is a synthetic file's ``get_identifiers`` (55 fields, 1.9 KB of JSON). "seal" is
what a get batch does per file before its one round trip (name the item by a keyed digest,
deflate, AES-GCM, base64); "open" is what put does per file after its one round trip.

    python -m benchmarks.bench_ids_store [--items N] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import timeit

from deid_workers.keys import ClusterKeys
from deid_workers.recipe import get_identifiers
from deid_workers.run.store import RunStore
from deid_workers.synth import make_dataset


class _NoRedis:
    """Enough of a client for a RunStore that never talks to Redis."""

    def register_script(self, script: str) -> None:
        return None


def measure(items: int = 50, rounds: int = 5) -> dict[str, float]:
    """Microseconds per item to seal and to open, fastest of ``rounds``; bytes per item."""
    keys = ClusterKeys.derive(b"bench-ids-store-key-0123456789abcdef")
    store = RunStore(_NoRedis(), "bench", expiry=60, salt="00" * 16, keys=keys)  # type: ignore[arg-type]
    fields = {f"1.2.826.0.1.{i}": get_identifiers(make_dataset(i)) for i in range(items)}
    digest, mapping = store._packed("PID", fields)
    sealed = [(f, v) for f, v in mapping.items() if f != "\x00entity"]
    number = max(1, 2000 // items)
    seal = min(timeit.repeat(lambda: store._packed("PID", fields), number=number,
                             repeat=rounds)) / (number * items)
    opened = min(timeit.repeat(
        lambda: [json.loads(store._open_item(digest, f, v)[1]) for f, v in sealed],
        number=number, repeat=rounds)) / (number * items)
    return {"seal_us": round(seal * 1e6, 1), "open_us": round(opened * 1e6, 1),
            "json_bytes": round(sum(len(json.dumps(v)) for v in fields.values()) / items),
            "stored_bytes": round(sum(len(v) for _, v in sealed) / items)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(measure(args.items, args.rounds)))


if __name__ == "__main__":
    main()
