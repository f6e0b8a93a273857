"""report: the inspect report files, in walk order, spelled as one verdict at a time would be."""

from __future__ import annotations

import json

from deid_workers.run.report import INSPECT_JSON, INSPECT_TSV, iter_inspect, write_inspect_report

VERDICTS = [
    {"flagged": False, "results": []},
    {"flagged": True, "results": [{"group": "blacklist", "reason": "Modality=US"}]},
    {"flagged": True, "results": [{"group": "graylist", "reason": "tab\there\nnewline",
                                   "coordinates": [[0, 0, 10, 10]]},
                                  {"group": "blacklist", "reason": "BurnedInAnnotation=YES"}]},
]


def _expected(rows: list[tuple[str, dict]]) -> tuple[str, str]:
    """The report as written verdict by verdict, the straightforward way."""
    def tsv(text: str) -> str:
        return text.replace("\t", " ").replace("\n", " ")

    lines = ["file\tflagged\tgroup\treason\n"]
    entries = []
    for path, verdict in rows:
        results = verdict["results"]
        groups = "; ".join(r["group"] for r in results)
        reasons = "; ".join(r["reason"] for r in results)
        lines.append("\t".join(tsv(x) for x in (path, str(verdict["flagged"]).lower(), groups,
                                                reasons)) + "\n")
        entries.append(json.dumps({"file": path, "flagged": verdict["flagged"],
                                   "results": results}))
    return "".join(lines), "[" + "".join(("\n " if i == 0 else ",\n ") + e
                                         for i, e in enumerate(entries)) + "\n]\n"


def test_report_follows_the_walk_and_spells_each_verdict_as_before(new_store, tmp_path):
    store = new_store({"action": "inspect"})
    rows = []
    for n in range(230):  # more batches than one round trip reads
        paths = [f"b{n:03d}/é {k}.dcm" for k in range(2)]
        store.add_batch(n, paths)
        verdicts = {p: VERDICTS[(n + k) % 3] for k, p in enumerate(paths)}
        if n % 7 == 0:
            del verdicts[paths[1]]  # skipped: no verdict, no row
        store.commit_batch("inspect", n, {"files": 2},
                           outcomes={"inspect": {p: json.dumps(v) for p, v in verdicts.items()}})
        rows += list(verdicts.items())
    tsv, js = write_inspect_report(store, str(tmp_path), 230)
    want_tsv, want_json = _expected(rows)
    assert tsv.endswith(INSPECT_TSV) and js.endswith(INSPECT_JSON)
    assert (tmp_path / INSPECT_TSV).read_text() == want_tsv
    assert (tmp_path / INSPECT_JSON).read_text() == want_json
    assert list(iter_inspect(store, 230)) == rows


def test_an_empty_run_writes_an_empty_report(new_store, tmp_path):
    store = new_store({"action": "inspect"})
    write_inspect_report(store, str(tmp_path), 0)
    assert (tmp_path / INSPECT_TSV).read_text() == "file\tflagged\tgroup\treason\n"
    assert json.loads((tmp_path / INSPECT_JSON).read_text()) == []
