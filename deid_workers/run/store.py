"""One run's state in Redis: :class:`RunStore`, every read and write of a run's keys.

The keys themselves are spelled in :mod:`deid_workers.run.names` (the layout is drawn there);
what a file's identifiers look like once packed, in :mod:`deid_workers.ids.codec`.

What is sealed and signed, and why the rest need not be: :mod:`.sealing`.

Idempotency: a batch's per-file records are hash writes (a rerun overwrites them with the same
values) and its counters are committed by a Lua script only when the batch number first enters
the stage's ``done`` set, so a redelivered batch is never counted twice.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import redis

from ..errors import RunRefused, StoreError
from ..keys import ClusterKeys
from .attempts import BatchAttempts
from .commit import COMMIT_LUA, Commit, Writes
from .memory import redis_reason
from .names import RUNS_INDEX, Keys
from .outcomes import RunOutcomes
from .sealing import SCAN_COUNT, SEALED, decode, relative_paths

__all__ = ["RunStore", "Snapshot", "new_run_id", "list_runs"]

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


class RunStore(BatchAttempts, RunOutcomes):
    """One run's state in Redis: its record, batches and commits here; identifiers
    (:class:`~.idstore.IdsStore`), batch starts (:class:`~.attempts.BatchAttempts`) and outcomes
    (:class:`~.outcomes.RunOutcomes`) in their own modules, signing and sealing in
    :class:`~.sealing.StoreBase`.

    The constructor does no I/O; :meth:`create` writes a new run and :meth:`load` reads one.
    Every write refreshes the expiry of the keys it touches.
    """

    def __init__(self, client: redis.Redis, run_id: str, *, expiry: int, salt: str = "",
                 keys: ClusterKeys | None = None) -> None:
        super().__init__(client, run_id, expiry=expiry, salt=salt, keys=keys)
        self._add_batch = client.register_script(_ADD_BATCH_LUA)
        self._spec: dict[str, Any] | None = None
        self._spec_raw: str | None = None
        self._names = {}

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
        fields.update({k: store._encoded(k, v) for k, v in (mutable or {}).items()})
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
        text_raw = None if raw is None else decode(raw)
        if self._spec is not None and text_raw == self._spec_raw:
            return self._spec
        cluster = self._cluster()
        if key_id is not None and decode(key_id) != cluster.fingerprint:
            raise RunRefused(
                f"run {self.run_id} was submitted with key {decode(key_id)}; this process holds "
                f"key {cluster.fingerprint}: give every producer and worker the same "
                "DEID_SECRET_FILE (or DEID_SECRET)")
        if text_raw is None or sig is None:
            raise self._refused("run record")
        try:
            text = self._opened("run", "spec", text_raw).decode("utf-8")
        except RunRefused:
            raise self._refused("run record") from None
        if not cluster.verify(decode(sig), self.run_id, "run", "spec", text):
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
        raw = {decode(k): v for k, v in raw.items()}
        spec = self._check_spec(raw.get("spec"), raw.get("sig"), raw.get("key_id"))
        out = {k: self._field(k, v) for k, v in raw.items() if k not in _RECORD_SEALS}
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
                        {decode(k): int(v) for k, v in counters.items()},
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
                None if values.get(n) is None else self._field(n, values[n]) for n in names]

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
        pipe.hset(self.keys.run, mapping={k: self._encoded(k, v) for k, v in fields.items()})
        pipe.expire(self.keys.run, self.expiry)
        pipe.execute()

    def _encoded(self, name: str, value: Any) -> str:
        """A changing field as stored: JSON, sealed for a field that names a path (the outputs'
        files, an error that may quote a folder) when this store holds the cluster key; a
        store without it (a worker saying why it refused a run of another key) writes JSON."""
        if name in PRIVATE_FIELDS and value is not None and self.cluster is not None:
            return self._sealed_text("run", name, _encode(value))
        return _encode(value)

    def _field(self, name: str, raw: Any) -> Any:
        """A changing field as :meth:`_encoded` wrote it (a sealed one that does not open
        raises :class:`RunRefused`, as any sealed value)."""
        text = decode(raw)
        if name in PRIVATE_FIELDS and text.startswith(SEALED):
            text = self._opened_text("run", name, text)
        return json.loads(text)

    def set_state(self, state: str, **fields: Any) -> None:
        extra = {"finished": time.time()} if state in ("finished", "failed") else {}
        self.update(state=state, **extra, **fields)

    # -- batches ---------------------------------------------------------------------------
    def add_batch(self, batch_no: int, paths: Sequence[str], *, pipe: Any = None) -> None:
        """Record one batch of relative paths (sealed) and count its files (one round trip).

        Files are counted only the first time: a resumed walk records the same batches again
        (the walk is deterministic) and must not count their files twice.
        """
        value = self._sealed_paths("batches", str(batch_no), paths)
        self._add_batch(keys=[self.keys.batches, self.keys.counters],
                        args=[str(batch_no), value, len(paths), self.expiry],
                        client=pipe if pipe is not None else self.client)

    def batch(self, batch_no: int) -> list[str]:
        raw = self.client.hget(self.keys.batches, str(batch_no))
        if raw is None:
            raise StoreError(f"run {self.run_id}: batch {batch_no} is unknown")
        return self._paths("batches", str(batch_no), raw)

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
        names = [k for k in self.client.hkeys(self.keys.counters) if decode(k).startswith(prefix)]
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
            if entries:
                writes.hset(self.keys.outcome(kind), mapping=self._outcome_fields(kind, entries))
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
                        self._sealed_text(f"notices:{stage}", str(batch_no), notices))
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
                        self._sealed_paths("ocr", str(batch_no), ocr))
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
        pipe.eval(COMMIT_LUA, 3, self.keys.done(stage), self.keys.counters, self.keys.takers,
                  *args)
        pipe.hmget(self.keys.run, ["walk_done", "n_batches"])
        (added, done, *found), (walk_done, n_batches) = pipe.execute()
        if int(added) < 0:
            return Commit(False, 0, False, None, superseded=decode(done).rpartition("\t")[0])
        existing = []  # (entity, item) of the checked fields found written (found: key, field)
        for key, field in zip(found[::2], found[1::2]):
            entity, names = checks.get(decode(key), ("", {}))
            if decode(field) in names:  # not the entity's own field
                existing.append((entity, names[decode(field)]))
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
                  self._sealed_paths("clean", str(batch_no), paths))
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
        relative_paths(self.run_id, list(found), f"ocrverdicts {batch_no}")
        return dict(found)

    def stage_complete(self, stage: str) -> bool:
        """True when the walk is over and every batch of ``stage`` has committed."""
        walk_done, n_batches, _, done = self._plan_and_done(stage)
        return walk_done and n_batches is not None and done >= n_batches

    # -- cleanup ---------------------------------------------------------------------------
    def purge(self) -> int:
        """Delete every key of the run (identifiers included); returns the number deleted.

        Keys are found by SCAN on the run's prefix as well as by name, so a key a newer stage
        added (or an ids hash whose digest is missing from the entity sets) is not left behind.
        """
        n = 0
        pattern = _glob_escape(self.keys.run) + ":*"
        found = {decode(k) for k in self.client.scan_iter(match=pattern, count=SCAN_COUNT)}
        for entities in self.keys.entity_sets():
            found.update(self.keys.ids(decode(d))
                         for d in self.client.sscan_iter(entities, count=SCAN_COUNT))
        found.update(self.keys.all())
        names = sorted(found)
        for start in range(0, len(names), SCAN_COUNT):
            n += int(self.client.delete(*names[start:start + SCAN_COUNT]))
        self.client.zrem(RUNS_INDEX, self.run_id)
        return n


class Snapshot(NamedTuple):
    """A run as :meth:`RunStore.snapshot` read it at once."""

    record: dict[str, Any]
    counters: dict[str, int]
    done: dict[str, set[int]]  # the committed batch numbers of each stage asked for


PRIVATE_FIELDS = frozenset({"error", "run_log", "report_tsv", "report_json", "ids_pkl",
                            "ids_json"})
"""Changing fields of the run record that may name a path: sealed like the spec."""

_RECORD_SEALS = ("spec", "sig", "key_id")
"""Fields of the run record hash that hold its signed spec, not values of their own."""

def _canonical(value: Any) -> str:
    """The one spelling of a JSON value that is signed: sorted keys, no spaces."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def list_runs(client: redis.Redis, limit: int = 10) -> list[str]:
    """The latest run ids, newest first, dropping index entries whose run has expired."""
    ids = [decode(r) for r in client.zrevrange(RUNS_INDEX, 0, limit * 2)]
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
