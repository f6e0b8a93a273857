"""The words a person reads about one file: why it was skipped, or why it failed.

Why a module of its own: a reason is read in the summary, the run log and the worker log by
someone who runs the archive, not the code (a radiology IT person). So each one says what is
wrong with the file in that person's words and what they can do about it, and all of them are
kept here, where they can be read (and reviewed) side by side.

Invariants: a reason never quotes a header value or bytes of the file (reasons go to logs,
reports and Redis); it is one line; it never is a bare exception name. Reports group skipped
files by reason, so skip reasons are fixed texts (:data:`SKIP_REASONS`); failure reasons
(:func:`explain_failure`) may add the stage, an element keyword or the operating system's
description of an I/O error, none of which can hold PHI.
"""

from __future__ import annotations

import errno
import re

__all__ = [
    "EMPTY",
    "NOT_DICOM",
    "CORRUPT",
    "PERMISSION",
    "NOT_REGULAR",
    "MISSING",
    "OUTSIDE",
    "LINK",
    "TOO_LARGE",
    "SPARSE",
    "THROUGH_LINK",
    "MEDIA_INDEX",
    "UNREADABLE_FOLDER",
    "VANISHED_FOLDER",
    "BAD_FOLDER",
    "NO_PIXEL_SYNTAX",
    "SKIP_REASONS",
    "explain_failure",
    "UnwritableValue",
]

EMPTY = ("empty file (0 bytes): nothing to de-identify; check the copy or export that "
         "produced it")
NOT_DICOM = ("not a DICOM file (no DICM marker and no DICOM header at its start): leave it "
             "out of the input, or export it again from its source if it should be an image")
CORRUPT = ("damaged or truncated DICOM: the file ends inside an element, or an element's "
           "length does not fit the file (a copy or transfer cut short?); not written, as its "
           "output would be damaged too; copy it again from its source")
PERMISSION = ("permission denied: the worker's user cannot read this file; grant read "
              "access and run again")
NOT_REGULAR = ("not a regular file (a folder, device or pipe where a file was expected): "
               "leave it out of the input")
MISSING = ("file not found: it was moved or deleted after the run listed it; put it back "
           "and run again")
OUTSIDE = ("path leads outside its folder (absolute, '..' or a link out of the tree): "
           "refused; use paths inside the input and output folders")
LINK = ("symbolic link, not followed (a link could lead out of the input folder): copy the "
        "file it points to into the input if it should be de-identified")
TOO_LARGE = ("file larger than DEID_MAX_FILE_BYTES: not read, to keep each worker's memory "
             "bounded; raise DEID_MAX_FILE_BYTES if the file is genuine")
SPARSE = ("sparse file (mostly holes, not data, which no DICOM writer leaves): not read, as "
          "its holes could fill a worker's memory; copy the original file again")
THROUGH_LINK = ("output path goes through a symbolic link: not written, so that no write can "
                "leave the output folder; remove the link from the output folder")
MEDIA_INDEX = ("DICOMDIR (a media index that names the original patients, studies and file "
               "paths): left out of the outputs, not copied; build a new DICOMDIR from the "
               "outputs with your media software if you need one")
UNREADABLE_FOLDER = ("permission denied: this folder cannot be listed, so its files were not "
                     "processed; grant read access and run again")
VANISHED_FOLDER = ("folder vanished while the run listed it: its files were not processed; "
                   "put it back and run again")
BAD_FOLDER = ("folder could not be listed (an I/O error): its files were not processed; check "
              "the storage and run again")
NO_PIXEL_SYNTAX = ("compressed pixel data but no transfer syntax in the file meta: no reader "
                   "could decode the output; export the file again from its source")
SKIP_REASONS = frozenset({EMPTY, NOT_DICOM, CORRUPT, PERMISSION, NOT_REGULAR, MISSING,
                          LINK, TOO_LARGE, SPARSE, OUTSIDE, MEDIA_INDEX})
"""Every reason :func:`deid_workers.dicom.reader.read_dataset` may give."""


class UnwritableValue(Exception):
    """pydicom's writer refused a value left in the dataset; ``keyword`` names the element
    when pydicom said which (its message is not kept: it may quote the value)."""

    def __init__(self, keyword: str | None) -> None:
        self.keyword = keyword
        super().__init__(keyword or "")


_TAG_IN_MESSAGE = re.compile(r"[Ww]ith tag \(([0-9A-Fa-f]{4}),\s*([0-9A-Fa-f]{4})\)")
"""How pydicom's writer names the element it failed on (``tag_in_exception``)."""


def element_of(exc: BaseException) -> str | None:
    """The keyword (or tag) of the element pydicom's message names, if any; never a value."""
    from pydicom.datadict import keyword_for_tag

    for e in _chain(exc):
        m = _TAG_IN_MESSAGE.search(str(e))
        if m:
            tag = int(m.group(1) + m.group(2), 16)
            return keyword_for_tag(tag) or f"({m.group(1).upper()},{m.group(2).upper()})"
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen and len(out) < 8:
        seen.add(id(cur))
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


_DOING = {"get": "reading its identifiers", "inspect": "checking its header filters",
          "put": "de-identifying it", "clean": "cleaning its pixels"}

_OS_ADVICE = {
    errno.ENOSPC: "the output disk is full; free some space and run again",
    errno.EDQUOT: "the disk quota of the output folder is used up; free some space and run "
                  "again",
    errno.EROFS: "the output folder is on a read-only filesystem; choose a writable "
                 "--outfolder",
    errno.EACCES: "permission denied; grant the worker's user access to the input and output "
                  "folders and run again",
    errno.EPERM: "operation not permitted; grant the worker's user access to the input and "
                 "output folders and run again",
    errno.EIO: "the storage reported an I/O error; check the disk or network share and run "
               "again",
    errno.ENAMETOOLONG: "the output path is too long for the filesystem; choose a shorter "
                        "--outfolder",
}


def explain_failure(exc: BaseException, stage: str) -> str:
    """The reason a file failed in ``stage`` with ``exc``, worded for a person.

    A recipe error keeps its own message (recipe file and line, never a value); an I/O error
    says what the operating system reported and what to do; a value pydicom cannot write
    names its element; anything else is an internal error to report, named with the
    exception's type so the report can be matched to the DEBUG traceback.
    """
    from .errors import InputError, RecipeError

    doing = _DOING.get(stage, f"in the {stage} stage")
    if isinstance(exc, InputError):
        return exc.reason  # ours, worded here (an output path through a link, say)
    if isinstance(exc, RecipeError):
        return str(exc)  # "<recipe file>:<line>: what is wrong with the line"
    if isinstance(exc, UnwritableValue):
        where = f" in {exc.keyword}" if exc.keyword else ""
        return (f"could not be written as DICOM: a value left by the recipe{where} does not "
                "fit its element's value representation; change the recipe line that sets "
                "it, or report it if the recipe leaves it untouched")
    if isinstance(exc, MemoryError):
        return (f"ran out of memory while {doing} (a very large file?); give the workers "
                "more memory or fewer processes, then run again")
    if isinstance(exc, OSError) and exc.errno is not None:
        advice = _OS_ADVICE.get(exc.errno)
        if advice is None:
            what = exc.strerror or errno.errorcode.get(exc.errno, "an error")
            advice = f"the operating system reported: {what}; check the storage and run again"
        return f"I/O error while {doing}: {advice}"
    return (f"could not be processed: internal error while {doing} "
            f"({type(exc).__name__}); please report it with the worker's DEBUG log "
            "(MESSAGELEVEL=DEBUG)")
