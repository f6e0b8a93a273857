"""Celery tasks, one module per stage; this module holds what they share.

Tasks are thin glue: they take a run id and a batch number (never paths or header values),
fetch the rest from the store, call :mod:`deid_workers.steps` per file and write the outcomes
back. Their return values are counts only, so nothing Flower or the result backend shows can
carry PHI.

:func:`run_context` caches, per worker process, what does not change during a run (the run's
settings, folders and compiled recipe), so a batch costs one or two Redis round trips, not a
recipe parse. It is also where a worker decides whether to run a run at all: the record must be
signed with the cluster key this worker holds, and its folders must lie inside this worker's
own roots (:mod:`deid_workers.folders`); otherwise the run is refused (one ERROR line, the run
marked failed) before any file is read or written.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, TypeVar

import redis
from celery.exceptions import SoftTimeLimitExceeded

from ..config import Settings
from ..errors import InputError, RecipeError, RunRefused, StoreError
from ..folders import check_folders, run_folders
from ..reasons import explain_failure
from ..steps import output_path
from ..store import RunStore, redis_client

__all__ = ["RunContext", "run_context", "client", "RETRY_ON", "RUN_SETTINGS", "worker_settings",
           "worker_keys", "refuse",
           "BatchGuard", "OUTPUT_STAGES", "CRASHED", "KEPT_DYING", "TIMED_OUT", "poison_reason",
           "final_stage",
           "finish_run", "prepare_output", "fail_run"]

log = logging.getLogger(__name__)

RETRY_ON = (redis.ConnectionError, redis.TimeoutError)
"""Errors worth a retry: Redis restarting or a network blip. Anything else fails the task."""

RUN_SETTINGS = ("entity_field", "item_field", "date_shift_min", "date_shift_max",
                "batch_size", "max_retries", "run_expiry", "export_shard_files",
                "max_file_bytes", "max_pixel_bytes")
"""Settings the producer stores with a run and every worker applies, whatever its own env says.
The secret is NOT among them: it never travels through Redis; each worker resolves its own."""

T = TypeVar("T")

_CACHE_SIZE = 8
_contexts: OrderedDict[str, RunContext] = OrderedDict()
_clients: dict[str, redis.Redis] = {}


def worker_settings() -> Settings:
    """This worker's settings, from its environment (the only source of its secret)."""
    return Settings.from_env()


def worker_keys() -> Any:
    """This worker's :class:`~deid_workers.keys.ClusterKeys` (never created here: a worker
    without a configured key refuses to start, see :mod:`deid_workers.app`)."""
    return worker_settings().cluster_keys(create=False)


def client(url: str | None = None) -> redis.Redis:
    """The process's Redis client for the app's broker (the store lives on the broker)."""
    from ..app import app

    url = url or str(app.conf.broker_url)
    if url not in _clients:
        _clients[url] = redis_client(url, patient=True, **worker_settings().tls_options())
    return _clients[url]


