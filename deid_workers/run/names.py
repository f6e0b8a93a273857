"""Every Redis key of deid-workers, spelled in one place.

Why one module: the key layout is a wire contract between the producer, the workers and the
operator's tools (``--status``, ``--purge``, Flower, KEDA on queue lengths). Building every key in
:class:`Keys` (as rq's ``Job.key_for`` does) keeps that contract in one place; the calls that
read and write them are :class:`~deid_workers.run.store.RunStore`'s.

Layout, all under ``deid:run:<run_id>`` and all expiring ``run_expiry`` seconds after their last
write, so identifiers never outlive the run by more than that::

    deid:runs                           zset  run_id -> created (index for --status)
    deid:run:<id>                       hash  the run record: "spec" (sealed, signed: everything
                                              the producer decided: action, folders, recipe,
                                              settings), "sig", "key_id", then what changes
                                              (state, stage, counts of batches; outputs' paths
                                              and the error sealed: store.PRIVATE_FIELDS)
    deid:run:<id>:batches               hash  batch_no -> sealed JSON list of relative paths
    deid:run:<id>:valid                 hash  batch_no -> sealed JSON {"paths": paths get found
                                              valid, "keys": their [entity, item]} (put
                                              prefetches ids)
    deid:run:<id>:places                hash  batch_no -> where the ids of those files are: per
                                              file its entity digest and item digest (64 hex
                                              characters), so a put batch's start reads them
                                              in Redis (no header value; never trusted)
    deid:run:<id>:counters              hash  "<stage>:<name>" -> int
    deid:run:<id>:times                 hash  "<stage>:first"/"<stage>:last" -> commit time
    deid:run:<id>:done:<stage>          set   batch numbers whose outcome is committed
    deid:run:<id>:entities:<x>          set   entity digests that have identifiers, one set per
                                              first hex digit <x> of the digest (16 sets), so an
                                              export shard scans only its own sets
    deid:run:<id>:ids:<digest>          hash  ENTITY_FIELD -> sealed entity, <item digest> ->
                                              sealed item and its fields (:mod:`~deid_workers.ids.codec`)
    deid:run:<id>:idschunk:<n>          string  chunk n of a ``put --ids`` file (sealed deflated
                                              JSON, see :mod:`~deid_workers.ids.chunks`)
                                              until a worker has written its ids (a few at once)
    deid:run:<id>:skipped               hash  path -> reason (not DICOM, unreadable)
    deid:run:<id>:refused               hash  path -> reason (output exists)
    deid:run:<id>:failed                hash  path -> error type (unexpected error)
    deid:run:<id>:missing               hash  path -> missing entity/item fields
    deid:run:<id>:inspect               hash  path -> JSON verdict
    deid:run:<id>:unlisted              hash  path -> why the walk left it out (unlisted folder, link)
    deid:run:<id>:quarantined           hash  path -> "<group>: <reason>" (--clean-pixels)
    deid:run:<id>:clean                 hash  batch_no -> sealed JSON list of paths put (with
                                              --ocr: the ocr stage) left to clean
    deid:run:<id>:ocr                   hash  batch_no -> sealed JSON list of paths put or inspect
                                              left to the ocr stage (--ocr)
    deid:run:<id>:ocrverdicts           hash  batch_no -> sealed JSON {path: OCR verdict} (box
                                              geometry and counts, never text) that the clean
                                              stage blacks out
    deid:run:<id>:log:<stage>           hash  batch_no -> sealed JSON [[outcome, reason], ...] aligned
                                              with the paths the stage processed (deid-run.jsonl);
                                              a file's warnings as a fourth item where it has some
    deid:run:<id>:notices:<stage>       hash  batch_no -> sealed JSON {"counts": per kind,
                                              "first": [[path, kind, text], ...]}: the batch's
                                              warnings about files (:mod:`~deid_workers.run.notices`)
    deid:run:<id>:poison                hash  path -> why it was quarantined (crashed its worker)
    deid:run:<id>:residual              hash  path -> keywords whose PHI survived put
    deid:run:<id>:deliveries            hash  "<stage>:<batch>:<retry>" -> times the batch started
    deid:run:<id>:inflight              hash  "<stage>:<batch>" -> sealed "<retry>\n<path>" being processed;
                                              "<stage>:<batch>:limit" -> "<retry>\n<seconds>" when
                                              the hard time limit killed the batch's process
    deid:run:<id>:takers                hash  "<stage>:<batch>" -> "<worker>\t<start token>\t<time>":
                                              the latest start of each batch (--status; a start
                                              that finds another after it drops its results)

Outside any run, the workers' liveness (:mod:`deid_workers.tasks.liveness`)::

    deid:worker:<worker id>             string  the worker's node name, expiring unless its main
                                              process refreshes it (DEID_LIVENESS_TTL)
    deid:workers                        zset  worker id -> last refresh (for --status)

The outcome hashes (``path -> ...`` above) name each field by a keyed, salted digest of the
relative path (32 hex characters) and hold the path, a NUL and the text, sealed
(:mod:`.sealing`).

Key names never contain a header value nor a path: an entity (a PatientID), an item (a
SOPInstanceUID) and a path appear in key and field names only as digests keyed by the cluster
key and salted per run.

What is sealed, and why the rest need not be: :mod:`.sealing`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .plan import STAGES

__all__ = ["PREFIX", "RUNS_INDEX", "WORKERS_INDEX", "ENTITY_FIELD", "ENTITY_SETS", "OUTCOME_KINDS",
           "Keys", "worker_key"]

PREFIX = "deid:run:"
"""Every key of a run starts with this and the run id."""

RUNS_INDEX = "deid:runs"
"""Sorted set of run ids by creation time; lets ``--status`` list the latest runs."""

WORKERS_INDEX = "deid:workers"
"""Sorted set of worker ids by their last liveness refresh (``--status`` lists them)."""


def worker_key(worker: str) -> str:
    """The liveness key of one worker process (``<node name>#<incarnation>``): it exists
    while the worker lives (see :mod:`deid_workers.tasks.liveness`)."""
    return f"deid:worker:{worker}"


ENTITY_FIELD = "\x00entity"
"""Field of an ids hash that holds the entity value itself (an item is never empty-prefixed)."""

ENTITY_SETS = 16
"""Entity digest sets per run: the most shards an identifiers export can be split into."""

OUTCOME_KINDS = ("skipped", "refused", "failed", "missing", "inspect", "unlisted", "poison",
                 "residual", "quarantined")
"""The per-path outcome hashes of a run (``deid:run:<id>:<kind>``)."""


@dataclass(frozen=True)
class Keys:
    """The key builder: the only place that spells a Redis key of a run."""

    run_id: str

    @property
    def run(self) -> str:
        return f"{PREFIX}{self.run_id}"

    def _k(self, *parts: str) -> str:
        return ":".join((self.run, *parts))

    @property
    def batches(self) -> str:
        return self._k("batches")

    @property
    def valid(self) -> str:
        return self._k("valid")

    @property
    def places(self) -> str:
        """Per batch, the ids hash and field of each valid file (digests only)."""
        return self._k("places")

    @property
    def counters(self) -> str:
        return self._k("counters")

    @property
    def times(self) -> str:
        """When each stage first and last committed a batch (``--status`` computes rates)."""
        return self._k("times")

    def done(self, stage: str) -> str:
        return self._k("done", stage)

    @property
    def deliveries(self) -> str:
        return self._k("deliveries")

    @property
    def inflight(self) -> str:
        return self._k("inflight")

    def started(self, stage: str) -> str:
        return self._k("started", stage)

    @property
    def takers(self) -> str:
        """Who took each batch last (see :meth:`RunStore.start_batch`)."""
        return self._k("takers")

    def entities(self, digest: str) -> str:
        """The entity set that holds ``digest`` (its first hex digit picks one of 16)."""
        return self._k("entities", digest[0])

    def entity_sets(self, part: int = 0, parts: int = 1) -> list[str]:
        """Entity sets of export shard ``part`` of ``parts`` (a power of two up to 16)."""
        return [self._k("entities", format(n, "x")) for n in range(part, ENTITY_SETS, parts)]

    def ids(self, digest: str) -> str:
        return self._k("ids", digest)

    def ids_chunk(self, chunk: int) -> str:
        return self._k("idschunk", str(chunk))

    @property
    def clean_batches(self) -> str:
        return self._k("clean")

    @property
    def ocr_batches(self) -> str:
        return self._k("ocr")

    @property
    def ocr_verdicts(self) -> str:
        return self._k("ocrverdicts")

    def log(self, stage: str) -> str:
        return self._k("log", stage)

    def notices(self, stage: str) -> str:
        """Per batch, its warnings about files (counts and the first ones; notices.py)."""
        return self._k("notices", stage)

    def outcome(self, kind: str) -> str:
        """``skipped``, ``refused``, ``failed``, ``missing`` or ``inspect``."""
        return self._k(kind)

    def all(self) -> list[str]:
        """Fixed keys of the run (ids hashes are found through :attr:`entities`)."""
        fixed: list[str] = [self.run, self.batches, self.valid, self.places, self.counters,
                            self.times,
                            *self.entity_sets()]
        fixed += [self.done(s) for s in (*STAGES, "finalize", "export", "load")]
        fixed += [self.started(s) for s in (*STAGES, "finalize")]
        fixed += [self.outcome(k) for k in OUTCOME_KINDS]
        fixed += [self.deliveries, self.inflight, self.takers]
        fixed += [self.clean_batches, self.log("put"), self.log("clean")]
        fixed += [self.notices(s) for s in ("get", "put", "clean")]
        fixed += [self.ocr_batches, self.ocr_verdicts, self.log("ocr")]
        return fixed
