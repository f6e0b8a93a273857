"""ids export/import: streaming pickle+JSON round trips, the no-code unpickler, shape errors."""

from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.multival import MultiValue
from pydicom.uid import UID
from pydicom.valuerep import IS, DSfloat, PersonName

from deid_workers.errors import IdentifiersError
from deid_workers.ids import chunks as ids_chunks
from deid_workers.ids import export, values
from deid_workers.ids import read as ids_read

IDS = {
    "PID-0001-SENT": {
        "1.2.3.1": {"PatientID": "PID-0001-SENT", "InstanceNumber": 1, "SliceThickness": 1.25,
                    "ImageType": ["ORIGINAL", "PRIMARY"], "Empty": None, "Flag": True,
                    "Seq": [{"AccessionNumber": "ACC-1"}]},
        "1.2.3.2": {},
    },
    "PID-0002-SENT": {},
    "ünïcode-∑": {"1.2": {"PatientName": "Ünï^Cödé"}},
}


def test_round_trip_pickle_and_json(tmp_path: Path) -> None:
    pkl, js = export.save_ids(IDS, tmp_path)
    assert (pkl.name, js.name) == (export.IDS_PICKLE, export.IDS_JSON)
    assert pkl.read_bytes()[:2] == b"\x80\x02"
    with open(pkl, "rb") as fp:
        assert pickle.load(fp) == IDS  # what a deid user does with it
    assert json.loads(js.read_text()) == IDS
    assert ids_read.load_ids(pkl) == IDS == ids_read.load_ids(js)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_empty_export(tmp_path: Path) -> None:
    pkl, js = export.save_ids({}, tmp_path)
    assert ids_read.load_ids(pkl) == {} == ids_read.load_ids(js)


def test_streaming_writer_with_generators(tmp_path: Path) -> None:
    def items(entity: int) -> Iterator[tuple[str, dict[str, Any]]]:
        for i in range(3):
            yield f"uid-{entity}-{i}", {"n": i, "e": entity}

    with export.IdsWriter(tmp_path / "new") as writer:
        for e in range(4):
            writer.add_entity(f"P{e}", items(e))
    expected = {f"P{e}": {f"uid-{e}-{i}": {"n": i, "e": e} for i in range(3)} for e in range(4)}
    assert ids_read.load_ids(writer.pkl_path) == expected == ids_read.load_ids(writer.json_path)


