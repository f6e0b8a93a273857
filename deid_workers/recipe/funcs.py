"""Built-in ``deid_func:`` helpers: deid's five, plus keyed pseudonyms (spec Part A §4).

deid's built-ins (jitter, pydicom_uuid, dicom_uuid, basic_uuid, suffix_uuid) behave as in deid
(spec §2.6), except that ``pydicom_uuid stable_remapping=false`` gives a random UID per call
(deid gives every field the same UID, the hash of an empty string).

The keyed helpers derive everything from HMAC-SHA256 with a secret key, so every worker of a
cluster gives the same answer for the same input without talking to the others, and nobody
without the key can reverse the mapping or link it to another project's output:

- ``hmac_uid [root=R]``: a valid UID (<= 64 chars) under ``2.25.`` or ``R``.
- ``hmac_id [prefix=P] [length=N]``: a short stable identifier (base32, 16 chars by default).
- ``date_shift [min=A] [max=B]``: every date of one entity (PatientID) moves by the same number
  of days in ``[A, B]`` (default: the settings' range); TM is left unchanged.

The key is fetched (Settings.resolve_secret) only when a keyed helper actually runs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pydicom.multival import MultiValue
from pydicom.uid import generate_uid

__all__ = [
    "BUILTINS",
    "FuncContext",
    "parse_extras",
    "validate_deid_func",
    "call_builtin",
    "jitter_days",
    "jitter_value",
    "hmac_uid",
    "hmac_id",
    "shift_days",
]

logger = logging.getLogger(__name__)

BUILTINS = (
    "jitter",
    "pydicom_uuid",
    "dicom_uuid",
    "basic_uuid",
    "suffix_uuid",
    "hmac_uid",
    "hmac_id",
    "date_shift",
)
_UID_ROOT = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_FIXED_DEFAULT = datetime(1900, 1, 1)  # fills missing date parts: never "today"


def parse_extras(extras: str | None) -> dict[str, Any]:
    """``k=v k=v`` -> dict, with true/false/none/null converted as deid does."""
    out: dict[str, Any] = {}
    for pair in (extras or "").split(" "):
        if "=" not in pair:
            continue
        key, val = pair.split("=", 1)
        value: Any = val.strip()
        if value == "true":
            value = True
        elif value == "false":
            value = False
        elif value in ("none", "null"):
            value = None
        out[key.strip()] = value
    return out


def _int_opt(opts: dict[str, Any], name: str, default: int | None) -> int | None:
    if name not in opts:
        return default
    try:
        return int(opts[name])
    except (TypeError, ValueError):
        raise ValueError(f"deid_func option {name}= must be a whole number") from None


def validate_deid_func(name: str, extras: str) -> None:
    """Raise ValueError when a deid_func line can never run (the parser turns it into a
    RecipeError); deid would warn at run time and keep the original value."""
    if name not in BUILTINS:
        raise ValueError(f"unknown deid_func {name!r} (expected one of {', '.join(BUILTINS)})")
    opts = parse_extras(extras)
    if name == "jitter":
        _int_opt(opts, "days", 1)
        _int_opt(opts, "years", 0)
    elif name == "hmac_uid":
        root = opts.get("root")
        if root is not None and (not _UID_ROOT.match(str(root).rstrip(".")) or len(str(root)) > 40):
            raise ValueError("hmac_uid root= must be a UID root of digits and dots (<= 40 chars)")
    elif name == "hmac_id":
        length = _int_opt(opts, "length", 16)
        if length is not None and not 8 <= length <= 52:
            raise ValueError("hmac_id length= must be between 8 and 52")
    elif name == "date_shift":
        lo, hi = _int_opt(opts, "min", None), _int_opt(opts, "max", None)
        if lo is not None and hi is not None and lo > hi:
            raise ValueError("date_shift min= must not exceed max=")


class FuncContext:
    """What built-ins need beyond the field: the key (lazily), the settings, the entity.

    One per deidentify call; nothing is cached beyond it.
    """

    def __init__(self, settings: Any = None, entity: str | None = None) -> None:
        self._settings = settings
        self._key: bytes | None = None
        self.entity = entity

    @property
    def settings(self) -> Any:
        if self._settings is None:
            from ..config import Settings

            self._settings = Settings.from_env()
        return self._settings

    def key(self) -> bytes:
        if self._key is None:
            self._key, _ = self.settings.resolve_secret()
        return self._key


def _digest(key: bytes, purpose: str, text: str) -> bytes:
    msg = f"deid-workers:{purpose}:".encode() + text.encode("utf-8")
    return hmac.new(key, msg, hashlib.sha256).digest()


def hmac_uid(key: bytes, original: str, root: str | None = None) -> str:
    """A valid UID from HMAC(key, original): ``2.25.<128-bit int>`` or ``<root>.<digits>``."""
    digest = _digest(key, "uid", original)
    if root is None or root.rstrip(".") == "2.25":
        return f"2.25.{int.from_bytes(digest[:16], 'big')}"
    return f"{root.rstrip('.')}.{int.from_bytes(digest, 'big')}"[:64]


def hmac_id(key: bytes, original: str, prefix: str = "", length: int = 16) -> str:
    """A short stable identifier: base32 of HMAC(key, original), upper case, no padding."""
    digest = _digest(key, "id", original)
    return prefix + base64.b32encode(digest).decode("ascii").rstrip("=")[:length]


def shift_days(key: bytes, entity: str, lo: int, hi: int) -> int:
    """The per-entity shift in [lo, hi] days: same entity + key -> same shift everywhere."""
    digest = _digest(key, "date_shift", entity)
    return lo + int.from_bytes(digest[:8], "big") % (hi - lo + 1)


def _shift_range(ctx: FuncContext, opts: dict[str, Any]) -> tuple[int, int]:
    s = ctx.settings
    lo = _int_opt(opts, "min", s.date_shift_min)
    hi = _int_opt(opts, "max", s.date_shift_max)
    assert lo is not None and hi is not None
    return lo, hi


def jitter_days(name: str, extras: str, ctx: FuncContext) -> int:
    """Days a ``jitter`` or ``date_shift`` func stands for (used when it is a JITTER value)."""
    opts = parse_extras(extras)
    if name == "date_shift":
        lo, hi = _shift_range(ctx, opts)
        return shift_days(ctx.key(), ctx.entity or "", lo, hi)
    days = _int_opt(opts, "days", 1) or 0
    return days + 365 * (_int_opt(opts, "years", 0) or 0)


def _parse_date(text: str, fmt: str) -> datetime:
    import dateutil.parser

    try:
        return dateutil.parser.parse(text, default=_FIXED_DEFAULT)
    except (dateutil.parser.ParserError, OverflowError, ValueError):
        return datetime.strptime(text, fmt)


def _shift_one(text: str, days: int, fmt: str) -> str:
    return (_parse_date(text, fmt) + timedelta(days=days)).strftime(fmt)


def jitter_value(value: Any, vr: str, days: int, label: str = "") -> Any:
    """Shift a date value by ``days`` (deid's JITTER, spec §2.8).

    DA -> YYYYMMDD; DT -> YYYYMMDDHHMMSS.ffffff(+zone); other VRs try the date forms; TM is
    left unchanged (deid turns it into today's date). Multi-valued values are shifted item by
    item and joined with a backslash. Returns None when nothing can be shifted.
    """
    if not value:
        return None
    if vr == "TM":
        logger.debug("JITTER leaves TM field %s unchanged", label)
        return None
    multi = isinstance(value, (list, tuple, MultiValue))
    items = list(value) if multi else [value]
    out = []
    for item in items:
        text = str(item)
        shifted = None
        if vr == "DA":
            shifted = _try_shift(text, days, ("%Y%m%d",))
        elif vr == "DT":
            shifted = _try_shift(text, days, ("%Y%m%d%H%M%S.%f%z", "%Y%m%d%H%M%S.%f"))
        else:
            shifted = _try_shift(text, days, ("%Y%m%d", "%Y%m%d%H%M%S.%f%z", "%Y%m%d%H%M%S.%f"))
        if not shifted:
            logger.warning("JITTER not supported for field %s, VR=%s", label, vr)
        out.append(shifted or text)
    return "\\".join(out) if multi else out[0]


def _try_shift(text: str, days: int, fmts: tuple[str, ...]) -> str | None:
    for fmt in fmts:
        try:
            return _shift_one(text, days, fmt)
        except (ValueError, OverflowError):
            continue
    return None


def _original(field: Any) -> Any:
    original = getattr(field, "original_value", None)  # a selectors.Field: may skip converting
    if original is not None:
        return original()
    element = getattr(field, "element", None)
    return None if element is None else element.value


def _each(value: Any, fn: Callable[[str], str]) -> Any:
    if value is None or value == "":
        return ""
    if isinstance(value, (list, tuple, MultiValue)):
        return [fn(str(v)) for v in value]
    return fn(str(value))


def call_builtin(name: str, extras: str, *, field: Any, ctx: FuncContext) -> Any:
    """Run built-in ``name`` for ``field`` (a selectors.Field, or the raw ADD string)."""
    opts = parse_extras(extras)
    if name in ("jitter", "date_shift"):
        element = getattr(field, "element", None)
        if element is None:
            return None
        return jitter_value(element.value, element.VR, jitter_days(name, extras, ctx), getattr(field, "name", ""))
    if name == "pydicom_uuid":
        prefix = opts.get("prefix", "2.25.")
        stable = opts.get("stable_remapping", True)
        if stable is True:
            return generate_uid(prefix=prefix, entropy_srcs=[str(_original(field))])
        return generate_uid(prefix=prefix)
    if name == "dicom_uuid":
        root = opts.get("org_root", "anonymous-organization")
        return f"{root}.{uuid.uuid4().int}"[:64]
    if name == "basic_uuid":
        return str(uuid.uuid4())
    if name == "suffix_uuid":
        label = getattr(field, "name", field)
        return f"{str(label).lower()}-{uuid.uuid4()}"
    if name == "hmac_uid":
        key = ctx.key()
        root = opts.get("root")
        return _each(_original(field), lambda v: hmac_uid(key, v, root))
    if name == "hmac_id":
        key = ctx.key()
        prefix = str(opts.get("prefix") or "")
        length = _int_opt(opts, "length", 16) or 16
        return _each(_original(field), lambda v: hmac_id(key, v, prefix, length))
    raise ValueError(f"unknown deid_func {name!r}")
