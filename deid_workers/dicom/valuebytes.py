"""One element's value as bytes, the way pydicom's value writers would write it, found in one lookup.

Why: :mod:`.encoder` writes every element of every output; asking pydicom's writer for a
plain value (a UID, a code, a date, one number) cost more than the encoding itself. For each
(VR, value type) a *plan* says once how ``DataElement.is_empty`` and ``is_buffered`` treat the
value, which of pydicom's writers encodes it, and, for the plain cases, a function here that
returns exactly that writer's bytes (each checked against its writer by the tests), or None
when only the writer can say (a value it cannot encode: it then raises or warns itself).
"""

from __future__ import annotations

from io import BufferedIOBase
from struct import pack as _pack
from typing import Any

from pydicom.charset import custom_encoders, default_encoding
from pydicom.filewriter import (
    write_DA,
    write_DT,
    write_numbers,
    write_OBvalue,
    write_OWvalue,
    write_string,
    write_text,
    write_TM,
    write_UI,
    writers,
)
from pydicom.multival import MultiValue
from pydicom.uid import UID
from pydicom.valuerep import CUSTOMIZABLE_CHARSET_VR, EXPLICIT_VR_LENGTH_32, PersonName

__all__ = ["NONE", "TRUTHY", "SCALAR", "SIZED", "OTHER", "PLANS", "LONG_VRS", "CHARSET_VRS", "FAST",
           "plan"]

LONG_VRS = frozenset(str(vr) for vr in EXPLICIT_VR_LENGTH_32)
CHARSET_VRS = frozenset(str(vr) for vr in CUSTOMIZABLE_CHARSET_VR)

NONE, TRUTHY, SCALAR, SIZED, OTHER = range(5)
_KINDS: dict[type, int] = {}
"""Value type -> how ``DataElement.is_empty`` (through ``VM``) and ``is_buffered`` treat it."""


def _kind(value_type: type) -> int:
    kind = _KINDS.get(value_type)
    if kind is None:
        if value_type is type(None):
            kind = NONE
        elif issubclass(value_type, BufferedIOBase):
            kind = OTHER
        elif issubclass(value_type, (str, bytes, PersonName)):
            kind = TRUTHY  # VM: 1 if value else 0
        elif value_type in (list, tuple, MultiValue):
            kind = SIZED  # VM: len(value)
        elif not hasattr(value_type, "__iter__") and not hasattr(value_type, "__getitem__"):
            kind = SCALAR  # VM: iter() fails, so 1
        else:
            kind = OTHER
        _KINDS[value_type] = kind
    return kind


_VR_INFO: dict[str, tuple[Any, Any, bool, bytes | None, bool] | None] = {}
"""VR -> (value writer, its parameter, charset-aware, explicit VR bytes, 32-bit length)."""


def _vr_info(vr: str) -> tuple[Any, Any, bool, bytes | None, bool] | None:
    try:
        return _VR_INFO[vr]
    except KeyError:
        pass
    info = None
    if vr in writers:
        fn, param = writers[vr]  # type: ignore[index]
        info = (fn, param, vr in CHARSET_VRS, vr.encode() if len(vr) == 2 else None,
                vr in LONG_VRS)
    _VR_INFO[vr] = info
    return info


PLANS: dict[tuple[str, type], tuple[int, Any, Any]] = {}
PLANS_MAX = 1024
"""(VR, value type) -> (kind, VR info, fast encoder or None): one lookup per element."""


def plan(vr: str, value_type: type) -> tuple[int, Any, Any]:
    info = _vr_info(vr)
    plan = (_kind(value_type), info, None if info is None else FAST.get((info[0], value_type)))
    if len(PLANS) < PLANS_MAX:
        PLANS[(vr, value_type)] = plan
    return plan



# Values encoded without pydicom's writer, for the writer and value types where the result is
# plain to see in pydicom 3's filewriter. Each returns the bytes its writer would write, or None
# when only the writer can say (a value it cannot encode: it then raises or warns itself).
# Exact types only: a subclass may change what str() or encode() give.


def _ascii(text: str, pad: bytes) -> bytes | None:
    """``write_string``: padded to even length, encoded with the default (strict) codec."""
    try:
        data = text.encode(default_encoding)
    except UnicodeError:
        return None
    return data + pad if len(data) % 2 else data


def _fast_string(value: str, param: Any, encodings: list[str]) -> bytes | None:
    return _ascii(value, b" ")


def _fast_uid(value: str, param: Any, encodings: list[str]) -> bytes | None:
    return _ascii(value, b"\0")  # write_UI pads with NUL


def _fast_strings(value: Any, param: Any, encodings: list[str]) -> bytes | None:
    """``write_string`` of a multi-value: items joined by backslashes (all plain str)."""
    if not all(type(v) is str for v in value):
        return None
    return _ascii("\\".join(value), b" ")


def _fast_uids(value: Any, param: Any, encodings: list[str]) -> bytes | None:
    if not all(type(v) is str or type(v) is UID for v in value):
        return None
    return _ascii("\\".join(value), b"\0")


def _encode_text(text: str, encodings: list[str]) -> bytes | None:
    """``charset.encode_string`` when its first encoding is a plain codec that can encode
    ``text``: that codec's bytes, with no escape sequence."""
    codec = encodings[0]
    if codec in custom_encoders:
        return None
    try:
        return text.encode(codec)
    except UnicodeError:
        return None  # pydicom tries the other encodings, or warns and replaces


def _fast_text(value: str, param: Any, encodings: list[str]) -> bytes | None:
    """``write_text`` of one string: encoded, then padded with a space to even length."""
    data = _encode_text(value, encodings)
    if data is None:
        return None
    return data + b" " if len(data) % 2 else data


def _fast_texts(value: Any, param: Any, encodings: list[str]) -> bytes | None:
    """``write_text`` of a multi-value of strings: each encoded, joined by backslashes."""
    parts = []
    for v in value:
        if type(v) is not str:
            return None
        part = _encode_text(v, encodings)
        if part is None:
            return None
        parts.append(part)
    data = b"\\".join(parts)
    return data + b" " if len(data) % 2 else data


def _fast_number(value: Any, param: Any, encodings: list[str]) -> bytes | None:
    """``write_numbers`` of one int or float, little endian."""
    try:
        return _pack("<" + param, value)
    except Exception:  # noqa: BLE001 - out of range, wrong type: pydicom raises its own error
        return None


def _fast_bytes(value: bytes, param: Any, encodings: list[str]) -> bytes | None:
    """``write_OBvalue`` / ``write_OWvalue`` of bytes: padded with NUL to even length."""
    return value + b"\0" if len(value) % 2 else value


FAST: dict[tuple[Any, type], Any] = {}
for _writer in (write_string, write_DA, write_DT, write_TM):
    FAST[(_writer, str)] = _fast_string  # DA/DT/TM write a str value with write_string
for _type in (MultiValue, list, tuple):
    FAST[(write_string, _type)] = _fast_strings
    FAST[(write_UI, _type)] = _fast_uids
    FAST[(write_text, _type)] = _fast_texts
FAST[(write_UI, str)] = FAST[(write_UI, UID)] = _fast_uid
FAST[(write_text, str)] = _fast_text
FAST[(write_numbers, int)] = FAST[(write_numbers, float)] = _fast_number
FAST[(write_OBvalue, bytes)] = FAST[(write_OWvalue, bytes)] = _fast_bytes
del _writer, _type

