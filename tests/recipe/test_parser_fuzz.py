"""Fuzz the recipe parser and what runs a parsed recipe: only RecipeError may come out.

Bounded for CI (a few seconds): recipes are drawn from deid's own vocabulary (sections, actions,
selectors, value sources, filter criteria) mixed with arbitrary text, so most examples get past
the first line and reach the deeper code.
"""

from __future__ import annotations

import logging
import warnings

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deid_workers.recipe import RecipeError, compile_filters, deidentify, inspect_dataset
from deid_workers.recipe.compiled import compiled
from deid_workers.recipe.parser import parse_recipe
from deid_workers.synth import make_dataset

WORDS = ["FORMAT", "dicom", "%header", "%filter", "%labels", "%values", "%fields", "LABEL",
         "ADD", "BLANK", "JITTER", "KEEP", "REMOVE", "REPLACE", "contains", "notcontains",
         "equals", "notequals", "missing", "present", "empty", "+", "||", "coordinates",
         "ctpcoordinates", "keepcoordinates", "ALL", "PatientName", "PatientID",
         "(0010,0010)", "00100020", "endswith:Date", "startswith:Patient", "contains:ID",
         "select:group:0010", "values:ids", "fields:dates", "func:fn", "var:id",
         "deid_func:generate_uid", "deid_func:jitter_timestamp", "deid_func:date_shift",
         "SPLIT", "FIELD", "0,0,10,10", "all", "1", "-3", "DOE^JANE", '"quoted"', "#", "|",
         "Modality", "CT", "ImageType", "DERIVED", "SecondaryCaptureDeviceManufacturer"]

line = st.lists(st.one_of(st.sampled_from(WORDS), st.text(max_size=8)), max_size=6).map(" ".join)
recipes = st.lists(line, max_size=12).map(lambda lines: "FORMAT dicom\n" + "\n".join(lines))


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(recipes, st.text(max_size=200)))
def test_any_text_parses_or_raises_recipe_error(text: str) -> None:
    logging.disable(logging.CRITICAL)  # deid's warnings about odd recipes are expected here
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                recipe = parse_recipe(text, "fuzz.dicom")
                compile_filters(recipe)
                compiled(recipe)
                ds = make_dataset(1, rows=2, cols=2)
                deidentify(ds, recipe, {"id": "SUBJ", "fn": "x"}, funcs={"fn": lambda *a, **k: "v"})
                inspect_dataset(ds, recipe)
            except RecipeError:
                pass
    finally:
        logging.disable(logging.NOTSET)
