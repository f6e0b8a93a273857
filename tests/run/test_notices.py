"""notices: a batch's warnings about files, bounded, counted by kind, and said safely."""

from __future__ import annotations

import logging

from deid_workers.recipe.notes import warn
from deid_workers.run import notices
from deid_workers.run.notices import BatchNotices, Notice, counts_of, decode, printable, shown


def test_a_batch_counts_every_notice_keeps_the_first_and_bounds_each_file(monkeypatch):
    monkeypatch.setattr(notices, "PER_FILE", 3)
    batch = BatchNotices(limit=4)
    log = logging.getLogger("deid_workers.recipe.actions")
    for i in range(5):
        with batch.file("a/x.dcm"):
            warn(log, "not_done", "REPLACE F%d not done for %s", i, "a/x.dcm")
    batch.add("b.dcm", "no_ids", "No identifiers for b.dcm in the ids given to put")
    assert batch.counts == {"not_done": 5, "no_ids": 1}
    assert batch.counters() == {"notice:not_done": 5, "notice:no_ids": 1}
    assert [n.text for n in batch.first] == [f"REPLACE F{i} not done for a/x.dcm"
                                             for i in range(4)]
    assert batch.of_file("a/x.dcm")[:3] == [f"REPLACE F{i} not done for a/x.dcm" for i in range(3)]
    assert batch.of_file("a/x.dcm")[3] == "... and 2 more"
    assert len(batch.of_file("a/x.dcm")) == 4 and batch.of_file("c.dcm") == []
    counts, first = decode(batch.encoded())
    assert counts == {"not_done": 5, "no_ids": 1} and first == batch.first
    assert BatchNotices().encoded() is None and decode(None) == ({}, [])


def test_counts_of_adds_the_stages_kind_by_kind_in_a_stable_order():
    counters = {"put:notice:not_done": 3, "clean:notice:not_done": 1, "get:notice:duplicate_uid": 2,
                "put:notice:no_ids": 0, "put:written": 9, "inspect:notice:other": 5}
    assert list(counts_of(counters).items()) == [("not_done", 4), ("duplicate_uid", 2)]


def test_a_line_names_the_file_once_and_escapes_control_characters():
    assert Notice("a.dcm", "not_done", "REPLACE X not done for a.dcm").line() == (
        "REPLACE X not done for a.dcm")
    assert Notice("a.dcm", "unfit_vr", "Value is not valid").line() == "a.dcm: Value is not valid"
    assert printable("x\x1b[2J\ny\x7f") == "x\\x1b[2J\\x0ay\\x7f"


def test_shown_says_what_a_batch_kept_beyond_its_first():
    batch = BatchNotices(limit=1)
    batch.add("a", "not_done", "one for a")
    batch.add("b", "not_done", "two for b")
    said: list[str] = []
    got = shown([(7, batch.encoded()), (2, None)], lambda n: said.append(n.line()))
    assert [n.path for n in got] == ["a"]
    assert said == ["one for a", "... and 1 more warning(s) in batch 7 (counted in the summary)"]
