"""Recall of burned-in PHI, harmless text lost, speed and memory, per OCR engine (issue 21).

    python -m benchmarks.ocr                          # both engines, 40 grey + 20 RGB files
    python -m benchmarks.ocr --engines rapidocr --grey 100 --rgb 50 --json ocr.json
    python -m benchmarks.ocr --set rapidocr:box_thresh=0.4 --policy min_confidence=0.6

The corpus is made in memory by :mod:`deid_workers.synth_burned` (the same files for every
engine: seeds are fixed): 512 x 512 grey images (CT/CR/MR, windowed, min-max or MONOCHROME1)
and 800 x 600 ultrasound-like RGB screens (some YBR_FULL), each with its name, ID, birth date
and accession number drawn into the pixels in varied fonts, sizes, contrasts, positions and
rotations, plus 2-4 harmless annotations.

Each engine runs in its own child process (one worker: one thread), which times
``ocr_dataset`` per file, then ``redact`` and ``verify_redacted`` on the files to redact, and
reports its peak RSS (and, for tesseract, its largest child's). Measures:

- recall: PHI items whose ink (pixels at least half covered by the glyphs) is at least 98%
  inside the verdict's redactions; "recall or held" also counts items of quarantined files,
  which are never released;
- harmless lost: annotation items at least half blacked out;
- quarantined: files the policy sends to a person (unsure text or decode errors);
- verify failures: redacted files whose second read still finds PHI (they are quarantined);
- files/s per worker for the first read, and for read + redact + verify.

The machine is shared: the table prints the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import time
from typing import Any

import numpy as np

COVERED = 0.98
"""Share of a PHI item's ink a redaction must cover for the item to count as found."""

LOST = 0.5
"""Share of a harmless item's ink that, once blacked out, counts it as lost."""


