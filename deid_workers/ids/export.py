"""Identifiers export: ``ids[entity][item][field] = value``, as deid's client shapes it.

Export writes ``deid-ids.pkl`` (what deid users load) and ``deid-ids.json`` side by side, one
entity at a time, so a run with millions of files never holds all its ids in one process: the
pickle is written opcode by opcode (protocol 2) and the JSON piece by piece. Both appear only
when complete (temp file, fsync, rename). A sharded export writes pieces (:class:`IdsPiece`)
in several processes and concatenates them (:func:`join_pieces`). Reading them back is
:mod:`.read`'s.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import struct
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, BinaryIO

from ..errors import IdentifiersError
from ..fs.atomicfile import AtomicFile
from .values import checked_fields, json_text

__all__ = ["IDS_JSON", "IDS_PICKLE", "IDS_MODE", "IdsWriter", "IdsPiece", "piece_paths",
           "join_pieces", "remove_pieces", "save_ids", "write_ids_json"]

IDS_PICKLE = "deid-ids.pkl"
IDS_JSON = "deid-ids.json"
IDS_MODE = 0o600
"""Identifiers files (and pieces) are readable by their owner only: they are PHI."""

_CHUNK = 512
"""Items pickled and JSON-encoded together: bounded memory, few Python-level calls."""

_COPY_BUFFER = 1 << 20
"""Bytes per read when pieces of a sharded export are joined."""

# Pickle opcodes (protocol 2), written by hand so entities stream out one at a time.
_PROTO2 = b"\x80\x02"
_EMPTY_DICT = b"}"
_SETITEM = b"s"
_POP = b"0"
_STOP = b"."
_LONG_BINPUT = b"r"
_LONG_BINGET = b"j"


def _json_member(item: str, fields: Any, text: bytes) -> bytes:
    """``"item": {fields}`` for the JSON export, reusing ``text`` (fields as ``json.dumps``
    spelled them) unless it holds a bare NaN or infinity, which strict JSON spells as text."""
    if b"NaN" in text or b"Infinity" in text:
        return json_text({item: fields}).encode()[1:-1]
    return json.dumps(item).encode() + b": " + text



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
                chunk[item] = checked_fields(fields, f"{where_entity} item #{n}")
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


def write_ids_json(entities: Iterable[tuple[str, Iterator[tuple[str, Any]]]], out: IO[str]) -> int:
    """Write ``(entity, items)`` pairs to ``out`` as one JSON object, entity by entity (``get
    --print``); returns the entities written. Memory holds one item at a time."""
    out.write("{")
    n = 0
    for entity, items in entities:
        out.write(("\n " if n == 0 else ",\n ") + json.dumps(entity) + ": {")
        for i, (item, fields) in enumerate(items):
            out.write(("" if i == 0 else ", ") + json.dumps(item) + ": " + json_text(fields))
        out.write("}")
        n += 1
    out.write("\n}\n")
    out.flush()
    return n
