"""pydicom's internals, fenced in: the one module that names them.

deid-workers reads, edits and writes datasets faster than pydicom's public API allows by using
a little of pydicom's private state: a dataset's elements as stored (``Dataset._dict``, raw
ones not converted), an element's stored value (``DataElement._value``), the character sets a
dataset was read with or inherits (``_character_set``, ``_parent_encoding``), the attributes
pydicom's constructors set (so :mod:`.fastread` can build a dataset without them) and whether
pydicom's future API is on (``config._use_future``). Every such name is spelled here only (a
test keeps it so), so a pydicom release that moves one breaks this module, not twenty.

The gate, checked when a worker starts (:func:`check`):

- pydicom :data:`TESTED` (the release the fast paths were written and compared against):
  :mod:`.fastread` and :mod:`.encoder` read and write, unless ``DEID_FAST_IO=0``;
- any other pydicom: reading and writing go the plain way (``dcmread``, ``save_as``), as
  ``DEID_FAST_IO=0`` asks (:func:`fast_io`), and the worker says so once;
- a pydicom without one of the names the recipe engine uses (they have been there since
  pydicom 1.0): a clear error, and the worker does not start.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, MutableMapping
from typing import Any, TypeVar

import pydicom
from pydicom import config
from pydicom._dicom_dict import DicomDictionary
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.hooks import hooks
from pydicom.tag import BaseTag

__all__ = [
    "TESTED",
    "ELEMENTS",
    "VALUE",
    "READ_IMPLICIT",
    "READ_LITTLE",
    "READ_CHARSET",
    "PARENT_ENCODING",
    "DICTIONARY",
    "elements",
    "stored_value",
    "set_stored_value",
    "character_set",
    "parent_encoding",
    "future_api",
    "stock_conversion",
    "constructor_state",
    "new_dataset",
    "shallow_copy",
    "element_value",
    "keyword_value",
    "tested",
    "fast_io",
    "use_fast_io",
    "check",
]

TESTED = ((3, 0),)
"""pydicom releases (major, minor) the fast reader and writer were written against and are
checked against by the tests (byte for byte with ``dcmread`` and ``save_as``)."""

ELEMENTS = "_dict"
"""Attribute of a dataset: its elements by tag, as stored (raw ones not converted)."""
VALUE = "_value"
"""Attribute of a DataElement: its value as stored (``.value`` validates on assignment)."""
READ_IMPLICIT = "_read_implicit"
READ_LITTLE = "_read_little"
READ_CHARSET = "_read_charset"
"""Attributes a dataset read from bytes keeps of how it was read (``original_encoding``)."""
PARENT_ENCODING = "_parent_encoding"
"""Attribute of a dataset: the character sets a sequence item inherits from its parent."""

DICTIONARY: dict[int, tuple[str, str, str, str, str]] = DicomDictionary
"""pydicom's data dictionary: tag -> (VR, VM, name, retired, keyword)."""

elements: Callable[[Dataset], MutableMapping[BaseTag, DataElement | RawDataElement]] = (
    operator.attrgetter(ELEMENTS))
"""``elements(ds)``: the dataset's elements by tag as stored, to read or edit in place
(no conversion, no validation: a raw element stays raw). C-level, as cheap as the attribute."""

stored_value: Callable[[Any], Any] = operator.attrgetter(VALUE)
"""``stored_value(elem)``: the element's value as stored (no conversion)."""


def set_stored_value(elem: DataElement, value: Any) -> None:
    """Store ``value`` in ``elem`` without pydicom's validation (the caller made it valid)."""
    setattr(elem, VALUE, value)


def character_set(ds: Dataset) -> Any:
    """The character sets pydicom decodes ``ds``'s text with (its own or inherited)."""
    return ds._character_set


def parent_encoding(ds: Dataset) -> Any:
    """The character sets a sequence item ``ds`` inherits from the dataset it is in."""
    return getattr(ds, PARENT_ENCODING)


def future_api() -> bool:
    """Whether pydicom's future API (``config.future_behavior``) is on: its constructors then
    set other attributes, so the fast reader leaves datasets to pydicom."""
    return bool(getattr(config, "_use_future", False))


_DEFAULT_HOOKS = (hooks.raw_element_vr, hooks.raw_element_value)


def stock_conversion() -> bool:
    """Whether pydicom converts raw elements its stock way (no callback, no custom hooks).

    Every shortcut that reproduces pydicom's conversion (the recipe engine's, the encoder's,
    fastread's) holds only then; otherwise pydicom converts.
    """
    return (config.data_element_callback is None and not hooks.raw_element_kwargs
            and (hooks.raw_element_vr, hooks.raw_element_value) == _DEFAULT_HOOKS)


