"""``deid-submit``: the front door. Runs what the arguments (:mod:`.arguments`) ask; messages and
exit codes, no pipeline logic.

Flags follow deid's client (``--action --input --outfolder --overwrite --deid --ids --print
--quiet --format --version``) so a deid user feels at home, plus what a distributed tool needs
(``--broker --workers --batch --no-wait --status --resume``). Every :class:`DeidError` becomes
one line, ``deid-submit: error: <message>``, and an exit code; the traceback only at DEBUG.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from . import logs
from .arguments import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, PROG, build_parser
from .config import Settings
from .errors import ConfigError, DeidError, IdentifiersError, InputError, RecipeError
from .version import __version__

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_INTERRUPTED"]

log = logging.getLogger("deid_workers.cli")

_JSON_ERRORS = False
"""``--log-json``: errors too are JSON objects on stderr (set once the settings are known)."""


def _error(message: str) -> None:
    text = f"{PROG}: error: {message}"
    if _JSON_ERRORS:
        record = logging.LogRecord(log.name, logging.ERROR, __file__, 0, text, None, None)
        text = logs.JsonFormatter().format(record)
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _stdout_gone() -> None:
    """The reader of stdout went away (``| head``): point stdout at /dev/null, so neither the
    rest of the output nor the interpreter's last flush raises again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # not a real file (a test's capture): nothing to redirect
        pass


def _out(text: str) -> bool:
    """Print ``text`` (a result) on stdout; False when its reader is gone (then stdout is
    silenced, and the run's own exit code still stands)."""
    try:
        print(text)
        sys.stdout.flush()
        return True
    except BrokenPipeError:
        _stdout_gone()
        return False


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``deid-submit``; returns the exit code (the console script exits with it)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2, message printed)
        return int(exc.code or 0)
    if args.version:
        print(__version__)
        return EXIT_OK
    try:
        settings = Settings.from_env(None, broker_url=args.broker, batch_size=args.batch,
                                     workers=args.workers, log_json=args.log_json or None,
                                     quarantine=args.quarantine)
    except ConfigError as exc:
        _error(str(exc))
        return EXIT_USAGE
    global _JSON_ERRORS
    _JSON_ERRORS = settings.log_json
    try:
        return _main(parser, args, settings)
    finally:
        _JSON_ERRORS = False


def _main(parser: argparse.ArgumentParser, args: argparse.Namespace, settings: Settings) -> int:
    with logs.setup("QUIET" if args.quiet else settings.message_level,
                    log_json=settings.log_json):
        try:
            return _dispatch(parser, args, settings)
        except BrokenPipeError:  # stdout closed early (``--json | head``): not worth a traceback
            _stdout_gone()
            return EXIT_FAILED
        except KeyboardInterrupt:
            _error("interrupted")
            return EXIT_INTERRUPTED
        except (ConfigError, RecipeError, IdentifiersError) as exc:
            log.debug("details", exc_info=True)
            _error(str(exc))
            return EXIT_USAGE
        except InputError as exc:
            log.debug("details", exc_info=True)
            _error(f"{exc.path}: {exc.reason}")
            return EXIT_USAGE
        except DeidError as exc:
            log.debug("details", exc_info=True)
            _error(str(exc))
            return EXIT_FAILED


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace,
              settings: Settings) -> int:
    admin = [name for name in ("status", "resume", "purge") if getattr(args, name) is not None]
    if args.check_recipe is not None:
        if admin or args.action or args.deid:
            _error("--check-recipe takes the recipe to check itself, with --profile, --input and "
                   "--json only")
            return EXIT_USAGE
        return _check_recipe(args)
    if len(admin) > 1:
        parser.print_usage(sys.stderr)
        _error("choose one of --status, --resume, --purge")
        return EXIT_USAGE
    if settings.broker_url:
        # Every process of a cluster holds the one cluster key; a producer without it could
        # neither sign a run nor read one (ConfigError: exit 2, one line).
        settings.cluster_keys(create=False)
    if admin:
        if not settings.broker_url:
            _error(f"--{admin[0]} needs --broker or DEID_BROKER_URL (an embedded run's state "
                   "lives only as long as its deid-submit; its run log "
                   "deid-run.<run id>.jsonl in the records folder keeps what it did)")
            return EXIT_USAGE
        return _admin(admin[0], args, settings)
    if not args.action:
        parser.print_usage(sys.stderr)
        _error("--action is required (get, put, all or inspect)")
        return EXIT_USAGE
    if args.print_ids and args.action != "get":
        _error("--print only applies to --action get")
        return EXIT_USAGE
    if args.action == "put" and not args.ids:
        _error("To PUT without GET you must provide a json or pkl file with ids (--ids).")
        return EXIT_USAGE
    if (args.clean_pixels or args.quarantine_groups) and args.action not in ("put", "all"):
        _error("--clean-pixels and --quarantine-groups apply to --action put or all")
        return EXIT_USAGE
    if args.quarantine_groups is not None and not args.clean_pixels:
        _error("--quarantine-groups needs --clean-pixels")
        return EXIT_USAGE
    if args.layout != "mirror" and args.action not in ("put", "all"):
        _error("--layout applies to --action put or all")
        return EXIT_USAGE
    if args.ocr is not None and args.action not in ("put", "all", "inspect"):
        _error("--ocr applies to --action put, all or inspect")
        return EXIT_USAGE
    if args.ocr_allowlist is not None and args.ocr is None:
        _error("--ocr-allowlist needs --ocr")
        return EXIT_USAGE
    if args.quarantine is not None and not (
            args.clean_pixels or (args.ocr and args.action in ("put", "all"))):
        _error("--quarantine needs --clean-pixels or --ocr")
        return EXIT_USAGE
    if args.no_wait and not settings.broker_url:
        _error("--no-wait needs --broker or DEID_BROKER_URL (embedded workers stop with "
               "deid-submit)")
        return EXIT_USAGE
    return _run(args, settings)


