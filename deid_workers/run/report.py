"""What a run did, for people (a table) and scripts (JSON), plus the inspect report files.

Everything here reads the store and formats; nothing decides. The summary never shows a header
value: it has counts, relative paths and reasons.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from ..fs.atomicfile import AtomicFile
from .notices import KINDS as NOTICE_KINDS
from .notices import Notice, as_json, counts_of, decode, shown
from .plan import STAGE_ORDER, first_stage, stages_of
from .store import RunStore
from .totals import stage_total

__all__ = [
    "INSPECT_TSV",
    "INSPECT_JSON",
    "LIST_LIMIT",
    "write_inspect_report",
    "iter_inspect",
    "summarize",
    "render_table",
    "run_ok",
    "run_status",
    "render_status",
    "NoticeFeed",
    "ids_coverage",
    "file_lines",
]

INSPECT_TSV = "deid-inspect.tsv"
INSPECT_JSON = "deid-inspect.json"
LIST_LIMIT = 20
"""Paths listed per category in the table (all of them are in the JSON summary)."""

TAKEN_LIMIT = 8
"""Batches at work listed in the ``--status`` table (all of them are in its JSON)."""


def iter_inspect(store: RunStore, n_batches: int) -> Any:
    """(path, verdict) in walk order, a hundred batches at a time: stable output, bounded memory."""
    for path, raw in store.iter_batch_outcomes("inspect", n_batches):
        yield path, json.loads(raw)


_VERDICT_TAILS = 1024
"""Distinct verdicts whose report text is kept while a report is written (most files share
one: clean, or flagged by the same label)."""


def write_inspect_report(store: RunStore, outfolder: str, n_batches: int, *,
                         ocr: bool = False) -> tuple[str, str]:
    """``deid-inspect.tsv`` (file, flagged, group, reason) and ``deid-inspect.json`` beside it.

    One TSV row per file; a file flagged by several labels lists them joined by ``; ``. With
    ``ocr`` (``--ocr``) the TSV has four more columns, the OCR verdict (empty for a file OCR
    did not read) and its counts of text boxes, PHI boxes and unsure boxes; the JSON entry
    holds the verdict whole under ``ocr`` (counts and box geometry, never text).
    Written to temporary names and renamed, so a reader never sees half a report. Each
    distinct verdict is formatted once: the report is serial work at the end of a run.
    """
    os.makedirs(outfolder, exist_ok=True)
    tsv = os.path.join(outfolder, INSPECT_TSV)
    js = os.path.join(outfolder, INSPECT_JSON)
    tails: dict[str, tuple[str, str]] = {}
    with AtomicFile(tsv, newline="") as ft, AtomicFile(js) as fj:
        ft.write("file\tflagged\tgroup\treason" + ("\tocr\tocr_boxes\tocr_phi\tocr_unsure"
                                                     if ocr else "") + "\n")
        fj.write("[")
        sep = "\n "
        for path, raw in store.iter_batch_outcomes("inspect", n_batches):
            tail = tails.get(raw)
            if tail is None:
                if len(tails) >= _VERDICT_TAILS:
                    tails.clear()
                tail = tails[raw] = _verdict_tails(json.loads(raw), ocr)
            ft.write(_tsv(path) + tail[0])
            fj.write(sep + '{"file": ' + json.dumps(path) + tail[1])
            sep = ",\n "
        fj.write("\n]\n")
    return tsv, js


def _verdict_tails(verdict: dict[str, Any], ocr: bool = False) -> tuple[str, str]:
    """What follows the path in a TSV row and in a JSON entry, for one verdict."""
    results = verdict.get("results") or []
    flagged = bool(verdict.get("flagged"))
    groups = "; ".join(str(r.get("group", "")) for r in results)
    reasons = "; ".join(str(r.get("reason", "")) for r in results)
    cells = ["", str(flagged).lower(), _tsv(groups), _tsv(reasons)]
    entry: dict[str, Any] = {"flagged": flagged, "results": results}
    if ocr:
        found = verdict.get("ocr")
        if found is None:
            cells += ["", "", "", ""]
        else:
            counts = found.get("counts") or {}
            cells += [str(found.get("status", "")), str(len(found.get("boxes") or ())),
                      str(counts.get("phi", 0)), str(counts.get("unsure", 0))]
        entry["ocr"] = found
    row = "\t".join(cells) + "\n"
    return row, ", " + json.dumps(entry, default=str)[1:]


def _tsv(text: str) -> str:
    return text.replace("\t", " ").replace("\n", " ")


def summarize(store: RunStore, *, limit: int | None = LIST_LIMIT) -> dict[str, Any]:
    """The run's summary: counts per stage, outcome lists (up to ``limit`` each), where things are."""
    rec = store.record()
    c = store.counters()
    action = rec.get("action")
    first = first_stage(action)
    skipped = dict(_limited(store, "skipped", None))
    reasons = Counter(skipped.values())
    summary: dict[str, Any] = {
        "run_id": store.run_id,
        "action": action,
        "state": rec.get("state"),
        "input": rec.get("input"),
        "outfolder": rec.get("outfolder"),
        "records": rec.get("records"),
        "files_found": c.get("walk:files", 0),
        "batches": rec.get("n_batches", c.get("walk:batches", 0)),
        "skipped": len(skipped),
        "skip_reasons": dict(reasons),
        "failed": store.outcome_count("failed"),
        "missing_ids": store.outcome_count("missing"),
        "poison": store.outcome_count("poison"),
    }
    summary["valid"] = (summary["files_found"] - summary["skipped"] - summary["failed"]
                        - summary["poison"])
    if action in ("put", "all"):
        summary["written"] = c.get("put:written", 0) + c.get("clean:written", 0)
        summary["refused"] = c.get("put:refused", 0) + c.get("clean:refused", 0)
        if rec.get("clean_pixels") or rec.get("ocr"):
            from ..fs.folders import run_quarantine

            summary["cleaned"] = c.get("clean:cleaned", 0)
            summary["quarantined"] = store.outcome_count("quarantined")
            summary["quarantine"] = run_quarantine(rec)
        summary["run_log"] = rec.get("run_log")
        summary["put_done"] = c.get("put:files", 0)
        summary["layout"] = rec.get("layout") or "mirror"
    if rec.get("ocr"):
        summary["ocr"] = ocr_summary(c, str(rec["ocr"]), action in ("put", "all"))
    if action == "inspect":
        summary["inspected"] = c.get("inspect:inspected", 0)
        summary["flagged"] = c.get("inspect:flagged", 0)
        summary["clean"] = c.get("inspect:clean", 0)
        summary["report_tsv"] = rec.get("report_tsv")
        summary["report_json"] = rec.get("report_json")
    if action in ("get", "all"):
        summary["ids_pkl"] = rec.get("ids_pkl")
        summary["ids_json"] = rec.get("ids_json")
    summary["done"] = {s: c.get(f"{s}:files", 0) for s in ("get", "inspect", "put")
                       if s == first or (s == "put" and action == "all")}
    created = float(rec.get("created") or 0)
    end = float(rec.get("finished") or time.time())
    summary["elapsed_s"] = round(max(0.0, end - created), 2)
    summary["key"] = rec.get("key_location")
    summary["lists"] = {kind: dict(_limited(store, kind, limit))
                        for kind in ("skipped", "refused", "failed", "missing", "poison",
                                     "residual", "quarantined")}
    if rec.get("verify"):
        summary["residual_phi"] = store.outcome_count("residual")
    kinds = counts_of(c)
    summary["warnings"] = {"total": sum(kinds.values()), "kinds": kinds,
                           "first": as_json(first_notices(store, limit or LIST_LIMIT)
                                            if kinds else [])}
    if action in ("put", "all"):
        summary["no_ids"] = kinds.get("no_ids", 0)
    if rec.get("input_file"):
        summary["input_file"] = rec["input_file"]
    if rec.get("embedded"):
        summary["embedded"] = True
    if rec.get("key_created"):
        summary["key_created"] = True
    return summary


