"""recipe.notes: the engine's warnings about a file reach the active sink, kind and deid's words."""

from __future__ import annotations

import logging

from recipe_helpers import make_dataset, recipe_of

from deid_workers.recipe import deidentify
from deid_workers.recipe.notes import collecting, warn

RECIPE = """REPLACE PatientID var:id
JITTER PatientSex deid_func:jitter days=3
REPLACE Rows var:rows
"""


def test_each_warning_reaches_the_sink_with_its_kind_and_no_value(caplog):
    caplog.set_level(logging.WARNING, logger="deid_workers.recipe")
    got: list[tuple[str, str]] = []
    ds = make_dataset(Rows=4)
    with collecting(lambda kind, text: got.append((kind, text))):
        out = deidentify(ds, recipe_of(RECIPE), {"rows": "four"}, filename="p/x.dcm")
    assert got == [
        ("not_done", "REPLACE PatientID not done for p/x.dcm"),
        ("kept", "JITTER not supported for field PatientSex, VR=CS"),
        ("unfit_vr", "Value is not a valid value for VR US field: Rows. Field will be BLANKED."),
    ]
    assert not out.get("PatientID") and out.PatientSex == "F"  # PatientID: Type 2, kept empty
    # the log line is written as before, sink or not
    assert [r.getMessage() for r in caplog.records] == [text for _, text in got]
    text = repr(got)
    for value in ("SENTINEL", "four"):
        assert value not in text


def test_without_a_sink_only_the_log_line_and_sinks_nest():
    outer: list[str] = []
    inner: list[str] = []
    log = logging.getLogger("deid_workers.recipe.test")
    warn(log, "not_done", "nobody collects %s", "this")
    with collecting(lambda kind, text: outer.append(text)):
        with collecting(lambda kind, text: inner.append(text)):
            warn(log, "not_done", "inner %d", 1)
        warn(log, "kept", "outer")
    warn(log, "kept", "gone")
    assert inner == ["inner 1"] and outer == ["outer"]


def test_a_missing_function_and_an_empty_values_list_are_said_too():
    """deid warns of both; a deid-submit user sees them only if they reach the sink."""
    got: list[tuple[str, str]] = []
    recipe = recipe_of("%values empty\nSPLIT StudyDescription by=^;minlength=99\n\n"
                       "%header\nREPLACE PatientName func:nowhere\nBLANK values:empty\n")
    with collecting(lambda kind, text: got.append((kind, text))):
        deidentify(make_dataset(), recipe, {}, filename="p/x.dcm")
    kinds = [kind for kind, _ in got]
    assert "no_func" in kinds and "empty_values" in kinds
    assert ("no_func", "nowhere not found in item lookup.") in got
