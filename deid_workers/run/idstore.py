"""A run's identifiers in Redis: sealed per entity under keyed digests, found again by put.

Each file's identifiers (:mod:`deid_workers.ids.codec`) are sealed into the hash of its
entity, named by keyed, salted digests of entity and item; get's commit also notes, per batch,
where its valid files' ids are (``places``), so put reads them as it starts.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from ..ids.chunks import parse_ids_chunk
from ..ids.codec import pack_fields, unpack_json
from ..keys import Unsealable
from .names import ENTITY_FIELD
from .sealing import SCAN_COUNT, SEALED, StoreBase, decode, relative_paths

__all__ = ["IDS_GROUP", "IDS_OF_BATCH_LUA", "IdsStore", "ValidFiles", "read_places"]

IDS_GROUP = 32
"""Entities whose names and first pages of items an export reads in one round trip."""

# The ids of a batch's valid files, where get noted them: KEYS[1] places hash; ARGV[1] batch no,
# ARGV[2] the run's ids key prefix. Returns the places text, then each file's sealed ids (or
# false). Whatever it finds is checked by the worker (see RunStore.start_batch).
IDS_OF_BATCH_LUA = """
local places = redis.call('HGET', KEYS[1], ARGV[1])
if not places then return {} end
local out = {places}
for i = 1, #places - 63, 64 do
  out[#out + 1] = redis.call('HGET', ARGV[2] .. string.sub(places, i, i + 31),
                             string.sub(places, i + 32, i + 63))
