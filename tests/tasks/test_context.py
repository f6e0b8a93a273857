from __future__ import annotations

import tempfile

from deid_workers.tasks.context import run_context


def test_run_recipe_is_parsed_without_leaving_its_temp_folder(make_run, tmp_path, monkeypatch):
    store, *_ = make_run("put", corrupt=0)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    recipe = run_context(store.run_id).recipe
    assert [a.field for a in recipe.header] == ["PatientID", "PatientName"]
    assert list(scratch.iterdir()) == []