def _parse_settings(items: list[str]) -> dict[str, dict[str, Any]]:
    """``engine:key=value`` -> {engine: {key: value}} with numbers and tuples parsed."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        engine, _, kv = item.partition(":")
        key, _, raw = kv.partition("=")
        value: Any
        try:
            value = json.loads(raw)
            if isinstance(value, list):
                value = tuple(value)
        except json.JSONDecodeError:
            value = raw
        out.setdefault(engine, {})[key] = value
    return out


def _parse_policy(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, _, raw = item.partition("=")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def corpus_specs(grey: int, rgb: int) -> list[dict[str, Any]]:
    """Arguments of make_burned_dataset for each file (patients 100.. so none is a test's)."""
    specs = [{"patient": 100 + i, "rgb": False} for i in range(grey)]
    specs += [{"patient": 500 + i, "rgb": True} for i in range(rgb)]
    return specs


def _coverage(truth: Any, redactions: list[Any]) -> float:
    """Share of an item's ink inside the union of the redactions of its source."""
    h, w = truth.ink.shape
    mask = np.zeros((h, w), bool)
    for r in redactions:
        if r.source != truth.source:
            continue
        x0, y0 = max(r.x0, truth.x0) - truth.x0, max(r.y0, truth.y0) - truth.y0
        x1, y1 = min(r.x1, truth.x1) - truth.x0, min(r.y1, truth.y1) - truth.y0
        if x1 > x0 and y1 > y0:
            mask[y0:y1, x0:x1] = True
    ink = int(truth.ink.sum())
    return float((mask & truth.ink).sum()) / ink if ink else 1.0


def run_engine(name: str, settings: dict[str, Any], policy_settings: dict[str, Any],
               specs: list[dict[str, Any]], verify: bool) -> dict[str, Any]:
    """Everything for one engine, in the calling process (the child)."""
    from deid_workers.ocr import OcrPolicy, identifying_values, load_engine, ocr_dataset, redact, verify_redacted
    from deid_workers.synth_burned import PHI, make_burned_dataset

    t0 = time.perf_counter()
    engine = load_engine(name, **settings)
    load_s = time.perf_counter() - t0
    policy = OcrPolicy(**policy_settings)
    kinds = {"grey": [s for s in specs if not s["rgb"]], "rgb": [s for s in specs if s["rgb"]]}
    result: dict[str, Any] = {"engine": name, "settings": settings, "policy": policy_settings,
                              "load_s": round(load_s, 2), "by_image": {}}
    totals = {"phi": 0, "found": 0, "held": 0, "harmless": 0, "lost": 0, "files": 0, "quarantined": 0,
              "verify_failed": 0, "read_s": 0.0, "full_s": 0.0}
    missed: dict[str, int] = {}
    for kind, group in kinds.items():
        if not group:
            continue
        acc = {k: 0 for k in totals} | {"read_s": 0.0, "full_s": 0.0}
        for spec in group:
            case = make_burned_dataset(**spec)
            t = time.perf_counter()
            verdict = ocr_dataset(case.ds, engine, policy)
            read_s = time.perf_counter() - t
            full_s = read_s
            redactions = verdict.redactions()
            if verdict.status == "redact" and verify:
                t = time.perf_counter()
                cleaned = redact(case.ds, verdict)
                check = verify_redacted(cleaned, identifying_values(case.ds), engine, policy)
                full_s += time.perf_counter() - t
                if check.status != "clean":
                    acc["verify_failed"] += 1
            quarantined = verdict.status == "quarantine"
            acc["files"] += 1
            acc["quarantined"] += quarantined
            acc["read_s"] += read_s
            acc["full_s"] += full_s
            for tb in case.truth:
                cov = _coverage(tb, redactions)
                if tb.kind == PHI:
                    acc["phi"] += 1
                    if cov >= COVERED:
                        acc["found"] += 1
                    else:
                        key = f"{tb.field}|rot{tb.rotation}|{tb.font}|{'small' if tb.size < 15 else 'large'}"
                        missed[key] = missed.get(key, 0) + 1
                    if cov >= COVERED or quarantined:
                        acc["held"] += 1
                else:
                    acc["harmless"] += 1
                    acc["lost"] += cov >= LOST
        for k in totals:
            totals[k] += acc[k]
        result["by_image"][kind] = _summary(acc)
    result["all"] = _summary(totals)
    result["missed"] = dict(sorted(missed.items(), key=lambda kv: -kv[1]))
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["peak_child_rss_mb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
    return result


def _summary(acc: dict[str, Any]) -> dict[str, Any]:
    files = acc["files"] or 1
    return {
        "files": acc["files"], "phi_items": acc["phi"], "harmless_items": acc["harmless"],
        "recall": round(acc["found"] / acc["phi"], 4) if acc["phi"] else None,
        "recall_or_held": round(acc["held"] / acc["phi"], 4) if acc["phi"] else None,
        "harmless_lost": round(acc["lost"] / acc["harmless"], 4) if acc["harmless"] else None,
        "quarantined": round(acc["quarantined"] / files, 4),
        "verify_failed": acc["verify_failed"],
        "read_files_per_s": round(acc["files"] / acc["read_s"], 2) if acc["read_s"] else None,
        "full_files_per_s": round(acc["files"] / acc["full_s"], 2) if acc["full_s"] else None,
    }


def _child(name: str, settings: dict[str, Any], policy: dict[str, Any], specs: list[dict[str, Any]],
           verify: bool, queue: Any) -> None:
    try:
        queue.put(run_engine(name, settings, policy, specs, verify))
    except Exception as exc:  # report, so one missing engine does not hide the other's figures
        queue.put({"engine": name, "error": f"{exc.__class__.__name__}: {exc}"})


def run(engines: list[str], specs: list[dict[str, Any]], settings: dict[str, dict[str, Any]],
        policy: dict[str, Any], verify: bool = True) -> list[dict[str, Any]]:
    """One child process per engine, one after the other (never two at once: shared CPU)."""
    ctx = mp.get_context("spawn")
    out = []
    for name in engines:
        queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=(name, settings.get(name, {}), policy, specs, verify, queue))
        proc.start()
        out.append(queue.get())
        proc.join()
    return out


def table(results: list[dict[str, Any]]) -> str:
    head = ("engine", "images", "files", "recall", "recall|held", "harmless lost", "quarant.",
            "verify fail", "read f/s", "read+redact+verify f/s", "peak RSS MB")
    rows = [head]
    for r in results:
        if "error" in r:
            rows.append((r["engine"], "error: " + r["error"]) + ("",) * (len(head) - 2))
            continue
        rss = f"{r['peak_rss_mb']}" + (f" (+{r['peak_child_rss_mb']})" if r["engine"] == "tesseract" else "")
        for kind in ("grey", "rgb", "all"):
            s = r["all"] if kind == "all" else r["by_image"].get(kind)
            if not s:
                continue
            label = {"grey": "512x512 grey", "rgb": "800x600 RGB", "all": "all"}[kind]
            rows.append((r["engine"], label, str(s["files"]), str(s["recall"]), str(s["recall_or_held"]),
                         str(s["harmless_lost"]), str(s["quarantined"]), str(s["verify_failed"]),
                         str(s["read_files_per_s"]), str(s["full_files_per_s"]), rss if kind == "all" else ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ocr", description=__doc__.split("\n\n")[0])
    p.add_argument("--engines", default="rapidocr,tesseract", help="comma-separated (default: both)")
    p.add_argument("--grey", type=int, default=40, help="512x512 grey files (default 40)")
    p.add_argument("--rgb", type=int, default=20, help="800x600 RGB files (default 20)")
    p.add_argument("--set", action="append", default=[], metavar="ENGINE:KEY=VALUE", help="engine setting")
    p.add_argument("--policy", action="append", default=[], metavar="KEY=VALUE", help="OcrPolicy setting")
    p.add_argument("--no-verify", action="store_true", help="skip redact + verify (read only)")
    p.add_argument("--missed", action="store_true", help="print which PHI items were missed")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = p.parse_args(argv)
    load_before = os.getloadavg()
    started = time.time()
    results = run([e for e in args.engines.split(",") if e], corpus_specs(args.grey, args.rgb),
                  _parse_settings(args.set), _parse_policy(args.policy), not args.no_verify)
    load_after = os.getloadavg()
    print(table(results))
    print(f"\nload average before {load_before[0]:.2f} / after {load_after[0]:.2f} (1 min), "
          f"{os.cpu_count()} CPUs, {time.time() - started:.0f} s; one worker process, one thread per engine")
    if args.missed:
        for r in results:
            print(f"\n{r['engine']} missed:", json.dumps(r.get("missed", {}), indent=1))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"results": results, "load_before": load_before, "load_after": load_after,
                       "cpus": os.cpu_count()}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