def test_pieces_join_into_the_files_one_writer_gives(tmp_path: Path) -> None:
    entities = list(IDS.items()) + [("P-extra", {"9.9": {"x": 1}})]
    pieces = {0: entities[:2], 1: entities[2:], 2: []}  # the last piece is empty
    for n, part in pieces.items():
        with export.IdsPiece(tmp_path, f"part-{n}") as piece:
            for entity, items in part:
                piece.add_entity(entity, items.items())
            if n == 1:  # a repeated entity: a memo slot that piece 0 also used
                piece.add_entity("P-extra", [("9.8", {"y": 2})])
    pkl, js = export.join_pieces(tmp_path, [f"part-{n}" for n in (2, 0, 1)])
    expected = {**IDS, "P-extra": {"9.9": {"x": 1}, "9.8": {"y": 2}}}
    with open(pkl, "rb") as fp:
        assert pickle.load(fp) == expected  # memo slots reused across pieces stay right
    assert ids_read.load_ids(js) == expected and json.loads(js.read_text()).keys() == expected.keys()
    assert len([p for p in tmp_path.iterdir() if p.name.endswith(".part")]) == 6
    export.remove_pieces(tmp_path, ["part-0", "part-1", "part-2", "never-written"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [export.IDS_JSON, export.IDS_PICKLE]


def test_a_missing_piece_publishes_nothing(tmp_path: Path) -> None:
    export.save_ids({"old": {}}, tmp_path)
    with export.IdsPiece(tmp_path, "p0") as piece:
        piece.add_entity("new", [])
    with pytest.raises(FileNotFoundError):
        export.join_pieces(tmp_path, ["p0", "p1"])
    assert ids_read.load_ids(tmp_path / export.IDS_PICKLE) == {"old": {}}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_entity_added_twice_is_merged(tmp_path: Path) -> None:
    with export.IdsWriter(tmp_path) as writer:
        writer.add_entity("A", [("1", {"x": 1})])
        writer.add_entity("B", [("9", {"x": 9})])
        writer.add_entity("A", [("2", {"x": 2}), ("1", {"x": 11})])
    merged = {"A": {"1": {"x": 11}, "2": {"x": 2}}, "B": {"9": {"x": 9}}}
    with open(writer.pkl_path, "rb") as fp:
        assert pickle.load(fp) == merged  # the pickle itself merges (memo + POP)
    assert ids_read.load_ids(writer.json_path) == merged
    # The documented limit: a plain JSON reader keeps only the last copy of a repeated key.
    assert json.loads(writer.json_path.read_text())["A"] == {"2": {"x": 2}, "1": {"x": 11}}


def test_pydicom_value_types_become_plain(tmp_path: Path) -> None:
    ids = {"P": {"u": {"uid": UID("1.2.3"), "is": IS("4"), "ds": DSfloat("1.5"),
                       "mv": MultiValue(str, ["A", "B"]), "tuple": (1, 2)}}}
    pkl, js = export.save_ids(ids, tmp_path)
    assert b"pydicom" not in pkl.read_bytes()
    loaded = ids_read.load_ids(pkl)
    assert loaded == {"P": {"u": {"uid": "1.2.3", "is": 4, "ds": 1.5, "mv": ["A", "B"], "tuple": [1, 2]}}}
    assert type(loaded["P"]["u"]["uid"]) is str and loaded == ids_read.load_ids(js)


def test_lists_of_plain_values_are_copied_and_others_converted(tmp_path: Path) -> None:
    fields = {"plain": ["A", 1, 2.5, None, True], "mixed": ["A", DSfloat("1.5"), IS("2")],
              "nested": [["A"], {"k": [1]}]}
    checked = values.checked_fields(fields, "item")
    assert checked == {"plain": ["A", 1, 2.5, None, True], "mixed": ["A", 1.5, 2],
                       "nested": [["A"], {"k": [1]}]}
    assert checked["plain"] is not fields["plain"]  # a copy, as _plain makes
    assert [type(v) for v in checked["mixed"]] == [str, float, int]


def test_a_plain_parsed_item_takes_the_fast_path_with_the_same_result() -> None:
    class Name(str):
        pass

    plain = {"A": "x", "B": 1, "C": [1.5, "y", None], "D": [], "E": False}
    checked = values.checked_fields(plain, "item")
    assert checked == plain and checked is not plain and checked["C"] is not plain["C"]
    # anything but plain names, values and lists of them goes the slow way, as before
    for odd in ({"A": (1, 2)}, {"A": [UID("1.2")]}, {"A": {"k": 1}}, {Name("A"): "x"}):
        assert values.checked_fields(odd, "item") == {"A": values.plain_value(next(iter(odd.values())), "")}
        assert all(type(k) is str for k in values.checked_fields(odd, "item"))
    assert type(values.checked_fields({"A": [UID("1.2")]}, "item")["A"][0]) is str
    with pytest.raises(IdentifiersError, match="field #1: field name must be a string"):
        values.checked_fields({1: "x"}, "item")


def test_values_nested_too_deeply_are_refused(tmp_path: Path) -> None:
    deep: Any = "x"
    for _ in range(values.MAX_DEPTH + 1):
        deep = [deep]
    path = tmp_path / "ids.json"
    path.write_text(json.dumps({"P": {"i": {"ok": ["a"], "Deep": deep}}}), encoding="utf-8")
    with pytest.raises(IdentifiersError, match=r"entity #1 item #1 field #2: value nested too deeply"):
        ids_read.load_ids(path)


def test_a_key_repeated_inside_an_entity_is_merged_as_before() -> None:
    pairs = [("1", {"x": 1}), ("2", {"x": 2}), ("1", {"y": 3}), ("s", "a"), ("s", "b")]
    assert ids_read.merge_pairs(pairs) == {"1": {"x": 1, "y": 3}, "2": {"x": 2}, "s": "b"}
    assert list(ids_read.merge_pairs(pairs)) == ["1", "2", "s"]
    unique = [("b", 1), ("a", {"x": 1})]
    assert list(ids_read.merge_pairs(unique).items()) == unique


@pytest.mark.parametrize(
    ("value", "kind"),
    [(b"\x00bytes", "bytes"), (PersonName("DOE^JANE^P0001"), "PersonName"), (object(), "object")],
)
def test_unsafe_values_are_refused_by_position(tmp_path: Path, value: Any, kind: str) -> None:
    ids = {"PID-0001-SENT": {"1.2.3": {"PatientID": "ok", "Bad": value}}}
    with pytest.raises(IdentifiersError) as info:
        export.save_ids(ids, tmp_path)
    message = str(info.value)
    assert "entity #1 item #1 field #2" in message
    assert "PID-0001" not in message and "1.2.3" not in message and "DOE" not in message
    assert not list(tmp_path.iterdir())  # nothing published, temp files removed


def test_non_finite_floats_stay_floats_in_the_pickle_and_become_strings_in_json(
    tmp_path: Path,
) -> None:
    # An FD/FL element may hold NaN: one such file must not fail a run's whole export.
    ids = {"P": {"u": {"nan": float("nan"), "inf": float("inf"), "ninf": float("-inf"),
                       "seq": [{"x": float("nan")}], "ok": 1.5}}}
    pkl, js = export.save_ids(ids, tmp_path)
    fields = ids_read.load_ids(pkl)["P"]["u"]
    assert math.isnan(fields["nan"]) and fields["inf"] == math.inf and fields["ninf"] == -math.inf
    assert math.isnan(fields["seq"][0]["x"]) and fields["ok"] == 1.5

    def strict(name: str) -> None:
        raise AssertionError(f"non-standard JSON constant {name}")

    loaded = json.loads(js.read_text(), parse_constant=strict)
    assert loaded["P"]["u"] == {"nan": "NaN", "inf": "Infinity", "ninf": "-Infinity",
                                "seq": [{"x": "NaN"}], "ok": 1.5}


def test_failure_inside_block_keeps_previous_export(tmp_path: Path) -> None:
    export.save_ids({"old": {}}, tmp_path)
    with pytest.raises(RuntimeError):
        with export.IdsWriter(tmp_path) as writer:
            writer.add_entity("new", [("1", {"a": 1})])
            raise RuntimeError("worker lost")
    assert ids_read.load_ids(tmp_path / export.IDS_PICKLE) == {"old": {}}
    assert ids_read.load_ids(tmp_path / export.IDS_JSON) == {"old": {}}
    assert sorted(p.name for p in tmp_path.iterdir()) == [export.IDS_JSON, export.IDS_PICKLE]


class _Payload:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.target}",))


@pytest.mark.parametrize("name", ["deid-ids.pkl", "evil.pickle", "no-extension"])
def test_code_in_pickle_is_refused_and_never_runs(tmp_path: Path, name: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / name
    path.write_bytes(pickle.dumps({"P": {"u": {"f": _Payload(marker)}}}, protocol=2))
    with pytest.raises(IdentifiersError) as info:
        ids_read.load_ids(path)
    assert "it contains code (global '" in str(info.value) and "system'" in str(info.value)
    assert str(info.value).startswith(f"refusing to load {path}")
    assert info.value.path == str(path)
    assert not marker.exists()


def test_even_builtins_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "ids.pkl"
    path.write_bytes(pickle.dumps({"P": {"u": {"f": {1, 2}}}}, protocol=2))  # builtins.set
    with pytest.raises(IdentifiersError, match="global '(__builtin__|builtins).set'"):
        ids_read.load_ids(path)


def test_damaged_files(tmp_path: Path) -> None:
    pkl, js = export.save_ids(IDS, tmp_path)
    pkl.write_bytes(pkl.read_bytes()[:-20])
    with pytest.raises(IdentifiersError, match="not a valid pickle"):
        ids_read.load_ids(pkl)
    js.write_text(js.read_text()[:-5])
    with pytest.raises(IdentifiersError, match="not valid JSON"):
        ids_read.load_ids(js)
    with pytest.raises(IdentifiersError, match="file not found"):
        ids_read.load_ids(tmp_path / "missing.json")


def _nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("doc", "where"),
    [
        ([], "top level: expected a mapping of entities"),
        ({"PID-X": []}, "entity #1: expected a mapping of items"),
        ({"A": {}, "PID-X": {"1.2.3": "PID-X"}}, "entity #2 item #1: expected a mapping of fields"),
        ({"PID-X": {"1.2.3": {"a": 1, "b": {"c": _nested(40)}}}}, "entity #1 item #1 field #2"),
    ],
)
def test_wrong_shapes_name_positions_not_values(tmp_path: Path, doc: Any, where: str) -> None:
    for path in (tmp_path / "ids.json", tmp_path / "ids.pkl"):
        if path.suffix == ".json":
            path.write_text(json.dumps(doc))
        else:
            path.write_bytes(pickle.dumps(doc, protocol=2))
        with pytest.raises(IdentifiersError) as info:
            ids_read.load_ids(path)
        assert where in str(info.value)
        assert "PID-X" not in str(info.value) and "1.2.3" not in str(info.value)


def test_non_string_keys_in_pickle(tmp_path: Path) -> None:
    path = tmp_path / "ids.pkl"
    path.write_bytes(pickle.dumps({"A": {7: {}}}, protocol=2))
    with pytest.raises(IdentifiersError, match="entity #1 item #1: key must be a string"):
        ids_read.load_ids(path)


_STREAM_CHILD = """
import resource, sys
from deid_workers.ids import export
n = int(sys.argv[2])
def items(entity):
    for i in range(n // 10):
        yield f"1.2.826.0.1.{entity}.{i}", {"PatientID": f"PID-{entity}", "InstanceNumber": i,
                                            "StudyDate": "20200101"}
with export.IdsWriter(sys.argv[1]) as writer:
    for e in range(10):
        writer.add_entity(f"PID-{e}", items(e))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _child_peak_kib(folder: Path, items: int) -> int:
    out = subprocess.run([sys.executable, "-c", _STREAM_CHILD, str(folder), str(items)],
                         check=True, capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    return int(out.stdout.strip())


def test_streaming_100k_items_keeps_memory_modest(tmp_path: Path) -> None:
    """Writing 100k items from generators holds a chunk at a time, not the whole export.

    Peak RSS of a child process (tracemalloc would make this test 20x slower): 100k items
    versus 1k items. Held in memory, 100k such items take about 40 MB.
    """
    small = _child_peak_kib(tmp_path / "small", 1_000)
    big = _child_peak_kib(tmp_path / "big", 100_000)
    size = (tmp_path / "big" / export.IDS_PICKLE).stat().st_size
    assert size > 5_000_000  # the export really is big...
    assert big - small < 8 * 1024  # ...and writing it grew the process by less than 8 MB
    loaded = ids_read.load_ids(tmp_path / "big" / export.IDS_PICKLE)
    assert sum(len(v) for v in loaded.values()) == 100_000
    assert loaded["PID-9"]["1.2.826.0.1.9.9999"]["InstanceNumber"] == 9999
    assert loaded == ids_read.load_ids(tmp_path / "big" / export.IDS_JSON)


def test_json_items_from_the_store_are_written_as_checked_ones(tmp_path: Path) -> None:
    fields = json.loads(json.dumps({"PatientID": "P1", "n": 3, "x": 1.5, "mv": ["A", "B"],
                                    "seq": [{"CodeValue": "1"}], "none": None, "u": "Ünï",
                                    "text": "NaN-ish, not a number"}))
    odd = {"PhysicalDeltaX": float("nan"), "y": float("-inf")}
    items = [("1.2", fields), ("1.3", odd), ("ü.4", {})]
    outputs = []
    for raw in (False, True):
        folder = tmp_path / str(raw)
        with export.IdsWriter(folder) as writer:
            if raw:  # as the store keeps them: json.dumps' own spelling, NaN left bare
                writer.add_entity_json("P1", [(i, json.dumps(f).encode()) for i, f in items])
            else:
                writer.add_entity("P1", items)
        outputs.append(((folder / export.IDS_PICKLE).read_bytes(),
                        (folder / export.IDS_JSON).read_bytes()))
    assert outputs[0] == outputs[1]
    got = ids_read.load_ids(tmp_path / "True" / export.IDS_PICKLE)
    assert got["P1"]["1.2"] == fields and math.isnan(got["P1"]["1.3"]["PhysicalDeltaX"])
    assert b'"PhysicalDeltaX": "NaN"' in outputs[1][1]


def _json_docs() -> list[str]:
    export = json.dumps(IDS)
    indented = json.dumps(IDS, indent=3, ensure_ascii=False)
    repeated = '{"A": {"1": {"x": 1}}, "B": {}, "A": {"2": {"x": 2}, "1": {"x": 11}}}'
    spaced = ' \n{ "P" :{"i":{"s":"a, b: {c}\\" ]"}} ,\t"Q": {} }\r\n'
    return [export, indented, repeated, spaced, "{}", " { } "]


@pytest.mark.parametrize("read", [1, 2, 3, 7, 64])
def test_json_ids_parse_the_same_whatever_the_read_size(tmp_path: Path, monkeypatch, read) -> None:
    monkeypatch.setattr(ids_read, "_JSON_READ", read)
    for n, doc in enumerate(_json_docs()):
        path = tmp_path / f"{n}.json"
        path.write_text(doc, encoding="utf-8")
        expected = json.loads(doc, object_pairs_hook=ids_read.merge_pairs)
        assert ids_read.load_ids(path) == expected


def test_json_ids_stream_entity_by_entity(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(ids_read, "_JSON_READ", 16)
    path = tmp_path / "ids.json"
    path.write_text('{"A": {"1": {}}, "B": {"2": {}}, "A": {"3": {}}} trailing', encoding="utf-8")
    entities = ids_read.iter_ids_file(path)
    assert next(entities) == ("A", {"1": {}})  # before the bad end of the file is read
    assert next(entities) == ("B", {"2": {}})
    assert next(entities) == ("A", {"3": {}})
    with pytest.raises(IdentifiersError, match="not valid JSON"):
        next(entities)


def test_every_cut_of_a_json_ids_file_is_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(ids_read, "_JSON_READ", 5)
    doc = json.dumps({"P1": {"1.2": {"a": [1, {"b": "é"}]}}, "P2": {}}, ensure_ascii=False)
    path = tmp_path / "cut.json"
    data = doc.encode("utf-8")
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        with pytest.raises(IdentifiersError):
            ids_read.load_ids(path)


def test_utf16_json_ids_still_load(tmp_path: Path) -> None:
    path = tmp_path / "ids.json"
    path.write_text(json.dumps(IDS, ensure_ascii=False), encoding="utf-16")  # with a BOM
    assert ids_read.load_ids(path) == IDS


@pytest.mark.parametrize("read", [1, 3, 64, 1 << 20])
def test_chunks_carry_the_files_own_text_and_give_back_what_load_ids_reads(tmp_path, monkeypatch,
                                                                            read) -> None:
    monkeypatch.setattr(ids_read, "_JSON_READ", read)
    for n, doc in enumerate(_json_docs()):
        path = tmp_path / f"{n}.json"
        path.write_text(doc, encoding="utf-8")
        for items in (1, 2, 1000):
            chunks = list(ids_chunks.iter_ids_chunks(path, items))
            merged: dict[str, Any] = {}
            for text, count in chunks:
                pairs = ids_chunks.parse_ids_chunk(text)
                assert count == sum(len(v) for _, v in pairs)
                for entity, its in pairs:
                    merged.setdefault(entity, {}).update(its)
            assert merged == ids_read.load_ids(path)
            if doc == _json_docs()[1] and items == 1000:  # indented: its text is kept as is
                assert len(chunks) == 1 and '\n         "' in chunks[0][0]


def test_chunks_hold_whole_entities_of_about_the_size_asked(tmp_path: Path) -> None:
    ids = {f"P{e}": {f"{e}.{i}": {"n": i} for i in range(e + 1)} for e in range(6)}  # 1..6 items
    path = tmp_path / "ids.json"
    path.write_text(json.dumps(ids))
    sizes = [count for _, count in ids_chunks.iter_ids_chunks(path, 4)]
    assert sizes == [6, 4, 5, 6]  # cut after the entity that reaches 4: 1+2+3, 4, 5, 6
    entities = [[e for e, _ in ids_chunks.parse_ids_chunk(t)] for t, _ in ids_chunks.iter_ids_chunks(path, 4)]
    assert entities == [["P0", "P1", "P2"], ["P3"], ["P4"], ["P5"]]


def test_chunks_keep_only_the_fields_asked_yet_every_field_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "ids.json"
    path.write_text(json.dumps({"P": {"1": {"id": "S1", "PatientName": "DOE", "n": [1]},
                                      "2": {"PatientName": "DOE"}}}))
    for fields, want in ((["id", "n"], {"1": {"id": "S1", "n": [1]}, "2": {}}),
                         ([], {"1": {}, "2": {}})):
        (text, count), = ids_chunks.iter_ids_chunks(path, fields=fields)
        assert (count, ids_chunks.parse_ids_chunk(text)) == (2, [("P", want)])
    deep = "[" * 40 + "]" * 40
    path.write_text('{"P": {"1": {"id": "S1", "PatientName": %s}}}' % deep)
    with pytest.raises(IdentifiersError, match="entity #1 item #1 field #2: value nested too deeply"):
        list(ids_chunks.iter_ids_chunks(path, fields=["id"]))  # a field put never reads, still checked


def test_chunks_of_a_pickle_are_its_checked_values(tmp_path: Path) -> None:
    ids = {"P": {"u": {"ds": DSfloat("1.5"), "mv": MultiValue(str, ["A", "B"]), "nan": math.nan}}}
    pkl, _ = export.save_ids(ids, tmp_path)
    (text, count), = ids_chunks.iter_ids_chunks(pkl)
    (entity, items), = ids_chunks.parse_ids_chunk(text)
    assert (entity, count, items["u"]["ds"], items["u"]["mv"]) == ("P", 1, 1.5, ["A", "B"])
    assert math.isnan(items["u"]["nan"])  # kept a float, as the pickle keeps it


def test_a_bad_entity_stops_the_chunks_where_it_is(tmp_path: Path) -> None:
    path = tmp_path / "ids.json"
    path.write_text('{"P1": {"1": {}}, "P2": {"2": {}}, "P3": 5}')
    chunks = ids_chunks.iter_ids_chunks(path, 1)
    assert [e for e, _ in ids_chunks.parse_ids_chunk(next(chunks)[0])] == ["P1"]
    assert [e for e, _ in ids_chunks.parse_ids_chunk(next(chunks)[0])] == ["P2"]
    with pytest.raises(IdentifiersError, match="entity #3: expected a mapping of items"):
        next(chunks)


def test_a_pickle_sharing_a_container_is_refused_but_shared_strings_load(tmp_path: Path) -> None:
    items = {"u": {"a": 1}}
    for shared in ({"P": items, "Q": items}, {"P": {"u": {"x": [1, 2]}, "v": {"x": None}}}):
        if shared.get("P", {}).get("v") is not None:
            shared["P"]["v"]["x"] = shared["P"]["u"]["x"]  # one list in two items
        path = tmp_path / "shared.pkl"
        path.write_bytes(pickle.dumps(shared, protocol=2))
        with pytest.raises(IdentifiersError, match="a value is shared by reference"):
            ids_read.load_ids(path)
    name = "DOE^JANE"  # one str object in many places: the pickler shares it, harmlessly
    plain = {"P": {f"{i}": {"PatientName": name, "Other": [name, name]} for i in range(3)}}
    path.write_bytes(pickle.dumps(plain, protocol=2))
    assert ids_read.load_ids(path) == plain


def test_one_huge_entity_is_read_an_item_at_a_time(tmp_path: Path) -> None:
    # One patient of 30,000 items (about 16 MB of JSON) costs the producer a chunk, not the
    # entity: the text, the parsed entity and its copy are never held at once.
    import tracemalloc

    path = tmp_path / "ids.json"
    with open(path, "w") as fh:
        fh.write('{"P": {')
        fh.write(", ".join(f'"1.2.{i}": {{"PatientName": "{"N" * 500}", "n": {i}}}'
                           for i in range(30_000)))
        fh.write('}, "Q": {"9": {}}}')
    assert path.stat().st_size > 16_000_000
    tracemalloc.start()
    try:
        counts = [count for _, count in ids_chunks.iter_ids_chunks(path, 1000)]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert counts == [2000] * 15 + [1]  # cut inside P once a chunk holds twice its items
    assert peak < 8_000_000  # a chunk's text, its items and a read; never the entity
    first = ids_chunks.parse_ids_chunk(next(ids_chunks.iter_ids_chunks(path, 1000))[0])
    assert [(e, len(items)) for e, items in first] == [("P", 2000)]


def test_an_item_too_big_to_be_one_files_fields_is_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(ids_read, "IDS_ITEM_MAX_CHARS", 1000)
    monkeypatch.setattr(ids_read, "_JSON_READ", 64)
    path = tmp_path / "ids.json"
    path.write_text(json.dumps({"P": {"1": {"a": "x"}, "2": {"a": "y" * 5000}}}))
    with pytest.raises(IdentifiersError, match=r"entity #1 item #2: larger than 1000 characters"):
        list(ids_chunks.iter_ids_chunks(path))