def ocr_summary(c: Mapping[str, int], mode: str, cleans: bool) -> dict[str, Any]:
    """What ``--ocr`` did, from the counters: files selected and read, their verdicts, the
    text boxes found (PHI, unsure) and, for put/all, blacked out and verified; never text."""
    out: dict[str, Any] = {
        "mode": mode,
        "selected": c.get("put:to_ocr", 0) + c.get("inspect:to_ocr", 0),
        "read": c.get("ocr:read", 0),
        "clean": c.get("ocr:clean", 0),
        "redact": c.get("ocr:redact", 0),
        "quarantine": c.get("ocr:quarantine", 0),
        "boxes_found": c.get("ocr:boxes", 0),
        "phi_boxes": c.get("ocr:phi", 0),
        "unsure_boxes": c.get("ocr:unsure", 0),
    }
    if cleans:
        out["boxes_cleaned"] = c.get("clean:ocr_boxes_cleaned", 0)
        out["verified"] = c.get("clean:ocr_verified", 0)
        out["phi_left"] = c.get("clean:ocr_phi_left", 0)
    return out


def first_notices(store: RunStore, limit: int) -> list[Notice]:
    """The run's first ``limit`` warnings: get's, then put's, then clean's, each in walk
    order (batches that kept none are not read)."""
    out: list[Notice] = []
    for stage in ("get", "put", "clean"):
        numbers = sorted(store.notice_batches(stage))
        for start in range(0, len(numbers), 100):
            for _n, raw in store.notices(stage, numbers[start:start + 100]):
                out += decode(raw)[1]
                if len(out) >= limit:
                    return out[:limit]
    return out