def _groups(args: argparse.Namespace) -> tuple[str, ...]:
    from .files.triage import DEFAULT_QUARANTINE_GROUPS

    if args.quarantine_groups is None:
        return DEFAULT_QUARANTINE_GROUPS
    return tuple(g.strip() for g in args.quarantine_groups.split(",") if g.strip())


def _run(args: argparse.Namespace, settings: Settings) -> int:
    """Check everything, then start (embedded mode) and submit; nothing starts, and no folder
    made here stays, when a check fails."""
    from .prepare import prepare, remove_made

    made: list[str] = []  # folders made here: removed again if the run does not start
    said: list[str] = []  # what to tell once the checks passed
    try:
        _resolve_input(args)
        _resolve_folders(args, made, said)
        prepared = prepare(settings, _submission(args, settings, None))
    except BaseException:
        remove_made(made)
        raise
    prepared.made += made
    for line in said:
        log.info("%s", line)
    if settings.broker_url:
        prepared.sub = replace(prepared.sub, key_location=_key_location(
            args, "each worker's DEID_SECRET / DEID_SECRET_FILE"))
        return _submit_and_follow(args, settings, prepared)
    return _embedded(args, settings, prepared)


def _resolve_input(args: argparse.Namespace) -> None:
    """``--input``: a folder, one file (as deid takes it: the run reads that file only), or
    none: the demo study, kept where the outputs can be compared with it."""
    args.input_file = None
    if args.input is None:
        log.info("No input folder specified, will use demo %s.", _demo_name())
        args.input = _demo_input()
    elif os.path.isfile(args.input):
        real = os.path.realpath(args.input)  # a link named on purpose: the file it names
        args.input, args.input_file = os.path.dirname(real), os.path.basename(real)


def _demo_name() -> str:
    from .synth import DEMO_NAME

    return DEMO_NAME


def _demo_input() -> str:
    """The demo study, written once into the user's cache folder and read from there (deid's
    own demo is the installed deid-data copy): a user can compare its files with the outputs,
    and get then put on the demo read the same files. A file missing there is written again;
    without a writable cache, a temp folder that is kept (the summary says where)."""
    import shutil

    from .config import default_demo_path
    from .synth import write_demo_study

    folder = str(default_demo_path())
    try:
        os.makedirs(folder, exist_ok=True)
        fresh = tempfile.mkdtemp(prefix=".demo-", dir=os.path.dirname(folder))
        try:
            for name in write_demo_study(fresh):
                if not os.path.lexists(os.path.join(folder, name)):
                    os.replace(os.path.join(fresh, name), os.path.join(folder, name))
        finally:
            shutil.rmtree(fresh, ignore_errors=True)
        return folder
    except OSError:
        folder = os.path.join(tempfile.mkdtemp(prefix="deid-demo-"), _demo_name())
        write_demo_study(folder)
        return folder


