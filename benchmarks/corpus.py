"""The benchmark corpus, made with the project's own generator (:mod:`deid_workers.synth`).

Small (8x8) images dominate, as in the issue's figures (they show per-file overhead, which is
what a distributed tool adds); a few CT-sized 512x512 series show the I/O side; a few corrupt
files (empty, truncated, text) check that skips cost nothing.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

from deid_workers.synth import make_dataset, write_study_tree

__all__ = ["Corpus", "SIZES", "build_corpus"]


@dataclass(frozen=True)
class Corpus:
    root: str
    files: int          # every file, corrupt ones included
    valid: int          # DICOM files that every tool processes
    small: int
    ct: int
    corrupt: int
    bytes_valid: int

    @property
    def mb(self) -> float:
        return self.bytes_valid / 1e6

    def valid_paths(self) -> list[str]:
        """Absolute paths of the valid files, sorted (the corrupt ones start with ``corrupt-``)."""
        out = []
        for dirpath, _, names in os.walk(self.root):
            for n in names:
                if not n.startswith("corrupt-"):
                    out.append(os.path.join(dirpath, n))
        return sorted(out)

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["mb_valid"] = round(self.mb, 2)
        return d


SIZES = {
    # patients x studies x series x images of 8x8, then of 512x512, then corrupt files.
    "tiny": ((2, 1, 2, 5), (1, 1, 1, 0), 3),
    "quick": ((6, 1, 2, 25), (1, 1, 1, 10), 3),
    "full": ((20, 2, 2, 25), (2, 1, 1, 50), 6),
    # Scaling at archive size: long enough that a run's fixed costs (start, ids export, the
    # last batches) weigh as little as they do on a real archive.
    "scaling": ((100, 2, 2, 50), (0, 0, 0, 0), 0),
}


CT_PATIENT_BASE = 1000
"""CT patients are numbered from here, so their UIDs and PatientIDs differ from the small ones."""


def _write_ct(root: str, patients: int, studies: int, series: int, images: int) -> list[str]:
    out = []
    for p in range(CT_PATIENT_BASE, CT_PATIENT_BASE + patients):
        for st in range(studies):
            for se in range(series):
                for i in range(images):
                    rel = f"patient-{p:04d}/study-{st:03d}/series-{se:03d}/ct-{i:04d}.dcm"
                    path = os.path.join(root, rel)
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    make_dataset(p, st, se, i, rows=512, cols=512).save_as(
                        path, enforce_file_format=True)
                    out.append(rel)
    return out


def build_corpus(root: str, size: str = "quick") -> Corpus:
    """Write the corpus of ``size`` (a key of :data:`SIZES`) under ``root``."""
    (p, st, se, im), (cp, cst, cse, cim), corrupt = SIZES[size]
    small = write_study_tree(os.path.join(root, "small"), p, st, se, im, corrupt=corrupt)
    ct = _write_ct(os.path.join(root, "ct"), cp, cst, cse, cim)
    n_small = len(small) - corrupt
    total = 0
    for dirpath, _, names in os.walk(root):
        for n in names:
            if not n.startswith("corrupt-"):
                total += os.path.getsize(os.path.join(dirpath, n))
    return Corpus(root, len(small) + len(ct), n_small + len(ct), n_small, len(ct), corrupt, total)
