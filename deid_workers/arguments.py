"""``deid-submit``'s command line: its arguments, help text and exit codes, in one place.

Kept apart from :mod:`.cli` (which runs what the arguments ask) so that the help a user reads
and the README's command-line section can be checked against one parser.
"""

from __future__ import annotations

import argparse

from .config import DEFAULT_BATCH_SIZE
from .run.plan import CLIENT_ACTIONS, OCR_MODES

__all__ = ["PROG", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_INTERRUPTED", "build_parser"]

PROG = "deid-submit"
EXIT_OK = 0
"""The run finished and every valid file was written (or inspected); skips are in the summary."""
EXIT_FAILED = 1
"""The run failed or is incomplete: refused, failed or unaccounted files; Redis lost."""
EXIT_USAGE = 2
"""Usage, configuration, recipe or ids error: nothing was started."""
EXIT_INTERRUPTED = 130
"""Ctrl-C (or SIGTERM in embedded mode)."""

EPILOG = f"""\
examples:
  {PROG} --action all
      de-identify the bundled demo study with a private Redis and local workers
  {PROG} --action all --input /data/in --outfolder /data/out --deid deid.dicom
      the same on your files, with your recipe
  {PROG} --action get --input /data/in --records /data/ids   (then edit deid-ids.json)
  {PROG} --action put --input /data/in --ids /data/ids/deid-ids.json --outfolder /data/out
  DEID_BROKER_URL=rediss://producer@redis:6379/0 {PROG} --action all --input /nas/in --no-wait
      submit to a cluster (workers: deid-worker) and return; follow with --status RUN_ID

environment: DEID_BROKER_URL, DEID_REDIS_PASSWORD_FILE, DEID_REDIS_TLS_CA/CERT/KEY,
  DEID_SECRET_FILE (or DEID_SECRET), DEID_INPUT_ROOTS, DEID_OUTPUT_ROOTS, DEID_BATCH_SIZE,
  DEID_WORKERS,
  DEID_ENTITY_FIELD, DEID_ITEM_FIELD, DEID_DATE_SHIFT_MIN/MAX, DEID_VISIBILITY_TIMEOUT,
  DEID_TASK_TIME_LIMIT, DEID_MAX_RETRIES, DEID_RUN_EXPIRY, DEID_LOG_JSON, DEID_QUARANTINE,
  DEID_MAX_FILE_BYTES, DEID_MAX_PIXEL_BYTES, DEID_LIVENESS_TTL, DEID_PREFETCH,
  DEID_EXPORT_SHARD_FILES, DEID_FAST_IO, DEID_OFFLOOP,
  MESSAGELEVEL (QUIET, ERROR, WARNING, INFO, DEBUG; as deid reads it)

exit codes: {EXIT_OK} run finished, every valid file written/inspected (skips are reported);
  {EXIT_FAILED} run failed or incomplete (a put whose ids miss files too); {EXIT_USAGE} usage,
  config, recipe or ids error (nothing started, no folder left); {EXIT_INTERRUPTED} interrupted
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="De-identify DICOM files with deid recipes, spread over Celery workers on "
                    "Redis. With no broker configured, starts a private Redis and local workers.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--action", choices=CLIENT_ACTIONS,
                   help="get: export identifiers; put: apply the recipe with given ids; "
                        "all: get then put; inspect: flag burned-in pixels by header filters")
    p.add_argument("--input", metavar="DIR|FILE",
                   help="folder of DICOM files (walked recursively), or one DICOM file; "
                        "default: the bundled demo study dicom-cookies, kept in "
                        "~/.cache/deid-workers")
    p.add_argument("--outfolder", metavar="DIR",
                   help="output folder (laid out by --layout; the inspect report goes here); "
                        "default: a new temporary folder, printed at the end")
    p.add_argument("--records", metavar="DIR",
                   help="private folder (0700) for identifiers (deid-ids.json/.pkl) and run "
                        "logs, apart from the output tree; default: <outfolder>-records")
    p.add_argument("--layout", choices=("mirror", "uid"), default="mirror",
                   help="put/all: where outputs go. mirror: the input's relative paths, each "
                        "folder or file name that holds the file's patient name, ID, other "
                        "IDs, accession number or birth date (or its own instance UIDs) "
                        "replaced by a keyed pseudonym; uid: <study>/<series>/<instance>.dcm "
                        "from the new UIDs (default: mirror)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing outputs (default: refuse, and leave them untouched)")
    p.add_argument("--deid", metavar="RECIPE", action="append", default=[],
                   help="recipe file (deid.dicom format) or folder; repeat to merge in order; "
                        "default: the shipped PS3.15 Annex E recipe")
    p.add_argument("--profile", metavar="basic[,OPTION...]",
                   help="the DICOM PS3.15 Annex E Basic Profile plus the options named (comma "
                        "separated: retain-safe-private, retain-uids, retain-device-identity, "
                        "retain-institution-identity, retain-patient-characteristics, "
                        "retain-longitudinal-full-dates, retain-longitudinal-modified-dates, "
                        "clean-descriptors, clean-structured-content, clean-graphics); any "
                        "--deid recipe merges on top of it")
    p.add_argument("--check-recipe", metavar="RECIPE",
                   help="report the attributes of PS3.15 table E.1-1 that RECIPE leaves in place "
                        "where the profile (--profile; default basic) would remove, empty, replace "
                        "or clean them; with --input, only those its files hold, with counts; "
                        "--json for JSON; exit 1 when there are gaps; needs no broker")
    p.add_argument("--ids", metavar="FILE",
                   help="identifiers for put (deid-ids.json or deid-ids.pkl, as get writes them)")
    p.add_argument("--print", dest="print_ids", action="store_true",
                   help="get: print the identifiers (JSON) to stdout instead of writing files")
    p.add_argument("--quiet", action="store_true",
                   help="no progress and no per-file messages, only the summary")
    p.add_argument("--format", choices=("dicom",), default="dicom",
                   help="input format (only dicom; kept for deid compatibility)")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    p.add_argument("--broker", metavar="URL",
                   help="Redis URL of the cluster (env DEID_BROKER_URL); default: none, i.e. "
                        "embedded mode with a private redis-server and local workers")
    p.add_argument("--workers", type=int, metavar="N",
                   help="embedded mode: worker processes (env DEID_WORKERS; default: cores)")
    p.add_argument("--batch", type=int, metavar="N",
                   help=f"files per task (env DEID_BATCH_SIZE; default {DEFAULT_BATCH_SIZE}, "
                        "more on a cluster whose Redis is milliseconds away)")
    p.add_argument("--no-wait", action="store_true",
                   help="print the run id and return once everything is enqueued (needs --broker)")
    p.add_argument("--status", metavar="RUN_ID", nargs="?", const="",
                   help="show a run's state (or, without RUN_ID, the latest runs); needs --broker")
    p.add_argument("--resume", metavar="RUN_ID",
                   help="re-enqueue what a run has not done and wait for it; needs --broker")
    p.add_argument("--purge", metavar="RUN_ID",
                   help="delete a run's state (identifiers included) from Redis; needs --broker")
    p.add_argument("--clean-pixels", action="store_true",
                   help="put/all: triage every file with the recipe's %%filter groups; black out "
                        "the boxes they give (queue clean), hold files flagged by a blocking "
                        "group or without boxes in the quarantine folder (default: off)")
    p.add_argument("--ocr", nargs="?", const="risky", choices=OCR_MODES, metavar="all",
                   help="put/all: read the burned-in text of the files whose header says it is "
                        "likely (ultrasound, secondary capture, screen saves, derived images, "
                        "BurnedInAnnotation YES, recipe %%filter hits; --ocr all: every file "
                        "with pixels) on queue ocr; black out the text that holds the file's "
                        "identifiers, dates or long numbers, read the result again, and hold "
                        "in quarantine a file whose text could not be read surely or that "
                        "still shows PHI; inspect: report what OCR found. Needs the ocr extra "
                        "(pip install 'deid-workers[ocr]') on the workers (default: off)")
    p.add_argument("--ocr-allowlist", metavar="FILE",
                   help="with --ocr: harmless annotation text that is never blacked out "
                        "(words and re: lines, per [MODALITY]; default: the shipped list, "
                        "deid_workers/ocr/data/allowlist.txt)")
    p.add_argument("--quarantine", metavar="DIR",
                   help="with --clean-pixels or --ocr: where held-back files go, apart from the input and "
                        "output folders; checked writable before the run starts (env "
                        "DEID_QUARANTINE; default: <outfolder>-quarantine beside the output)")
    p.add_argument("--quarantine-groups", metavar="A,B",
                   help="with --clean-pixels: %%filter groups whose hits quarantine a file "
                        "(default: blacklist)")
    p.add_argument("--verify", action="store_true",
                   help="put/all: after writing each output, look for the values the recipe "
                        "removed or replaced in it; files where one survives are listed and "
                        "the exit code is 1 (default: off)")
    p.add_argument("--json", action="store_true",
                   help="print the summary (or status) as JSON on stdout")
    p.add_argument("--log-json", action="store_true",
                   help="log to stderr as one JSON object per line (progress and errors "
                        "included), for a log stack (env "
                        "DEID_LOG_JSON; workers read DEID_LOG_JSON too)")
    return p