def _limited(store: RunStore, kind: str, limit: int | None) -> list[tuple[str, str]]:
    out = []
    for i, kv in enumerate(sorted(store.iter_outcomes(kind))):
        if limit is not None and i >= limit:
            break
        out.append(kv)
    return out


class NoticeFeed:
    """The run's warnings about files, each given once to ``say`` as batches commit them
    (the producer prints them while it waits, in deid's words: :mod:`deid_workers.run.notices`).

    :meth:`watch` reads nothing unless the counters say there are new ones; then only the
    batches not shown yet are read. get's check for shared ids items can add to a batch
    after its commit, so :meth:`drain` with ``final`` reads get's batches again and says
    what was added.
    """

    STAGES = ("get", "put", "clean")

    def __init__(self, store: RunStore, say: Callable[[str], None]) -> None:
        self.store = store
        self.say = say
        self.total = 0
        self.shown: dict[tuple[str, int], int] = {}  # (stage, batch) -> notices said

    def watch(self, rec: Mapping[str, Any], counters: Mapping[str, int]) -> None:
        total = sum(counts_of(counters).values())
        if total != self.total:
            self.total = total
            self.drain()

    def drain(self, *, final: bool = False) -> None:
        for stage in self.STAGES:
            numbers = sorted(n for n in self.store.notice_batches(stage)
                             if (stage, n) not in self.shown or (final and stage == "get"))
            for start in range(0, len(numbers), 100):
                for n, raw in self.store.notices(stage, numbers[start:start + 100]):
                    self._say(stage, n, raw)

    def _say(self, stage: str, number: int, raw: str | None) -> None:
        done = self.shown.get((stage, number), 0)
        said = 0

        def one(notice: Notice) -> None:
            nonlocal said
            said += 1
            if said > done:
                self.say(notice.line())

        shown([(number, raw)], one)
        self.shown[(stage, number)] = max(done, said)


def ids_coverage(summary: Mapping[str, Any], ids_name: str) -> str | None:
    """What a finished put must say when the ids file ``ids_name`` covers none or only some of
    its valid files (each such file lost what its ``var:`` values would have given it, and the
    run exits 1); None when every file had its ids, or for another action."""
    missed, valid = int(summary.get("no_ids") or 0), int(summary.get("valid") or 0)
    if summary.get("action") != "put" or summary.get("state") != "finished" or not missed:
        return None
    if missed >= valid:
        return (f"The ids in {ids_name} match none of the {valid} input files (the ids of "
                "another input?)")
    return f"The ids in {ids_name} match only {valid - missed} of the {valid} input files"


def file_lines(summary: Mapping[str, Any], ids_name: str = "--ids") -> list[tuple[int, str]]:
    """``(level, text)`` of the lines deid prints about files that the end of a run can say,
    in deid's words: each listed skipped file (WARNING, deid's ``Cannot read input file``
    with the reason's head), each listed refused one (ERROR), then what a put's ids missed
    (:func:`ids_coverage`). The listed ones: the summary's first of each kind, the rest
    counted in the table. The workers' own warnings are said as batches commit
    (:class:`NoticeFeed`)."""
    lists = summary.get("lists") or {}
    out = [(logging.WARNING, f"Cannot read input file {path}, skipping ({_short(why)}).")
           for path, why in (lists.get("skipped") or {}).items()]
    out += [(logging.ERROR, f"{path} already exists, overwrite set to False. Not writing.")
            for path in lists.get("refused") or {}]
    coverage = ids_coverage(summary, ids_name)
    if coverage:
        out.append((logging.ERROR, coverage))
    return out