@dataclass
class RunContext:
    """The immutable part of a run record, as a worker needs it."""

    store: RunStore
    action: str
    input: str
    outfolder: str
    overwrite: bool
    records: str
    created: float
    settings: Settings
    recipe_texts: list[str] = field(repr=False)
    recipe_sha: str = ""
    print_ids: bool = False
    verify: bool = False
    clean_pixels: bool = False
    quarantine_groups: tuple[str, ...] = ()
    recipe_name: str = ""
    recipe_files: tuple[str, ...] = ()
    quarantine: str = ""  # --clean-pixels: where held-back files go (steps.run_quarantine)
    layout_kind: str = "mirror"
    ids_given: bool = False  # put --ids, or all: a file without ids is worth a warning

    @cached_property
    def layout(self) -> Any:
        """Where outputs go (:mod:`deid_workers.layout`), with this worker's key."""
        from ..steps import run_layout

        return run_layout(self.settings, self.layout_kind)

    @cached_property
    def provenance(self) -> Any:
        """What every output of the run says about itself (named as the producer named it)."""
        from ..provenance import Provenance

        return Provenance.of(self.recipe, name=self.recipe_name or None)

    def pixel_policy(self, *, now: bool) -> Any:
        """The put/clean stages' :class:`~deid_workers.steps.PixelPolicy`; None without
        ``--clean-pixels`` (then nothing is triaged and pixels are never looked at)."""
        if not self.clean_pixels:
            return None
        from ..steps import PixelPolicy, quarantine_folder

        return PixelPolicy(self.quarantine or quarantine_folder(self.outfolder),
                           self.quarantine_groups, now=now)

    @property
    def final_stage(self) -> str:
        """The stage whose last batch ends a put/all run: clean with --clean-pixels."""
        return final_stage(self.clean_pixels)

    @cached_property
    def recipe(self) -> Any:
        """The run's recipe, parsed once per process from the text stored with the run.

        Loaded from files written in a private temp folder so that several recipes merge exactly
        as ``--deid A --deid B`` merged them in the producer; the folder goes once they are
        parsed (every worker process used to leave one behind per run). The copies keep their
        file names, so an error a recipe line meets in a file names the author's file.
        """
        from ..recipe import load_recipe

        with tempfile.TemporaryDirectory(prefix="deid-recipe-") as folder:
            paths = []
            for i, text in enumerate(self.recipe_texts):
                name = self.recipe_files[i] if i < len(self.recipe_files) else "deid.dicom"
                os.mkdir(os.path.join(folder, str(i)))
                path = os.path.join(folder, str(i), os.path.basename(name) or "deid.dicom")
                with open(path, "w", encoding="utf-8") as fh:
                    fh.write(text)
                paths.append(path)
            recipe = load_recipe(paths if paths else None)
        if self.recipe_sha and recipe.sha256 and recipe.sha256 != self.recipe_sha:
            # Same texts must give the same digest; anything else is a version skew between
            # the producer's and this worker's recipe engine, which would de-identify differently.
            raise RecipeError("recipe differs from the one the run was submitted with "
                              "(deid-workers versions differ between producer and worker?)")
        return recipe


def run_context(run_id: str, *, redis_conn: redis.Redis | None = None) -> RunContext:
    """The cached context of ``run_id`` (read from Redis the first time in this process).

    The first read verifies the run (:class:`~deid_workers.errors.RunRefused` otherwise,
    before any file is touched; the task class turns it into one ERROR line and a failed
    run, :func:`refuse`): its record must open and verify with this worker's cluster key, and
    its folders must lie inside this worker's roots and apart from each other. A worker in
    broker mode without roots refuses every run.
    """
    ctx = _contexts.get(run_id)
    if ctx is not None:
        _contexts.move_to_end(run_id)
        return ctx
    conn = redis_conn if redis_conn is not None else client()
    settings = worker_settings()
    store = RunStore.load(conn, run_id, keys=worker_keys())
    rec = store.record()
    if settings.broker_mode and not (settings.input_roots and settings.output_roots):
        raise RunRefused(f"run {run_id}: this worker has no DEID_INPUT_ROOTS and "
                         "DEID_OUTPUT_ROOTS, so it runs nothing")
    check_folders(run_folders(rec), input_roots=settings.input_roots,
                  output_roots=settings.output_roots, run_id=run_id)
    overrides = {k: v for k, v in (rec.get("settings") or {}).items() if k in RUN_SETTINGS}
    ctx = RunContext(
        store=store,
        action=rec["action"],
        input=rec["input"],
        outfolder=rec["outfolder"],
        overwrite=bool(rec.get("overwrite")),
        records=str(rec.get("records") or ""),
        created=float(rec["created"]),
        settings=settings.with_overrides(**overrides),
        recipe_texts=list(rec.get("recipe_texts") or []),
        recipe_sha=str(rec.get("recipe_sha") or ""),
        print_ids=bool(rec.get("print_ids")),
        verify=bool(rec.get("verify")),
        clean_pixels=bool(rec.get("clean_pixels")),
        quarantine_groups=tuple(rec.get("quarantine_groups") or ()),
        recipe_name=str(rec.get("recipe_name") or ""),
        recipe_files=tuple(str(f) for f in rec.get("recipe_files") or ()),
        layout_kind=str(rec.get("layout") or "mirror"),
        quarantine=str(rec.get("quarantine") or ""),
        ids_given=bool(rec.get("ids_path")) or rec["action"] == "all",
    )
    _contexts[run_id] = ctx
    while len(_contexts) > _CACHE_SIZE:
        _contexts.popitem(last=False)
    return ctx


