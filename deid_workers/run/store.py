"""One run's state in Redis: :class:`RunStore`, every read and write of a run's keys.

The keys themselves are spelled in :mod:`deid_workers.run.names` (the layout is drawn there);
what a file's identifiers look like once packed, in :mod:`deid_workers.ids.codec`.

Nothing identifying is in clear, and nothing a worker acts on is unsigned
(:mod:`deid_workers.keys`): identifiers, the ``valid`` keys and the staged ids chunks are
sealed with AES-GCM (so the AOF, an RDB snapshot, a purge's leftovers or a sniffed connection
show nothing), and the run record and every list of paths carry an HMAC tag. The associated
data of each sealed value and the signed text of each tag name the run, the hash and the field,
so nothing can be moved to another run, batch or item. A worker meeting a value that does not
verify raises :class:`~deid_workers.errors.RunRefused`. Counters, times, per-path outcomes and
the queues are not signed: forging them can only misreport a run, never make a worker read or
write anything.

Idempotency: a batch's per-file records are hash writes (a rerun overwrites them with the same
values) and its counters are committed by a Lua script only when the batch number first enters
the stage's ``done`` set, so a redelivered batch is never counted twice.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import redis

from ..errors import RunRefused, StoreError
from ..ids.chunks import parse_ids_chunk
from ..ids.codec import pack_fields, unpack_json
from ..keys import ClusterKeys, Unsealable
from .memory import redis_reason
from .names import ENTITY_FIELD, OUTCOME_KINDS, RUNS_INDEX, Keys

__all__ = ["RunStore", "BatchStart", "ValidFiles", "Commit", "BatchRecord", "Snapshot", "Writes",
           "new_run_id", "list_runs"]

SCAN_COUNT = 500
"""Elements per SSCAN/HSCAN call when streaming identifiers out: bounded memory, few calls."""

IDS_GROUP = 32
"""Entities whose names and first pages of items an export reads in one round trip."""

# Commit a batch: its writes, then its counters only the first time its number enters the done
# set; none of it when the start committing is not the batch's latest (its taker was replaced).
# KEYS[1] done set, KEYS[2] counters hash, KEYS[3] takers hash; ARGV[1] batch no, ARGV[2] expiry,
# ARGV[3] the batch's takers field, ARGV[4] the committing start's taker ('' = any start may),
# ARGV[5] the number of writes, each as its word count and its words; then name, n pairs.
# A write spelled HSET? is an HSET that also returns (after added and the done count) the key
# and field of each pair the hash held already (get's check for two files sharing one entity
# and item: atomic, so of two batches writing one item at once exactly one hears of the other).
_COMMIT_LUA = """
if ARGV[4] ~= '' then
  local now = redis.call('HGET', KEYS[3], ARGV[3])
  if now and string.sub(now, 1, #ARGV[4] + 1) ~= ARGV[4] .. '\t' then
    return {-1, now}
  end
end
local found = {}
local i = 6
for _ = 1, tonumber(ARGV[5]) do
  local n = tonumber(ARGV[i])
  if ARGV[i + 1] == 'HSET?' then
    for j = i + 3, i + n, 2 do
      if redis.call('HSET', ARGV[i + 2], ARGV[j], ARGV[j + 1]) == 0 then
        found[#found + 1] = ARGV[i + 2]
        found[#found + 1] = ARGV[j]
      end
    end
  else
    redis.call(unpack(ARGV, i + 1, i + n))
  end
  i = i + n + 1
end
local added = redis.call('SADD', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
if added == 1 then
  for j = i, #ARGV, 2 do
    redis.call('HINCRBY', KEYS[2], ARGV[j], ARGV[j + 1])
  end
  redis.call('EXPIRE', KEYS[2], ARGV[2])
end
local out = {added, redis.call('SCARD', KEYS[1])}
for _, word in ipairs(found) do out[#out + 1] = word end
return out
"""

# The ids of a batch's valid files, where get noted them: KEYS[1] places hash; ARGV[1] batch no,
# ARGV[2] the run's ids key prefix. Returns the places text, then each file's sealed ids (or
# false). Whatever it finds is checked by the worker (see RunStore.start_batch).
_IDS_OF_BATCH_LUA = """
local places = redis.call('HGET', KEYS[1], ARGV[1])
if not places then return {} end
local out = {places}
for i = 1, #places - 63, 64 do
  out[#out + 1] = redis.call('HGET', ARGV[2] .. string.sub(places, i, i + 31),
                             string.sub(places, i + 32, i + 63))
end
return out
"""

WRITE_WORDS = 1000
"""Field-value pairs per HSET a commit script runs (Lua's unpack takes a few thousand words)."""


class Writes:
    """Redis writes gathered for one commit script (:data:`_COMMIT_LUA`) instead of sent: the
    few pipeline methods the store's record writers use, each kept as a command's words."""

    def __init__(self) -> None:
        self.ops: list[list[Any]] = []

    def hset(self, key: str, field: Any = None, value: Any = None,
             mapping: Mapping[Any, Any] | None = None) -> Writes:
        pairs = list((mapping or {}).items())
        if field is not None:
            pairs.append((field, value))
        for start in range(0, len(pairs), WRITE_WORDS):
            words: list[Any] = ["HSET", key]
            for f, v in pairs[start:start + WRITE_WORDS]:
                words += [f, v]
            self.ops.append(words)
        return self

    def hset_saying_old(self, key: str, mapping: Mapping[Any, Any]) -> Writes:
        """HSET ``mapping`` into ``key``; the commit says which fields it held already."""
        pairs = list(mapping.items())
        for start in range(0, len(pairs), WRITE_WORDS):
            words: list[Any] = ["HSET?", key]
            for f, v in pairs[start:start + WRITE_WORDS]:
                words += [f, v]
            self.ops.append(words)
        return self

    def hsetnx(self, key: str, field: Any, value: Any) -> Writes:
        self.ops.append(["HSETNX", key, field, value])
        return self

    def sadd(self, key: str, *members: Any) -> Writes:
        self.ops.append(["SADD", key, *members])
        return self

    def expire(self, key: str, seconds: int) -> Writes:
        self.ops.append(["EXPIRE", key, seconds])
        return self

    def words(self) -> list[Any]:
        """``[count, (len, words...)...]`` as :data:`_COMMIT_LUA` reads them."""
        out: list[Any] = [len(self.ops)]
        for op in self.ops:
            out += [len(op), *op]
        return out


_SEALED = "e1."
"""Prefix of a sealed value: base64 of ``nonce || AES-GCM`` (see :class:`ClusterKeys`)."""
_SIGNED = "s1."
"""Prefix of a signed value: a 32-hex HMAC tag, then the text it covers."""
_TAG = 32


# Record a batch, counting it once. KEYS[1] batches hash, KEYS[2] counters; ARGV batch no, JSON, n, expiry.
_ADD_BATCH_LUA = """
local new = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
if new == 1 then
  redis.call('HINCRBY', KEYS[2], 'walk:files', ARGV[3])
  redis.call('HINCRBY', KEYS[2], 'walk:batches', 1)
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
return new
"""

def new_run_id() -> str:
    """A short random run id: unguessable enough, easy to type in ``--status``."""
    return secrets.token_hex(6)



def _decode(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class RunStore:
    """One run's state in Redis.

    The constructor does no I/O; :meth:`create` writes a new run and :meth:`load` reads one.
    Every write refreshes the expiry of the keys it touches. ``keys`` (the cluster's
    :class:`~deid_workers.keys.ClusterKeys`) is needed by everything that reads or writes a
    signed or sealed value; without it (``--purge``) only counters and deletion work.
    """

    def __init__(self, client: redis.Redis, run_id: str, *, expiry: int, salt: str = "",
                 keys: ClusterKeys | None = None) -> None:
        self.client = client
        self.run_id = run_id
        self.keys = Keys(run_id)
        self.expiry = int(expiry)
        self.salt = salt
        self.cluster = keys
        self._add_batch = client.register_script(_ADD_BATCH_LUA)
        self._spec: dict[str, Any] | None = None
        self._spec_raw: str | None = None
        self._names: dict[str, Any] = {}

    # -- signing and sealing ---------------------------------------------------------------
    def _cluster(self) -> ClusterKeys:
        if self.cluster is None:
            raise StoreError(f"run {self.run_id}: no cluster key configured (DEID_SECRET_FILE)")
        return self.cluster

    def _refused(self, what: str) -> RunRefused:
        return RunRefused(f"run {self.run_id}: {what} is not signed with the cluster key "
                          "(written or altered in Redis by someone without it)")

    def _signed(self, what: str, name: str, text: str) -> str:
        return _SIGNED + self._cluster().sign(self.run_id, what, name, text) + text

    def _verified(self, what: str, name: str, raw: Any) -> str:
        text = _decode(raw)
        head = len(_SIGNED)
        if text.startswith(_SIGNED):
            body = text[head + _TAG:]
            if self._cluster().verify(text[head:head + _TAG], self.run_id, what, name, body):
                return body
        raise self._refused(f"{what} {name}")

    def _sealed(self, what: str, name: str, data: bytes) -> str:
        blob = self._cluster().seal(data, self.run_id, what, name)
        return _SEALED + base64.b64encode(blob).decode("ascii")

    def _opened(self, what: str, name: str, raw: Any) -> bytes:
        text = _decode(raw)
        if text.startswith(_SEALED):
            try:
                return self._cluster().open(base64.b64decode(text[len(_SEALED):]),
                                            self.run_id, what, name)
            except (Unsealable, binascii.Error):
                pass
        raise self._refused(f"{what} {name}")

    def _paths(self, what: str, name: str, raw: Any) -> list[str]:
        """A signed list of relative paths, checked: a path that is absolute or climbs out of
        its folder never reaches a task (the signature already says who wrote it)."""
        paths = json.loads(self._verified(what, name, raw))
        return _relative_paths(self.run_id, paths, f"{what} {name}")

    # -- run record ------------------------------------------------------------------------
    @classmethod
    def create(
        cls, client: redis.Redis, run_id: str, record: Mapping[str, Any], *, expiry: int,
        keys: ClusterKeys, mutable: Mapping[str, Any] | None = None,
    ) -> RunStore:
        """Write a new run: ``record`` (what the producer decided; nobody changes it later) is
        sealed and signed as one canonical JSON text, so a field added to it is covered
        without naming it here; ``mutable`` (state, stage, ...) is stored as plain JSON fields
        that :meth:`update` changes."""
        salt = secrets.token_hex(16)
        store = cls(client, run_id, expiry=expiry, salt=salt, keys=keys)
        now = time.time()
        spec = dict(record)
        spec.update(run_id=run_id, salt=salt, created=now, expiry=expiry, key_id=keys.fingerprint)
        text = _canonical(spec)
        fields = {"spec": store._sealed("run", "spec", text.encode("utf-8")),
                  "sig": keys.sign(run_id, "run", "spec", text),
                  "key_id": keys.fingerprint, "state": _encode("created")}
        fields.update({k: _encode(v) for k, v in (mutable or {}).items()})
        store._remember(fields["spec"], spec)
        try:
            pipe = client.pipeline()
            pipe.hset(store.keys.run, mapping=fields)
            pipe.expire(store.keys.run, expiry)
            pipe.zadd(RUNS_INDEX, {run_id: now})
            pipe.ttl(RUNS_INDEX)
            index_ttl = int(pipe.execute()[-1])
            if index_ttl == -1 or 0 <= index_ttl < expiry:
                # The index outlives its newest run by the run's expiry, no longer.
                client.expire(RUNS_INDEX, expiry)
        except redis.RedisError as exc:
            raise StoreError(f"cannot write run {run_id}: {redis_reason(exc)}") from exc
        return store

    @classmethod
    def load(cls, client: redis.Redis, run_id: str, *, keys: ClusterKeys | None) -> RunStore:
        """Open an existing run, its record verified (:class:`RunRefused` if it was not
        written with ``keys``); :class:`StoreError` if Redis does not know it."""
        return cls.open(client, run_id, keys=keys)[0]

    @classmethod
    def open(cls, client: redis.Redis, run_id: str, *, keys: ClusterKeys | None
             ) -> tuple[RunStore, dict[str, Any]]:
        """:meth:`load`, with the run record as :meth:`record` gives it, read in the same round
        trip (a worker's first batch of a run needs both)."""
        try:
            raw = client.hgetall(Keys(run_id).run)
        except redis.RedisError as exc:
            raise StoreError(f"cannot read run {run_id}: {type(exc).__name__}") from exc
        store = cls(client, run_id, expiry=1, keys=keys)
        record = store._record_of(raw)
        spec = store.spec()
        store.expiry = int(spec.get("expiry") or 1) or 1
        store.salt = str(spec.get("salt") or "")
        return store, record

    def _check_spec(self, raw: Any, sig: Any, key_id: Any) -> dict[str, Any]:
        """The verified run spec (cached while Redis holds the same text)."""
        text_raw = None if raw is None else _decode(raw)
        if self._spec is not None and text_raw == self._spec_raw:
            return self._spec
        cluster = self._cluster()
        if key_id is not None and _decode(key_id) != cluster.fingerprint:
            raise RunRefused(
                f"run {self.run_id} was submitted with key {_decode(key_id)}; this process holds "
                f"key {cluster.fingerprint}: give every producer and worker the same "
                "DEID_SECRET_FILE (or DEID_SECRET)")
        if text_raw is None or sig is None:
            raise self._refused("run record")
        try:
            text = self._opened("run", "spec", text_raw).decode("utf-8")
        except RunRefused:
            raise self._refused("run record") from None
        if not cluster.verify(_decode(sig), self.run_id, "run", "spec", text):
            raise self._refused("run record")
        spec = json.loads(text)
        if not isinstance(spec, dict) or spec.get("run_id") != self.run_id:
            raise self._refused("run record")
        self._remember(text_raw, spec)
        return spec

    def _remember(self, raw: str, spec: dict[str, Any]) -> None:
        self._spec, self._spec_raw = spec, raw
        self.salt = str(spec.get("salt") or self.salt)
        self._names = {}

    def record(self) -> dict[str, Any]:
        """The run record: its changing fields, then its signed spec over them (a forged
        plain field named like a signed one is never seen)."""
        return self._record_of(self.client.hgetall(self.keys.run))

    def _record_of(self, raw: Mapping[Any, Any]) -> dict[str, Any]:
        if not raw:
            raise StoreError(f"run {self.run_id} is unknown to Redis (expired, purged or lost)")
        raw = {_decode(k): v for k, v in raw.items()}
        spec = self._check_spec(raw.get("spec"), raw.get("sig"), raw.get("key_id"))
        out = {k: json.loads(v) for k, v in raw.items() if k not in _RECORD_SEALS}
        out.update(spec)
        return out

    def snapshot(self, *stages: str) -> Snapshot:
        """The run record (as :meth:`record`), the counters and the committed batches of each
        of ``stages``, in one round trip (what finalize decides on)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.keys.run)
        pipe.hgetall(self.keys.counters)
        for stage in stages:
            pipe.smembers(self.keys.done(stage))
        raw, counters, *done = pipe.execute()
        return Snapshot(self._record_of(raw),
                        {_decode(k): int(v) for k, v in counters.items()},
                        {stage: {int(x) for x in members} for stage, members in zip(stages, done)})

    def spec(self) -> dict[str, Any]:
        """The signed part of the record (read and verified once per store)."""
        if self._spec is None:
            self._check_spec(*self.client.hmget(self.keys.run, ["spec", "sig", "key_id"]))
        assert self._spec is not None
        return self._spec

    def record_fields(self, *names: str) -> list[Any]:
        """Some fields of the run record, decoded (None where unset): one small read for a
        check made often (a put batch asking whether the run's ids are in)."""
        signed = self.spec()
        plain = [n for n in names if n not in signed]
        values = dict(zip(plain, self.client.hmget(self.keys.run, plain))) if plain else {}
        return [signed[n] if n in signed else
                None if values.get(n) is None else json.loads(values[n]) for n in names]

    def state(self) -> str | None:
        """The run's state, read without the cluster key (it is not signed)."""
        raw = self.client.hget(self.keys.run, "state")
        return None if raw is None else str(json.loads(raw))

    def exists(self) -> bool:
        """Whether Redis still has the run (a purge or the expiry removes it)."""
        return bool(self.client.exists(self.keys.run))

    def update(self, **fields: Any) -> None:
        """Set changing fields of the run record (state, stage, times, paths of outputs); a
        signed field cannot be changed (ValueError): it would be a second, unsigned truth."""
        if self._spec is not None:
            clash = sorted(set(fields) & (set(self._spec) | set(_RECORD_SEALS)))
            if clash:
                raise ValueError(f"signed fields of the run record cannot change: {clash}")
        pipe = self.client.pipeline()
        pipe.hset(self.keys.run, mapping={k: _encode(v) for k, v in fields.items()})
        pipe.expire(self.keys.run, self.expiry)
        pipe.execute()

    def set_state(self, state: str, **fields: Any) -> None:
        extra = {"finished": time.time()} if state in ("finished", "failed") else {}
        self.update(state=state, **extra, **fields)

    # -- batches ---------------------------------------------------------------------------
    def add_batch(self, batch_no: int, paths: Sequence[str], *, pipe: Any = None) -> None:
        """Record one batch of relative paths (signed) and count its files (one round trip).

        Files are counted only the first time: a resumed walk records the same batches again
        (the walk is deterministic) and must not count their files twice.
        """
        value = self._signed("batches", str(batch_no), json.dumps(list(paths)))
        self._add_batch(keys=[self.keys.batches, self.keys.counters],
                        args=[str(batch_no), value, len(paths), self.expiry],
                        client=pipe if pipe is not None else self.client)

    def batch(self, batch_no: int) -> list[str]:
        raw = self.client.hget(self.keys.batches, str(batch_no))
        if raw is None:
            raise StoreError(f"run {self.run_id}: batch {batch_no} is unknown")
        return self._paths("batches", str(batch_no), raw)

    def valid_batch(self, batch_no: int) -> ValidFiles | None:
        """The paths of a batch that get found valid, with the ``(entity, item)`` and missing
        fields it noted for each, in one read; None when no get stage ran."""
        return self._valid_record(str(batch_no), self.client.hget(self.keys.valid, str(batch_no)))

    def _valid_record(self, name: str, raw: Any) -> ValidFiles | None:
        if raw is None:
            return None
        record = json.loads(self._opened("valid", name, raw))
        paths = _relative_paths(self.run_id, record["paths"], f"valid {name}")
        keys = [(str(e), str(i)) for e, i in record["keys"]]
        missing = [tuple(str(f) for f in m) for m in record.get("missing") or ()]
        return ValidFiles(paths, keys, missing or [()] * len(keys))

    def batch_count(self) -> int:
        return int(self.client.hlen(self.keys.batches))

    def done_batches(self, stage: str) -> set[int]:
        return {int(x) for x in self.client.smembers(self.keys.done(stage))}

    def done_count(self, stage: str) -> int:
        return int(self.client.scard(self.keys.done(stage)))

    def committed(self, stage: str, numbers: Sequence[int]) -> set[int]:
        """Which of ``numbers`` are committed in ``stage`` (a few, without reading the set)."""
        pipe = self.client.pipeline(transaction=False)
        for n in numbers:
            pipe.sismember(self.keys.done(stage), str(n))
        return {n for n, hit in zip(numbers, pipe.execute()) if hit}

    def forget_stage(self, stage: str) -> None:
        """Forget every committed batch of ``stage``, with its counters and times, so that the
        stage is redone whole (an ids export whose pieces were removed after a failure)."""
        prefix = f"{stage}:"
        names = [k for k in self.client.hkeys(self.keys.counters) if _decode(k).startswith(prefix)]
        pipe = self.client.pipeline()
        pipe.delete(self.keys.done(stage))
        if names:
            pipe.hdel(self.keys.counters, *names)
        pipe.hdel(self.keys.times, f"{prefix}first", f"{prefix}last")
        pipe.execute()

    def mark_started(self, stage: str, batch_no: int) -> bool:
        """Note that a batch started; False when it had started before (a redelivery)."""
        pipe = self.client.pipeline()
        pipe.sadd(self.keys.started(stage), str(batch_no))
        pipe.expire(self.keys.started(stage), self.expiry)
        return bool(pipe.execute()[0])

    def _plan_and_done(self, stage: str) -> tuple[bool, int | None, str | None, int]:
        """(walk over, batches in all, state, batches of ``stage`` committed): one round trip."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hmget(self.keys.run, ["walk_done", "n_batches", "state"])
        pipe.scard(self.keys.done(stage))
        (walk_done, n_batches, state), done = pipe.execute()
        return (bool(walk_done and json.loads(walk_done)),
                None if n_batches is None else int(json.loads(n_batches)),
                None if state is None else str(json.loads(state)), int(done))

    def maybe_finish(self, stage: str, **fields: Any) -> bool:
        """Mark the run finished (with ``fields``, e.g. the run log's path) when the walk is
        over and every batch of ``stage`` is done.

        Called by the last task of a stage and by the producer after its walk (whichever comes
        last sees the complete picture); marking twice is harmless.
        """
        walk_done, n_batches, state, done = self._plan_and_done(stage)
        if not walk_done or n_batches is None:
            return False
        if state in ("finished", "failed"):
            return True
        if done < n_batches:
            return False
        self.set_state("finished", **fields)
        return True

    def pending_batches(self, stage: str, total: int) -> Iterator[int]:
        """Batch numbers below ``total`` not yet committed for ``stage`` (for resume)."""
        done = self.done_batches(stage)
        return (n for n in range(total) if n not in done)

    # -- identifiers -----------------------------------------------------------------------
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

    def _write_ids(self, pipe: Any, entity: str, items: Mapping[str, Mapping[str, Any]],
                   named: dict[tuple[str, str], tuple[str, str]] | None = None) -> None:
        self._write_packed(pipe, *self._packed(entity, items, named))

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
            mapping[field] = _SEALED + b64(seal(pack_fields(item, fields), run_id, digest,
                                                field)).decode("ascii")
        return digest, mapping

    def _open_item(self, digest: str, field: str, raw: Any) -> tuple[str, bytes]:
        text = _decode(raw)
        if text.startswith(_SEALED):
            try:
                data = self._cluster().open(base64.b64decode(text[len(_SEALED):]),
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
        names = [_decode(d) for d in digests]
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
                field = _decode(field)
                if field != ENTITY_FIELD:
                    yield self._open_item(digest, field, raw)
            if not int(cursor):
                return
            cursor, page = self.client.hscan(key, cursor, count=SCAN_COUNT)

    # -- batch outcomes --------------------------------------------------------------------
    def commit_batch(
        self,
        stage: str,
        batch_no: int,
        counts: Mapping[str, int],
        *,
        outcomes: Mapping[str, Mapping[str, str]] | None = None,
        ids: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
        valid: Sequence[str] | None = None,
        valid_keys: Sequence[tuple[str, str]] | None = None,
        valid_missing: Sequence[Sequence[str]] | None = None,
        log: Sequence[Sequence[Any]] | None = None,
        clean: Sequence[str] | None = None,
        taker: str | None = None,
        notices: str | None = None,
        check_items: bool = False,
        ocr: Sequence[str] | None = None,
        ocr_verdicts: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Commit:
        """Write a batch's per-file records, then commit its counters once; one round trip.

        ``outcomes`` maps a kind (``skipped``, ``refused``, ...) to {relative path: text}.
        ``valid_keys`` (get) are the ``(entity, item)`` of each of ``valid``, in order, so put
        can fetch a batch's identifiers as it starts (:meth:`start_batch`, which reads them
        where the ``places`` noted here say) and neither reads them from the file again;
        ``valid_missing`` the entity and item fields each lacked (what put reports for it).
        ``log`` is the batch's entry of the run log (:meth:`save_log`), ``clean`` the paths
        left to the clean stage (:meth:`save_clean_batch`), ``ocr`` those left to the ocr stage
        (:meth:`ocr_batch`) and ``ocr_verdicts`` what it found in each (:meth:`ocr_verdicts`);
        all are written before the commit, so a redelivery or a resume finds them.
        ``notices`` is the batch's warnings about its files (:meth:`notices`; their counts go
        in ``counts``). ``check_items`` (get): the commit also says which of the ``ids`` items
        another batch had written already (:attr:`Commit.existing`: two files with one entity
        and item share an ids item).

        With ``taker`` (the start's, as :meth:`start_batch` noted it), nothing is written when
        a later start of the batch has replaced that note (its worker looked dead): the
        :class:`Commit` says by whom (``superseded``). The check and the writes are one Lua
        script, so no start can come between them.

        The writes and the commit are one Lua script (sent whole with EVAL: a script cache that
        Redis lost in a restart cannot fail a replay), followed in the same pipeline by a read
        of the run's plan: on a cluster each round trip is a network latency.
        """
        writes = Writes()
        named: dict[tuple[str, str], tuple[str, str]] = {}
        for kind, entries in (outcomes or {}).items():
            if kind not in OUTCOME_KINDS:
                raise ValueError(f"unknown outcome kind {kind!r}")
            if entries:
                writes.hset(self.keys.outcome(kind), mapping=dict(entries))
                writes.expire(self.keys.outcome(kind), self.expiry)
        checks: dict[str, tuple[str, dict[str, str]]] = {}  # ids key -> (entity, field -> item)
        for entity, items in (ids or {}).items():
            digest, mapping = self._packed(entity, items, named)
            if check_items:
                # _packed names the entity's own field first, then each item in order
                checks[self.keys.ids(digest)] = (entity, dict(zip(list(mapping)[1:], items)))
                writes.hset_saying_old(self.keys.ids(digest), mapping)
                mapping = {}  # written: the rest of _write_packed (expiry, entity set) remains
            self._write_packed(writes, digest, mapping)
        if notices is not None:
            writes.hset(self.keys.notices(stage), str(batch_no),
                        self._signed(f"notices:{stage}", str(batch_no), notices))
            writes.expire(self.keys.notices(stage), self.expiry)
        if valid is not None:
            keys = [list(k) for k in valid_keys or ()]
            if keys and len(keys) != len(valid):
                raise ValueError("valid_keys must pair with valid")
            record: dict[str, Any] = {"paths": list(valid), "keys": keys}
            if valid_missing is not None and any(valid_missing):
                if len(valid_missing) != len(keys):
                    raise ValueError("valid_missing must pair with valid_keys")
                record["missing"] = [list(m) for m in valid_missing]
            writes.hset(self.keys.valid, str(batch_no),
                        self._sealed("valid", str(batch_no), json.dumps(record).encode("utf-8")))
            writes.expire(self.keys.valid, self.expiry)
            places = [named.get(k) or self._places([k])[0] for k in valid_keys or ()]
            writes.hset(self.keys.places, str(batch_no), "".join(d + f for d, f in places))
            writes.expire(self.keys.places, self.expiry)
        if log is not None:
            self._save_log(writes, stage, batch_no, log)
        if clean is not None:
            self._save_clean_batch(writes, batch_no, clean)
        if ocr is not None:
            writes.hset(self.keys.ocr_batches, str(batch_no),
                        self._signed("ocr", str(batch_no), json.dumps(list(ocr))))
            writes.expire(self.keys.ocr_batches, self.expiry)
        if ocr_verdicts is not None:
            writes.hset(self.keys.ocr_verdicts, str(batch_no),
                        self._sealed("ocrverdicts", str(batch_no),
                                     json.dumps(dict(ocr_verdicts)).encode("utf-8")))
            writes.expire(self.keys.ocr_verdicts, self.expiry)
        now = time.time()
        writes.hsetnx(self.keys.times, f"{stage}:first", now)
        writes.hset(self.keys.times, f"{stage}:last", now)
        writes.expire(self.keys.times, self.expiry)
        args: list[Any] = [batch_no, self.expiry, f"{stage}:{batch_no}", taker or "",
                           *writes.words()]
        for name, n in counts.items():
            args += [f"{stage}:{name}", int(n)]
        args += [f"{stage}:batches", 1]
        pipe = self.client.pipeline(transaction=False)
        pipe.eval(_COMMIT_LUA, 3, self.keys.done(stage), self.keys.counters, self.keys.takers,
                  *args)
        pipe.hmget(self.keys.run, ["walk_done", "n_batches"])
        (added, done, *found), (walk_done, n_batches) = pipe.execute()
        if int(added) < 0:
            return Commit(False, 0, False, None, superseded=_decode(done).rpartition("\t")[0])
        existing = []  # (entity, item) of the checked fields found written (found: key, field)
        for key, field in zip(found[::2], found[1::2]):
            entity, names = checks.get(_decode(key), ("", {}))
            if _decode(field) in names:  # not the entity's own field
                existing.append((entity, names[_decode(field)]))
        return Commit(bool(added), int(done), bool(walk_done and json.loads(walk_done)),
                      None if n_batches is None else int(json.loads(n_batches)),
                      existing=tuple(existing))

    # -- pixel cleaning and the run log (deid-run.jsonl) -----------------------------------
    def save_clean_batch(self, batch_no: int, paths: Sequence[str]) -> None:
        """The paths of put batch ``batch_no`` whose pixels the clean stage must clean."""
        pipe = self.client.pipeline()
        self._save_clean_batch(pipe, batch_no, paths)
        pipe.execute()

    def _save_clean_batch(self, pipe: Any, batch_no: int, paths: Sequence[str]) -> None:
        pipe.hset(self.keys.clean_batches, str(batch_no),
                  self._signed("clean", str(batch_no), json.dumps(list(paths))))
        pipe.expire(self.keys.clean_batches, self.expiry)

    def clean_batch(self, batch_no: int) -> list[str] | None:
        """The paths put left to clean in ``batch_no``; None when put has not decided yet."""
        raw = self.client.hget(self.keys.clean_batches, str(batch_no))
        return None if raw is None else self._paths("clean", str(batch_no), raw)

    def ocr_batch(self, batch_no: int) -> list[str] | None:
        """The paths put (or inspect) left to the ocr stage in ``batch_no`` (``--ocr``); None
        when that stage has not decided yet."""
        raw = self.client.hget(self.keys.ocr_batches, str(batch_no))
        return None if raw is None else self._paths("ocr", str(batch_no), raw)

    def ocr_verdicts(self, batch_no: int) -> dict[str, dict[str, Any]]:
        """What the ocr stage found in each file of ``batch_no`` (path -> the verdict's
        :meth:`~deid_workers.ocr.verdict.OcrVerdict.to_dict`), sealed: the clean stage blacks
        out what it says, so nothing may be forged or moved between runs and batches."""
        raw = self.client.hget(self.keys.ocr_verdicts, str(batch_no))
        if raw is None:
            return {}
        found = json.loads(self._opened("ocrverdicts", str(batch_no), raw))
        _relative_paths(self.run_id, list(found), f"ocrverdicts {batch_no}")
        return dict(found)

    def save_log(self, stage: str, batch_no: int,
                 entries: Sequence[Sequence[Any]]) -> None:
        """Per-file ``(outcome, reason)`` of a batch, in the order of the paths it processed,
        plus the output path as a third item where the layout did not keep the input's.

        Paths are not repeated (the batch lists hold them), so a file costs a few bytes plus
        its reason; a redelivered batch overwrites its own entry.
        """
        pipe = self.client.pipeline()
        self._save_log(pipe, stage, batch_no, entries)
        pipe.execute()

    def _save_log(self, pipe: Any, stage: str, batch_no: int,
                  entries: Sequence[Sequence[Any]]) -> None:
        pipe.hset(self.keys.log(stage), str(batch_no),
                  self._signed(f"log:{stage}", str(batch_no), json.dumps([list(e) for e in entries])))
        pipe.expire(self.keys.log(stage), self.expiry)

    def notices(self, stage: str, numbers: Sequence[int]) -> list[tuple[int, str | None]]:
        """The warnings batches ``numbers`` of ``stage`` kept (see :mod:`deid_workers.run.notices`),
        verified; None for a batch without any. One round trip."""
        if not numbers:
            return []
        raws = self.client.hmget(self.keys.notices(stage), [str(n) for n in numbers])
        return [(n, None if raw is None else self._verified(f"notices:{stage}", str(n), raw))
                for n, raw in zip(numbers, raws)]

    def notice_batches(self, stage: str) -> set[int]:
        """The batches of ``stage`` that kept warnings (their numbers only)."""
        return {int(_decode(k)) for k in self.client.hkeys(self.keys.notices(stage))}

    def add_notices(self, stage: str, batch_no: int, notices: str,
                    counts: Mapping[str, int]) -> None:
        """Replace the warnings batch ``batch_no`` kept and add ``counts`` to the run's counters
        (``<stage>:<name>``): for what a batch learns from its own commit (get's shared ids
        items, :attr:`Commit.existing`), once, by the delivery that committed."""
        pipe = self.client.pipeline()
        pipe.hset(self.keys.notices(stage), str(batch_no),
                  self._signed(f"notices:{stage}", str(batch_no), notices))
        pipe.expire(self.keys.notices(stage), self.expiry)
        for name, n in counts.items():
            pipe.hincrby(self.keys.counters, f"{stage}:{name}", int(n))
        pipe.expire(self.keys.counters, self.expiry)
        pipe.execute()

    def stage_complete(self, stage: str) -> bool:
        """True when the walk is over and every batch of ``stage`` has committed."""
        walk_done, n_batches, _, done = self._plan_and_done(stage)
        return walk_done and n_batches is not None and done >= n_batches

    # -- poison files (see tasks.guard) ----------------------------------------------------
    def delivered(self, stage: str, batch_no: int, retry: int) -> int:
        """Count one start of a batch; returns how many times it started at this retry.

        Celery retries (Redis blips) get a fresh count, so only starts that ended without a
        result (the worker process died) accumulate.
        """
        pipe = self.client.pipeline()
        pipe.hincrby(self.keys.deliveries, f"{stage}:{batch_no}:{retry}", 1)
        pipe.expire(self.keys.deliveries, self.expiry)
        return int(pipe.execute()[0])

    def start_batch(self, stage: str, batch_no: int, retry: int, taker: str, *,
                    mark_started: bool = False, lists: bool = False,
                    ids: bool = False) -> BatchStart:
        """Count one start of a batch (see :meth:`delivered`) and note who took it, in one round
        trip that also says whether the batch is committed already (a late redelivery) and,
        on request, what the batch's first reads would fetch: ``mark_started`` (as
        :meth:`mark_started`: is this the first start?), ``lists`` (its paths and, when a
        get stage ran, the paths get found valid with their keys; verified as :meth:`batch`
        and :meth:`valid_batch` verify them) and ``ids`` (the sealed ids of those valid files,
        read in Redis where get's commit noted their places; :meth:`get_ids_many` takes them
        as ``read``, opens each with the place it computes from the sealed ``valid`` keys, and
        fetches any it does not find there, so a wrong or missing places note costs a round
        trip, never a wrong value).

        ``taker`` is ``<worker>\t<token>``, the token new for each start: a start whose
        note another start has replaced since (its batch was handed out again while its worker
        was cut off) must not commit what depends on who wrote the outputs (``taker`` of
        :meth:`commit_batch`; :meth:`taken_by` reads the note).
        Why one round trip: on a cluster each is a network latency, paid per batch.
        """
        pipe = self.client.pipeline()
        pipe.hincrby(self.keys.deliveries, f"{stage}:{batch_no}:{retry}", 1)
        pipe.expire(self.keys.deliveries, self.expiry)
        pipe.hset(self.keys.takers, f"{stage}:{batch_no}", f"{taker}\t{time.time():.3f}")
        pipe.expire(self.keys.takers, self.expiry)
        pipe.sismember(self.keys.done(stage), str(batch_no))
        if mark_started:
            pipe.sadd(self.keys.started(stage), str(batch_no))
            pipe.expire(self.keys.started(stage), self.expiry)
        if lists:
            pipe.hget(self.keys.batches, str(batch_no))
            pipe.hget(self.keys.valid, str(batch_no))
        if ids:
            pipe.eval(_IDS_OF_BATCH_LUA, 1, self.keys.places, str(batch_no), self.keys.ids(""))
        out = pipe.execute()
        start = BatchStart(int(out[0]), bool(out[4]))
        if mark_started:
            start.first_time = bool(out[5])
        if ids:
            start.ids = _read_places(out.pop())
        if lists:
            raw = out[-2]
            start.paths = None if raw is None else self._paths("batches", str(batch_no), raw)
            start.valid = self._valid_record(str(batch_no), out[-1])
        return start

    def taken_by(self, stage: str, batch_no: int) -> str | None:
        """The taker of the latest start of a batch (``<worker>\t<token>``), None if none."""
        raw = self.client.hget(self.keys.takers, f"{stage}:{batch_no}")
        return None if raw is None else _decode(raw).rpartition("\t")[0]

    def takers(self) -> dict[str, tuple[str, float]]:
        """``{"<stage>:<batch>": (worker, time of its latest start)}`` (``--status``)."""
        out = {}
        for field, raw in self.client.hscan_iter(self.keys.takers, count=SCAN_COUNT):
            worker, _, rest = _decode(raw).partition("\t")
            out[_decode(field)] = (worker, float(rest.rpartition("\t")[2] or 0))
        return out

    def set_inflight(self, stage: str, batch_no: int, retry: int, path: str | None) -> None:
        """Note the file a careful (file by file) delivery is on; None when the batch is over."""
        field = f"{stage}:{batch_no}"
        if path is None:
            self.client.hdel(self.keys.inflight, field)
            return
        pipe = self.client.pipeline()
        pipe.hset(self.keys.inflight, field, f"{retry}\n{path}")
        pipe.expire(self.keys.inflight, self.expiry)
        pipe.execute()

    def inflight(self, stage: str, batch_no: int, retry: int) -> str | None:
        """The file a previous careful delivery at the same retry was on when it died."""
        raw = self.client.hget(self.keys.inflight, f"{stage}:{batch_no}")
        if raw is None:
            return None
        at, _, path = _decode(raw).partition("\n")
        return path if at == str(retry) else None

    def note_time_limit(self, stage: str, batch_no: int, retry: int, seconds: int) -> None:
        """Say that the hard time limit killed a start of the batch (the worker's main process
        calls this: the killed process cannot), so the next careful start can name the cause."""
        pipe = self.client.pipeline()
        pipe.hset(self.keys.inflight, f"{stage}:{batch_no}:limit", f"{retry}\n{int(seconds)}")
        pipe.expire(self.keys.inflight, self.expiry)
        pipe.execute()

    def pop_time_limit(self, stage: str, batch_no: int, retry: int) -> int | None:
        """The time limit (seconds) that killed the previous start at this retry, if one did;
        the note is removed, so an older kill is never blamed for a later crash."""
        field = f"{stage}:{batch_no}:limit"
        pipe = self.client.pipeline()
        pipe.hget(self.keys.inflight, field)
        pipe.hdel(self.keys.inflight, field)
        raw = pipe.execute()[0]
        if raw is None:
            return None
        at, _, seconds = _decode(raw).partition("\n")
        return int(seconds) if at == str(retry) and seconds.isdigit() else None

    def add_outcome(self, kind: str, path: str, text: str, *, counter: str | None = None) -> None:
        """Record one file outside any batch (a folder the walk could not list)."""
        pipe = self.client.pipeline()
        pipe.hset(self.keys.outcome(kind), path, text)
        pipe.expire(self.keys.outcome(kind), self.expiry)
        if counter:
            pipe.hincrby(self.keys.counters, counter, 1)
            pipe.expire(self.keys.counters, self.expiry)
        pipe.execute()

    def counters(self) -> dict[str, int]:
        return {_decode(k): int(v) for k, v in self.client.hgetall(self.keys.counters).items()}

    def times(self) -> dict[str, float]:
        """``{"<stage>:first": t, "<stage>:last": t}``: when batches of each stage committed."""
        return {_decode(k): float(v) for k, v in self.client.hgetall(self.keys.times).items()}

    def outcomes(self, kind: str, paths: Sequence[str] | None = None) -> dict[str, str]:
        """Records of one kind; only those of ``paths`` when given (one HMGET)."""
        key = self.keys.outcome(kind)
        if paths is None:
            return {_decode(k): _decode(v) for k, v in self.client.hscan_iter(key, count=SCAN_COUNT)}
        if not paths:
            return {}
        values = self.client.hmget(key, list(paths))
        return {p: _decode(v) for p, v in zip(paths, values) if v is not None}

    def iter_batch_outcomes(self, kind: str, total: int, step: int = 100
                            ) -> Iterator[tuple[str, str]]:
        """``(path, record)`` of one kind for the files of every batch, in walk order, with the
        records of ``step`` batches read in one round trip (the inspect report's input: one
        read per batch cost half of writing it)."""
        for numbers in _batch_numbers(total, step):
            batches = [self._paths("batches", n, raw)
                       for n, raw in zip(numbers, self.client.hmget(self.keys.batches, numbers))
                       if raw is not None]
            pipe = self.client.pipeline(transaction=False)
            for paths in batches:
                if paths:
                    pipe.hmget(self.keys.outcome(kind), paths)
            records = iter(pipe.execute())
            for paths in batches:
                if paths:
                    for path, raw in zip(paths, next(records)):
                        if raw is not None:
                            yield path, _decode(raw)

    def iter_outcomes(self, kind: str) -> Iterator[tuple[str, str]]:
        for k, v in self.client.hscan_iter(self.keys.outcome(kind), count=SCAN_COUNT):
            yield _decode(k), _decode(v)

    def outcome_count(self, kind: str) -> int:
        return int(self.client.hlen(self.keys.outcome(kind)))

    def iter_batch_records(self, total: int, step: int = 100) -> Iterator[BatchRecord]:
        """What every stage recorded of each batch, in walk order, ``step`` batches per round
        trip (the run log's input: a million files are 10,000 batches, and reading each
        batch's four records apart cost as much as writing the log)."""
        keys = (self.keys.batches, self.keys.valid, self.keys.log("put"), self.keys.clean_batches,
                self.keys.log("clean"), self.keys.ocr_batches, self.keys.log("ocr"))
        for numbers in _batch_numbers(total, step):
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.hmget(key, numbers)
            batches, valid, put_log, to_clean, clean_log, to_ocr, ocr_log = pipe.execute()
            for i, n in enumerate(numbers):
                if batches[i] is None:
                    continue
                record = self._valid_record(n, valid[i])
                yield BatchRecord(int(n), self._paths("batches", n, batches[i]),
                                  None if record is None else record[0],
                                  self._log_entries("put", n, put_log[i]),
                                  None if to_clean[i] is None else self._paths("clean", n,
                                                                              to_clean[i]),
                                  self._log_entries("clean", n, clean_log[i]),
                                  None if to_ocr[i] is None else self._paths("ocr", n, to_ocr[i]),
                                  self._log_entries("ocr", n, ocr_log[i]))

    def _log_entries(self, stage: str, name: str, raw: Any) -> list[tuple[Any, ...]] | None:
        """``(outcome, reason)`` or ``(outcome, reason, output)`` per file (see save_log)."""
        if raw is None:
            return None
        return [(str(e[0]), *e[1:]) for e in json.loads(self._verified(f"log:{stage}", name, raw))]

    # -- cleanup ---------------------------------------------------------------------------
    def purge(self) -> int:
        """Delete every key of the run (identifiers included); returns the number deleted.

        Keys are found by SCAN on the run's prefix as well as by name, so a key a newer stage
        added (or an ids hash whose digest is missing from the entity sets) is not left behind.
        """
        n = 0
        pattern = _glob_escape(self.keys.run) + ":*"
        found = {_decode(k) for k in self.client.scan_iter(match=pattern, count=SCAN_COUNT)}
        for entities in self.keys.entity_sets():
            found.update(self.keys.ids(_decode(d))
                         for d in self.client.sscan_iter(entities, count=SCAN_COUNT))
        found.update(self.keys.all())
        names = sorted(found)
        for start in range(0, len(names), SCAN_COUNT):
            n += int(self.client.delete(*names[start:start + SCAN_COUNT]))
        self.client.zrem(RUNS_INDEX, self.run_id)
        return n


@dataclass
class BatchStart:
    """What :meth:`RunStore.start_batch` found: the start count, whether the batch is done,
    and the reads it was asked for (None when not asked, or absent)."""

    starts: int
    committed: bool
    first_time: bool | None = None
    paths: list[str] | None = None
    valid: ValidFiles | None = None
    ids: dict[tuple[str, str], Any] | None = None  # (digest, field) -> sealed ids or None


class Snapshot(NamedTuple):
    """A run as :meth:`RunStore.snapshot` read it at once."""

    record: dict[str, Any]
    counters: dict[str, int]
    done: dict[str, set[int]]  # the committed batch numbers of each stage asked for


class ValidFiles(NamedTuple):
    """What get noted of a batch: the paths it found valid and, for each (when noted), the
    file's ``(entity, item)`` and the entity and item fields it lacked."""

    paths: list[str]
    keys: list[tuple[str, str]]
    missing: list[tuple[str, ...]]


class Commit(NamedTuple):
    """What :meth:`RunStore.commit_batch` did, and what it learnt about the stage in the same
    round trip (so the last batch knows it is last without asking again)."""

    first: bool  # the batch's counters were committed now (not by an earlier delivery)
    done: int  # batches of the stage committed
    walk_done: bool
    n_batches: int | None
    superseded: str | None = None  # the taker whose later start replaced this one: nothing written
    existing: tuple[tuple[str, str], ...] = ()  # check_items: (entity, item) written before

    @property
    def complete(self) -> bool:
        """Every batch of the stage is committed and the walk is over."""
        return self.walk_done and self.n_batches is not None and self.done >= self.n_batches


@dataclass(frozen=True)
class BatchRecord:
    """One batch as the stages recorded it (see :meth:`RunStore.iter_batch_records`)."""

    number: int
    paths: list[str]
    valid: list[str] | None  # the paths get found valid; None when no get stage ran
    put_log: list[tuple[Any, ...]] | None  # (outcome, reason[, output]) per put path
    to_clean: list[str] | None  # the paths put (with --ocr: the ocr stage) left to clean
    clean_log: list[tuple[Any, ...]] | None
    to_ocr: list[str] | None = None  # the paths put left to the ocr stage (--ocr)
    ocr_log: list[tuple[Any, ...]] | None = None


def _read_places(out: Sequence[Any]) -> dict[tuple[str, str], Any]:
    """What :data:`_IDS_OF_BATCH_LUA` returned: ``(digest, field) -> sealed value or None``."""
    if not out:
        return {}
    places = _decode(out[0])
    return {(places[i:i + 32], places[i + 32:i + 64]): raw
            for i, raw in zip(range(0, len(places), 64), out[1:])}


def _batch_numbers(total: int, step: int) -> Iterator[list[str]]:
    """Batch numbers below ``total`` as field names, ``step`` at a time (one HMGET each)."""
    for start in range(0, total, step):
        yield [str(n) for n in range(start, min(total, start + step))]


_RECORD_SEALS = ("spec", "sig", "key_id")
"""Fields of the run record hash that hold its signed spec, not values of their own."""

def _canonical(value: Any) -> str:
    """The one spelling of a JSON value that is signed: sorted keys, no spaces."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _relative_paths(run_id: str, paths: Any, where: str) -> list[str]:
    if not isinstance(paths, list):
        raise RunRefused(f"run {run_id}: {where} is not a list of paths")
    for path in paths:
        if (not isinstance(path, str) or not path or path.startswith(("/", "\\"))
                or os.path.isabs(path) or "\x00" in path or ".." in path.replace("\\", "/").split("/")):
            raise RunRefused(f"run {run_id}: {where} holds a path that is not relative to the "
                             "run's folders")
    return paths


def list_runs(client: redis.Redis, limit: int = 10) -> list[str]:
    """The latest run ids, newest first, dropping index entries whose run has expired."""
    ids = [_decode(r) for r in client.zrevrange(RUNS_INDEX, 0, limit * 2)]
    alive = []
    for run_id in ids:
        if client.exists(Keys(run_id).run):
            alive.append(run_id)
        else:
            client.zrem(RUNS_INDEX, run_id)
    return alive[:limit]


def _glob_escape(text: str) -> str:
    """``text`` with Redis glob metacharacters escaped, for SCAN MATCH."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _encode(value: Any) -> str:
    """Run record values are JSON, so a path that looks like a number stays a string."""
    return json.dumps(value)
