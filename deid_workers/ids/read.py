"""Identifiers files read back, refusing code: ``deid-ids.pkl`` or ``deid-ids.json``.

A pickle is loaded with an unpickler that resolves no global at all, so a crafted
``deid-ids.pkl`` cannot run anything (plain dict/list/str/int/float/bool/None need no global),
and one whose values share a container is refused before anything walks it. A JSON file is
streamed entity by entity, or an item at a time (:class:`JsonEntities`), so ``put --ids`` of a
million files never holds them all. Every value is checked as :mod:`.values` says.
"""

from __future__ import annotations

import codecs
import json
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import IdentifiersError
from .values import checked_fields

__all__ = ["load_ids", "iter_ids_file", "iter_checked_items", "merge_pairs", "ENTITY_START",
           "ENTITY_END", "IDS_ITEM_MAX_CHARS", "JsonEntities"]


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


def merge_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
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
                reader = JsonEntities(fp, shown)
                for e, (entity, items) in enumerate(reader, 1):
                    yield (*_checked_entity(e, entity, items, shown), reader.raw)
    except OSError as exc:
        raise _unreadable(exc, shown) from None


ENTITY_START: Any = object()
ENTITY_END: Any = object()
"""Markers :func:`iter_checked_items` gives in place of an item around each entity's items."""


def iter_checked_items(path: str | os.PathLike[str]
                        ) -> Iterator[tuple[str, Any, dict[str, Any], str | None]]:
    """``(entity, item, checked fields, the fields' JSON text as the file spells it)`` for every
    item in file order, each entity's items between ``(entity, ENTITY_START, {}, None)`` and
    ``(entity, ENTITY_END, {}, None)``; the text is None for a pickle. A JSON file is parsed
    an item at a time, so one big entity is never held whole."""
    shown = os.fspath(path)
    try:
        with open(path, "rb") as fp:
            if _is_pickle(fp, shown):
                for e, (entity, items) in enumerate(_load_pickle(fp, shown).items(), 1):
                    entity, checked = _checked_entity(e, entity, items, shown)
                    yield entity, ENTITY_START, {}, None
                    for item, fields in checked.items():
                        yield entity, item, fields, None
                    yield entity, ENTITY_END, {}, None
                return
            reader = JsonEntities(fp, shown)
            for e, entity, i, item, fields in reader.items():
                if i == 0:
                    yield entity, ENTITY_START if item is ENTITY_START else ENTITY_END, {}, None
                    continue
                where = f"entity #{e} item #{i}"
                if not isinstance(item, str):  # pragma: no cover - JSON keys are strings
                    raise IdentifiersError(f"{where}: key must be a string", shown)
                try:
                    checked = checked_fields(fields, where)
                except IdentifiersError as exc:
                    raise IdentifiersError(str(exc), shown) from None
                yield entity, item, checked, reader.raw
    except OSError as exc:
        raise _unreadable(exc, shown) from None


def _unreadable(exc: OSError, shown: str) -> Exception:
    """The one-line error for an ids file that cannot be opened; other OS errors as they are."""
    words = {FileNotFoundError: "ids file not found (--ids names a deid-ids.pkl or .json "
                                 "that a get or all run wrote)",
             PermissionError: "ids file: permission denied",
             IsADirectoryError: "ids file: not a regular file"}.get(type(exc))
    return IdentifiersError(words, shown) if words else exc


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


class JsonEntities:
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
        self._json = json.JSONDecoder(object_pairs_hook=merge_pairs,
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
        fields' text); each entity opens with item # 0 and item ``ENTITY_START`` and closes
        with item # 0 and ``ENTITY_END``. Only one item's text is held at a time, at most
        :data:`IDS_ITEM_MAX_CHARS`."""
        self._open_object()
        for e, entity in enumerate(self._members(), 1):
            char = self._next_char()
            if char != "{":
                if char:
                    self._pos -= 1
                    self._value()  # bad JSON is said so first
                raise IdentifiersError(f"entity #{e}: expected a mapping of items", self._shown)
            yield e, entity, 0, ENTITY_START, None
            for i, item in enumerate(self._members(), 1):
                yield e, entity, i, item, self._value(IDS_ITEM_MAX_CHARS, f"entity #{e} item #{i}")
            yield e, entity, 0, ENTITY_END, None
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
            out[item] = checked_fields(fields, where)
        except IdentifiersError as exc:
            raise IdentifiersError(str(exc), shown) from None
    return entity, out
