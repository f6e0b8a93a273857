from __future__ import annotations

import json

from deid_workers.tasks.inspect import run_inspect

FILTER = """FORMAT dicom

%filter graylist

LABEL Everything CT
  contains Modality CT
"""


def test_inspect_records_verdicts(make_run):
    store, root, paths, n = make_run("inspect", recipe_texts=[FILTER])
    for b in range(n):
        run_inspect(store.run_id, b)
    c = store.counters()
    assert c["inspect:inspected"] == 6 and c["inspect:skipped"] == 2
    verdicts = {p: json.loads(v) for p, v in store.iter_outcomes("inspect")}
    assert len(verdicts) == 6
    assert c["inspect:flagged"] == 6 and c.get("inspect:clean", 0) == 0  # synth files are CT
    assert all(v["flagged"] and v["results"][0]["group"] == "graylist" for v in verdicts.values())
