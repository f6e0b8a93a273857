"""Identifiers export and import: ``ids[entity][item][field] = value``, as deid's client shapes it.

Export writes ``deid-ids.pkl`` (what deid users load) and ``deid-ids.json`` side by side, one
entity at a time, so a run with millions of files never holds all its ids in one process: the
pickle is written opcode by opcode (protocol 2) and the JSON piece by piece. Both appear only
when complete (temp file, fsync, rename). A sharded export writes pieces (:class:`IdsPiece`)
in several processes and concatenates them (:func:`join_pieces`).

Import streams a JSON file entity by entity (:func:`iter_ids_file`), or in chunks of whole
entities that workers write into the run store (:func:`iter_ids_chunks`), and refuses code: a
pickle is loaded with an unpickler that resolves no global at all, so a crafted
``deid-ids.pkl`` cannot run anything (plain dict/list/str/int/float/bool/None need no global).
Error messages name positions by number (``entity #3 item #1``), never by key, since keys are
PatientIDs and UIDs.
"""

from __future__ import annotations

import codecs
import io
import json
import math
import os
import pickle
import shutil
import struct
from collections.abc import Collection, Iterable, Iterator, Mapping, MutableSequence
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from ..errors import IdentifiersError
from ..fs.atomicfile import AtomicFile

__all__ = [
    "IDS_JSON",
    "IDS_PICKLE",
    "IDS_MODE",
    "IdsPiece",
    "IdsWriter",
    "IDS_CHUNK_ITEMS",
    "iter_ids_chunks",
    "iter_ids_file",
    "join_pieces",
    "parse_ids_chunk",
    "json_text",
    "piece_paths",
    "remove_pieces",
    "load_ids",
    "save_ids",
]

IDS_PICKLE = "deid-ids.pkl"
IDS_JSON = "deid-ids.json"
IDS_MODE = 0o600
"""Identifiers files (and pieces) are readable by their owner only: they are PHI."""

_CHUNK = 512
"""Items pickled and JSON-encoded together: bounded memory, few Python-level calls."""

_COPY_BUFFER = 1 << 20
"""Bytes per read when pieces of a sharded export are joined."""

_MAX_DEPTH = 32
"""Deepest nesting accepted inside one field value (sequence items as dicts in lists)."""

# Pickle opcodes (protocol 2), written by hand so entities stream out one at a time.
_PROTO2 = b"\x80\x02"
_EMPTY_DICT = b"}"
_SETITEM = b"s"
_POP = b"0"
_STOP = b"."
_LONG_BINPUT = b"r"
_LONG_BINGET = b"j"


def _plain(value: Any, where: str, depth: int = 0) -> Any:
    """``value`` as plain Python (str/int/float/bool/None/list/dict with str keys).

    Converts subclasses (pydicom's UID, IS, DSfloat, MultiValue) to their base types: a
    subclass would pickle as a global reference, which our own loader refuses.
    """
    if depth > _MAX_DEPTH:
        raise IdentifiersError(f"{where}: value nested too deeply")
    kind = type(value)
    if value is None or kind is str or kind is int or kind is bool:
        return value
    if isinstance(value, float):
        return float(value)  # NaN and infinities too: see json_text
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, Mapping):
        out = {}
        for key, sub in value.items():
            if not isinstance(key, str):
                raise IdentifiersError(f"{where}: mapping keys must be strings")
            out[str(key)] = _plain(sub, where, depth + 1)
        return out
    if isinstance(value, (list, tuple, MutableSequence)):  # MutableSequence: pydicom MultiValue
        return [_plain(sub, where, depth + 1) for sub in value]
    raise IdentifiersError(f"{where}: value of type {type(value).__name__} is not JSON-safe")


_LEAVES = frozenset({str, int, float, bool, type(None)})
"""Types :func:`_plain` returns as they are (exactly these: subclasses are converted)."""
_LEAVES_OR_LIST = _LEAVES | {list}
_TEXT = frozenset({str})