def run_ok(summary: Mapping[str, Any]) -> bool:
    """True when every valid file was written (put/all), inspected, or had its ids read (get)."""
    if (summary.get("state") != "finished" or summary.get("failed") or summary.get("poison")
            or summary.get("residual_phi")):
        return False
    action = summary.get("action")
    if action in ("put", "all"):
        done = (summary.get("written", 0) + summary.get("cleaned", 0)
                + summary.get("quarantined", 0))  # quarantined: held for review, by design
        # A file the ids did not cover lost what its var: values would have given it.
        return (summary.get("refused", 0) == 0 and not summary.get("no_ids")
                and done == summary["valid"])
    if action == "inspect":
        return summary.get("inspected", 0) == summary["valid"]
    return True


def _short(reason: Any) -> str:
    """The part of a reason before its advice (``damaged or truncated DICOM``)."""
    text = str(reason)
    head, sep, _ = text.partition(": ")
    return head if sep else text


def render_table(summary: Mapping[str, Any]) -> str:
    """A short human summary; counts first (each with its breakdown just under it), then
    where things are, then what went wrong, file by file (the first ones)."""
    run = f"{summary['run_id']} ({summary['action']}, {summary['state']})"
    if summary.get("embedded"):
        # Its Redis is gone: --status cannot find it; the run log keeps its account.
        run += "; embedded: its state went with the private Redis"
    rows: list[tuple[str, Any]] = [
        ("run", run),
        ("files found", summary["files_found"]),
        ("valid", summary["valid"]),
        ("skipped", summary["skipped"]),
    ]
    rows += [("", f"skipped {n}: {reason}")
             for reason, n in sorted(summary.get("skip_reasons", {}).items())]
    for key, label in (("written", "written"), ("cleaned", "pixels cleaned"),
                       ("quarantined", "quarantined"), ("refused", "refused"),
                       ("inspected", "inspected"), ("flagged", "flagged")):
        if key in summary:
            rows.append((label, summary[key]))
    ocr = summary.get("ocr")
    if ocr:
        rows.append((f"OCR ({ocr['mode']})",
                     f"{ocr['read']} read of {ocr['selected']} selected: {ocr['clean']} no PHI, "
                     f"{ocr['redact']} to black out, {ocr['quarantine']} held"))
        boxes = f"{ocr['boxes_found']} found, {ocr['phi_boxes']} PHI, {ocr['unsure_boxes']} unsure"
        if "boxes_cleaned" in ocr:
            boxes += (f", {ocr['boxes_cleaned']} blacked out; {ocr['verified']} files verified, "
                      f"{ocr['phi_left']} with PHI left")
        rows.append(("OCR text boxes", boxes))
    rows.append(("failed", summary["failed"]))
    if summary.get("poison"):
        rows.append(("poison files", summary["poison"]))
    if "residual_phi" in summary:
        rows.append(("residual PHI", summary["residual_phi"]))
    if summary.get("missing_ids"):
        rows.append(("missing ids", summary["missing_ids"]))
    if summary.get("no_ids"):
        rows.append(("no ids", f"{summary['no_ids']} of {summary['valid']} valid files (none "
                               "in the ids given)"))
    warnings = summary.get("warnings") or {}
    if warnings.get("total"):
        rows.append(("warnings", warnings["total"]))
        rows += [("", f"{n} {NOTICE_KINDS.get(kind, kind)}")
                 for kind, n in (warnings.get("kinds") or {}).items()]
    rows.append(("elapsed", f"{summary['elapsed_s']} s"))
    if summary.get("input"):
        shown = summary["input"]
        if summary.get("input_file"):
            shown = os.path.join(shown, summary["input_file"])
        rows.append(("input", shown))
    if summary.get("action") != "get":
        layout = summary.get("layout")
        rows.append(("output folder", summary.get("outfolder")
                     if not layout else f"{summary.get('outfolder')} (layout {layout})"))
    if summary.get("records") and summary.get("action") != "inspect":
        rows.append(("records folder", summary["records"]))
    for key, label in (("ids_pkl", "ids (pickle)"), ("ids_json", "ids (JSON)"),
                       ("report_tsv", "report (TSV)"), ("report_json", "report (JSON)"),
                       ("quarantine", "quarantine folder"), ("run_log", "run log")):
        if summary.get(key):
            rows.append((label, summary[key]))
    if summary.get("key"):
        rows.append(("secret key", summary["key"] + (
            " (created by this run: keep it, runs with it give the same pseudonyms)"
            if summary.get("key_created") else "")))
    width = max(len(label) for label, _ in rows)
    lines = [f"{label.ljust(width)}  {value}" for label, value in rows]
    for kind in ("skipped", "refused", "failed", "missing", "poison", "residual", "quarantined"):
        entries = summary.get("lists", {}).get(kind) or {}
        if entries:
            lines.append(f"{kind}:")
            # Skip reasons are given in full once each above; here their first part says
            # which one (the JSON summary and the run log keep every reason whole).
            lines += [f"  {path}: {_short(why) if kind == 'skipped' else why}"
                      for path, why in entries.items()]
            total = summary.get({"missing": "missing_ids", "residual": "residual_phi"}.get(
                kind, kind), len(entries))
            if isinstance(total, int) and total > len(entries):
                lines.append(f"  ... and {total - len(entries)} more (see --json)")
    first = warnings.get("first") or []
    if first:
        lines.append("warnings:")
        lines += [f"  {w['text']}" for w in first]
        if warnings.get("total", 0) > len(first):
            where = " (the run log has each file's)" if summary.get("run_log") else ""
            lines.append(f"  ... and {warnings['total'] - len(first)} more{where}")
    return "\n".join(lines)


