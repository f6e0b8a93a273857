"""``--status``, expiry and ``--purge`` against the real Redis after a real run."""

from __future__ import annotations

import json

import pytest

from deid_workers.cli import EXIT_FAILED, main
from deid_workers.synth import write_study_tree

pytestmark = pytest.mark.integration


def test_status_expiry_and_purge_on_real_redis(cluster, redis_client, tmp_path, capsys,
                                               monkeypatch):
    monkeypatch.setenv("DEID_RUN_EXPIRY", "3600")
    root = tmp_path / "in"
    write_study_tree(root, patients=2, images=2, corrupt=1)
    assert main(["--action", "all", "--quiet", "--json", "--batch", "2", "--input", str(root),
                 "--outfolder", str(tmp_path / "out")]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]

    assert main(["--status", run_id, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert set(status["queues"]) >= {"get", "inspect", "put", "finalize", "clean"}
    (run,) = status["runs"]
    assert run["state"] == "finished" and run["finished"]
    rows = {r["stage"]: r for r in run["stages"]}
    assert list(rows) == ["get", "finalize", "put"]
    assert (rows["get"]["done"], rows["get"]["total"], rows["get"]["skipped"]) == (5, 5, 1)
    assert (rows["put"]["done"], rows["put"]["total"]) == (4, 4)
    assert all(r["complete"] for r in rows.values()) and rows["put"]["rate"] > 0

    assert main(["--status"]) == 0
    text = capsys.readouterr().out
    assert f"run {run_id} (all, finished)" in text and "\nqueues  get " in text

    keys = list(redis_client.scan_iter(f"deid:run:{run_id}*"))
    assert len(keys) >= 8 and any(":ids:" in k for k in keys)
    for key in keys:
        assert 0 < redis_client.ttl(key) <= 3600, key
    assert 0 < redis_client.ttl("deid:runs")

    assert main(["--purge", run_id]) == 0
    capsys.readouterr()
    assert list(redis_client.scan_iter(f"deid:run:{run_id}*")) == []
    assert run_id not in redis_client.zrange("deid:runs", 0, -1)
    assert main(["--status", run_id]) == EXIT_FAILED
    assert "unknown to Redis" in capsys.readouterr().err
