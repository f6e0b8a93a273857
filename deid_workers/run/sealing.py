"""Signing and sealing a run's values: the base of the run store, and why the rest need not be.

Nothing identifying is in clear, and nothing a worker acts on is unsigned
(:mod:`deid_workers.keys`): identifiers, the ``valid`` keys and the staged ids chunks are
sealed with AES-GCM (so the AOF, an RDB snapshot, a purge's leftovers or a sniffed connection
show nothing), and the run record and every list of paths carry an HMAC tag. The associated
data of each sealed value and the signed text of each tag name the run, the hash and the field,
so nothing can be moved to another run, batch or item. A worker meeting a value that does not
verify raises :class:`~deid_workers.errors.RunRefused`. Counters, times, per-path outcomes and
the queues are not signed: forging them can only misreport a run, never make a worker read or
write anything.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from typing import Any

import redis

from ..errors import RunRefused, StoreError
from ..keys import ClusterKeys, Unsealable
from .names import Keys

__all__ = ["SCAN_COUNT", "SEALED", "SIGNED", "StoreBase", "decode", "relative_paths"]

SCAN_COUNT = 500
"""Elements per SSCAN/HSCAN call when streaming identifiers out: bounded memory, few calls."""

SEALED = "e1."
"""Prefix of a sealed value: base64 of ``nonce || AES-GCM`` (see :class:`ClusterKeys`)."""
SIGNED = "s1."
"""Prefix of a signed value: a 32-hex HMAC tag, then the text it covers."""
_TAG = 32


def decode(value: Any) -> str:
    """A Redis reply as text (clients made with or without ``decode_responses``)."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class StoreBase:
    """A run's client, key names and keys, and the signing and sealing of its values.

    The constructor does no I/O. ``keys`` (the cluster's
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

    def _cluster(self) -> ClusterKeys:
        if self.cluster is None:
            raise StoreError(f"run {self.run_id}: no cluster key configured (DEID_SECRET_FILE)")
        return self.cluster

    def _refused(self, what: str) -> RunRefused:
        return RunRefused(f"run {self.run_id}: {what} is not signed with the cluster key "
                          "(written or altered in Redis by someone without it)")

    def _signed(self, what: str, name: str, text: str) -> str:
        return SIGNED + self._cluster().sign(self.run_id, what, name, text) + text

    def _verified(self, what: str, name: str, raw: Any) -> str:
        text = decode(raw)
        head = len(SIGNED)
        if text.startswith(SIGNED):
            body = text[head + _TAG:]
            if self._cluster().verify(text[head:head + _TAG], self.run_id, what, name, body):
                return body
        raise self._refused(f"{what} {name}")

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

    def _paths(self, what: str, name: str, raw: Any) -> list[str]:
        """A signed list of relative paths, checked: a path that is absolute or climbs out of
        its folder never reaches a task (the signature already says who wrote it)."""
        paths = json.loads(self._verified(what, name, raw))
        return relative_paths(self.run_id, paths, f"{what} {name}")

def relative_paths(run_id: str, paths: Any, where: str) -> list[str]:
    if not isinstance(paths, list):
        raise RunRefused(f"run {run_id}: {where} is not a list of paths")
    for path in paths:
        if (not isinstance(path, str) or not path or path.startswith(("/", "\\"))
                or os.path.isabs(path) or "\x00" in path or ".." in path.replace("\\", "/").split("/")):
            raise RunRefused(f"run {run_id}: {where} holds a path that is not relative to the "
                             "run's folders")
    return paths