_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def json_text(value: Any) -> str:
    """``value`` as strict JSON; a NaN or infinite float becomes the string "NaN", "Infinity"
    or "-Infinity".

    Why: a float element (FD/FL) may hold NaN, and deid's pickle keeps it as a float; JSON has
    no such number, and refusing it made one such file fail a whole run's export. The pickle
    beside the JSON keeps the float.
    """
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(value), allow_nan=False)


def _json_member(item: str, fields: Any, text: bytes) -> bytes:
    """``"item": {fields}`` for the JSON export, reusing ``text`` (fields as ``json.dumps``
    spelled them) unless it holds a bare NaN or infinity, which strict JSON spells as text."""
    if b"NaN" in text or b"Infinity" in text:
        return json_text({item: fields}).encode()[1:-1]
    return json.dumps(item).encode() + b": " + text


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return _NON_FINITE[repr(value)]
    if isinstance(value, dict):
        return {key: _finite(sub) for key, sub in value.items()}
    if isinstance(value, list):
        return [_finite(sub) for sub in value]
    return value


def _fields(fields: Any, where: str) -> dict[str, Any]:
    if type(fields) is dict and set(map(type, fields)) <= _TEXT:
        # A parsed JSON item: its types are read in C, so a plain one is checked and copied
        # without a Python step per field (12 -> 9 us an item of a put --ids file, measured).
        kinds = set(map(type, fields.values()))
        if kinds <= _LEAVES_OR_LIST:
            out = dict(fields)
            for name, value in out.items():
                if type(value) is list:
                    if not set(map(type, value)) <= _LEAVES:
                        break
                    out[name] = list(value)
            else:
                return out
    if not isinstance(fields, Mapping):
        raise IdentifiersError(f"{where}: expected a mapping of fields")
    out: dict[str, Any] = {}
    for n, (name, value) in enumerate(fields.items(), 1):
        if type(name) is not str:
            if not isinstance(name, str):
                raise IdentifiersError(f"{where} field #{n}: field name must be a string")
            name = str(name)
        # Most values are plain text or numbers, or lists of them: kept as they are, without
        # building the error context (the export of a million files spent half its time on it,
        # and so did loading a JSON --ids file).
        kind = type(value)
        if kind in _LEAVES:
            out[name] = value
        elif kind is list and all(type(sub) in _LEAVES for sub in value):
            out[name] = list(value)
        else:
            out[name] = _plain(value, f"{where} field #{n}")
    return out



