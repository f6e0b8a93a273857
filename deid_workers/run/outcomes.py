"""What became of each file: per-batch run-log entries, warnings, outcomes by kind, counters.

Read by the run log (:mod:`.runlog`) and the reports (:mod:`.report`), in walk order and many
batches per round trip (a million files are 10,000 batches).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .idstore import IdsStore
from .names import OUTCOME_KINDS
from .sealing import SCAN_COUNT, decode

__all__ = ["RunOutcomes", "BatchRecord", "batch_numbers"]


class RunOutcomes(IdsStore):
    """The outcomes part of :class:`~deid_workers.run.store.RunStore`."""

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
                  self._sealed_text(f"log:{stage}", str(batch_no),
                                    json.dumps([list(e) for e in entries])))
        pipe.expire(self.keys.log(stage), self.expiry)

    def notices(self, stage: str, numbers: Sequence[int]) -> list[tuple[int, str | None]]:
        """The warnings batches ``numbers`` of ``stage`` kept (see :mod:`deid_workers.run.notices`),
        opened; None for a batch without any. One round trip."""
        if not numbers:
            return []
        raws = self.client.hmget(self.keys.notices(stage), [str(n) for n in numbers])
        return [(n, None if raw is None else self._opened_text(f"notices:{stage}", str(n), raw))
                for n, raw in zip(numbers, raws)]

    def notice_batches(self, stage: str) -> set[int]:
        """The batches of ``stage`` that kept warnings (their numbers only)."""
        return {int(decode(k)) for k in self.client.hkeys(self.keys.notices(stage))}

    def add_notices(self, stage: str, batch_no: int, notices: str,
                    counts: Mapping[str, int]) -> None:
        """Replace the warnings batch ``batch_no`` kept and add ``counts`` to the run's counters
        (``<stage>:<name>``): for what a batch learns from its own commit (get's shared ids
        items, :attr:`Commit.existing`), once, by the delivery that committed."""
        pipe = self.client.pipeline()
        pipe.hset(self.keys.notices(stage), str(batch_no),
                  self._sealed_text(f"notices:{stage}", str(batch_no), notices))
        pipe.expire(self.keys.notices(stage), self.expiry)
        for name, n in counts.items():
            pipe.hincrby(self.keys.counters, f"{stage}:{name}", int(n))
        pipe.expire(self.keys.counters, self.expiry)
        pipe.execute()

    def add_outcome(self, kind: str, path: str, text: str, *, counter: str | None = None) -> None:
        """Record one file outside any batch (a folder the walk could not list)."""
        pipe = self.client.pipeline()
        pipe.hset(self.keys.outcome(kind), mapping=self._outcome_fields(kind, {path: text}))
        pipe.expire(self.keys.outcome(kind), self.expiry)
        if counter:
            pipe.hincrby(self.keys.counters, counter, 1)
            pipe.expire(self.keys.counters, self.expiry)
        pipe.execute()

    def counters(self) -> dict[str, int]:
        return {decode(k): int(v) for k, v in self.client.hgetall(self.keys.counters).items()}

    def times(self) -> dict[str, float]:
        """``{"<stage>:first": t, "<stage>:last": t}``: when batches of each stage committed."""
        return {decode(k): float(v) for k, v in self.client.hgetall(self.keys.times).items()}

    def _outcome_fields(self, kind: str, entries: Mapping[str, str]) -> dict[str, str]:
        """The fields of outcome hash ``kind`` for ``{path: text}``: each path's keyed name
        (:meth:`_path_name`) -> the path, NUL and its text (no path holds a NUL; cheaper than
        JSON, per file of an inspect batch), sealed for that hash and field."""
        if kind not in OUTCOME_KINDS:
            raise ValueError(f"unknown outcome kind {kind!r}")
        what, name, seal = f"outcome:{kind}", self._path_name, self._sealed_text
        out = {}
        for path, text in entries.items():
            field = name(path)
            out[field] = seal(what, field, f"{path}\0{text}")
        return out

    def _outcome(self, kind: str, field: Any, raw: Any) -> tuple[str, str]:
        """``(path, text)`` of one outcome field, opened (:class:`RunRefused` if it does not)."""
        name = decode(field)
        path, nul, text = self._opened_text(f"outcome:{kind}", name, raw).partition("\0")
        if not nul:
            raise self._refused(f"outcome:{kind} {name}")
        return path, text

    def _outcomes_of(self, kind: str, paths: Sequence[str], raws: Sequence[Any]
                     ) -> Iterator[tuple[str, str]]:
        """``(path, text)`` for each of ``paths`` whose field (read as ``raws``) is set."""
        name = self._path_name
        for path, raw in zip(paths, raws):
            if raw is not None:
                found, text = self._outcome(kind, name(path), raw)
                if found != path:  # another path with this keyed name: never, short of forgery
                    raise self._refused(f"outcome:{kind} {name(path)}")
                yield path, text

    def outcomes(self, kind: str, paths: Sequence[str] | None = None) -> dict[str, str]:
        """Records of one kind (path -> text); only those of ``paths`` when given (one HMGET)."""
        if paths is None:
            return dict(self.iter_outcomes(kind))
        if not paths:
            return {}
        name = self._path_name
        raws = self.client.hmget(self.keys.outcome(kind), [name(p) for p in paths])
        return dict(self._outcomes_of(kind, paths, raws))

    def iter_batch_outcomes(self, kind: str, total: int, step: int = 100
                            ) -> Iterator[tuple[str, str]]:
        """``(path, record)`` of one kind for the files of every batch, in walk order, with the
        records of ``step`` batches read in one round trip (the inspect report's input: one
        read per batch cost half of writing it)."""
        for numbers in batch_numbers(total, step):
            batches = [self._paths("batches", n, raw)
                       for n, raw in zip(numbers, self.client.hmget(self.keys.batches, numbers))
                       if raw is not None]
            name = self._path_name
            pipe = self.client.pipeline(transaction=False)
            for paths in batches:
                if paths:
                    pipe.hmget(self.keys.outcome(kind), [name(p) for p in paths])
            records = iter(pipe.execute())
            for paths in batches:
                if paths:
                    yield from self._outcomes_of(kind, paths, next(records))

    def iter_outcomes(self, kind: str) -> Iterator[tuple[str, str]]:
        """``(path, text)`` of every record of one kind, in no order."""
        for k, v in self.client.hscan_iter(self.keys.outcome(kind), count=SCAN_COUNT):
            yield self._outcome(kind, k, v)

    def outcome_count(self, kind: str) -> int:
        return int(self.client.hlen(self.keys.outcome(kind)))

    def iter_batch_records(self, total: int, step: int = 100) -> Iterator[BatchRecord]:
        """What every stage recorded of each batch, in walk order, ``step`` batches per round
        trip (the run log's input: a million files are 10,000 batches, and reading each
        batch's four records apart cost as much as writing the log)."""
        keys = (self.keys.batches, self.keys.valid, self.keys.log("put"), self.keys.clean_batches,
                self.keys.log("clean"), self.keys.ocr_batches, self.keys.log("ocr"))
        for numbers in batch_numbers(total, step):
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
        return [(str(e[0]), *e[1:])
                for e in json.loads(self._opened_text(f"log:{stage}", name, raw))]


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


def batch_numbers(total: int, step: int) -> Iterator[list[str]]:
    """Batch numbers below ``total`` as field names, ``step`` at a time (one HMGET each)."""
    for start in range(0, total, step):
        yield [str(n) for n in range(start, min(total, start + step))]
