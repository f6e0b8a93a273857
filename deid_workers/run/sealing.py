"""Sealing a run's values: the base of the run store, and why the rest need not be.

Nothing identifying is in clear, and nothing a worker acts on is unauthenticated
(:mod:`deid_workers.keys`). Everything that holds a header value or a path relative to the input
(archives are exported as ``DOE_JOHN/...``, ``<PatientID>/...``) is sealed with AES-GCM, so the
AOF, an RDB snapshot, a purge's leftovers or a sniffed connection show none of it: identifiers,
the ``valid`` keys, the staged ids chunks, the run record's spec and the paths of its outputs,
every list of paths (batches, clean and ocr lists), the per-batch run-log entries and warnings,
the OCR verdicts, the in-flight file of a careful batch and each per-path outcome. An outcome
hash is keyed by path, so its field is a keyed digest of the path (:meth:`StoreBase._path_name`,
deterministic, so a redelivered batch overwrites its own fields) and the path is sealed into
the value with its reason. The associated data of each sealed value names the run, the hash and
the field, so nothing can be moved to another run, batch or item; AES-GCM's tag is the
integrity check (a list a worker acts on cannot be forged without the key), and the run record's
spec carries an HMAC tag besides. A worker meeting a value that does not open raises
:class:`~deid_workers.errors.RunRefused`.

In clear, by design: key names (run id, stage, batch number, keyed digests), counters, times,
the run's state, the takers (worker names), the ``places`` digests, the queues (run id and batch
number per task). Forging them can only misreport a run, never make a worker read or write
anything nor show a path or a value.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable
from typing import Any

import redis

from ..errors import RunRefused, StoreError
from ..keys import ClusterKeys, Unsealable
from .names import Keys

__all__ = ["SCAN_COUNT", "SEALED", "StoreBase", "decode", "relative_paths"]

SCAN_COUNT = 500
"""Elements per SSCAN/HSCAN call when streaming identifiers out: bounded memory, few calls."""

SEALED = "e1."
"""Prefix of a sealed value: base64 of ``nonce || AES-GCM`` (see :class:`ClusterKeys`)."""


def decode(value: Any) -> str:
    """A Redis reply as text (clients made with or without ``decode_responses``)."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class StoreBase:
    """A run's client, key names and keys, and the sealing of its values.

    The constructor does no I/O. ``keys`` (the cluster's
    :class:`~deid_workers.keys.ClusterKeys`) is needed by everything that reads or writes a
    sealed value; without it (``--purge``) only counters and deletion work.
    """

    def __init__(self, client: redis.Redis, run_id: str, *, expiry: int, salt: str = "",
                 keys: ClusterKeys | None = None) -> None:
        self.client = client
        self.run_id = run_id
        self.keys = Keys(run_id)
        self.expiry = int(expiry)
        self.salt = salt
        self.cluster = keys
        self._path_namer: Callable[[str], str] | None = None
        self._path_salt = ""

    def _cluster(self) -> ClusterKeys:
        if self.cluster is None:
            raise StoreError(f"run {self.run_id}: no cluster key configured (DEID_SECRET_FILE)")
        return self.cluster

    def _refused(self, what: str) -> RunRefused:
        return RunRefused(f"run {self.run_id}: {what} is not signed with the cluster key "
                          "(written or altered in Redis by someone without it)")

    def _sealed(self, what: str, name: str, data: bytes) -> str:
        blob = self._cluster().seal(data, self.run_id, what, name)
        return SEALED + base64.b64encode(blob).decode("ascii")

    def _opened(self, what: str, name: str, raw: Any) -> bytes:
        text = decode(raw)
        if text.startswith(SEALED):
            try:
                return self._cluster().open(base64.b64decode(text[len(SEALED):]),
                                            self.run_id, what, name)
            except (Unsealable, binascii.Error):
                pass
        raise self._refused(f"{what} {name}")

    def _sealed_text(self, what: str, name: str, text: str) -> str:
        return self._sealed(what, name, text.encode("utf-8"))

    def _opened_text(self, what: str, name: str, raw: Any) -> str:
        return self._opened(what, name, raw).decode("utf-8")

    def _sealed_paths(self, what: str, name: str, paths: Any) -> str:
        return self._sealed(what, name, json.dumps(list(paths)).encode("utf-8"))

    def _paths(self, what: str, name: str, raw: Any) -> list[str]:
        """A sealed list of relative paths, checked: a path that is absolute or climbs out of
        its folder never reaches a task (the seal already says who wrote it)."""
        paths = json.loads(self._opened(what, name, raw))
        return relative_paths(self.run_id, paths, f"{what} {name}")

    def _path_name(self, path: str) -> str:
        """The field naming ``path`` in a hash keyed by path (the outcomes): a keyed digest,
        salted per run, so the field shows nothing and nobody without the cluster key can test
        a guessed name against it; the same path always gets the same field."""
        namer = self._path_namer
        if namer is None or self._path_salt != self.salt:
            namer = self._path_namer = self._cluster().namer("path", self.salt)
            self._path_salt = self.salt
        return namer(path)

def relative_paths(run_id: str, paths: Any, where: str) -> list[str]:
    if not isinstance(paths, list):
        raise RunRefused(f"run {run_id}: {where} is not a list of paths")
    for path in paths:
        if (not isinstance(path, str) or not path or path.startswith(("/", "\\"))
                or os.path.isabs(path) or "\x00" in path or ".." in path.replace("\\", "/").split("/")):
            raise RunRefused(f"run {run_id}: {where} holds a path that is not relative to the "
                             "run's folders")
    return paths
