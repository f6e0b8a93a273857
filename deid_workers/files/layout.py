"""Where an output goes under the output folder: a path that names no patient.

Why: archives are exported as trees named after patients (``<PatientID>/...``, ``DOE_JOHN/...``,
files named after an accession number). Mirrored verbatim, the de-identified tree would carry
the identity the headers lost. Two layouts (``--layout``):

- ``mirror`` (default): the input's relative path, except that each folder or file name
  holding an identifying token of *that file* is replaced by a keyed pseudonym. Identifying
  tokens: those of its PatientName, PatientID, OtherPatientIDs (and the IDs of its Other
  Patient IDs Sequence), AccessionNumber and PatientBirthDate, compared case-insensitively,
  with both sides split into tokens at every character that is not a letter or a digit; a
  name also counts when it merely contains a token of 4 characters or more (``IM12345``
  holds the ID ``12345``). A name that contains one of the file's own Study, Series or SOP
  Instance UIDs is replaced too: the original UIDs would link the output to its source.
  The pseudonym is 16 base32 characters of HMAC-SHA256 over the whole name with the run's
  key (the file extension, if it holds no token, is kept), so a folder gets the same
  pseudonym for every file in it, on every worker, in every run with that key: ``put``
  after ``get`` finds the same outputs, and a tree stays a tree. A file whose path holds
  none of its own identifiers keeps its path.
- ``uid``: ``<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm`` from the
  de-identified output's UIDs (``no-study-uid`` / ``no-series-uid`` where one is missing,
  ``no-instance-uid-<pseudonym of the input path>`` for a file with no instance UID at all).
  Two inputs with the same instance UID land on the same path; the second is refused as
  existing, unless ``--overwrite``.

Invariant: the returned path is relative, uses ``/``, and is made only of the input's own
path components, pseudonyms, or UIDs of the output; it never holds a header value of the
input. The caller still resolves it with :func:`~deid_workers.dicom.reader.enforce_inside`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from ..config import Settings
from ..dicom import compat

__all__ = [
    "run_layout",
    "LAYOUTS",
    "MIRROR",
    "UID",
    "Layout",
    "identifying_tokens",
    "instance_uids",
    "leaking_tokens",
    "path_leaks",
    "pseudonym",
    "uid_path",
]

MIRROR = "mirror"
UID = "uid"
LAYOUTS = (MIRROR, UID)

_TOKEN = re.compile(r"[^\W_]+")
"""A run of letters and digits (any script): tokens are split at everything else."""
SUBSTRING_MIN = 4
"""Tokens this long count inside a name too; shorter ones only as whole tokens (``1`` or
``ct`` would otherwise match half the folders of an archive)."""

# Identifying elements of a file, by tag (read without changing the data set: the recipe's
# fast paths work on raw elements).
_PATIENT_NAME = 0x00100010
_PATIENT_ID = 0x00100020
_OTHER_IDS = 0x00101000
_OTHER_IDS_SEQUENCE = 0x00101002
_ACCESSION = 0x00080050
_BIRTH_DATE = 0x00100030
_TOKEN_TAGS = {_PATIENT_NAME: "PatientName", _PATIENT_ID: "PatientID",
               _OTHER_IDS: "OtherPatientIDs", _ACCESSION: "AccessionNumber",
               _BIRTH_DATE: "PatientBirthDate"}
_UID_TAGS = {0x0020000D: "StudyInstanceUID", 0x0020000E: "SeriesInstanceUID",
             0x00080018: "SOPInstanceUID"}


def tokens(text: str) -> list[str]:
    """``text`` case-folded and split at every character that is not a letter or digit."""
    return _TOKEN.findall(text.casefold())


def _text_values(ds: Dataset, tag: int) -> list[str]:
    """The value(s) of ``ds[tag]`` as text, from the raw bytes when they are plain ASCII
    (no conversion, so the data set is left exactly as read), else as pydicom decodes them."""
    elem = compat.elements(ds).get(tag)  # type: ignore[call-overload]
    if elem is None:
        return []
    raw = elem.value if type(elem) is RawDataElement else None
    if isinstance(raw, bytes) and raw.isascii():
        text = raw.decode("ascii")
        return [v for v in text.strip(" \0").split("\\") if v.strip(" \0")]
    value = compat.element_value(ds, tag)
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple, MultiValue)):
        return [str(v) for v in value if str(v)]
    return [str(value)]


def identifying_tokens(ds: Dataset) -> dict[str, str]:
    """Token -> keyword of the element it came from, for the five kinds of the module
    docstring (top level, plus the PatientIDs of the Other Patient IDs Sequence)."""
    out: dict[str, str] = {}
    for tag, keyword in _TOKEN_TAGS.items():
        for value in _text_values(ds, tag):
            for tok in tokens(value):
                out.setdefault(tok, keyword)
    if _OTHER_IDS_SEQUENCE in compat.elements(ds):
        try:
            items = compat.element_value(ds, _OTHER_IDS_SEQUENCE) or ()
            for item in items:
                for value in _text_values(item, _PATIENT_ID):
                    for tok in tokens(value):
                        out.setdefault(tok, "OtherPatientIDsSequence")
        except Exception:  # noqa: BLE001 - a damaged item: its IDs cannot be in a path anyway
            pass
    return out


def instance_uids(ds: Dataset) -> dict[str, str]:
    """UID -> keyword, for the file's own Study, Series and SOP Instance UIDs."""
    out: dict[str, str] = {}
    for tag, keyword in _UID_TAGS.items():
        for value in _text_values(ds, tag):
            if len(value) >= 8:
                out.setdefault(value, keyword)
    return out


