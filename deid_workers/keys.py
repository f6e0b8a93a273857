"""The cluster key: checked once, fingerprinted, and split into the keys Redis never sees.

``DEID_SECRET`` (or the file ``DEID_SECRET_FILE`` names) has several jobs, and each gets its own
key, derived with HKDF-SHA256 under a label, so that no job ever uses the raw secret of
another and learning one derived key reveals neither the secret nor the others:

- the pseudonyms themselves (``hmac_uid``, ``hmac_id``, ``date_shift``) keep using the raw
  secret as they always did (:mod:`deid_workers.recipe.funcs`): a new derivation there would
  change every pseudonym already released;
- ``sign``: an HMAC-SHA256 tag on the run record, so that someone holding only the Redis
  password can neither submit a run nor redirect one (:class:`~deid_workers.errors.RunRefused`);
- ``seal``: AES-256-GCM over the identifiers kept in Redis, the run record and every path
  (lists a worker acts on, logs, outcomes), so an AOF or RDB file, a purge leftover or a
  sniffed connection shows nothing, and a list cannot be forged (GCM's tag); the associated
  data binds each value to the run and the place it was written to, so it cannot be moved;
- ``digest``: keyed names for the entities', items' and paths' hash fields, so a name cannot be
  tested against a guessed PatientID or file name;
- ``fingerprint``: a short public name of the key, kept with each run, so a worker holding
  another key says so in one line instead of failing on a signature.

Checks (:func:`check_secret`): at least :data:`MIN_SECRET_BYTES` bytes, not one of the shipped
placeholders, not a key of one or two repeated characters.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import ConfigError

__all__ = ["MIN_SECRET_BYTES", "GENERATE", "ClusterKeys", "Unsealable", "check_secret"]

MIN_SECRET_BYTES = 32
"""Shortest key accepted: 256 bits as hex is 64 characters; 32 bytes is the floor for any
spelling (HMAC-SHA256's own block of security)."""

GENERATE = "python -c 'import secrets; print(secrets.token_hex(32))'"
"""The command every key error suggests."""

PLACEHOLDER_MARK = b"change-me"
"""What every placeholder of the shipped examples (.env.example, deploy/k8s/secret.example.yaml,
deploy/secrets.sh) contains: a key containing it was copied, not generated."""

_LABEL = b"deid-workers/v1/"
_NONCE = 12


class Unsealable(ValueError):
    """A sealed value that does not open with this key in this place: written with another
    key, altered, or moved from where it was written."""


def check_secret(secret: bytes, source: str) -> bytes:
    """``secret`` stripped, or :class:`ConfigError` naming ``source`` and how to make a good one.

    Why refuse: with a placeholder or a short key, anyone can recompute the pseudonyms of a
    known patient (the released StudyInstanceUIDs, the date shift) by trying keys.
    """
    key = secret.strip()
    if not key:
        raise ConfigError(f"{source}: the key is empty; generate one with {GENERATE}")
    if PLACEHOLDER_MARK in key.lower():
        raise ConfigError(f"{source}: the key is the example's placeholder; generate one with "
                          f"{GENERATE}")
    if len(key) < MIN_SECRET_BYTES:
        raise ConfigError(f"{source}: the key has {len(key)} bytes, fewer than "
                          f"{MIN_SECRET_BYTES}; generate one with {GENERATE}")
    if len(set(key)) < 3:
        raise ConfigError(f"{source}: the key repeats one or two characters; generate one with "
                          f"{GENERATE}")
    return key


def _derive(secret: bytes, label: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=_LABEL + label.encode("ascii")).derive(secret)


def _framed(parts: tuple[str | bytes, ...]) -> bytes:
    """The parts of a signed or sealed context, each length-prefixed, so no two different
    tuples give the same bytes (``("ab", "c")`` is not ``("a", "bc")``)."""
    out = bytearray()
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        out += len(data).to_bytes(4, "big") + data
    return bytes(out)


@dataclass(frozen=True, repr=False)
class ClusterKeys:
    """The keys derived from one cluster secret (see the module docstring); no repr, so the
    keys never reach a log or a traceback."""

    fingerprint: str
    _sign: bytes = field(repr=False)
    _digest: bytes = field(repr=False)
    _aead: AESGCM = field(repr=False)

    @classmethod
    def derive(cls, secret: bytes) -> ClusterKeys:
        """The keys of ``secret`` (checked by the caller, :func:`check_secret`)."""
        return cls(fingerprint=_derive(secret, "fingerprint")[:8].hex(),
                   _sign=_derive(secret, "sign"), _digest=_derive(secret, "digest"),
                   _aead=AESGCM(_derive(secret, "seal")))

    def __repr__(self) -> str:
        return f"ClusterKeys(fingerprint={self.fingerprint!r})"

    # -- HMAC tags ---------------------------------------------------------------------------
    def sign(self, *parts: str | bytes) -> str:
        """A 128-bit HMAC-SHA256 tag (hex) of ``parts``; the first parts name what and where
        (run id, list, field), so a tag does not fit any other place."""
        return hmac.new(self._sign, _framed(parts), hashlib.sha256).hexdigest()[:32]

    def verify(self, tag: str, *parts: str | bytes) -> bool:
        return hmac.compare_digest(tag, self.sign(*parts))

    # -- AES-GCM ----------------------------------------------------------------------------
    def seal(self, data: bytes, *context: str | bytes) -> bytes:
        """``nonce || AES-256-GCM(data)``, authenticated together with ``context``."""
        nonce = os.urandom(_NONCE)
        return nonce + self._aead.encrypt(nonce, data, _framed(context))

    def open(self, blob: bytes, *context: str | bytes) -> bytes:
        """The data :meth:`seal` sealed in ``context``; :class:`Unsealable` for anything else."""
        try:
            return self._aead.decrypt(blob[:_NONCE], blob[_NONCE:], _framed(context))
        except (InvalidTag, ValueError):
            raise Unsealable("not sealed with this key here") from None

    # -- keyed names ------------------------------------------------------------------------
    def namer(self, *context: str) -> Callable[[str], str]:
        """A function naming a value by a keyed digest (32 hex characters) under ``context``
        (the run's salt and what is named), for Redis key and field names."""
        base = hmac.new(self._digest, _framed(context), hashlib.sha256)

        def name(value: str) -> str:
            mac = base.copy()
            mac.update(value.encode("utf-8"))
            return mac.hexdigest()[:32]

        return name
