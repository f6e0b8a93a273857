"""Per-file time of `REMOVE ALL` + 10 `REPLACE contains:` lines on a ~180-element dataset.

deid re-expands every REPLACE selector for each removal (spec §8.3); deid-workers answers each
selector once per file. Prints ours, deid's (when importable) and the ratio.

    python benchmarks/bench_recipe.py [--files N]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import logging
import os
import sys
import tempfile
import time

from pydicom.datadict import DicomDictionary
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from deid_workers.recipe import deidentify, parse_recipe  # noqa: E402

HEADER = "REMOVE ALL\n" + "\n".join(
    f"REPLACE contains:{word} X"
    for word in ("PatientName", "Institution", "Physician", "Operator", "Station",
                 "Description", "Comments", "Address", "Telephone", "Protocol")
)
RECIPE_TEXT = f"FORMAT dicom\n%header\n{HEADER}\n"

_SAMPLE = {"DA": "20200101", "TM": "120000", "DT": "20200101120000", "PN": "Doe^J", "UI": "1.2.3",
           "CS": "X", "LO": "text", "SH": "text", "ST": "text", "LT": "text", "DS": "1.5", "IS": "2",
           "AS": "030Y", "US": 1, "SS": 1, "UL": 1, "SL": 1, "FL": 1.0, "FD": 1.0, "AE": "AET"}


def make_dataset(n: int = 160) -> FileDataset:
    """Top-level elements of common VRs plus two sequences: about 180 fields in all."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("bench.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    count = 0
    for tag, (vr, vm, _name, retired, keyword) in sorted(DicomDictionary.items()):
        if count >= n:
            break
        if retired or not keyword or vr not in _SAMPLE or tag >> 16 < 8 or vm != "1":
            continue
        ds.add_new(tag, vr, _SAMPLE[vr])
        count += 1
    for seq_kw in ("RequestAttributesSequence", "ReferencedImageSequence"):
        items = []
        for i in range(3):
            item = Dataset()
            item.AccessionNumber = f"A{i}"
            item.ReferencedSOPInstanceUID = f"1.2.3.{i}"
            items.append(item)
        setattr(ds, seq_kw, Sequence(items))
    return ds


def count_fields(ds: Dataset) -> int:
    total = 0
    for el in ds:
        total += 1
        if el.VR == "SQ":
            total += sum(count_fields(item) for item in el.value)
    return total


def bench_ours(ds: FileDataset, files: int) -> float:
    recipe = parse_recipe(RECIPE_TEXT, "bench.dicom")
    deidentify(ds, recipe)  # warm up (compiles selectors once per recipe)
    start = time.perf_counter()
    for _ in range(files):
        deidentify(ds, recipe)
    return (time.perf_counter() - start) / files * 1000


def bench_deid(ds: FileDataset, files: int) -> float | None:
    try:
        from deid.config import DeidRecipe
        from deid.dicom.parser import DicomParser
    except ImportError:
        return None
    logging.disable(logging.CRITICAL)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "deid.bench")
        with open(path, "w") as fh:
            fh.write(RECIPE_TEXT)
        recipe = DeidRecipe(path)
        elapsed = 0.0
        for _ in range(files):
            work = copy.deepcopy(ds)  # deid edits in place; copying is part of our cost too
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                parser = DicomParser(work, recipe=recipe)
                parser.parse()
            elapsed += time.perf_counter() - start
    return elapsed / files * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20, help="files to time (default 20)")
    args = parser.parse_args(argv)
    ds = make_dataset()
    print(f"dataset: {count_fields(ds)} fields (incl. nested), recipe: REMOVE ALL + 10 REPLACE contains:")
    ours = bench_ours(ds, args.files)
    print(f"deid-workers: {ours:8.2f} ms/file")
    theirs = bench_deid(ds, max(1, args.files // 4))
    if theirs is None:
        print("deid: not importable, skipped")
    else:
        print(f"deid 0.4.x:   {theirs:8.2f} ms/file")
        print(f"ratio deid/ours: {theirs / ours:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
