"""pydicom deid's own get + put on the same files, in a child process (its own memory peak).

Run as ``python -m benchmarks.deidref FILELIST OUTFOLDER``; prints one JSON line with seconds
and peak RSS after each step. Uses deid's public API the way its client does:
``get_identifiers(files)`` then ``replace_identifiers(files, ids=..., save=True)`` with deid's
default recipe (``deid=None``). Its log and warnings are silenced; only time is of interest.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
import time

from .procmem import peak_rss_mb

__all__ = ["available", "main"]


def available() -> bool:
    try:
        import deid.dicom  # noqa: F401
    except Exception:
        return False
    return True


def main(argv: list[str]) -> int:
    listfile, outfolder = argv
    with open(listfile, encoding="utf-8") as fh:
        files = [line.rstrip("\n") for line in fh if line.strip()]
    os.environ["MESSAGELEVEL"] = "CRITICAL"
    logging.disable(logging.CRITICAL)
    import warnings

    warnings.simplefilter("ignore")
    from deid.dicom import get_identifiers, replace_identifiers

    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        t0 = time.perf_counter()
        ids = get_identifiers(files)
        t1 = time.perf_counter()
        rss_get = peak_rss_mb()
        os.makedirs(outfolder, exist_ok=True)
        replace_identifiers(files, ids=ids, save=True, output_folder=outfolder, overwrite=True)
        t2 = time.perf_counter()
    print(json.dumps({"files": len(files), "get_s": t1 - t0, "put_s": t2 - t1,
                      "peak_rss_get_mb": rss_get, "peak_rss_mb": peak_rss_mb(),
                      "written": len(os.listdir(outfolder))}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
