"""progress: stages, the bar of the running stage, its own rate and the ETA."""

from __future__ import annotations

import io

from deid_workers.progress import Progress, current, render
from deid_workers.run.totals import StageTotal, stage_totals


def _line(rec, c, elapsed):
    return render(stage_totals(rec, c), elapsed)


def test_all_run_shows_get_then_a_bar_for_put_with_its_rate_and_eta():
    rec = {"action": "all", "walk_done": True, "stage": "put"}
    c = {"walk:files": 1003, "get:files": 1003, "get:valid": 1000, "put:files": 250}
    line = _line(rec, c, 5.0)
    assert line.startswith("get 1003/1003  put [######------------------] 250/1000")
    assert line.endswith("50.0 files/s  ETA 0:00:15")


def test_put_total_is_unknown_until_get_is_done_and_the_walk_may_still_grow():
    rec = {"action": "all", "walk_done": False, "stage": "get"}
    c = {"walk:files": 400, "get:files": 100}
    line = _line(rec, c, 2.0)
    assert "get [######------------------] 100/400+" in line and "put 0/?" in line
    assert "ETA" not in line  # no ETA while the total can still grow


def test_clean_stage_trails_put_until_every_put_batch_is_in():
    rec = {"action": "all", "walk_done": True, "n_batches": 4, "stage": "put",
           "clean_pixels": True}
    c = {"walk:files": 20, "get:files": 20, "get:valid": 19, "put:files": 10, "put:batches": 2,
         "put:to_clean": 3, "clean:files": 1}
    assert current(stage_totals(rec, c)).name == "put"
    assert "clean 1/3+  2.0 files/s" in _line(rec, c, 5.0)  # the rate follows put
    c.update({"put:files": 19, "put:batches": 4, "clean:files": 2})
    assert current(stage_totals(rec, c)).name == "clean"
    assert "clean [################--------] 2/3  0.4 files/s" in _line(rec, c, 5.0)
    assert "clean" not in _line({**rec, "clean_pixels": False}, c, 5.0)


def test_stage_rate_restarts_when_the_stage_changes():
    """The rate is the current stage's own: files/s since that stage began, not since the
    run began (put is not dragged down by the time get took)."""
    out = io.StringIO()
    now = [100.0]
    bar = Progress(out, interval=0.0, clock=lambda: now[0])
    get = ({"action": "all", "walk_done": True, "stage": "get"},
           {"walk:files": 10, "get:files": 10, "get:valid": 10})
    bar.update(*get)  # get is first seen at 100
    now[0] = 110.0
    bar.update(*get)
    assert out.getvalue().endswith("1.0 files/s  ETA 0:00:00\n")  # 10 files in the 10 s since
    now[0] = 150.0
    bar.update({"action": "all", "walk_done": True, "stage": "put"},
               {"walk:files": 10, "get:files": 10, "get:valid": 10, "put:files": 1})
    now[0] = 152.0  # put began at 150: 1 file in 2 s, not 1 in 52
    bar.update({"action": "all", "walk_done": True, "stage": "put"},
               {"walk:files": 10, "get:files": 10, "get:valid": 10, "put:files": 1})
    assert out.getvalue().splitlines()[-1].endswith("0.5 files/s  ETA 0:00:18")
    assert out.getvalue().count("\n") == 4  # not a terminal: plain lines


def test_an_empty_run_renders_without_dividing_by_zero():
    assert render([StageTotal("get", 0, 0, True)], 0.0) == "get 0/0  0.0 files/s"


def test_put_with_ids_shows_the_load_in_items_before_put():
    rec = {"action": "put", "walk_done": False, "stage": "put", "ids_path": "/ids.json"}
    c = {"load:items": 3000}
    assert current(stage_totals(rec, c)).name == "load"
    assert _line(rec, c, 2.0) == "load 3000/?  put 0/?  1500.0 items/s"
    rec.update(ids_chunks=4, ids_items=4000, walk_done=True)
    c.update({"load:items": 4000, "walk:files": 500, "put:files": 100})
    line = _line(rec, c, 2.0)
    assert line.startswith("load 4000/4000  put [####") and line.endswith("50.0 files/s  ETA 0:00:08")


def test_poll_reads_the_store_at_most_every_poll_interval(monkeypatch):
    from deid_workers import progress

    class Store:
        reads = 0

        def record(self):
            self.reads += 1
            return {"action": "get", "walk_done": False}

        def counters(self):
            return {"walk:files": 100, "get:files": 0}

    clock = [1000.0]
    out, store = io.StringIO(), Store()
    bar = Progress(out, interval=0.0, clock=lambda: clock[0])
    for step in (0.0, 0.1, 0.2, progress.POLL_SECONDS + 0.1):
        clock[0] = 1000.0 + step
        bar.poll(store)
    assert store.reads == 2 and out.getvalue().count("0/100+  0.0 files/s\n") == 2


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


RUN = ({"action": "put", "walk_done": True, "stage": "put"},
       {"walk:files": 4, "put:files": 1, "put:notice:not_done": 3})


def test_a_log_line_never_lands_on_the_bars_line():
    import logging

    from deid_workers import logs

    term = _Terminal()
    bar = Progress(term)
    with logs.setup("INFO", stream=term):
        log = logging.getLogger("deid_workers.cli")
        log.info("before the bar")
        bar.update(*RUN)
        with logs.status_line(bar):
            log.warning("REPLACE PatientID not done for a.dcm")
        bar.close()
    drawn = "\r\x1b[2K" + render(stage_totals(*RUN), 0.0, 3)
    assert "3 warnings" in drawn
    assert term.getvalue() == ("before the bar\n" + drawn + "\r\x1b[2K"
                               + "WARNING REPLACE PatientID not done for a.dcm\n" + drawn + "\n")


def test_with_log_json_the_progress_is_a_json_record_and_nothing_else(caplog):
    import json
    import logging

    from deid_workers.logs import JsonFormatter

    caplog.set_level(logging.INFO, logger="deid_workers.progress")
    out = _Terminal()  # even on a terminal: stderr stays one JSON object per line
    bar = Progress(out, log_json=True)
    bar.update(*RUN)
    bar.close()
    assert out.getvalue() == ""
    (record,) = [r for r in caplog.records if r.name == "deid_workers.progress"]
    data = json.loads(JsonFormatter().format(record))
    assert data["progress"] == {"put": {"done": 1, "total": 4, "final": True}, "warnings": 3}
    assert data["message"].startswith("put [")
