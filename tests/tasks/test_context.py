"""run_context: the run as a worker knows it, its recipe parsed from the texts the run holds."""

from __future__ import annotations

import builtins

import pytest

from deid_workers.errors import RecipeError
from deid_workers.tasks.context import run_context


def test_run_recipe_is_parsed_from_its_text_without_writing_a_file(make_run, monkeypatch):
    store, *_ = make_run("put", corrupt=0)
    real_open = builtins.open

    def no_writes(file, mode="r", *args, **kwargs):
        assert "w" not in mode and "a" not in mode, f"the recipe was written to {file}"
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_writes)
    ctx = run_context(store.run_id)
    assert [a.field for a in ctx.recipe.header] == ["PatientID", "PatientName"]
    assert ctx.recipe.sha256 == store.record()["recipe_sha"] or not store.record()["recipe_sha"]


def test_a_recipe_error_names_the_authors_file_and_line(make_run):
    store, *_ = make_run("put", corrupt=0, recipe_texts=["FORMAT dicom\n\n%header\n\nREMOV X\n"],
                         recipe_files=["site.dicom"])
    with pytest.raises(RecipeError) as caught:
        assert run_context(store.run_id).recipe is None
    assert (caught.value.path, caught.value.line) == ("site.dicom", 5)
