"""Per-file warnings ("notices"): what deid would print about a file, carried to the user.

deid prints its warnings as it works (``WARNING REPLACE PatientID not done for image1.dcm``).
Here the work happens in worker processes whose logs the user of ``deid-submit`` may never see,
so every warning about a file is collected where it arises, per batch, and committed to the
store with the batch (:meth:`~deid_workers.run.store.RunStore.commit_batch`): counted by kind (all
of them, in the run's counters) and kept in deid's words (the first :data:`PER_BATCH` of each
batch). The producer prints them as batches commit, the summary counts them by kind and lists
the first ones, and the run log gives each file its own (the first :data:`PER_FILE`).

Where they come from: the recipe engine's warnings (:mod:`deid_workers.recipe.notes`:
``not_done``, ``unfit_vr``, ``kept``, ``no_func``, ``empty_values``), put finding no
identifiers for a file (``no_ids``), and get finding a file whose (entity, item) another
file of the run has too, so both share one item of the ids export (``duplicate_uid``).

A notice holds the file's path relative to ``--input`` (what the run log shows), keywords or
tag paths and counts; never a header value.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..recipe.notes import collecting

__all__ = ["KINDS", "PER_BATCH", "PER_FILE", "COUNTER", "Notice", "BatchNotices",
           "no_ids_text", "duplicate_text", "decode", "counts_of", "shown", "printable",
           "as_json"]

KINDS: dict[str, str] = {
    "not_done": "REPLACE/JITTER not done (field removed)",
    "unfit_vr": "values not valid for their VR (field blanked)",
    "kept": "elements reported and left as they were",
    "no_func": "func: values whose function is not defined (action not done)",
    "empty_values": "values: selectors with an empty list (nothing selected)",
    "no_ids": "files without identifiers in the ids given",
    "duplicate_uid": "files whose instance UID another file has (one ids item)",
}
"""Every kind of notice, with what a summary says before their count."""

PER_BATCH = 100
"""Notices a batch keeps in deid's words (the rest are counted): a batch of 100 files whose
recipe misses one value per file keeps them all, and a batch stays a few KB in Redis."""

PER_FILE = 16
"""Notices a file's run-log line keeps (then ``... and N more``)."""

COUNTER = "notice:"
"""Prefix of the per-kind counters in the run's counters: ``put:notice:not_done``."""


@dataclass(frozen=True)
class Notice:
    """One warning about one file: its path (relative to the input), kind and deid's words."""

    path: str
    kind: str
    text: str

    def line(self) -> str:
        """The line a person reads: the text, preceded by the path when it does not name it."""
        return self.text if self.path in self.text else f"{self.path}: {self.text}"


def no_ids_text(path: str, entity_field: str, item_field: str) -> str:
    """Put found no identifiers for ``path`` in the ids it was given."""
    return (f"No identifiers for {path} in the ids given to put (no item for its "
            f"{entity_field} and {item_field})")


def duplicate_text(path: str, item_field: str, other: str | None = None) -> str:
    """Get found another file with the same (entity, item) as ``path``."""
    whom = other if other else "another file"
    return (f"{path} has the {item_field} of {whom}: their identifiers are one item in "
            "deid-ids (the last read wins)")


@dataclass
class BatchNotices:
    """The notices of one batch, as its task collects them (in walk order)."""

    limit: int = PER_BATCH
    counts: Counter[str] = field(default_factory=Counter)
    first: list[Notice] = field(default_factory=list)
    by_file: dict[str, list[str]] = field(default_factory=dict)
    more: Counter[str] = field(default_factory=Counter)  # per file, past PER_FILE
    _path: str = field(default="", repr=False)
    _collect: collecting | None = field(default=None, repr=False)

    def add(self, path: str, kind: str, text: str) -> None:
        self.counts[kind] += 1
        notice = Notice(path, kind, text)
        if len(self.first) < self.limit:
            self.first.append(notice)
        mine = self.by_file.setdefault(path, [])
        if len(mine) < PER_FILE:
            mine.append(notice.line())
        else:
            self.more[path] += 1

    def file(self, path: str) -> collecting:
        """``with batch.file(path):`` collects the recipe engine's warnings for ``path`` while
        the block runs (not nested: one file at a time)."""
        self._path = path
        if self._collect is None:
            self._collect = collecting(self._sink)
        return self._collect

    def _sink(self, kind: str, text: str) -> None:
        self.add(self._path, kind, text)

    def of_file(self, path: str) -> list[str]:
        """The lines of ``path`` for its run-log entry, bounded (:data:`PER_FILE`)."""
        mine = self.by_file.get(path) or []
        more = self.more.get(path)
        return [*mine, f"... and {more} more"] if more else list(mine)

    def counters(self) -> dict[str, int]:
        """The counts to commit with the batch (``notice:<kind>``)."""
        return {COUNTER + kind: n for kind, n in self.counts.items()}

    def encoded(self) -> str | None:
        """What the store keeps of the batch: its counts and first notices, as JSON; None
        when there is nothing to keep."""
        if not self.counts:
            return None
        return json.dumps({"counts": dict(self.counts),
                           "first": [[n.path, n.kind, n.text] for n in self.first]},
                          separators=(",", ":"))


def decode(text: str | None) -> tuple[dict[str, int], list[Notice]]:
    """(counts, first notices) of a batch as :meth:`BatchNotices.encoded` wrote them."""
    if not text:
        return {}, []
    data = json.loads(text)
    return ({str(k): int(v) for k, v in (data.get("counts") or {}).items()},
            [Notice(str(p), str(k), str(t)) for p, k, t in data.get("first") or ()])


def counts_of(counters: Mapping[str, int], stages: Sequence[str] = ("get", "put", "clean")
              ) -> dict[str, int]:
    """Notices per kind over the run's stages, from its counters."""
    out: Counter[str] = Counter()
    for stage in stages:
        prefix = f"{stage}:{COUNTER}"
        for name, n in counters.items():
            if name.startswith(prefix) and n:
                out[name[len(prefix):]] += int(n)
    return {k: out[k] for k in sorted(out, key=_kind_order)}


def _kind_order(kind: str) -> tuple[int, str]:
    order = list(KINDS)
    return (order.index(kind) if kind in order else len(order), kind)


def shown(batches: Iterable[tuple[int, str | None]],
          printed: Callable[[Notice], None] | None = None) -> list[Notice]:
    """The notices of ``(batch number, encoded)`` pairs in batch order, each also given to
    ``printed``; a batch that kept fewer than it counted adds a line saying so."""
    out: list[Notice] = []
    for number, raw in sorted(batches, key=lambda b: b[0]):
        counts, first = decode(raw)
        for notice in first:
            out.append(notice)
            if printed is not None:
                printed(notice)
        more = sum(counts.values()) - len(first)
        if more > 0 and printed is not None:
            printed(Notice("", "more", f"... and {more} more warning(s) in batch {number} "
                                       "(counted in the summary)"))
    return out


def as_json(notices: Iterable[Notice]) -> list[dict[str, Any]]:
    return [{"path": n.path, "kind": n.kind, "text": n.line()} for n in notices]


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}


def printable(text: str) -> str:
    """``text`` with control characters escaped: a file name may hold any byte but ``/``,
    and one holding a terminal's escape sequence must not drive the terminal it is shown on."""
    return text.translate(_CONTROL)