def _resolve_folders(args: argparse.Namespace, made: list[str], said: list[str]) -> None:
    """Default output and records folders: a new private temp folder (named in ``said``)."""
    from .fs.folders import records_folder

    if args.action == "get" and args.print_ids and args.outfolder is None:
        if args.records is None:  # get --print writes nothing: no folder at all
            args.outfolder = args.records = os.devnull
            return
        args.outfolder = args.records
    if args.outfolder is None and args.action == "get":
        # get writes identifiers only: into --records, or a new private temp folder
        if args.records is None:
            args.records = tempfile.mkdtemp(prefix="deid-ids-")
            made.append(args.records)
            said.append(f"No records folder specified, writing identifiers to {args.records}")
        args.outfolder = args.records  # unused: get has no output tree
    if args.outfolder is None:
        args.outfolder = tempfile.mkdtemp(prefix="deid-workers-")
        made.append(args.outfolder)
        said.append(f"No output folder specified, writing to {args.outfolder}")
    if args.records is None:
        args.records = records_folder(args.outfolder)


def _key_location(args: argparse.Namespace, where: str | None) -> str | None:
    """Where the run's key is, for the summary: only put and all pseudonymize anything."""
    return where if args.action in ("put", "all") else None


def _embedded(args: argparse.Namespace, settings: Settings, prepared: Any) -> int:
    import secrets
    from pathlib import Path

    from .config import default_secret_path
    from .embedded import EmbeddedCluster
    from .fs.folders import run_folders

    sub = prepared.sub
    # Resolve (create) the key before the workers start, so they all read the same file; the
    # private workers may touch this run's folders and nothing else. get and inspect compute
    # no pseudonym: without a key configured they sign with one that lives as long as the
    # private cluster, and the first run to create the lasting key is one that needs it.
    target = Path(settings.secret_file) if settings.secret_file else default_secret_path()
    ephemeral: bytes | None = None
    created = False
    key_path: str | None = None
    if args.action in ("get", "inspect") and not settings.secret and not target.exists():
        ephemeral = secrets.token_hex(32).encode("ascii")
    else:
        existed = settings.secret is not None or target.exists()
        _, key_path = settings.resolve_secret(create=True)
        created = not existed and key_path is not None
    folders = run_folders({"action": sub.action, "input": os.path.abspath(sub.input),
                           "input_file": sub.input_file,
                           "outfolder": os.path.abspath(sub.outfolder),
                           "records": os.path.abspath(sub.records),
                           "quarantine": prepared.quarantine,
                           "print_ids": sub.print_ids, "clean_pixels": sub.clean_pixels,
                           "ocr": sub.ocr})
    # get --print writes nothing: its workers may write nowhere.
    writes = [f for role, f in folders.items() if role != "input"] or [os.devnull]
    env = dict(os.environ, DEID_INPUT_ROOTS=folders["input"],
               DEID_OUTPUT_ROOTS=os.pathsep.join(writes))
    if key_path:
        env["DEID_SECRET_FILE"] = key_path
    prepared.sub = replace(sub, embedded=True, key_created=created,
                           key_location=_key_location(args, key_path or "DEID_SECRET"))
    log.info("Starting a private Redis and %s local worker(s)...",
             settings.workers or os.cpu_count())
    loglevel = "INFO" if logs.level_for(settings.message_level) <= logging.DEBUG else "WARNING"
    cluster = EmbeddedCluster(settings.workers, env=env, loglevel=loglevel, secret=ephemeral)
    try:
        cluster.start()
    except BaseException:
        prepared.discard()  # the run never started: its folders go
        raise
    try:
        return _submit_and_follow(args, settings.with_overrides(
            broker_url=cluster.url, secret_file=key_path, secret=ephemeral), prepared,
            health=cluster.check_alive, on_finished=cluster.mark_idle)
    finally:
        cluster.stop()