State = tuple[dict[str, Any], tuple[str, ...]]
"""What pydicom's constructors give a new dataset: its attributes and which are containers."""

_D = TypeVar("_D", bound=Dataset)


def constructor_state(ds: Dataset) -> State:
    """The attributes of ``ds`` but its elements, file meta and buffer, and which of them are
    containers (private blocks, pixel options...), of which each dataset has its own."""
    state = {k: v for k, v in vars(ds).items() if k not in (ELEMENTS, "file_meta", "buffer")}
    return state, tuple(k for k, v in state.items() if isinstance(v, (dict, list, set)))


def new_dataset(cls: type[_D], state: State, values: dict[str, Any]) -> _D:
    """A ``cls`` as its constructor makes it: ``state`` (its containers copied) with
    ``values`` in place of the defaults (:data:`ELEMENTS`, :data:`READ_IMPLICIT`...).

    The constructors set each attribute through ``Dataset.__setattr__``, a Python call per
    attribute: about fifteen a dataset, for four or more datasets a file.
    """
    ds = object.__new__(cls)
    defaults, containers = state
    attributes = defaults.copy()
    for key in containers:
        attributes[key] = attributes[key].copy()
    attributes.update(values)
    ds.__dict__.update(attributes)
    return ds


def shallow_copy(ds: _D) -> _D:
    """A copy of ``ds`` with its own element dict, sharing the elements (what ``dcmwrite``'s
    deepcopy of the file meta is for, when the caller replaces elements instead of editing
    them)."""
    new = object.__new__(type(ds))
    new.__dict__.update(ds.__dict__)
    new.__dict__[ELEMENTS] = dict(elements(ds))
    return new


_KEYWORD_DATASETS = frozenset({Dataset, FileDataset, FileMetaDataset})
"""Dataset classes whose keyword attributes are exactly their elements (no overrides)."""


def keyword_value(ds: Dataset, keyword: str, tag: int) -> Any:
    """``ds.get(keyword)`` read by ``tag`` (the keyword's) where that is the same thing:
    pydicom's own dataset classes, without an instance attribute of that name."""
    if type(ds) in _KEYWORD_DATASETS and keyword not in ds.__dict__:
        return element_value(ds, tag)
    return ds.get(keyword)


def element_value(ds: Dataset, tag: int) -> Any:
    """What ``ds.get(<keyword of tag>)`` returns on a plain pydicom dataset, read by tag: the
    keyword lookups cost more than the read."""
    elem = elements(ds).get(tag)  # type: ignore[call-overload]
    if elem is None:
        return None
    try:
        if type(elem) is not DataElement:
            elem = ds[tag]  # converts a raw element, as Dataset.__getattr__ does
        return elem.value
    except AttributeError:
        return None  # as getattr inside Dataset.get


def tested() -> bool:
    """Whether the installed pydicom is one of :data:`TESTED`."""
    version = tuple(int(x) for x in pydicom.__version_info__[:2] if str(x).isdigit())
    return version in TESTED


_fast: bool | None = None


def fast_io() -> bool:
    """Whether files are read by :mod:`.fastread` and written by :mod:`.encoder`: on a
    :data:`TESTED` pydicom unless ``DEID_FAST_IO=0``; else through ``dcmread``/``save_as``
    (the same datasets and bytes, at pydicom's cost)."""
    global _fast
    if _fast is None:
        from ..config import Settings

        _fast = tested() and Settings.from_env().fast_io
    return _fast


def use_fast_io(on: bool | None) -> None:
    """Force the fast reader and writer on or off in this process (tests); None goes back to
    what the version and ``DEID_FAST_IO`` say."""
    global _fast
    _fast = None if on is None else (bool(on) and tested())


def check() -> str | None:
    """Why this pydicom cannot run the recipe engine (a name it uses is gone), or None.

    Checked at worker start, on a dataset and an element made here: a clear error there beats
    an AttributeError in every batch.
    """
    ds = Dataset()
    ds.PatientID = "x"
    elem = ds["PatientID"]
    missing = [name for name, ok in (
        (f"Dataset.{ELEMENTS}", isinstance(getattr(ds, ELEMENTS, None), dict)),
        (f"DataElement.{VALUE}", hasattr(elem, VALUE)),
        ("Dataset._character_set", hasattr(ds, "_character_set")),
    ) if not ok]
    if missing:
        return (f"pydicom {pydicom.__version__} lacks {', '.join(missing)}, which deid-workers "
                f"uses; install pydicom {' or '.join('.'.join(map(str, v)) for v in TESTED)}")
    return None
