"""put/inspect + deid.ocr + deid.clean with --ocr on fakeredis: the data flow, judged with an
engine that reads what is still bright in the image (real OCR: tests/ocr, tests/integration).

``BlockEngine`` returns the text it was given for each box whose pixels are still bright, so a
box blacked out is no longer read, as with real OCR, and verification sees what cleaning did.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest

from deid_workers.errors import OcrEngineError
from deid_workers.ocr.engine import TextBox
from deid_workers.run.record import RunRecord
from deid_workers.run.report import render_table, run_ok, summarize
from deid_workers.run.runlog import run_log_name
from deid_workers.run.store import RunStore
from deid_workers.synth import make_dataset, phi_strings
from deid_workers.tasks import dispatch
from deid_workers.tasks import ocr as ocr_task
from deid_workers.tasks.clean import run_clean
from deid_workers.tasks.context import forget, worker_keys
from deid_workers.tasks.finalize import NotReady, run_finalize
from deid_workers.tasks.inspect import run_inspect
from deid_workers.tasks.ocr import run_ocr
from deid_workers.tasks.put import run_put

NAME_BOX = (2, 2, 20, 8)      # the patient's name, burned in (make_dataset's text_block)
RECIPE = """FORMAT dicom
%header
REMOVE PatientName
REPLACE PatientID var:id
"""


class BlockEngine:
    """Reads ``text`` in each of ``boxes`` while it is still bright (mostly saturated)."""

    name = "block"

    def __init__(self, boxes: dict[tuple[int, int, int, int], tuple[str, float]]) -> None:
        self.boxes = boxes
        self.reads = 0

    def read(self, image: np.ndarray) -> list[TextBox]:
        self.reads += 1
        grey = image if image.ndim == 2 else image.max(axis=2)
        return [TextBox(x0, y0, x1, y1, text, conf) for (x0, y0, x1, y1), (text, conf)
                in self.boxes.items() if grey[y0:y1, x0:x1].mean() >= 200]


@pytest.fixture
def engine():
    """The workers' engine for these tests; the name box reads as patient 3's name."""
    eng = BlockEngine({NAME_BOX: ("DOE, JANE", 0.95)})
    ocr_task._LOADED.clear()
    ocr_task._LOADED["engine"] = eng
    yield eng
    ocr_task._LOADED.clear()


FILES = {  # name: make_dataset keywords; every file is patient 3's
    "a-ct.dcm": {"modality": "CT"},                            # not risky: written by put
    "b-us.dcm": {"modality": "US", "text_block": NAME_BOX},    # name burned in: blacked out
    "c-us-miss.dcm": {"modality": "US", "text_block": NAME_BOX},  # DEID_TEST_OCR_MISS
    "d-us-plain.dcm": {"modality": "US"},                      # risky, nothing burned in
}


def _run(fake, tmp_path, monkeypatch, action: str, **record) -> tuple[RunStore, list]:
    root = tmp_path / "in"
    root.mkdir()
    for i, (name, kw) in enumerate(FILES.items()):
        make_dataset(3, instance=i, rows=24, cols=24, **kw).save_as(root / name,
                                                                    enforce_file_format=True)
    (root / "e-bad.dcm").write_text("not dicom")
    paths = sorted(p.name for p in root.iterdir())
    rec = RunRecord(action, str(root), str(tmp_path / "out"), recipe_texts=(RECIPE,),
                    recipe_name="test.dicom", **record)
    store = RunStore.create(fake, "tocr" + action, rec.spec(), expiry=600, keys=worker_keys())
    store.add_batch(0, paths[:3])
    store.add_batch(1, paths[3:])
    store.update(walk_done=True, n_batches=2)
    sent: list = []
    monkeypatch.setattr(dispatch, "send", lambda name, *args: sent.append((name, *args)))
    return store, sent


def test_put_leaves_risky_files_to_ocr_which_leaves_them_to_clean(fake, tmp_path, monkeypatch,
                                                                    engine, placed):
    monkeypatch.setenv("DEID_TEST_OCR_MISS", "-miss")
    forget()
    store, sent = _run(fake, tmp_path, monkeypatch, "put", ocr="risky")
    root, out = tmp_path / "in", tmp_path / "out"
    at = {name: placed(str(root), name) for name in FILES}

    r0 = run_put(store.run_id, 0)
    assert (r0["written"], r0["to_ocr"], r0["to_clean"]) == (1, 2, 0)
    assert store.ocr_batch(0) == ["b-us.dcm", "c-us-miss.dcm"] and store.clean_batch(0) is None
    assert sent == [("deid.ocr", store.run_id, 0)]
    assert (out / at["a-ct.dcm"]).exists() and not (out / at["b-us.dcm"]).exists()
    r1 = run_put(store.run_id, 1)
    assert (r1["to_ocr"], r1["skipped"]) == (1, 1)

    o0 = run_ocr(store.run_id, 0)
    assert (o0["read"], o0["redact"], o0["phi"], o0["to_clean"]) == (2, 2, 2, 2)
    assert store.clean_batch(0) == ["b-us.dcm", "c-us-miss.dcm"]
    verdicts = store.ocr_verdicts(0)
    assert verdicts["b-us.dcm"]["status"] == "redact"
    assert not [s for s in phi_strings(3) | {"DOE", "JANE"} if s in json.dumps(verdicts)]
    assert sent[-1] == ("deid.clean", store.run_id, 0)
    o1 = run_ocr(store.run_id, 1)
    assert (o1["read"], o1["clean"], o1["boxes"]) == (1, 1, 0)
    assert run_ocr(store.run_id, 1)["already_done"] == 1

    c0 = run_clean(store.run_id, 0)
    assert (c0["cleaned"], c0["quarantined"], c0["ocr_verified"], c0["ocr_phi_left"],
            c0["ocr_boxes_cleaned"]) == (1, 1, 1, 1, 1)
    assert store.record()["state"] != "finished"
    assert run_clean(store.run_id, 1)["written"] == 1
    assert store.record()["state"] == "finished"

    cleaned = pydicom.dcmread(out / at["b-us.dcm"])
    x0, y0, x1, y1 = NAME_BOX
    assert not cleaned.pixel_array[y0:y1, x0:x1].any()
    assert cleaned.BurnedInAnnotation == "NO"
    assert [i.CodeValue for i in cleaned.DeidentificationMethodCodeSequence] == ["113101"]
    held = pydicom.dcmread(tmp_path / "out-quarantine" / at["c-us-miss.dcm"])
    assert held.BurnedInAnnotation == "YES" and held.pixel_array[y0:y1, x0:x1].all()
    assert "DeidentificationMethodCodeSequence" not in held or "113101" not in [
        i.CodeValue for i in held.DeidentificationMethodCodeSequence]
    plain = pydicom.dcmread(out / at["d-us-plain.dcm"])   # OCR read nothing: left as it was
    assert "BurnedInAnnotation" not in plain or plain.BurnedInAnnotation != "NO"
    assert "DeidentificationMethodCodeSequence" not in plain

    summary = summarize(store)
    assert run_ok(summary)
    assert (summary["written"], summary["cleaned"], summary["quarantined"], summary["skipped"]) == (
        2, 1, 1, 1)
    assert summary["ocr"] == {"mode": "risky", "selected": 3, "read": 3, "clean": 1, "redact": 2,
                              "quarantine": 0, "boxes_found": 2, "phi_boxes": 2,
                              "unsure_boxes": 0, "boxes_cleaned": 1, "verified": 1,
                              "phi_left": 1}
    assert summary["lists"]["quarantined"] == {"c-us-miss.dcm": (
        "ocr verification: 1 PHI box(es) still read after blacking out; held for a person to "
        "review")}
    table = render_table(summary)
    assert "OCR (risky)" in table and "1 with PHI left" in table

    log = store.record()["run_log"]
    assert log.endswith(run_log_name(store.run_id))
    text = Path(log).read_text()
    lines = {x["path"]: x for x in map(json.loads, text.splitlines())}
    assert Counter(x["outcome"] for x in lines.values()) == {
        "written": 2, "cleaned": 1, "quarantined": 1, "skipped": 1}
    assert "ocr" not in lines["a-ct.dcm"]
    assert lines["b-us.dcm"]["ocr"] == {"status": "redact", "frames": 1, "boxes": 1, "phi": 1,
                                        "unsure": 0, "to_redact": 1, "cleaned": 1,
                                        "verified": True, "left": 0}
    assert lines["c-us-miss.dcm"]["ocr"]["verified"] is False
    assert lines["d-us-plain.dcm"]["ocr"]["status"] == "clean"
    assert not [s for s in phi_strings(3) if s in text]


def test_unsure_text_and_undecodable_pixels_are_quarantined(fake, tmp_path, monkeypatch, placed):
    eng = BlockEngine({NAME_BOX: ("J#n3 D0?", 0.2)})   # read, but not surely
    ocr_task._LOADED.clear()
    ocr_task._LOADED["engine"] = eng
    try:
        store, sent = _run(fake, tmp_path, monkeypatch, "all", ocr="all")
        root = tmp_path / "in"
        broken = pydicom.dcmread(root / "a-ct.dcm")
        broken.PixelData = broken.PixelData[:10]    # shorter than its header says
        broken.save_as(root / "a-ct.dcm", enforce_file_format=True)
        for n in (0, 1):
            run_put(store.run_id, n)
            run_ocr(store.run_id, n)
            run_clean(store.run_id, n)
        summary = summarize(store)
        held = summary["lists"]["quarantined"]
        assert held["b-us.dcm"].startswith("ocr: text that could not be read with confidence")
        assert held["c-us-miss.dcm"] == held["b-us.dcm"]
        assert held["a-ct.dcm"].startswith("ocr: pixels could not be read: pixel data of")
        assert summary["ocr"]["quarantine"] == 3 and summary["ocr"]["unsure_boxes"] == 2
        assert (tmp_path / "out-quarantine" / placed(str(root), "b-us.dcm")).exists()
    finally:
        ocr_task._LOADED.clear()


def test_a_worker_without_the_engine_fails_the_run_in_one_line(fake, tmp_path, monkeypatch):
    import deid_workers.ocr as ocr_pkg

    def missing(name: str = "rapidocr") -> None:
        raise OcrEngineError(name, "cannot import (ModuleNotFoundError: No module named "
                                   "'rapidocr'); install the extra: pip install '.[ocr]'")

    ocr_task._LOADED.clear()
    monkeypatch.setattr(ocr_pkg, "load_engine", missing)
    store, _ = _run(fake, tmp_path, monkeypatch, "put", ocr="risky")
    run_put(store.run_id, 0)
    assert run_ocr(store.run_id, 0) == {"files": 0, "run_failed": 1}
    rec = store.record()
    assert rec["state"] == "failed"
    assert rec["error"].startswith("ocr needs OCR on the workers of queue ocr: OCR engine "
                                   "'rapidocr': cannot import")


def test_a_clean_worker_without_the_engine_fails_the_run_before_writing(fake, tmp_path,
                                                                        monkeypatch, engine):
    import deid_workers.ocr as ocr_pkg

    store, _ = _run(fake, tmp_path, monkeypatch, "put", ocr="risky")
    run_put(store.run_id, 0)
    run_ocr(store.run_id, 0)                       # on a worker with the engine
    ocr_task._LOADED.clear()                       # the clean batch lands on one without it

    def missing(name: str = "rapidocr") -> None:
        raise OcrEngineError(name, "cannot import (ModuleNotFoundError)")

    monkeypatch.setattr(ocr_pkg, "load_engine", missing)
    assert run_clean(store.run_id, 0) == {"files": 0, "run_failed": 1}
    assert store.record()["error"].startswith("clean needs OCR on the workers of queue clean")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*-us*"))


def test_inspect_reports_what_ocr_found_once_every_ocr_batch_is_in(fake, tmp_path, monkeypatch,
                                                                     engine):
    store, sent = _run(fake, tmp_path, monkeypatch, "inspect", ocr="risky")
    for n in (0, 1):
        assert run_inspect(store.run_id, n)["to_ocr"] == (2 if n == 0 else 1)
    with pytest.raises(NotReady, match="0 of 2 ocr batches"):
        run_finalize(store.run_id)
    run_ocr(store.run_id, 0)
    assert ("deid.finalize", store.run_id) not in sent
    run_ocr(store.run_id, 1)
    assert sent[-1] == ("deid.finalize", store.run_id)   # the last one need not wait for a poll
    run_finalize(store.run_id)
    rec = store.record()
    assert rec["state"] == "finished"
    rows = [r.split("\t") for r in Path(rec["report_tsv"]).read_text().splitlines()]
    assert rows[0] == ["file", "flagged", "group", "reason", "ocr", "ocr_boxes", "ocr_phi",
                       "ocr_unsure"]
    by = {r[0]: r[4:] for r in rows[1:]}
    assert by["a-ct.dcm"] == ["", "", "", ""]
    assert by["b-us.dcm"] == ["redact", "1", "1", "0"] and by["d-us-plain.dcm"][0] == "clean"
    entries = {e["file"]: e for e in json.loads(Path(rec["report_json"]).read_text())}
    assert entries["b-us.dcm"]["ocr"]["boxes"][0]["box"] == list(NAME_BOX)
    assert not (tmp_path / "out" / "b-us.dcm").exists()   # inspect writes no image
    assert summarize(store)["ocr"]["read"] == 3


def test_an_ocr_batch_with_nothing_to_read_commits_at_once(fake, tmp_path, monkeypatch, engine):
    store, sent = _run(fake, tmp_path, monkeypatch, "put", ocr="risky")
    store.commit_batch("put", 5, {}, ocr=[])
    assert dispatch.send_ocr(store, 5, then_clean=True) is False
    assert 5 in store.done_batches("ocr") and 5 in store.done_batches("clean")
    assert not sent and engine.reads == 0


def test_resume_sends_the_ocr_and_clean_batches_not_done(fake, tmp_path, monkeypatch, engine):
    from deid_workers import producer
    from deid_workers.config import Settings

    store, sent = _run(fake, tmp_path, monkeypatch, "all", ocr="risky")
    for n in (0, 1):
        store.commit_batch("get", n, {})
        run_put(store.run_id, n)
    store.commit_batch("finalize", 0, {})
    run_ocr(store.run_id, 0)          # its clean batch was sent, and lost
    sent.clear()
    _, said = producer.resume(Settings.from_env(), store.run_id, client=fake)
    assert said == "re-sent 0 put batches and 2 ocr or clean batches"
    assert sorted(sent) == [("deid.clean", store.run_id, 0), ("deid.ocr", store.run_id, 1)]
    run_ocr(store.run_id, 1)
    for n in (0, 1):
        run_clean(store.run_id, n)
    assert store.record()["state"] == "finished"


def test_a_file_the_ocr_stage_never_recorded_is_failed_in_the_run_log(fake, tmp_path,
                                                                    monkeypatch, engine):
    from deid_workers.run.lifecycle import finish_run

    store, _ = _run(fake, tmp_path, monkeypatch, "put", ocr="risky")
    for n in (0, 1):
        run_put(store.run_id, n)
    run_ocr(store.run_id, 1)
    run_clean(store.run_id, 1)
    store.commit_batch("ocr", 0, {}, clean=[])   # as if batch 0 of OCR gave up on its files
    store.commit_batch("clean", 0, {}, log=[])
    assert finish_run(store, "clean")
    lines = {x["path"]: x for x in map(json.loads,
                                       Path(store.record()["run_log"]).read_text().splitlines())}
    assert lines["b-us.dcm"]["outcome"] == "failed"
    assert lines["b-us.dcm"]["reason"] == "reading its burned-in text (OCR) did not finish"
    assert lines["d-us-plain.dcm"]["outcome"] == "written"