def run_status(store: RunStore, *, now: float | None = None) -> dict[str, Any]:
    """Where a run stands, stage by stage, for ``deid-submit --status`` (counts and times only).

    ``total`` is None while it is not known yet (the walk is still listing files, or ``put``
    of ``--action all`` waits for get to say which files are valid). ``rate`` is files per
    second from the stage's start (the run's creation for the first stage, the end of finalize
    for put after it) to its last batch, or to now while it runs.
    """
    now = time.time() if now is None else now
    rec = store.record()
    c = store.counters()
    t = store.times()
    action = str(rec.get("action"))
    n_batches = rec.get("n_batches")
    walk_done = bool(rec.get("walk_done"))
    created = float(rec.get("created") or now)
    finished = rec.get("finished")
    found = c.get("walk:files", 0)
    expected = stages_of(action, ids=bool(rec.get("ids_path")),
                         clean_pixels=bool(rec.get("clean_pixels")), ocr=rec.get("ocr"))
    order = (*expected, *(s for s in STAGE_ORDER if s not in expected))
    stages = [s for s in order
              if s in expected or c.get(f"{s}:batches") or f"{s}:last" in t]
    rows = []
    committed: dict[str, set[int]] = {}
    for stage in stages:
        committed[stage] = store.done_batches(stage)
        done_batches = len(committed[stage])
        batches_total: int | None
        if stage == "finalize":
            batches_total = 1
            done, total = done_batches, 1
            shards = int(rec.get("export_shards") or 1)
            if shards > 1:  # a sharded ids export: its batches are the shards written
                batches_total = shards
                done_batches = shards if done else len(store.done_batches("export"))
        else:
            counted = stage_total(stage, rec, c)
            done, total = counted.done, counted.total if counted.final else None
            if stage == "load":  # items of the ids file (put --ids), in chunks
                chunks = rec.get("ids_chunks")
                batches_total = int(chunks) if chunks is not None else None
            else:
                batches_total = int(n_batches) if walk_done and n_batches is not None else None
        start = created
        if stage == "put" and action == "all":
            start = t.get("finalize:last", t.get("put:first", created))
        complete = (bool(done) if stage == "finalize"
                    else batches_total is not None and done_batches >= batches_total)
        end = t.get(f"{stage}:last", now) if complete else (float(finished) if finished else now)
        span = end - start
        rows.append({
            "stage": stage,
            "done": done,
            "total": total,
            "batches_done": done_batches,
            "batches_total": batches_total,
            "failed": c.get(f"{stage}:failed", 0),
            "skipped": c.get(f"{stage}:skipped", 0),
            "rate": round(done / span, 2) if stage != "finalize" and done and span > 0 else None,
            "unit": "items" if stage == "load" else "files",
            "complete": complete,
        })
    return {
        "run_id": store.run_id,
        "action": action,
        "state": rec.get("state"),
        "stage": rec.get("stage"),
        "files_found": found,
        "walk_done": walk_done,
        "batches": n_batches if n_batches is not None else c.get("walk:batches", 0),
        "started": _iso(created),
        "finished": _iso(float(finished)) if finished else None,
        "elapsed_s": round(max(0.0, (float(finished) if finished else now) - created), 2),
        "error": rec.get("error"),
        "stages": rows,
        **batch_takers(store, committed, now),
    }


