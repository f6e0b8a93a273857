"""Real DICOM files that this project did not write: the sample files shipped inside the
pydicom package and the folders of the ``deid-data`` package (both installed by the test extra).

Why: a corpus made by our own generator holds only what we thought of. These files come from
modalities, vendors and toolkits (DICOMDIRs, SR and KOS documents, presentation states, RT
objects, overlays, files without file meta, odd transfer syntaxes, deliberately damaged files).

pydicom's ``get_testdata_files()`` tries to download its extra files when it finds none, so the
bundled folder is read directly. deid-data's cine loops ship zipped (100 MB unzipped); they are
left out to keep the suite fast, and its other folders are copied as they are.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pydicom

PYDICOM_FILES = Path(pydicom.__file__).resolve().parent / "data" / "test_files"
"""pydicom's own test files, as its wheel ships them."""


def deid_data_root() -> Path | None:
    """deid-data's ``data`` folder, or None when the package is not installed."""
    try:
        import deid_data  # type: ignore[import-untyped]
    except ImportError:
        return None
    return Path(deid_data.__file__).resolve().parent / "data"


SKIP_SUFFIXES = (".py", ".pyc", ".zip", ".md")
"""Not DICOM and not worth a walk: package glue, zipped cine loops, READMEs."""


def sources() -> dict[str, Path]:
    """Label → folder of each real-file source that is installed."""
    out = {"pydicom": PYDICOM_FILES}
    deid = deid_data_root()
    if deid is not None:
        out["deid-data"] = deid
    return out


def copy_corpus(dest: Path) -> list[str]:
    """Copy every source under ``dest/<label>/`` (relative layout kept); return the relative
    paths copied, sorted. Non-DICOM files of pydicom's folder (JSON, dumps, ICC profiles) are
    copied too: a real archive holds such files and the pipeline must skip them with a reason.
    """
    copied: list[str] = []
    for label, root in sources().items():
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                if name.endswith(SKIP_SUFFIXES):
                    continue
                src = Path(folder) / name
                rel = Path(label) / src.relative_to(root)
                (dest / rel.parent).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dest / rel)
                copied.append(rel.as_posix())
    return sorted(copied)