_COMPONENT_TOKENS: dict[str, frozenset[str]] = {}
_CACHE_MAX = 4096
"""Folder names repeat in file after file: their tokens are kept, up to this many."""


def _component_tokens(name: str) -> frozenset[str]:
    found = _COMPONENT_TOKENS.get(name)
    if found is None:
        found = frozenset(tokens(name))
        if len(_COMPONENT_TOKENS) >= _CACHE_MAX:
            _COMPONENT_TOKENS.clear()
        _COMPONENT_TOKENS[name] = found
    return found


def leaking_tokens(name: str, ident: dict[str, str], uids: dict[str, str]) -> list[str]:
    """Keywords of the identifying tokens (``ident``) and UIDs (``uids``) that path component
    ``name`` holds (see the module docstring); empty when it holds none."""
    found: list[str] = []
    whole = _component_tokens(name)
    folded = name.casefold() if ident else ""
    for tok, keyword in ident.items():
        if tok in whole or (len(tok) >= SUBSTRING_MIN and tok in folded):
            found.append(keyword)
    for uid, keyword in uids.items():
        if uid in name:
            found.append(keyword)
    return found


def pseudonym(key: bytes, name: str) -> str:
    """16 base32 characters of HMAC-SHA256(key, name): the same name and key give the same
    pseudonym on every worker; without the key it says nothing about the name."""
    digest = hmac.new(key, b"deid-workers:path:" + name.encode("utf-8", "surrogateescape"),
                      hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii")[:16]


def _suffix(name: str) -> str:
    """A short extension (``.dcm``, ``.DCM``, ``.ima``) kept on a pseudonymized file name."""
    dot = name.rfind(".")
    if dot <= 0 or len(name) - dot > 6:
        return ""
    ext = name[dot:]
    return ext if ext[1:].isalnum() else ""


def uid_path(ds: Dataset, unknown: str = "no-instance-uid") -> str:
    """``<study>/<series>/<instance>.dcm`` of the de-identified ``ds`` (its meta's instance
    UID when the data set has none; ``unknown`` when neither has one)."""
    def uid(tag: int, default: str, meta: bool = False) -> str:
        source = ds.__dict__.get("file_meta") if meta else ds
        values = _text_values(source, tag) if isinstance(source, Dataset) else []
        text = values[0].strip(" \0") if values else ""
        return text if text and _SAFE_UID.fullmatch(text) else default

    instance = uid(0x00080018, "") or uid(0x00020003, unknown, meta=True)
    return f"{uid(0x0020000D, 'no-study-uid')}/{uid(0x0020000E, 'no-series-uid')}/{instance}.dcm"


_SAFE_UID = re.compile(r"[0-9.]{1,64}")

# Per-file work of the mirror layout, kept to a few microseconds: the files of a series share
# their patient's values, so the tokens of one set of values (keyed by the raw bytes) and the
# verdict on each folder name for them are computed once. Bounded like every cache here.
_TOKEN_TAG_LIST = tuple(_TOKEN_TAGS)
_IDENTITIES: dict[tuple[Any, ...], tuple[dict[str, str], int]] = {}
_VERDICTS: dict[tuple[str, int], bool] = {}


def _identity(ds: Dataset) -> tuple[dict[str, str], int | None]:
    """:func:`identifying_tokens` of ``ds`` and a handle for its set of values (None when the
    values cannot be a cache key: converted elements, an Other Patient IDs Sequence)."""
    elements = compat.elements(ds)
    key: list[Any] = []
    for tag in _TOKEN_TAG_LIST:
        elem = elements.get(tag)  # type: ignore[call-overload]
        if elem is None:
            key.append(None)
        elif type(elem) is RawDataElement and type(elem.value) is bytes:
            key.append(elem.value)
        else:
            return identifying_tokens(ds), None
    if _OTHER_IDS_SEQUENCE in elements:
        return identifying_tokens(ds), None
    k = tuple(key)
    known = _IDENTITIES.get(k)
    if known is None:
        if len(_IDENTITIES) >= _CACHE_MAX:
            _IDENTITIES.clear()
            _VERDICTS.clear()
        known = _IDENTITIES[k] = (identifying_tokens(ds), len(_IDENTITIES) + 1 + _epoch())
    return known


_EPOCHS = [0]


def _epoch() -> int:
    """Handles stay unique after the caches are cleared (the verdicts are keyed by them)."""
    _EPOCHS[0] += _CACHE_MAX
    return _EPOCHS[0]


def _holds_token(name: str, ident: dict[str, str], handle: int | None) -> bool:
    """Whether folder or file ``name`` holds one of the tokens of ``ident``."""
    if not ident:
        return False
    if handle is not None:
        verdict = _VERDICTS.get((name, handle))
        if verdict is not None:
            return verdict
    verdict = bool(leaking_tokens(name, ident, {}))
    if handle is not None:
        if len(_VERDICTS) >= 4 * _CACHE_MAX:
            _VERDICTS.clear()
        _VERDICTS[(name, handle)] = verdict
    return verdict


def _holds_uid(name: str, uids: list[str]) -> bool:
    for uid in uids:
        if uid in name:
            return True
    return False


def _instance_uid_values(ds: Dataset) -> list[str]:
    """The file's own instance UIDs (8 characters or more), from the raw bytes if it can."""
    out = []
    elements = compat.elements(ds)
    for tag in _UID_TAGS:
        elem = elements.get(tag)  # type: ignore[call-overload]
        if elem is None:
            continue
        value = elem.value
        if type(value) is bytes:
            text = value.decode("ascii", "replace").strip(" \0")
            if len(text) >= 8 and "\\" not in text:
                out.append(text)
                continue
        out.extend(v for v in _text_values(ds, tag) if len(v) >= 8)
    return out


@dataclass
class Layout:
    """The layout of one run: ``kind`` (:data:`LAYOUTS`) and where its key comes from
    (``key()`` is called the first time a pseudonym is needed, and once per layout)."""

    kind: str = MIRROR
    key_source: Callable[[], bytes] | None = field(default=None, repr=False)
    _key: bytes | None = field(default=None, repr=False)
    _names: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in LAYOUTS:
            raise ValueError(f"unknown layout {self.kind!r} (expected {' or '.join(LAYOUTS)})")

    def key(self) -> bytes:
        if self._key is None:
            if self.key_source is None:
                raise ValueError("this layout has no key to make pseudonyms with")
            self._key = self.key_source()
        return self._key

    def before(self, rel: str, ds: Dataset) -> str | None:
        """The output path of input ``rel`` read as ``ds`` (before the recipe ran), or None
        when it is known only afterwards (:meth:`after`)."""
        if self.kind == UID:
            return None
        parts = rel.replace("\\", "/").split("/")
        ident, handle = _identity(ds)
        uids = _instance_uid_values(ds)
        out = []
        last = len(parts) - 1
        changed = False
        for i, name in enumerate(parts):
            if name and (_holds_token(name, ident, handle) or _holds_uid(name, uids)):
                suffix = _suffix(name) if i == last else ""
                if suffix and (_holds_token(suffix, ident, None) or _holds_uid(suffix, uids)):
                    suffix = ""
                out.append(self._pseudonym(name) + suffix)
                changed = True
            else:
                out.append(name)
        return "/".join(out) if changed else rel

    def after(self, rel: str, ds: Dataset) -> str:
        """The output path of input ``rel`` from the de-identified ``ds`` (``uid``); a file
        with no instance UID anywhere is named by a pseudonym of its input path."""
        return uid_path(ds, "no-instance-uid-" + self._pseudonym(rel))

    def _pseudonym(self, name: str) -> str:
        cached = self._names.get(name)
        if cached is None:
            cached = pseudonym(self.key(), name)
            if len(self._names) >= _CACHE_MAX:
                self._names.clear()
            self._names[name] = cached
        return cached


def components(path: str) -> Iterable[str]:
    """The folder and file names of a relative path."""
    return [p for p in path.replace("\\", "/").split("/") if p]


_UID_NAME = re.compile(r"[0-9]+(?:\.[0-9]+){2,}(?:\.dcm)?")
"""A name made of a UID (what ``--layout uid`` writes): its digit groups are no words."""


def path_leaks(path: str, ds: Dataset) -> list[str]:
    """Keywords of ``ds``'s identifying values that a component of ``path`` holds (what
    ``--verify`` checks an output path with; empty for a clean path). A name that is a UID
    is checked for the file's own UIDs only: its digit groups would match a short numeric ID
    (an accession number ``2`` in ``2.25....``) by chance."""
    ident = identifying_tokens(ds)
    uids = instance_uids(ds)
    found: dict[str, None] = {}
    for name in components(path):
        words = {} if _UID_NAME.fullmatch(name) else ident
        for keyword in leaking_tokens(name, words, uids):
            found[keyword] = None
    return list(found)


def run_layout(settings: Settings, kind: str = "mirror") -> Layout:
    """The layout of a run whose key comes from ``settings`` (read when first needed); one
    per settings and kind in a process, so its pseudonyms are computed once."""
    entry = _RUN_LAYOUTS.get((id(settings), kind))
    if entry is None or entry[0] is not settings:  # by identity: hashing Settings costs more
        if len(_RUN_LAYOUTS) >= 8:
            _RUN_LAYOUTS.clear()
        entry = _RUN_LAYOUTS[(id(settings), kind)] = (
            settings, Layout(kind, lambda: settings.resolve_secret()[0]))
    return entry[1]


_RUN_LAYOUTS: dict[tuple[int, str], tuple[Settings, Layout]] = {}
