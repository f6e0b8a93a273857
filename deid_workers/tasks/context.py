"""What a worker knows of a run while it runs its batches: :class:`RunContext`.

:func:`run_context` caches, per worker process, what does not change during a run (the run's
settings, folders and compiled recipe), so a batch costs one or two Redis round trips, not a
recipe parse. It is also where a worker decides whether to run a run at all: the record must be
signed with the cluster key this worker holds, and its folders must lie inside this worker's
own roots (:mod:`deid_workers.fs.folders`); otherwise the run is refused (one ERROR line, the run
marked failed) before any file is read or written.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import redis

from ..config import Settings
from ..errors import ConfigError, RecipeError, RunRefused, StoreError
from ..fs.folders import check_folders, run_folders
from ..run.client import shared_client
from ..run.names import Keys
from ..run.plan import final_stage
from ..run.record import RunRecord
from ..run.store import RunStore

__all__ = ["RunContext", "run_context", "forget", "client", "worker_settings", "worker_keys",
           "refuse"]

log = logging.getLogger(__name__)

_CACHE_SIZE = 8
_contexts: OrderedDict[str, RunContext] = OrderedDict()


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

    return shared_client(url or str(app.conf.broker_url), patient=True,
                         **worker_settings().tls_options())


@dataclass
class RunContext:
    """A run as a worker needs it: its store, its record, and this worker's settings with the
    run's over them; the recipe, layout and provenance are made once per process."""

    store: RunStore
    record: RunRecord
    settings: Settings

    @cached_property
    def layout(self) -> Any:
        """Where outputs go (:mod:`deid_workers.files.layout`), with this worker's key."""
        from ..files.layout import run_layout

        return run_layout(self.settings, self.record.layout)

    @cached_property
    def provenance(self) -> Any:
        """What every output of the run says about itself (named as the producer named it)."""
        from ..files.provenance import Provenance

        return Provenance.of(self.recipe, name=self.record.recipe_name or None)

    def pixel_policy(self, *, now: bool) -> Any:
        """The put/clean stages' :class:`~deid_workers.files.triage.PixelPolicy`; None without
        ``--clean-pixels`` and ``--ocr`` (then nothing is triaged and pixels are never looked
        at)."""
        if not (self.record.clean_pixels or self.record.ocr):
            return None
        from ..files.triage import PixelPolicy
        from ..fs.folders import quarantine_folder

        return PixelPolicy(self.record.quarantine or quarantine_folder(self.record.outfolder),
                           self.record.quarantine_groups, now=now,
                           filters=self.record.clean_pixels, ocr=self.record.ocr)

    @property
    def final_stage(self) -> str:
        """The stage whose last batch ends a put/all run: clean with --clean-pixels or --ocr."""
        return final_stage(self.record.clean_pixels, self.record.ocr)

    @cached_property
    def recipe(self) -> Any:
        """The run's recipe, parsed once per process from the texts stored with the run, as
        the producer parsed them (merged in the same order, so the same recipe and digest).
        Each text keeps its file's name, so an error a recipe line meets in a file names the
        author's file and line."""
        from ..recipe import load_recipe, parse_sources

        files = self.record.recipe_files
        sources = [(files[i] if i < len(files) and files[i] else "deid.dicom", text)
                   for i, text in enumerate(self.record.recipe_texts)]
        recipe = parse_sources(sources) if sources else load_recipe()
        if self.record.recipe_sha and recipe.sha256 and recipe.sha256 != self.record.recipe_sha:
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
    store, rec = RunStore.open(conn, run_id, keys=worker_keys())
    if settings.broker_mode and not (settings.input_roots and settings.output_roots):
        raise RunRefused(f"run {run_id}: this worker has no DEID_INPUT_ROOTS and "
                         "DEID_OUTPUT_ROOTS, so it runs nothing")
    check_folders(run_folders(rec), input_roots=settings.input_roots,
                  output_roots=settings.output_roots, run_id=run_id)
    record = RunRecord.of(rec)
    ctx = RunContext(store, record, record.applied_to(settings))
    _contexts[run_id] = ctx
    while len(_contexts) > _CACHE_SIZE:
        _contexts.popitem(last=False)
    return ctx


def refuse(run_id: str, exc: RunRefused) -> None:
    """Say why a run is refused (one ERROR line) and mark it failed with that reason, so the
    producer (or ``--status``) shows it; nothing of the run is read or written here."""
    log.error("%s; refused", exc)
    try:
        # The reason may name a folder: sealed when the run's key is this worker's (not when
        # the refusal is that it is another: its producer could not open it).
        conn = client()
        try:
            keys = worker_keys()
        except ConfigError:
            keys = None
        same = keys is not None and conn.hget(Keys(run_id).run, "key_id") in (
            keys.fingerprint, keys.fingerprint.encode())
        bare = RunStore(conn, run_id, expiry=worker_settings().run_expiry,
                        keys=keys if same else None)
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
