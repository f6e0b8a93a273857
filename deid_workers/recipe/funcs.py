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
  of days in ``[A, B]`` (default: the settings' range); TM is left unchanged (a time of day
  is the same after a shift by whole days). Unlike deid's ``jitter``, a JITTER with it removes
  a date it cannot read rather than keep it (the engine's :func:`shift_value`).

Two more serve the PS3.15 options (:mod:`.annex_e`):

- ``clean_text``: free text with the file's own names, IDs and dates taken out
  (:mod:`.cleantext`; the engine collects them before the recipe runs);
- ``unsafe_private``: for ``REMOVE <private selector> deid_func:unsafe_private``, true for a
  private element that Table E.3.10-1 does not list (by creator, group and element byte,
  whatever block it lands in), and for a private creator whose block keeps none.

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

from ..dicom import compat
from .cleantext import Identifying, clean_value
from .notes import warn
from .standard import safe_private_keys

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
    "fast_shift",
    "shift_value",
    "unsafe_private",
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
    "clean_text",
    "unsafe_private",
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
        self.identifying: Identifying | None = None  # set by the engine for clean_text
        self._days: dict[tuple[str, str], int] = {}
        self.shifted: dict[tuple[bytes, str], str | None] = {}  # a file repeats its dates

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
    """Days a ``jitter`` or ``date_shift`` func stands for (used when it is a JITTER value);
    the same for every field of one call, so it is worked out once per call."""
    days = ctx._days.get((name, extras))
    if days is None:
        opts = parse_extras(extras)
        if name == "date_shift":
            lo, hi = _shift_range(ctx, opts)
            days = shift_days(ctx.key(), ctx.entity or "", lo, hi)
        else:
            days = (_int_opt(opts, "days", 1) or 0) + 365 * (_int_opt(opts, "years", 0) or 0)
        ctx._days[(name, extras)] = days
    return days


def _parse_date(text: str, fmt: str) -> datetime:
    import dateutil.parser

    try:
        return dateutil.parser.parse(text, default=_FIXED_DEFAULT)
    except (dateutil.parser.ParserError, OverflowError, ValueError):
        return datetime.strptime(text, fmt)


def _shift_one(text: str, days: int, fmt: str) -> str:
    return (_parse_date(text, fmt) + timedelta(days=days)).strftime(fmt)


def jitter_value(value: Any, vr: str, days: int, label: str = "", quiet: bool = False) -> Any:
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
        shifted = fast_shift(text, days, vr if vr in ("DA", "DT") else "")
        if shifted is not None:
            out.append(shifted)
            continue
        if vr == "DA":
            shifted = _try_shift(text, days, ("%Y%m%d",))
        elif vr == "DT":
            shifted = _try_shift(text, days, ("%Y%m%d%H%M%S.%f%z", "%Y%m%d%H%M%S.%f"))
        else:
            shifted = _try_shift(text, days, ("%Y%m%d", "%Y%m%d%H%M%S.%f%z", "%Y%m%d%H%M%S.%f"))
        if not shifted and not quiet:
            warn(logger, "kept", "JITTER not supported for field %s, VR=%s", label, vr)
        out.append(shifted or text)
    return "\\".join(out) if multi else out[0]


_DAY = timedelta(days=1)


def fast_shift(text: str, days: int, vr: str) -> str | None:
    """The shift of a plain ``YYYYMMDD`` (DA) or ``YYYYMMDDHHMMSS[.f]`` (DT, no zone) value,
    exactly as the parsing path writes it (DT: six fraction digits), without parsing it
    with dateutil, which was most of a shift's cost. None for anything else."""
    n = len(text)
    if n < 8 or not text[:8].isdigit() or not "1000" <= text[:4]:
        return None
    try:
        day = datetime(int(text[:4]), int(text[4:6]), int(text[6:8])) + _DAY * days
    except (ValueError, OverflowError):
        return None
    if day.year < 1000:
        return None
    date = f"{day.year:04d}{day.month:02d}{day.day:02d}"
    if n == 8:
        return date + "000000.000000" if vr == "DT" else date
    if vr != "DT" or n < 14 or not text[8:14].isdigit():
        return None
    clock = text[8:14]
    if not ("00" <= clock[:2] <= "23" and "00" <= clock[2:4] <= "59" and "00" <= clock[4:] <= "59"):
        return None
    fraction = text[14:]
    if fraction:
        if fraction[0] != "." or not 2 <= len(fraction) <= 7 or not fraction[1:].isdigit():
            return None
        fraction = fraction[1:]
    return f"{date}{clock}.{fraction.ljust(6, '0')}"


def shift_value(value: Any, vr: str, days: int, label: str = "") -> Any:
    """``date_shift``'s JITTER: :func:`jitter_value`, except that a value it cannot shift gives
    None (the engine removes the field: a date left as it was is a date of the patient), and
    a TM gives itself (a time of day is the same after whole days)."""
    if vr == "TM" or days == 0:
        return value
    multi = isinstance(value, (list, tuple, MultiValue))
    items = list(value) if multi else [value]
    out: list[str] = []
    for item in items:
        text = item.decode("latin-1").strip(" \0") if isinstance(item, bytes) else str(item)
        if not text:
            out.append(text)
            continue
        kind = "DT" if vr == "UN" and len(text) > 8 else ("DA" if vr == "UN" else vr)
        shifted = fast_shift(text, days, kind)
        if shifted is None:
            shifted = jitter_value(text, kind, days, label, quiet=True)
            if shifted is None or shifted == text:
                return None
        out.append(shifted)
    if vr == "UN":
        return "\\".join(out).encode("ascii")
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
    if name == "clean_text":
        element = getattr(field, "element", None)
        if element is None:
            return None
        return clean_value(element.value, str(element.VR), ctx.identifying or Identifying())
    if name == "unsafe_private":
        return unsafe_private(field)
    if name == "hmac_id":
        key = ctx.key()
        prefix = str(opts.get("prefix") or "")
        length = _int_opt(opts, "length", 16) or 16
        return _each(_original(field), lambda v: hmac_id(key, v, prefix, length))
    raise ValueError(f"unknown deid_func {name!r}")


def unsafe_private(field: Any) -> bool:
    """Whether a private element of the file is not one Table E.3.10-1 lists as safe to keep.

    Matched by group, private creator and the element's low byte, so an element is found
    wherever its creator's block lands (``(0019,10xx)`` in one file, ``(0019,11xx)`` in the
    next). A private creator itself is kept while its block, in the same item, holds an
    element that is kept (that element would mean nothing without it). Public elements are
    never unsafe; group lengths and elements without a creator are.
    """
    tag = int(getattr(field, "tag_int", 0))
    group, number = tag >> 16, tag & 0xFFFF
    if not group & 1:
        return False
    if number < 0x10:
        return True
    keys = safe_private_keys()
    if number <= 0xFF:
        creator = _creator_text(getattr(field, "element", None))
        wanted = _safe_bytes().get((group, creator), ())
        parent = getattr(field, "parent", None)
        items = getattr(parent, compat.ELEMENTS, {})
        base = group << 16 | number << 8
        return not any(base | low in items for low in wanted)
    owner = getattr(field, "creator", None)
    if owner is None:
        return True
    return (group, str(owner).strip(" \0"), number & 0xFF) not in keys


def _creator_text(element: Any) -> str:
    value = getattr(element, "value", None)
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return str(value or "").strip(" \0")


def _safe_bytes() -> dict[tuple[int, str], tuple[int, ...]]:
    """(group, creator) -> the element bytes Table E.3.10-1 lists for it (built once)."""
    if not _SAFE_BYTES:
        found: dict[tuple[int, str], list[int]] = {}
        for group, creator, low in safe_private_keys():
            found.setdefault((group, creator), []).append(low)
        _SAFE_BYTES.update((k, tuple(sorted(v))) for k, v in found.items())
    return _SAFE_BYTES


_SAFE_BYTES: dict[tuple[int, str], tuple[int, ...]] = {}
