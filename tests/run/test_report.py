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


def _summary(**extra):
    base = {"run_id": "abc", "action": "all", "state": "finished", "files_found": 4,
            "valid": 2, "skipped": 2, "skip_reasons": {"damaged or truncated DICOM: x": 1,
                                                       "not a DICOM file: y": 1},
            "written": 2, "refused": 0, "failed": 0, "elapsed_s": 1.0, "input": "/in",
            "outfolder": "/out", "records": "/out-records", "layout": "mirror",
            "run_log": "/out-records/deid-run.abc.jsonl", "lists": {}, "warnings": {}}
    return dict(base, **extra)


def test_table_gives_the_skip_reasons_under_skipped_and_the_key_only_where_one_was_used():
    from deid_workers.run.report import render_table

    lines = render_table(_summary(key="/k/secret.key")).splitlines()
    at = [x.split()[0] for x in lines].index("skipped")
    assert [x.split(":")[0].strip() for x in lines[at + 1:at + 3]] == [
        "skipped 1", "skipped 1"]
    assert lines[at + 3].startswith("written")
    assert lines[-1].split() == ["secret", "key", "/k/secret.key"]
    created = render_table(_summary(key="/k/secret.key", key_created=True))
    assert "/k/secret.key (created by this run: keep it" in created
    inspect = render_table(_summary(action="inspect", inspected=2, flagged=0))
    assert "secret key" not in inspect and "records folder" not in inspect


def test_table_of_an_embedded_run_says_its_id_is_gone_with_its_redis_and_names_the_input():
    from deid_workers.run.report import render_table

    lines = render_table(_summary(embedded=True, input_file="one.dcm")).splitlines()
    assert lines[0].endswith("abc (all, finished); embedded: its state went with the private "
                             "Redis")
    assert "input /in/one.dcm" in [" ".join(x.split()) for x in lines]


def test_a_put_whose_ids_cover_none_or_only_some_files_says_so_and_fails():
    from deid_workers.run.report import ids_coverage, run_ok

    none = _summary(action="put", valid=3, written=3, no_ids=3)
    some = _summary(action="put", valid=3, written=3, no_ids=1)
    every = _summary(action="put", valid=3, written=3, no_ids=0)
    assert ids_coverage(none, "ids.json") == (
        "The ids in ids.json match none of the 3 input files (the ids of another input?)")
    assert ids_coverage(some, "ids.json") == "The ids in ids.json match only 2 of the 3 input files"
    assert ids_coverage(every, "ids.json") is None and run_ok(every)
    assert not run_ok(none) and not run_ok(some)
    assert ids_coverage(dict(some, state="failed"), "ids.json") is None  # the failure says why


def test_the_end_of_a_run_says_each_listed_skip_and_refusal_in_deids_words():
    import logging

    from deid_workers.run.report import file_lines

    summary = _summary(action="put", valid=2, written=1, refused=1, no_ids=2, lists={
        "skipped": {"x.txt": "not a DICOM file: give DICOM files"},
        "refused": {"a/b.dcm": "already exists"}})
    assert file_lines(summary, "ids.json") == [
        (logging.WARNING, "Cannot read input file x.txt, skipping (not a DICOM file)."),
        (logging.ERROR, "a/b.dcm already exists, overwrite set to False. Not writing."),
        (logging.ERROR, "The ids in ids.json match none of the 2 input files (the ids of "
                        "another input?)")]
    assert file_lines(_summary()) == []
