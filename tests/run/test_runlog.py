"""runlog: deid-run.jsonl from per-batch logs, in walk order, one line per input file."""

from __future__ import annotations

import json
import os

import pytest

from deid_workers.run.runlog import NOT_PROCESSED, OUTCOMES, iter_run_log, run_log_name, write_run_log


@pytest.fixture
def store(new_store, tmp_path):
    """A walked ``all`` run of two batches, a, bad, c and d, e, f, g."""
    store = new_store({"action": "all", "outfolder": str(tmp_path / "out"),
                       "recipe_sha": "ab" * 32}, expiry=60)
    store.add_batch(0, ["a.dcm", "bad.dcm", "c.dcm"])
    store.add_batch(1, ["d.dcm", "e.dcm", "f.dcm", "g.dcm"])
    store.update(walk_done=True, n_batches=2)
    return store


def test_lines_merge_get_put_and_clean_records(store, tmp_path):
    # get found bad.dcm unreadable: put only saw the valid paths
    store.commit_batch("get", 0, {}, outcomes={"skipped": {"bad.dcm": "not a DICOM file"}},
                       valid=["a.dcm", "c.dcm"])
    store.save_log("put", 0, [("written", None), ("refused", "already exists")])
    store.commit_batch("get", 1, {}, valid=["d.dcm", "e.dcm", "f.dcm", "g.dcm"],
                       outcomes={"poison": {}})
    store.save_log("put", 1, [("clean", "graylist: x"), ("quarantined", "blacklist: y"),
                              ("failed", "crashed its worker in put"), ("clean", "graylist: x")])
    store.save_clean_batch(1, ["d.dcm", "g.dcm"])
    store.save_log("clean", 1, [("cleaned", "graylist: x"), ("failed", "KeyError")])
    lines = list(iter_run_log(store, store.record()))
    assert [(x["path"], x["outcome"], x["output"]) for x in lines] == [
        ("a.dcm", "written", "a.dcm"),
        ("bad.dcm", "skipped", None),
        ("c.dcm", "refused", None),
        ("d.dcm", "cleaned", "d.dcm"),
        ("e.dcm", "quarantined", "../out-quarantine/e.dcm"),
        ("f.dcm", "failed", None),
        ("g.dcm", "failed", None),
    ]
    assert {x["outcome"] for x in lines} <= set(OUTCOMES)
    assert {x["recipe_sha256"] for x in lines} == {"ab" * 32}


def test_output_is_where_the_layout_put_the_file(store, tmp_path):
    # put records the output path only where it differs from the input's (a pseudonymized
    # name): the line maps each input path to its output, quarantine included
    store.commit_batch("get", 0, {}, valid=["a.dcm", "bad.dcm", "c.dcm"])
    store.save_log("put", 0, [("written", None, "K7Q2/a.dcm"), ("skipped", "DICOMDIR: x"),
                              ("quarantined", "blacklist: y", "K7Q2/c.dcm")])
    lines = {x["path"]: x for x in iter_run_log(store, store.record())}
    assert lines["a.dcm"]["output"] == "K7Q2/a.dcm"
    assert lines["bad.dcm"]["output"] is None
    assert lines["c.dcm"]["output"] == "../out-quarantine/K7Q2/c.dcm"


def test_unrecorded_and_poison_files_still_get_a_line(store, tmp_path):
    store.add_outcome("poison", "d.dcm", "crashed its worker in get")
    lines = {x["path"]: x for x in iter_run_log(store, store.record())}
    assert len(lines) == 7
    assert lines["d.dcm"]["outcome"] == "failed"
    assert lines["a.dcm"]["reason"] == NOT_PROCESSED


def test_written_atomically_as_json_lines(store, tmp_path):
    path = write_run_log(store, store.record())
    # In the records folder, never the output tree; private; named for its run.
    records = tmp_path / "out-records"
    assert path == str(records / run_log_name("r1")) and run_log_name("r1") == "deid-run.r1.jsonl"
    with open(path, encoding="utf-8") as fh:
        assert len([json.loads(x) for x in fh]) == 7
    assert [p.name for p in records.iterdir()] == [run_log_name("r1")]  # no temp left
    assert os.stat(path).st_mode & 0o777 == 0o600 and os.stat(records).st_mode & 0o777 == 0o700
    assert not (tmp_path / "out").exists()