end
return out
"""


class IdsStore(StoreBase):
    """The identifiers part of :class:`~deid_workers.run.store.RunStore`."""

    _names: dict[str, Any]  # keyed namers, made once per store (see _namers)

    def valid_batch(self, batch_no: int) -> ValidFiles | None:
        """The paths of a batch that get found valid, with the ``(entity, item)`` and missing
        fields it noted for each, in one read; None when no get stage ran."""
        return self._valid_record(str(batch_no), self.client.hget(self.keys.valid, str(batch_no)))

    def _valid_record(self, name: str, raw: Any) -> ValidFiles | None:
        if raw is None:
            return None
        record = json.loads(self._opened("valid", name, raw))
        paths = relative_paths(self.run_id, record["paths"], f"valid {name}")
        keys = [(str(e), str(i)) for e, i in record["keys"]]
        missing = [tuple(str(f) for f in m) for m in record.get("missing") or ()]
        return ValidFiles(paths, keys, missing or [()] * len(keys))

    def _namers(self) -> dict[str, Any]:
        if not self._names:
            cluster = self._cluster()
            self._names = {"entity": cluster.namer("entity", self.salt),
                           "item": cluster.namer("item", self.salt)}
        return self._names

    def entity_digest(self, entity: str) -> str:
        """Keyed, salted digest naming an entity's ids hash; the key never shows the entity,
        and nobody without the cluster key can test a guessed PatientID against it."""
        return str(self._namers()["entity"](entity))

    def item_digest(self, item: str) -> str:
        """Keyed, salted digest naming an item's field in its entity's ids hash."""
        return str(self._namers()["item"](item))

    def _packed(self, entity: str, items: Mapping[str, Mapping[str, Any]],
                named: dict[tuple[str, str], tuple[str, str]] | None = None
                ) -> tuple[str, dict[str, str]]:
        """The ids hash of ``entity`` (its digest) and its fields: each value sealed with the
        run, the hash and the field as associated data, so it opens nowhere else. ``named``
        collects each ``(entity, item)``'s place (digest, field), keyed digests being the
        costly part of naming them."""
        digest = self.entity_digest(entity)
        name = self._namers()["item"]
        seal = self._cluster().seal
        run_id = self.run_id
        b64 = base64.b64encode
        mapping = {ENTITY_FIELD: self._sealed("entity", digest, entity.encode("utf-8"))}
        for item, fields in items.items():
            field = name(item)
            if named is not None:
                named[(entity, item)] = (digest, field)
            mapping[field] = SEALED + b64(seal(pack_fields(item, fields), run_id, digest,
                                                field)).decode("ascii")
        return digest, mapping

    def _open_item(self, digest: str, field: str, raw: Any) -> tuple[str, bytes]:
        text = decode(raw)
        if text.startswith(SEALED):
            try:
                data = self._cluster().open(base64.b64decode(text[len(SEALED):]),
                                            self.run_id, digest, field)
                return unpack_json(data)
            except (Unsealable, binascii.Error):
                pass
        raise self._refused("identifiers")

    def _write_packed(self, pipe: Any, digest: str, mapping: Mapping[str, str]) -> None:
        key = self.keys.ids(digest)
        if mapping:
            pipe.hset(key, mapping=mapping)
        pipe.expire(key, self.expiry)
        pipe.sadd(self.keys.entities(digest), digest)
        pipe.expire(self.keys.entities(digest), self.expiry)

    def save_ids(self, ids: Mapping[str, Mapping[str, Mapping[str, Any]]]
                 | Iterable[tuple[str, Mapping[str, Mapping[str, Any]]]]) -> int | None:
        """Write ids (a mapping, or ``(entity, items)`` pairs; an entity that comes twice is
        merged), only while the run exists; returns the items written, or None when the run
        is gone. Meant for a chunk of about a thousand items (one round trip).

        Why the run is checked before and after: a ``deid.load`` may still be writing a chunk
        of a ``put --ids`` file when the producer purges the run (a bad entity further in the
        file); a write that finds the run gone afterwards takes back what it wrote, instead of
        leaving identifiers of a run that no longer exists. (A transaction watching the run
        would do the same, but Redis would hold each chunk's commands until it ends.)
        """
        if not self.exists():
            return None
        pipe = self.client.pipeline(transaction=False)
        written: set[str] = set()
        n = 0
        for entity, items in (ids.items() if isinstance(ids, Mapping) else ids):
            digest, mapping = self._packed(str(entity), items)
            self._write_packed(pipe, digest, mapping)
            written.add(digest)
            n += len(items)
        pipe.execute()
        if self.exists():
            return n
        keys = [self.keys.ids(d) for d in written] + sorted({self.keys.entities(d) for d in written})
        if keys:
            self.client.delete(*keys)
        return None

    def stage_ids_chunk(self, chunk: int, text: str) -> None:
        """Keep chunk ``chunk`` of a ``put --ids`` file until a ``deid.load`` has written it.

        Deflated (fast level) and sealed: a chunk is identifiers, and an item that keeps many
        fields is about 2 KB of text, more than the item once written.
        """
        value = self._sealed("idschunk", str(chunk), zlib.compress(text.encode("utf-8"), 3))
        self.client.set(self.keys.ids_chunk(chunk), value, ex=self.expiry)

    def ids_chunk(self, chunk: int) -> str | None:
        raw = self.client.get(self.keys.ids_chunk(chunk))
        if raw is None:
            return None
        return zlib.decompress(self._opened("idschunk", str(chunk), raw)).decode("utf-8")

    def drop_ids_chunk(self, chunk: int) -> None:
        self.client.delete(self.keys.ids_chunk(chunk))

    def write_ids_chunk(self, chunk: int, text: str) -> int | None:
        """Write chunk ``chunk`` of a ``put --ids`` file (its text as staged) and commit it
        (``done:load``); returns its items, None if the run is gone. A ``deid.load`` calls it,
        and the producer too, for a chunk it writes itself when too many wait."""
        items = self.save_ids(parse_ids_chunk(text))
        if items is None:
            return None
        self.commit_batch("load", chunk, {"items": items})
        self.drop_ids_chunk(chunk)
        return items

    def get_ids(self, entity: str, item: str) -> dict[str, Any] | None:
        return self.get_ids_many([(entity, item)])[(entity, item)]

    def _places(self, keys: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """Where the ids of each ``(entity, item)`` are: its ids hash's digest and field."""
        entity, item = self._namers()["entity"], self._namers()["item"]
        return [(entity(e), item(i)) for e, i in keys]

    def get_ids_many(
        self, keys: Iterable[tuple[str, str]], *,
        read: Mapping[tuple[str, str], Any] | None = None,
    ) -> dict[tuple[str, str], dict[str, Any] | None]:
        """The ids of many ``(entity, item)`` in one round trip (put prefetches its files'),
        none when ``read`` (what a batch's start read: ``(digest, field) -> sealed value or
        None``, see :meth:`start_batch`) has them all. Every value is opened here, with the
        run, hash and field it must belong to."""
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        places = self._places(wanted)
        known = read or {}
        ask = [p for p in places if p not in known]
        raws = dict(known)
        if ask:
            pipe = self.client.pipeline(transaction=False)
            for digest, field in ask:
                pipe.hget(self.keys.ids(digest), field)
            raws.update(zip(ask, pipe.execute()))
        out: dict[tuple[str, str], dict[str, Any] | None] = {}
        for key, place in zip(wanted, places):
            raw = raws[place]
            out[key] = None if raw is None else dict(json.loads(self._open_item(*place, raw)[1]))
        return out

    def iter_ids(self, part: int = 0, parts: int = 1
                 ) -> Iterator[tuple[str, Iterator[tuple[str, dict[str, Any]]]]]:
        """Stream ``(entity, items)`` with ``items`` an iterator of ``(item, fields)``; with
        ``parts`` > 1 only the entities of export shard ``part`` (see :meth:`Keys.entity_sets`).

        Uses SSCAN/HSCAN so neither this process nor Redis builds the whole mapping at once.
        """
        for entity, items in self.iter_ids_json(part, parts):
            yield entity, ((item, dict(json.loads(raw))) for item, raw in items)

    def iter_ids_json(self, part: int = 0, parts: int = 1
                      ) -> Iterator[tuple[str, Iterator[tuple[str, bytes]]]]:
        """:meth:`iter_ids` with each item's fields as the JSON text they were stored as.

        Round trips are batched, not paid per entity: the first SSCAN page of every entity set
        of the shard goes in one pipeline, and the entity names and first HSCAN pages of
        :data:`IDS_GROUP` entities, from whichever sets, in another (a small hash comes back
        whole in its first page), so on a cluster an export waits for a network latency per
        group, not two per patient nor one per set. Memory stays bounded by the sets' first
        pages and one group's first pages.
        """
        sets = self.keys.entity_sets(part, parts)
        pipe = self.client.pipeline(transaction=False)
        for entities in sets:
            pipe.sscan(entities, 0, count=SCAN_COUNT)
        pending: list[Any] = []
        more: list[tuple[str, Any]] = []
        for entities, (cursor, digests) in zip(sets, pipe.execute()):
            pending.extend(digests)
            if int(cursor):
                more.append((entities, cursor))
            while len(pending) >= IDS_GROUP:
                yield from self._entity_group(pending[:IDS_GROUP])
                del pending[:IDS_GROUP]
        for entities, cursor in more:
            while int(cursor):
                cursor, digests = self.client.sscan(entities, cursor, count=SCAN_COUNT)
                pending.extend(digests)
                while len(pending) >= IDS_GROUP:
                    yield from self._entity_group(pending[:IDS_GROUP])
                    del pending[:IDS_GROUP]
        if pending:
            yield from self._entity_group(pending)

    def _entity_group(self, digests: Sequence[Any]
                      ) -> Iterator[tuple[str, Iterator[tuple[str, bytes]]]]:
        names = [decode(d) for d in digests]
        pipe = self.client.pipeline(transaction=False)
        for digest in names:
            key = self.keys.ids(digest)
            pipe.hget(key, ENTITY_FIELD)
            pipe.hscan(key, 0, count=SCAN_COUNT)
        out = pipe.execute()
        for i, digest in enumerate(names):
            entity, (cursor, first) = out[2 * i], out[2 * i + 1]
            if entity is not None:
                yield (self._opened("entity", digest, entity).decode("utf-8"),
                       self._iter_items(digest, self.keys.ids(digest), int(cursor), first))

    def _iter_items(self, digest: str, key: str, cursor: int = 0,
                    first: Mapping[Any, Any] | None = None) -> Iterator[tuple[str, bytes]]:
        page: Mapping[Any, Any] = first if first is not None else {}
        if first is None:
            cursor, page = self.client.hscan(key, 0, count=SCAN_COUNT)
        while True:
            for field, raw in page.items():
                field = decode(field)
                if field != ENTITY_FIELD:
                    yield self._open_item(digest, field, raw)
            if not int(cursor):
                return
            cursor, page = self.client.hscan(key, cursor, count=SCAN_COUNT)


class ValidFiles(NamedTuple):
    """What get noted of a batch: the paths it found valid and, for each (when noted), the
    file's ``(entity, item)`` and the entity and item fields it lacked."""

    paths: list[str]
    keys: list[tuple[str, str]]
    missing: list[tuple[str, ...]]


def read_places(out: Sequence[Any]) -> dict[tuple[str, str], Any]:
    """What :data:`IDS_OF_BATCH_LUA` returned: ``(digest, field) -> sealed value or None``."""
    if not out:
        return {}
    places = decode(out[0])
    return {(places[i:i + 32], places[i + 32:i + 64]): raw
            for i, raw in zip(range(0, len(places), 64), out[1:])}
