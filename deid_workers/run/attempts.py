"""A batch's starts: counted, their takers noted, and what a careful start was on when it died.

The guard (:mod:`deid_workers.tasks.guard`) and liveness (:mod:`deid_workers.tasks.liveness`)
read these: a start counted per Celery retry finds a file that kills its worker; a taker note
lets a start that was replaced (its worker looked dead) commit nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .idstore import IDS_OF_BATCH_LUA, IdsStore, ValidFiles, read_places
from .sealing import SCAN_COUNT, decode

__all__ = ["BatchAttempts", "BatchStart"]


class BatchAttempts(IdsStore):
    """The batch-start part of :class:`~deid_workers.run.store.RunStore`."""

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
            pipe.eval(IDS_OF_BATCH_LUA, 1, self.keys.places, str(batch_no), self.keys.ids(""))
        out = pipe.execute()
        start = BatchStart(int(out[0]), bool(out[4]))
        if mark_started:
            start.first_time = bool(out[5])
        if ids:
            start.ids = read_places(out.pop())
        if lists:
            raw = out[-2]
            start.paths = None if raw is None else self._paths("batches", str(batch_no), raw)
            start.valid = self._valid_record(str(batch_no), out[-1])
        return start

    def taken_by(self, stage: str, batch_no: int) -> str | None:
        """The taker of the latest start of a batch (``<worker>\t<token>``), None if none."""
        raw = self.client.hget(self.keys.takers, f"{stage}:{batch_no}")
        return None if raw is None else decode(raw).rpartition("\t")[0]

    def takers(self) -> dict[str, tuple[str, float]]:
        """``{"<stage>:<batch>": (worker, time of its latest start)}`` (``--status``)."""
        out = {}
        for field, raw in self.client.hscan_iter(self.keys.takers, count=SCAN_COUNT):
            worker, _, rest = decode(raw).partition("\t")
            out[decode(field)] = (worker, float(rest.rpartition("\t")[2] or 0))
        return out

    def set_inflight(self, stage: str, batch_no: int, retry: int, path: str | None) -> None:
        """Note the file a careful (file by file) delivery is on; None when the batch is over."""
        field = f"{stage}:{batch_no}"
        if path is None:
            self.client.hdel(self.keys.inflight, field)
            return
        pipe = self.client.pipeline()
        pipe.hset(self.keys.inflight, field, self._sealed_text("inflight", field, f"{retry}\n{path}"))
        pipe.expire(self.keys.inflight, self.expiry)
        pipe.execute()

    def inflight(self, stage: str, batch_no: int, retry: int) -> str | None:
        """The file a previous careful delivery at the same retry was on when it died (sealed:
        the path may name a patient)."""
        field = f"{stage}:{batch_no}"
        raw = self.client.hget(self.keys.inflight, field)
        if raw is None:
            return None
        at, _, path = self._opened_text("inflight", field, raw).partition("\n")
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
        at, _, seconds = decode(raw).partition("\n")
        return int(seconds) if at == str(retry) and seconds.isdigit() else None


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
