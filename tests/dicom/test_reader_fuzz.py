"""Fuzz the DICOM reading path (dicomio.read_dataset, then what get and put do with a header):
damaged bytes give InputError with one of the fixed reasons, never another exception.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import warnings

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deid_workers.dicom.reader import REASONS, read_dataset
from deid_workers.errors import InputError
from deid_workers.recipe import entity_item, get_identifiers
from deid_workers.synth import make_dataset


def _sample() -> bytes:
    buf = io.BytesIO()
    make_dataset(3, rows=2, cols=2).save_as(buf, enforce_file_format=True)
    return buf.getvalue()


SAMPLE = _sample()
edits = st.lists(st.tuples(st.integers(0, len(SAMPLE) - 1), st.binary(min_size=1, max_size=4)),
                 max_size=6)


def _mutate(data: bytes, cut: int, patches: list[tuple[int, bytes]], insert: bool) -> bytes:
    out = bytearray(data[:cut])
    for at, chunk in patches:
        if at >= len(out):
            continue
        if insert:
            out[at:at] = chunk
        else:
            out[at:at + len(chunk)] = chunk
    return bytes(out)


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(0, len(SAMPLE)), patches=edits, insert=st.booleans(),
       headers_only=st.booleans())
def test_damaged_files_fail_only_with_input_error(cut, patches, insert, headers_only):
    data = _mutate(SAMPLE, cut, patches, insert)
    fd, path = tempfile.mkstemp(suffix=".dcm")
    logging.disable(logging.CRITICAL)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = read_dataset(path, headers_only=headers_only, name="fuzz.dcm")
            except InputError as exc:
                assert exc.reason in REASONS and exc.path == "fuzz.dcm"
                return
            get_identifiers(ds)
            entity_item(ds)
    finally:
        logging.disable(logging.NOTSET)
        os.unlink(path)