def batch_takers(store: RunStore, committed: Mapping[str, set[int]], now: float
                 ) -> dict[str, Any]:
    """Which worker took which batch: ``taken`` lists the batches started and not committed,
    each with its worker, whether that worker is alive (its liveness key exists) and how long
    ago it started; ``workers`` counts the batches each worker took last."""
    from .names import worker_key

    takers = store.takers()
    open_ = []
    per_worker: Counter[str] = Counter()
    for name, (worker, since) in takers.items():
        per_worker[worker.partition("#")[0]] += 1
        stage, _, batch = name.rpartition(":")
        if stage in committed and batch.isdigit() and int(batch) not in committed[stage]:
            open_.append((stage, int(batch), worker, since))
    open_.sort(key=lambda t: (STAGE_ORDER.index(t[0]) if t[0] in STAGE_ORDER else 99, t[1]))
    workers = sorted({w for *_, w, _s in open_})
    pipe = store.client.pipeline(transaction=False)
    for worker in workers:
        pipe.exists(worker_key(worker))
    alive = dict(zip(workers, (bool(x) for x in pipe.execute()))) if workers else {}
    taken = [{"stage": stage, "batch": batch, "worker": worker.partition("#")[0],
              "alive": alive[worker], "started_s_ago": round(max(0.0, now - since), 1)}
             for stage, batch, worker, since in open_]
    return {"taken": taken, "workers": dict(sorted(per_worker.items()))}


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def render_status(status: Mapping[str, Any], queues: Mapping[str, int] | None = None) -> str:
    """A run's status as a small table: one row per stage, then the broker's queue lengths."""
    head = (f"run {status['run_id']} ({status['action']}, {status['state']})  "
            f"started {status['started']}  "
            + (f"finished {status['finished']}" if status.get("finished") else "running")
            + f"  elapsed {status['elapsed_s']} s")
    lines = [head]
    if status.get("error"):
        lines.append(f"error: {status['error']}")
    table = [("stage", "done/total", "batches", "failed", "skipped", "rate")]
    for row in status["stages"]:
        total = "?" if row["total"] is None else str(row["total"])
        btotal = "?" if row["batches_total"] is None else str(row["batches_total"])
        rate = "-" if row["rate"] is None else f"{row['rate']:.1f} {row.get('unit', 'files')}/s"
        table.append((row["stage"], f"{row['done']}/{total}", f"{row['batches_done']}/{btotal}",
                      str(row["failed"]), str(row["skipped"]), rate))
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip()
              for r in table]
    taken = status.get("taken") or []
    for entry in taken[:TAKEN_LIMIT]:
        lines.append(f"  at work: {entry['stage']} batch {entry['batch']} on {entry['worker']} "
                     f"({'alive' if entry['alive'] else 'gone'}, started "
                     f"{entry['started_s_ago']:.0f} s ago)")
    if len(taken) > TAKEN_LIMIT:
        lines.append(f"  ... and {len(taken) - TAKEN_LIMIT} more at work (see --json)")
    if status.get("workers"):
        lines.append("  batches by worker: " + ", ".join(
            f"{w} {n}" for w, n in status["workers"].items()))
    if queues is not None:
        lines.append("queues  " + "  ".join(f"{q} {n}" for q, n in queues.items()))
    return "\n".join(lines)