class IdsWriter:
    """Stream an ids export into ``folder``: ``deid-ids.pkl`` and ``deid-ids.json``.

    Use as a context manager; call :meth:`add_entity` once per entity. Both files are
    published on a clean exit and discarded if the block raises.

    Callers should pass each entity once. If one comes twice its items are still merged
    correctly in the pickle (the entity dict is memoised and reopened) and by :func:`load_ids`
    for the JSON, but a plain ``json.load`` elsewhere keeps only the last copy of a repeated key.
    """

    _HEADS = (_PROTO2 + _EMPTY_DICT, b"{")
    _TAILS = (_STOP, b"}\n")
    _NAMES = (IDS_PICKLE, IDS_JSON)

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self._folder = Path(folder)
        self._folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._files: tuple[AtomicFile, AtomicFile] | None = None
        self._pkl: BinaryIO | None = None
        self._json: BinaryIO | None = None
        self._memo: dict[str, int] = {}
        self._buf = io.BytesIO()
        self._pickler = pickle.Pickler(self._buf, protocol=2)
        self._pickler.fast = True  # no memo opcodes in pieces: ours are the only ones
        self._closed = False

    @property
    def pkl_path(self) -> Path:
        return self._folder / self._NAMES[0]

    @property
    def json_path(self) -> Path:
        return self._folder / self._NAMES[1]

    def __enter__(self) -> IdsWriter:
        self._open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _open(self) -> None:
        if self._pkl is not None:
            return
        self._files = (AtomicFile(self.pkl_path, binary=True, mode=IDS_MODE),
                       AtomicFile(self.json_path, binary=True, mode=IDS_MODE))
        self._pkl, self._json = self._files[0].file, self._files[1].file
        self._pkl.write(self._HEADS[0])
        self._json.write(self._HEADS[1])

    def _piece(self, obj: Any) -> bytes:
        """Pickle ``obj`` without its PROTO header and STOP, to splice into the stream."""
        self._buf.seek(0)
        self._buf.truncate()
        self._pickler.dump(obj)
        return self._buf.getvalue()[2:-1]

    def add_entity(self, entity: str, items: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        """Append ``entity`` and its items; ``items`` may be a generator (consumed once)."""
        self._guarded(entity, items, False)

    def add_entity_json(self, entity: str, items: Iterable[tuple[str, bytes]]) -> None:
        """Append ``entity`` with each item's fields as JSON text, as the run store keeps them.

        Why: decoded from JSON, the values are plain already (checking them again took a fifth
        of an export), and text spelled as :func:`json_text` spells it is copied into the JSON
        file as it is, which saves encoding it again (a quarter of an export).
        """
        self._guarded(entity, items, True)

    def _guarded(self, entity: str, items: Iterable[tuple[str, Any]], raw: bool) -> None:
        if self._closed:
            raise ValueError("IdsWriter is closed")
        self._open()
        try:
            self._add(entity, items, raw)
        except BaseException:
            # A half-written entity leaves both streams unusable: discard them.
            self.abort()
            raise

    def _add(self, entity: str, items: Iterable[tuple[str, Any]], raw: bool) -> None:
        assert self._pkl is not None and self._json is not None
        n_entity = len(self._memo) + 1
        if not isinstance(entity, str):
            raise IdentifiersError(f"entity #{n_entity}: key must be a string")
        entity = str(entity)
        repeat = entity in self._memo
        if repeat:
            self._pkl.write(_LONG_BINGET + struct.pack("<I", self._memo[entity]))
        else:
            index = len(self._memo)
            self._memo[entity] = index
            self._pkl.write(self._piece(entity) + _EMPTY_DICT + _LONG_BINPUT + struct.pack("<I", index))
        where_entity = f"entity #{self._memo[entity] + 1}"
        if n_entity > 1 or repeat:
            self._json.write(b", ")
        self._json.write(json.dumps(entity).encode() + b": {")
        chunk: dict[str, dict[str, Any]] = {}
        texts: list[bytes] = []
        first = True
        for n, (item, fields) in enumerate(items, 1):
            if not isinstance(item, str):
                raise IdentifiersError(f"{where_entity} item #{n}: key must be a string")
            item = str(item)
            if raw:
                chunk[item] = json.loads(fields)
                texts.append(_json_member(item, chunk[item], fields))
            else:
                chunk[item] = _fields(fields, f"{where_entity} item #{n}")
            if len(chunk) >= _CHUNK:
                self._write_chunk(chunk, texts, first)
                first, chunk, texts = False, {}, []
        if chunk:
            self._write_chunk(chunk, texts, first)
        self._pkl.write(_POP if repeat else _SETITEM)
        self._json.write(b"}")

    def _write_chunk(self, chunk: dict[str, dict[str, Any]], texts: list[bytes],
                     first: bool) -> None:
        """Append a few items to the entity dict on top of the pickle stack and to the JSON
        (``texts``: their JSON members when already spelled, else encoded here).

        A fast-mode pickle of a dict is EMPTY_DICT followed by opcodes that set its items
        into "the dict on top of the stack"; dropping the EMPTY_DICT makes them fill ours.
        One dump per chunk keeps the work in C instead of several Python calls per item.
        """
        assert self._pkl is not None and self._json is not None
        piece = self._piece(chunk)
        assert piece[:1] == _EMPTY_DICT
        self._pkl.write(piece[1:])
        if not first:
            self._json.write(b", ")
        self._json.write(b", ".join(texts) if texts else json_text(chunk).encode()[1:-1])

    def close(self) -> None:
        """Finish both files and rename them into place."""
        if self._closed:
            return
        self._open()
        assert self._files is not None and self._pkl is not None and self._json is not None
        try:
            self._pkl.write(self._TAILS[0])
            self._json.write(self._TAILS[1])
            for f in self._files:
                f.commit()
        except BaseException:
            self.abort()
            raise
        self._closed = True

    def abort(self) -> None:
        """Discard both temp files (the previous export, if any, stays as it was)."""
        self._closed = True
        for f in self._files or ():
            f.discard()


class IdsPiece(IdsWriter):
    """One shard of a sharded export: the entries of some entities, to be joined by
    :func:`join_pieces` into the two ids files.

    Why pieces splice: the body of a protocol-2 pickle of a dict is a run of "key, value,
    SETITEM" on the dict below, so runs written by different processes concatenate into one
    dict (memo slots are set before use inside each piece, so reusing slot numbers across
    pieces is harmless); the JSON body is a comma-separated member list. A piece is written
    and published like the final files (temp name, fsync, rename), so a shard task that is
    redelivered simply writes its piece again.
    """

    _HEADS = (b"", b"")
    _TAILS = (b"", b"")

    def __init__(self, folder: str | os.PathLike[str], name: str) -> None:
        pkl, js = piece_paths(folder, name)
        self._NAMES = (pkl.name, js.name)
        super().__init__(folder)


def piece_paths(folder: str | os.PathLike[str], name: str) -> tuple[Path, Path]:
    """Where :class:`IdsPiece` ``name`` lies: hidden files next to the final ones."""
    return Path(folder) / f".{name}.pkl.part", Path(folder) / f".{name}.json.part"


def join_pieces(folder: str | os.PathLike[str], names: Iterable[str]) -> tuple[Path, Path]:
    """Publish ``deid-ids.pkl`` and ``deid-ids.json`` in ``folder`` from the pieces ``names``,
    in order; the pieces stay (see :func:`remove_pieces`).

    A missing piece raises FileNotFoundError and publishes nothing.
    """
    paths = [piece_paths(folder, name) for name in names]
    folder = Path(folder)
    with AtomicFile(folder / IDS_PICKLE, binary=True, mode=IDS_MODE) as pkl, \
            AtomicFile(folder / IDS_JSON, binary=True, mode=IDS_MODE) as js:
        pkl.write(IdsWriter._HEADS[0])
        js.write(IdsWriter._HEADS[1])
        first = True
        for pkl_part, json_part in paths:
            with open(pkl_part, "rb") as src:
                shutil.copyfileobj(src, pkl, _COPY_BUFFER)
            with open(json_part, "rb") as src:
                if os.fstat(src.fileno()).st_size:
                    if not first:
                        js.write(b", ")
                    shutil.copyfileobj(src, js, _COPY_BUFFER)
                    first = False
        pkl.write(IdsWriter._TAILS[0])
        js.write(IdsWriter._TAILS[1])
    return folder / IDS_PICKLE, folder / IDS_JSON


def remove_pieces(folder: str | os.PathLike[str], names: Iterable[str]) -> None:
    """Delete pieces (they hold identifiers); pieces already gone are fine."""
    for name in names:
        for path in piece_paths(folder, name):
            path.unlink(missing_ok=True)


def save_ids(ids: Mapping[str, Mapping[str, Mapping[str, Any]]], folder: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write a whole in-memory ``ids`` dict; returns ``(pkl_path, json_path)``."""
    if not isinstance(ids, Mapping):
        raise IdentifiersError("top level: expected a mapping of entities")
    with IdsWriter(folder) as writer:
        for n, (entity, items) in enumerate(ids.items(), 1):
            if not isinstance(items, Mapping):
                raise IdentifiersError(f"entity #{n}: expected a mapping of items")
            writer.add_entity(entity, items.items())
    return writer.pkl_path, writer.json_path


class _NoCodeUnpickler(pickle.Unpickler):
    """Resolves no global: plain containers and scalars load, anything callable is refused."""

    def __init__(self, fp: BinaryIO, shown: str) -> None:
        super().__init__(fp)
        self._shown = shown

    def find_class(self, module: str, name: str) -> Any:
        err = IdentifiersError(f"refusing to load {self._shown}: it contains code (global '{module}.{name}')")
        err.path = self._shown
        raise err

    def persistent_load(self, pid: Any) -> Any:
        err = IdentifiersError(f"refusing to load {self._shown}: it contains a persistent reference")
        err.path = self._shown
        raise err


def _merge_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """JSON object hook: a repeated key whose values are both objects is merged, not replaced
    (an entity written twice by :class:`IdsWriter`)."""
    out: dict[str, Any] = dict(pairs)
    if len(out) == len(pairs):
        return out  # no key repeats: the common case, built in C (the loop below was a third
        # of loading a JSON --ids file)
    out = {}
    for key, value in pairs:
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            old.update(value)
        else:
            out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError("NaN or infinite number")


def load_ids(path: str | os.PathLike[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """Load ids from a ``.json`` or ``.pkl``/``.pickle`` file (other names: sniffed).

    Raises :class:`IdentifiersError` for code in a pickle, a damaged file or the wrong shape.
    """
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for entity, items in iter_ids_file(path):
        if entity in out:  # written twice by IdsWriter: merged, as the pickle merges it
            out[entity].update(items)
        else:
            out[entity] = items
    return out


def iter_ids_file(path: str | os.PathLike[str]
                  ) -> Iterator[tuple[str, dict[str, dict[str, Any]]]]:
    """The entities of an ids file, one at a time, each checked as :func:`load_ids` checks it.

    Why: ``put --ids`` of a million files would otherwise hold gigabytes of ids in the
    producer. A JSON file is parsed entity by entity, so only one entity and a read buffer are
    in memory; an entity written twice comes twice. A pickle has no entity boundary an
    unpickler can stop at, so it is loaded whole first: use the JSON file for big runs.
    Errors, as :class:`IdentifiersError`, come when the bad part is reached.
    """
    for entity, items, _ in _iter_checked(path):
        yield entity, items


IDS_CHUNK_ITEMS = 1000
"""Items (whole entities) per chunk of an ids file that one ``deid.load`` task writes."""


def iter_ids_chunks(path: str | os.PathLike[str], items: int = IDS_CHUNK_ITEMS, *,
                    fields: Collection[str] | None = None) -> Iterator[tuple[str, int]]:
    """The ids of a file in chunks of whole entities, about ``items`` items each, every item
    checked as :func:`load_ids` checks it: ``(text, items in it)``, in file order.

    Why: writing ids into the run store (packing each item, sending it) costs about twice the
    read and check, so ``put --ids`` leaves it to the workers, and the producer only reads,
    checks and cuts. A chunk is a JSON list of ``[entity, items]`` pairs (an entity written
    twice is two pairs); the items are the file's own text when it is JSON, so nothing is
    encoded twice, and ``json.dumps`` of the checked values when it is a pickle. With
    ``fields``, each item keeps only those names (what the run's recipe can read, see
    :func:`~deid_workers.recipe.ids_fields_read`); every field is still checked. The cut
    depends only on the file and ``items``, so a resumed run gets the same chunks.

    A JSON file is read an item at a time (:meth:`_JsonEntities.items`), and an entity of more
    than a chunk's items is cut into several pairs once a chunk holds twice ``items`` (and at
    least :data:`IDS_CHUNK_ITEMS`): so the producer holds about a chunk whatever one entity
    (one patient) weighs. An item key written
    twice inside one entity is merged when both fall in the same chunk; across a cut the later
    replaces the earlier, as for an entity written twice.
    """
    keep = None if fields is None else frozenset(fields)
    parts: list[str] = []  # the chunk's finished pairs
    members: list[str] = []  # the items read of the current entity's pair
    entity_text = ""
    pair_open = False
    count = 0
    cut_at = max(2 * items, IDS_CHUNK_ITEMS)

    def close_pair() -> None:
        parts.append(f"[{entity_text}, {{{', '.join(members)}}}]")
        members.clear()

    for entity, item, checked, raw in _iter_checked_items(path):
        if item is _ENTITY_START:
            entity_text, pair_open = json.dumps(entity), True
            continue
        if item is _ENTITY_END:
            if pair_open:
                close_pair()
                pair_open = False
            if count >= items:
                yield "[" + ", ".join(parts) + "]", count
                parts, count = [], 0
            continue
        if keep is not None:
            checked = {name: value for name, value in checked.items() if name in keep} if keep else {}
            raw = None
        members.append(f"{json.dumps(item)}: {json.dumps(checked) if raw is None else raw}")
        pair_open = True
        count += 1
        if count >= cut_at:  # an entity bigger than a chunk: cut inside it
            close_pair()
            pair_open = False
            yield "[" + ", ".join(parts) + "]", count
            parts, count = [], 0
    if parts:
        yield "[" + ", ".join(parts) + "]", count


def parse_ids_chunk(text: str) -> list[tuple[str, dict[str, dict[str, Any]]]]:
    """The ``(entity, items)`` pairs of a chunk :func:`iter_ids_chunks` made.

    Not checked again: the producer checked every value it cut, and a JSON parse of that text
    (with the same rule for a repeated key) gives back the same plain values.
    """
    return [(entity, items) for entity, items in json.loads(text, object_pairs_hook=_merge_pairs)]


def _iter_checked(path: str | os.PathLike[str]
                  ) -> Iterator[tuple[str, dict[str, dict[str, Any]], str | None]]:
    """``(entity, checked items, the items' JSON text as the file spells it)``; the text is
    None for a pickle."""
    shown = os.fspath(path)
    try:
        with open(path, "rb") as fp:
            if _is_pickle(fp, shown):
                for e, (entity, items) in enumerate(_load_pickle(fp, shown).items(), 1):
                    yield (*_checked_entity(e, entity, items, shown), None)
            else:
                reader = _JsonEntities(fp, shown)
                for e, (entity, items) in enumerate(reader, 1):
                    yield (*_checked_entity(e, entity, items, shown), reader.raw)
    except FileNotFoundError:
        raise IdentifiersError("file not found", shown) from None
    except PermissionError:
        raise IdentifiersError("permission denied", shown) from None
    except IsADirectoryError:
        raise IdentifiersError("not a regular file", shown) from None


_ENTITY_START: Any = object()
_ENTITY_END: Any = object()
"""Markers :func:`_iter_checked_items` gives in place of an item around each entity's items."""


def _iter_checked_items(path: str | os.PathLike[str]
                        ) -> Iterator[tuple[str, Any, dict[str, Any], str | None]]:
    """``(entity, item, checked fields, the fields' JSON text as the file spells it)`` for every
    item in file order, each entity's items between ``(entity, _ENTITY_START, {}, None)`` and
    ``(entity, _ENTITY_END, {}, None)``; the text is None for a pickle. A JSON file is parsed
    an item at a time, so one big entity is never held whole."""
    shown = os.fspath(path)
    try:
        with open(path, "rb") as fp:
            if _is_pickle(fp, shown):
                for e, (entity, items) in enumerate(_load_pickle(fp, shown).items(), 1):
                    entity, checked = _checked_entity(e, entity, items, shown)
                    yield entity, _ENTITY_START, {}, None
                    for item, fields in checked.items():
                        yield entity, item, fields, None
                    yield entity, _ENTITY_END, {}, None
                return
            reader = _JsonEntities(fp, shown)
            for e, entity, i, item, fields in reader.items():
                if i == 0:
                    yield entity, _ENTITY_START if item is _ENTITY_START else _ENTITY_END, {}, None
                    continue
                where = f"entity #{e} item #{i}"
                if not isinstance(item, str):  # pragma: no cover - JSON keys are strings
                    raise IdentifiersError(f"{where}: key must be a string", shown)
                try:
                    checked = _fields(fields, where)
                except IdentifiersError as exc:
                    raise IdentifiersError(str(exc), shown) from None
                yield entity, item, checked, reader.raw
    except FileNotFoundError:
        raise IdentifiersError("file not found", shown) from None
    except PermissionError:
        raise IdentifiersError("permission denied", shown) from None
    except IsADirectoryError:
        raise IdentifiersError("not a regular file", shown) from None


def _is_pickle(fp: BinaryIO, shown: str) -> bool:
    """By the name (.pkl, .pickle, .json), else by the first byte (a protocol 2+ pickle)."""
    suffix = Path(shown).suffix.lower()
    if suffix in (".pkl", ".pickle"):
        return True
    if suffix == ".json":
        return False
    first = fp.read(1)
    fp.seek(0)
    return first == b"\x80"


def _load_pickle(fp: BinaryIO, shown: str) -> dict[Any, Any]:
    try:
        data = _NoCodeUnpickler(fp, shown).load()
    except IdentifiersError:
        raise
    except Exception:
        raise IdentifiersError("not a valid pickle (truncated or corrupt)", shown) from None
    if fp.read(1):
        raise IdentifiersError("unexpected data after the pickle", shown)
    if not isinstance(data, dict):
        raise IdentifiersError("top level: expected a mapping of entities", shown)
    _refuse_shared(data, shown)
    return data


_CONTAINERS = frozenset({dict, list, tuple})


def _refuse_shared(data: dict[Any, Any], shown: str) -> None:
    """Refuse a pickle in which one container (dict, list, tuple) is reached twice.

    Unpickling builds at most one object per few bytes of the file, so the loaded graph is as
    small as the file; but a pickle may reference one list from two places (its memo), and
    ``[L, L]`` nested 30 times is a few hundred bytes that every walk of the values (checking,
    copying, JSON) visits as 2**30 elements. No export shares a container (ours writes each
    value once, deid's pickles plain nested dicts), so one reached twice is refused here,
    before any walk: each container is then visited once, and the work stays linear in the
    file. Strings and numbers may be shared (a pickler shares equal strings): they are leaves.
    A dict's values are looked at in C first, so an item of plain values costs no Python step.
    """
    seen: set[int] = set()
    stack: list[Any] = [data]
    while stack:
        obj = stack.pop()
        key = id(obj)
        if key in seen:
            raise IdentifiersError("refusing to load: a value is shared by reference (a pickle "
                                   "that expands when read; export it again)", shown)
        seen.add(key)
        values = obj.values() if type(obj) is dict else obj
        if set(map(type, values)) & _CONTAINERS:
            stack.extend(v for v in values if type(v) in _CONTAINERS)


_JSON_READ = 1 << 20
"""Bytes read at a time when an ids JSON file is parsed entity by entity."""

IDS_ITEM_MAX_CHARS = 16 << 20
"""Characters of JSON one item (one file's fields) may take when a file is read an item at a
time: get stores at most 1,024 characters a field, so a real item is a few KB; past this the
file is refused rather than buffered."""

_JSON_SPACE = " \t\n\r"


class _JsonEntities:
    """``(entity, items)`` pairs of a JSON object read a buffer at a time.

    ``raw_decode`` parses one value from a position; a value cut by the end of the buffer
    fails to parse, so more is read and the same value is parsed again (an object or a string
    cannot parse before its closing character is there, so a cut value never passes).
    """

    def __init__(self, fp: BinaryIO, shown: str) -> None:
        self._fp = fp
        self._shown = shown
        self._decoder: Any = None
        self._text = ""
        self._pos = 0
        self._eof = False
        self.raw = ""
        """The text of the value parsed last, as the file spells it."""
        self._json = json.JSONDecoder(object_pairs_hook=_merge_pairs,
                                      parse_constant=_reject_constant)

    def _bad(self) -> IdentifiersError:
        return IdentifiersError("not valid JSON", self._shown)

    def _fill(self) -> bool:
        """Read more text; False at the end of the file."""
        if self._eof:
            return False
        # Reads grow with the unparsed text, so an entity of N bytes is parsed O(log N) times.
        raw = self._fp.read(max(_JSON_READ, len(self._text) - self._pos))
        if self._decoder is None:
            # The encodings json.load accepts (UTF-8, -16, -32), told from the first bytes.
            self._decoder = codecs.getincrementaldecoder(json.detect_encoding(raw))()
        try:
            text = self._decoder.decode(raw, final=not raw)
        except UnicodeDecodeError:
            raise self._bad() from None
        if self._pos:
            self._text, self._pos = self._text[self._pos:], 0
        self._text += text
        self._eof = not raw
        return True

    def _next_char(self) -> str:
        """The next character that is not white space (consumed); "" at the end."""
        while True:
            while self._pos < len(self._text) and self._text[self._pos] in _JSON_SPACE:
                self._pos += 1
            if self._pos < len(self._text):
                self._pos += 1
                return self._text[self._pos - 1]
            if not self._fill():
                return ""

    def _value(self, limit: int | None = None, where: str = "") -> Any:
        """The next value; with ``limit``, refused once its text passes that many characters
        without ending (an item: the text buffer holds at most about one)."""
        while True:
            start = self._pos  # a read may move the text (see _fill): where this attempt starts
            try:
                value, self._pos = self._json.raw_decode(self._text, start)
                self.raw = self._text[start:self._pos]
                return value
            except ValueError:
                if limit is not None and len(self._text) - start > limit:
                    raise IdentifiersError(f"{where}: larger than {limit} characters of JSON; "
                                           "an item is one file's fields", self._shown) from None
                # Cut by the buffer's end, or bad: read on; at the end of the file it is bad.
                if not self._fill():
                    raise self._bad() from None
            except RecursionError:
                raise self._bad() from None

    def _open_object(self) -> None:
        """Consume the ``{`` of the top-level object; anything else is refused."""
        opening = self._next_char()
        if opening != "{":
            if not opening:
                raise self._bad()
            self._pos -= 1
            self._value()  # not JSON at all, or JSON of another shape:
            raise IdentifiersError("top level: expected a mapping of entities", self._shown)

    def _members(self) -> Iterator[Any]:
        """The keys of the object whose ``{`` was just read, in order; after each key the
        caller reads (consumes) its value before asking for the next."""
        char = self._next_char()
        if char == "}":
            return
        while True:
            if char != '"':
                raise self._bad()
            self._pos -= 1
            key = self._value()
            if self._next_char() != ":":
                raise self._bad()
            self._skip_space()
            yield key
            char = self._next_char()
            if char == "}":
                return
            if char != ",":
                raise self._bad()
            char = self._next_char()

    def _end(self) -> None:
        if self._next_char() != "":
            raise self._bad()  # json.load refuses anything after the top-level value

    def items(self) -> Iterator[tuple[int, Any, int, Any, Any]]:
        """``(entity #, entity, item #, item, fields)`` an item at a time (``raw``: the
        fields' text); each entity opens with item # 0 and item ``_ENTITY_START`` and closes
        with item # 0 and ``_ENTITY_END``. Only one item's text is held at a time, at most
        :data:`IDS_ITEM_MAX_CHARS`."""
        self._open_object()
        for e, entity in enumerate(self._members(), 1):
            char = self._next_char()
            if char != "{":
                if char:
                    self._pos -= 1
                    self._value()  # bad JSON is said so first
                raise IdentifiersError(f"entity #{e}: expected a mapping of items", self._shown)
            yield e, entity, 0, _ENTITY_START, None
            for i, item in enumerate(self._members(), 1):
                yield e, entity, i, item, self._value(IDS_ITEM_MAX_CHARS, f"entity #{e} item #{i}")
            yield e, entity, 0, _ENTITY_END, None
        self._end()

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        self._open_object()
        for entity in self._members():
            yield entity, self._value()
        self._end()

    def _skip_space(self) -> None:
        """Step over white space, so a value starts exactly at the position."""
        char = self._next_char()
        if char:
            self._pos -= 1


def _checked_entity(e: int, entity: Any, items: Any, shown: str
                    ) -> tuple[str, dict[str, dict[str, Any]]]:
    """Entity #``e`` as load_ids returns it, or the IdentifiersError that names what is wrong."""
    if not isinstance(entity, str):
        raise IdentifiersError(f"entity #{e}: key must be a string", shown)
    if not isinstance(items, dict):
        raise IdentifiersError(f"entity #{e}: expected a mapping of items", shown)
    out: dict[str, dict[str, Any]] = {}
    for i, (item, fields) in enumerate(items.items(), 1):
        where = f"entity #{e} item #{i}"
        if not isinstance(item, str):
            raise IdentifiersError(f"{where}: key must be a string", shown)
        try:
            out[item] = _fields(fields, where)
        except IdentifiersError as exc:
            raise IdentifiersError(str(exc), shown) from None
    return entity, out