def refuse(run_id: str, exc: RunRefused) -> None:
    """Say why a run is refused (one ERROR line) and mark it failed with that reason, so the
    producer (or ``--status``) shows it; nothing of the run is read or written here."""
    log.error("%s; refused", exc)
    try:
        bare = RunStore(client(), run_id, expiry=worker_settings().run_expiry)
        if bare.exists():
            bare.set_state("failed", error=f"refused by a worker: {exc}")
    except (redis.RedisError, StoreError) as err:
        log.warning("run %s: could not mark the refused run failed: %s", run_id,
                    type(err).__name__)


def forget(run_id: str | None = None) -> None:
    """Drop cached contexts (tests use it to start each one from Redis)."""
    if run_id is None:
        _contexts.clear()
    else:
        _contexts.pop(run_id, None)


OUTPUT_STAGES = ("put", "clean")
"""Stages that write outputs: a start of theirs that another start replaced commits nothing
(its "already exists" outcomes may be the other's outputs). get and inspect record the same
values whoever reads the files, and their counters commit once, so they skip that check."""

CRASHED = "crashed its worker"
"""Quarantine reason of a file whose worker process died (or was killed) while it was on it;
the reason goes on with the stage and what to do (:data:`POISON_ADVICE`)."""

TIMED_OUT = "exceeded the task time limit"
"""Quarantine reason of a file its batch was on when the batch ran out of time (a hang); the
reason goes on with the limit and the stage: "exceeded the task time limit (30 s) in get"."""
KEPT_DYING = ("its batch kept killing its worker with no file to blame (out of memory, or "
              "Redis unreachable?); check the worker logs and run --resume")
POISON_ADVICE = ("held back so the run could finish; open it in a DICOM viewer to check it, "
                 "and report it if it looks sound")


def poison_reason(stage: str, limit: int | None = None) -> str:
    """The reason a file is quarantined as poison: it crashed its worker in ``stage``, or
    hung it past the time limit ``limit`` (seconds)."""
    if limit:
        return f"{TIMED_OUT} ({limit} s) in {stage}: the worker hung on it; {POISON_ADVICE}"
    return f"{CRASHED} in {stage} (a fault in a decoder, or out of memory); {POISON_ADVICE}"


