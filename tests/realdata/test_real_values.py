"""Shortcuts that decode raw values themselves give pydicom's values on every real file.

The get stage reads a file's keys with :func:`peek_entity_item`, which decodes a raw field
the way :func:`get_identifiers` does instead of having pydicom convert it. Here every top-level
keyword of every real file that reads is used as the entity and item field, and the keys (and
pydicom's warnings) must be those :func:`entity_item` (pydicom's conversion, ``Dataset.get``)
gives, for every VR the corpus holds.
"""

from __future__ import annotations

import warnings

import pytest
from pydicom.dataelem import RawDataElement

from deid_workers.dicom import compat
from deid_workers.dicom.reader import read_dataset
from deid_workers.errors import InputError
from deid_workers.recipe import entity_item
from deid_workers.recipe.identifiers import peek_entity_item

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_peeked_keys_are_entity_items_keys_for_every_field(real_corpus) -> None:
    vrs: set[str] = set()
    checked = 0
    for rel in real_corpus.paths:
        path = real_corpus.root / rel

        def read(path=path):  # a fresh dataset: pydicom warns once, when it converts
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return read_dataset(path, headers_only=True)

        try:
            whole = read()
        except InputError:
            continue
        keywords = [e.keyword for e in whole if e.keyword]
        peeked, converted = read(), read()
        raw_before = {t for t, e in compat.elements(peeked).items() if type(e) is RawDataElement}
        said: list[str] = []
        expected_said: list[str] = []
        for keyword in keywords:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                got = peek_entity_item(peeked, keyword, keyword)
            said += [str(w.message) for w in caught]
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                expected = entity_item(converted, keyword, keyword)
            expected_said += [str(w.message) for w in caught]
            assert got == expected, (rel, keyword)
            vrs.add(str(whole[keyword].VR))
            checked += 1
        # pydicom warns as it converts a value: the same warnings over the file's fields
        # (not always at the same field: the character set converts with the first text).
        assert sorted(said) == sorted(expected_said), rel
        # What the shortcut decoded stays raw (only fields it left to pydicom convert).
        still_raw = {t for t, e in compat.elements(peeked).items() if type(e) is RawDataElement}
        assert still_raw <= raw_before
    assert checked > 5000
    assert {"UI", "LO", "SH", "PN", "CS", "DA", "TM", "DS", "IS", "US", "AE"} <= vrs


def test_peek_leaves_the_key_fields_raw(real_corpus) -> None:
    path = next(real_corpus.root / r for r in real_corpus.paths if r.endswith("CT_small.dcm"))
    ds = read_dataset(path, headers_only=True)
    assert peek_entity_item(ds) == entity_item(read_dataset(path, headers_only=True))
    elements = compat.elements(ds)
    assert type(elements[0x00100020]) is RawDataElement
    assert type(elements[0x00080018]) is RawDataElement