def _submit_and_follow(args: argparse.Namespace, settings: Settings, prepared: Any, *,
                       health: Any = None, on_finished: Any = None) -> int:
    from .app import app, configure
    from .producer import submit

    configure(app, settings)
    progress = None if args.no_wait else _progress(args, settings)
    store = None
    try:
        # the bar shows as the producer sends (the walk of an archive takes a while); lines
        # logged meanwhile go above it
        with logs.status_line(progress if progress is not None and progress.tty else None):
            try:
                store = submit(settings, prepared, tick=progress.poll if progress else None)
            except BaseException:
                if progress is not None:
                    progress.close()  # the error gets a line of its own
                raise
            if args.no_wait:
                _out(store.run_id)
                return EXIT_OK
            if not prepared.sub.embedded:  # an embedded run's id cannot be followed elsewhere
                log.info("run %s submitted (follow it from anywhere: %s --status %s)",
                         store.run_id, PROG, store.run_id)
            return _follow(store, args, settings, progress=progress, health=health,
                           on_finished=on_finished)
    except KeyboardInterrupt:
        if store is not None and not prepared.sub.embedded:
            _error(f"interrupted; run {store.run_id} goes on on the workers "
                   f"(follow it: {PROG} --status {store.run_id})")
            return EXIT_INTERRUPTED
        raise


def _submission(args: argparse.Namespace, settings: Settings, key_location: str | None) -> Any:
    from .prepare import Submission

    return Submission(action=args.action, input=args.input, outfolder=args.outfolder,
                      records=args.records or "", input_file=getattr(args, "input_file", None),
                      overwrite=args.overwrite, recipes=tuple(args.deid), profile=args.profile,
                      ids_path=args.ids, print_ids=args.print_ids, verify=args.verify,
                      clean_pixels=args.clean_pixels, quarantine_groups=_groups(args),
                      layout=args.layout, quarantine=settings.quarantine,
                      ocr=args.ocr, ocr_allowlist=args.ocr_allowlist,
                      # embedded workers are this Python: prepare checks --ocr's engine loads
                      embedded=not settings.broker_url,
                      key_location=key_location)


def _progress(args: argparse.Namespace, settings: Settings) -> Any:
    """The progress bar on stderr: an INFO matter, so not with ``--quiet`` nor a
    ``MESSAGELEVEL`` above INFO; JSON log records with ``--log-json``."""
    from .progress import Progress

    if args.quiet or logs.level_for(settings.message_level) > logging.INFO:
        return None
    return Progress(log_json=settings.log_json)


def _follow(store: Any, args: argparse.Namespace, settings: Settings, *,
            progress: Any = None, health: Any = None, on_finished: Any = None) -> int:
    from .producer import refused_writes, resume, wait
    from .run.notices import printable
    from .run.report import NoticeFeed

    said = logging.getLogger("deid_workers.run.notices")
    # The workers' warnings, in deid's words, as their batches commit (WARNING: shown at the
    # level MESSAGELEVEL asks for, as deid shows them).
    feed = NoticeFeed(store, lambda line: said.warning("%s", printable(line)))
    with refused_writes(store.run_id):  # a full Redis: one line, not a traceback
        with logs.status_line(progress if progress is not None and progress.tty else None):
            rec = wait(store, progress=progress, health=health, watch=feed.watch,
                       on_stall=lambda: resume(settings, store.run_id, store.client)[1],
                       stall_after=settings.stall_seconds)
        feed.drain(final=True)
    if on_finished is not None and rec.get("state") == "finished":
        on_finished()
    return _finish(store, args)


def _finish(store: Any, args: argparse.Namespace) -> int:
    from .ids.export import write_ids_json
    from .run.notices import printable
    from .run.report import file_lines, iter_inspect, render_table, run_ok, summarize

    summary = summarize(store)
    action = summary["action"]
    if action in ("get", "all") and summary.get("ids_pkl"):
        log.info("Writing ids to %s", summary["ids_pkl"])
    if action == "get" and args.print_ids and summary["state"] == "finished":
        try:
            write_ids_json(store.iter_ids(), sys.stdout)
        except BrokenPipeError:
            _stdout_gone()
    ids_name = (os.path.basename(str(store.record().get("ids_path") or "")) or "--ids"
                if action == "put" else "--ids")
    for level, text in file_lines(summary, ids_name):
        log.log(level, "%s", printable(text))
    if action == "inspect" and summary["state"] == "finished":
        for path, verdict in iter_inspect(store, int(summary["batches"] or 0)):
            if verdict.get("flagged"):
                log.warning("%s header filters indicate burned pixels.", printable(path))
            else:
                log.info("%s header filters indicate pixels are clean.", printable(path))
            ocr = verdict.get("ocr")
            if ocr is not None:
                counts = ocr.get("counts") or {}
                (log.warning if ocr.get("status") != "clean" else log.info)(
                    "%s OCR: %s (%d text boxes, %d PHI, %d unsure).", printable(path),
                    ocr.get("status"), len(ocr.get("boxes") or ()), counts.get("phi", 0),
                    counts.get("unsure", 0))
    if summary["state"] == "failed":
        _error(f"run {store.run_id} failed: {store.record().get('error', 'see the worker logs')}")
    if args.json:
        _out(json.dumps(summary, indent=2, default=str))
    elif not (action == "get" and args.print_ids):
        _out(render_table(summary))
    return EXIT_OK if run_ok(summary) else EXIT_FAILED