class BatchGuard:
    """Delivery counting and poison-file isolation for one batch.

    Why: with ``acks_late`` + ``task_reject_on_worker_lost`` a batch whose worker process dies is
    redelivered; a file that kills its worker every time (a decoder segfault, the OOM killer)
    would then be redelivered forever and its chord would never complete. So every start of a
    batch is counted in Redis (per Celery retry, so Redis blips that Celery retries do not add
    up). The first start and ``max_retries`` more run normally, at full speed. Later ones run
    *carefully*: before each file the guard notes the file in Redis; a start that finds such a
    note left behind knows that file killed the previous one, quarantines it and goes on. So
    each poison file costs one more delivery, and only poison files are quarantined.

    A file that hangs is handled the same way (:mod:`deid_workers.tasks.limits`): a batch past
    its time limit is requeued, not failed, so the start is counted; in careful mode the file
    it was on is quarantined (:meth:`on_time_limit`, or the next start when the hard limit
    killed the process).

    Use: ``for rel, out in guard.run(paths, step, failed): ...`` then commit ``guard.poison``
    (outcome kind ``poison``: quarantined, never processed) and ``failed`` with the batch.
    """

    active: ClassVar[BatchGuard | None] = None
    """The guard of the batch this process runs now (what a time limit interrupts)."""

    def __init__(self, ctx: RunContext, stage: str, batch_no: int, retry: int = 0, *,
                 mark_started: bool = False, lists: bool = False) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.stage = stage
        self.batch_no = batch_no
        self.retry = int(retry or 0)
        # liveness hook: note who took this start; a committed batch is not redone. The
        # batch's first reads ride along (store.start_batch): one round trip to begin.
        from .liveness import AlreadyCommitted, new_taker

        self.taker = new_taker()
        self.start = self.store.start_batch(stage, batch_no, self.retry, self.taker,
                                            mark_started=mark_started, lists=lists)
        if self.start.committed:
            raise AlreadyCommitted(f"{stage} batch {batch_no} is committed already")
        self.starts = self.start.starts
        self.careful = self.starts > ctx.settings.max_retries + 1
        self.poison: dict[str, str] = {}
        self.current: str | None = None  # the file the batch is on (for time limits)
        BatchGuard.active = self
        if self.careful:
            log.warning("run %s: %s batch %d started %d times; going file by file",
                        ctx.store.run_id, stage, batch_no, self.starts)

    def files(self, paths: list[str]) -> Iterator[str]:
        """The batch's paths, minus poison ones; in careful mode each one is noted first."""
        crash_on = self.ctx.settings.test_crash_on
        hang_on = self.ctx.settings.test_hang_on
        if self.careful:
            known = self.store.outcomes("poison", paths)
            self.poison.update(known)
            dead = self.store.inflight(self.stage, self.batch_no, self.retry)
            limit = self.store.pop_time_limit(self.stage, self.batch_no, self.retry)
            if dead is not None and dead not in self.poison:
                self._quarantine(dead, self._reason(limit))
        for rel in paths:
            if rel in self.poison:
                continue
            self.current = rel
            if self.careful:
                self.store.set_inflight(self.stage, self.batch_no, self.retry, rel)
            if crash_on and crash_on in rel:
                _crash()
            if hang_on and hang_on.removeprefix("hard:") in rel:
                _hang(hard=hang_on.startswith("hard:"))
            yield rel
        self.current = None
        if self.careful:
            self.store.set_inflight(self.stage, self.batch_no, self.retry, None)
        # liveness hook: a start replaced by a later one (its worker looked dead) stops here
        # when its outcomes depend on who wrote the outputs (see liveness.check_taken).
        if self.stage in OUTPUT_STAGES:
            from .liveness import check_taken

            check_taken(self.store, self.stage, self.batch_no, self.taker)

    def on_time_limit(self) -> bool:
        """The batch passed its soft time limit; True when starting it again makes progress.

        In batch mode it always does: the next start is counted, so ``max_retries`` bounds
        them before the batch goes file by file. In careful mode the file the batch is on is
        quarantined first, so each hanging file costs one start. Out of time with no file to
        blame (careful mode, all files done: the commit is stuck) it does not: the batch fails.
        """
        limit = self.ctx.settings.task_time_limit
        log.warning("run %s: %s batch %d passed its time limit (%d s) on %s",
                    self.store.run_id, self.stage, self.batch_no, limit, self.current)
        if not self.careful:
            return True
        if self.current is None:
            return False
        self._quarantine(self.current, self._reason(limit))
        self.store.set_inflight(self.stage, self.batch_no, self.retry, None)
        self.current = None
        return True

    def _reason(self, limit: int | None) -> str:
        return poison_reason(self.stage, limit)

    def _quarantine(self, rel: str, reason: str) -> None:
        self.store.add_outcome("poison", rel, reason)
        self.poison[rel] = reason
        log.error("run %s: quarantined %s: %s", self.store.run_id, rel, reason)

    def run(self, paths: list[str], step: Callable[[str], T],
            failed: dict[str, str]) -> Iterator[tuple[str, T]]:
        """``(rel, step(rel))`` for each file :meth:`files` lets through.

        One bad file must not sink its batch: a file whose step raises unexpectedly is recorded
        in ``failed`` with a reason worded for a person (:func:`~deid_workers.reasons.
        explain_failure`: never the exception's message, which may quote element values, but
        a recipe error's own message, recipe text and line), and the batch goes on; the
        traceback goes to the DEBUG log.

        Each poison file costs one start, so a batch started more often than its retries plus
        its files dies where no file is to blame (between files): its remaining files are
        reported failed and the batch commits, so the run ends instead of looping forever.
        """
        if self.careful and self.starts > self.ctx.settings.max_retries + len(paths) + 2:
            self.poison.update(self.store.outcomes("poison", paths))
            failed.update({rel: KEPT_DYING for rel in paths if rel not in self.poison})
            log.error("run %s: %s batch %d started %d times; giving up on its %d files",
                      self.store.run_id, self.stage, self.batch_no, self.starts, len(failed))
            return
        for rel in self.files(paths):
            try:
                out = step(rel)
            except SoftTimeLimitExceeded:
                raise  # the batch is out of time, not this file: tasks.limits requeues it
            except Exception as exc:
                failed[rel] = explain_failure(exc, self.stage)
                log.warning("run %s: %s failed in %s: %s", self.store.run_id, rel, self.stage,
                            failed[rel])
                log.debug("traceback", exc_info=True)
                continue
            yield rel, out


def prepare_output(ctx: RunContext, rel: str, *, first_time: bool,
                   quarantine: str | None) -> bool:
    """Before put or clean writes output path ``rel`` (relative to the output and quarantine
    folders, as the run's layout placed it): may it replace an existing output?

    Yes with ``--overwrite``, and on a redelivered batch for an output this run wrote before its
    worker died: that one is ours, half done or not, and is rewritten rather than refused. A
    redelivery also removes what a write killed mid-way left (``.<name>.<pid>-<n>.tmp``): never
    read under that name, but it should not stay behind.
    """
    folders = [f for f in (ctx.outfolder, quarantine) if f]
    if not first_time:
        for folder in folders:
            _remove_stale_temps(folder, rel)
    if ctx.overwrite:
        return True
    if first_time:
        return False
    for folder in folders:
        try:
            if os.stat(output_path(folder, rel)).st_mtime >= ctx.created:
                return True
        except OSError:
            pass
    return False


def _remove_stale_temps(folder: str, rel: str) -> None:
    try:
        parent, name = os.path.split(output_path(folder, rel))
        entries = os.listdir(parent)
    except (InputError, OSError):
        return
    for entry in entries:
        if entry.startswith(f".{name}.") and entry.endswith(".tmp"):
            try:
                os.unlink(os.path.join(parent, entry))
            except OSError:
                pass


def _hang(*, hard: bool) -> None:  # pragma: no cover - runs until a time limit ends it
    """The test hook's hang: sleep forever. The soft time limit's exception ends it, unless
    ``hard``: then only the hard limit's kill does, as with a hang inside C code."""
    import time

    while True:
        try:
            time.sleep(0.5)
        except SoftTimeLimitExceeded:
            if not hard:
                raise


def _crash() -> None:  # pragma: no cover - runs in a worker process that it kills
    """The test hook's crash: SIGKILL, as the OOM killer or a segfault would end the process."""
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def final_stage(clean_pixels: bool) -> str:
    """Every put batch also commits a clean batch (empty when it had nothing to clean), so
    with --clean-pixels the clean stage completing means the whole run is done."""
    return "clean" if clean_pixels else "put"


def fail_run(store: RunStore, what: str, exc: BaseException) -> None:
    """Mark the run failed by ``what``'s error, in one line without paths or values (the
    error's text may quote either): for work no chord reports to the producer."""
    reason = getattr(exc, "strerror", None) or type(exc).__name__
    log.error("run %s: %s failed: %s", store.run_id, what, reason)
    store.set_state("failed", error=f"{what} failed: {reason}")


def finish_run(store: RunStore, stage: str, commit: Any = None) -> bool:
    """End a put/all run once ``stage`` is complete: write ``deid-run.jsonl``, then mark the
    run finished (so a producer that sees "finished" finds the file). Several callers may get
    here at once (the last batches, the producer after its walk); each writes the same file
    atomically and marking twice is harmless. Returns True when the run is finished.

    ``commit`` (a :class:`~deid_workers.store.Commit` of ``stage``) says without another read
    whether the stage may be complete: every batch but the last stops there."""
    if commit is not None and not commit.complete:
        return False
    if not store.stage_complete(stage):
        return False
    rec = store.record()
    if rec.get("state") in ("finished", "failed"):
        return True
    if rec.get("action") in ("put", "all"):
        from ..runlog import write_run_log

        path = write_run_log(store, rec)
        store.update(run_log=path)
    return store.maybe_finish(stage)