def _check_recipe(args: argparse.Namespace) -> int:
    """``--check-recipe RECIPE``: its gaps against the profile (recipe/coverage.py), read
    from the input's headers when ``--input`` is given; no broker, nothing written."""
    from .dicom.reader import read_dataset
    from .fs.walk import iter_files
    from .recipe import load_recipe
    from .recipe.coverage import check_recipe, count_in, render_table, to_json
    from .recipe.options import parse_profile

    options = parse_profile(args.profile or "basic")
    coverage = check_recipe(load_recipe(args.check_recipe), options)
    if args.input is not None:
        if os.path.isfile(args.input):
            real = os.path.realpath(args.input)
            root, files = os.path.dirname(real), iter([os.path.basename(real)])
        elif os.path.isdir(args.input):
            root, files = args.input, iter_files(args.input)
        else:
            raise InputError(args.input, "input not found (--input takes a folder or one "
                                         "DICOM file)")

        def headers() -> Any:
            for rel in files:
                try:
                    yield read_dataset(os.path.join(root, rel), headers_only=True, name=rel,
                                       root=root)
                except InputError:
                    yield None

        coverage = count_in(coverage, headers())
    print(json.dumps(to_json(coverage), indent=2) if args.json else render_table(coverage))
    return EXIT_FAILED if coverage.gaps else EXIT_OK


def _admin(what: str, args: argparse.Namespace, settings: Settings) -> int:
    from .app import app, configure
    from .producer import connect, resume

    configure(app, settings)
    client = connect(settings)
    if what == "purge":
        return _purge(client, args.purge)
    if what == "resume":
        store, said = resume(settings, args.resume, client)
        log.info("run %s: %s", args.resume, said)
        return _follow(store, args, settings, progress=_progress(args, settings))
    return _status(client, args, settings)


def _purge(client: Any, run_id: str) -> int:
    """``--purge RUN_ID``: delete every key of the run, even if its record already expired."""
    from .errors import StoreError
    from .run.store import RunStore

    store = RunStore(client, run_id, expiry=1)
    state = store.state()
    if state not in (None, "finished", "failed"):
        log.warning("run %s is %s; its workers will fail the batches left", run_id, state)
    n = store.purge()
    if not n:
        raise StoreError(f"run {run_id} is unknown to Redis (expired, purged or lost)")
    log.info("run %s purged (%d keys)", run_id, n)
    return EXIT_OK


def _status(client: Any, args: argparse.Namespace, settings: Settings) -> int:
    """``--status [RUN_ID]``: a table per run, then the queue lengths (JSON with ``--json``)."""
    from .app import QUEUES
    from .run.report import render_status, run_status, summarize
    from .run.store import RunStore, list_runs
    from .tasks.compat import queue_lengths

    run_ids = [args.status] if args.status else list_runs(client)
    keys = settings.cluster_keys(create=False)
    stores = [RunStore.load(client, r, keys=keys) for r in run_ids]
    queues = queue_lengths(client, tuple(dict.fromkeys((*QUEUES, "clean"))))
    if args.json:
        runs = [dict(run_status(s), summary=summarize(s)) for s in stores]
        print(json.dumps({"queues": queues, "runs": runs}, indent=2, default=str))
    else:
        tables = [render_status(run_status(s)) for s in stores]
        print("\n\n".join(tables) if tables else "no runs")
        print("\nqueues  " + "  ".join(f"{q} {n}" for q, n in queues.items()))
    return EXIT_OK
