"""``deid.finalize``: the chord body after every get (or inspect) batch of a run.

It runs once, after the whole header: it streams the identifiers out of Redis into
``deid-ids.pkl`` and ``deid-ids.json`` in the run's records folder (never the output tree:
mode 0600, and an earlier run's files are kept unless ``--overwrite``), or writes the inspect
report in the output folder, then, for
``--action all``, sends the put batches. Doing this on a worker, not in the producer, lets
``--no-wait`` runs (and a producer that died) finish on their own.

A large export is sharded: the entity sets are split over :func:`export_shards` ``deid.export``
tasks (finalize runs shard 0 itself), each writes a piece, and the task that commits the last
piece joins them into the two files and carries on where finalize would have. Why: one process
exporting a million files' identifiers takes about a minute while the rest of the cluster idles.

    finalize ──┬── shard 0 (in finalize) ──┐
               ├── deid.export shard 1 ────┤  the last to commit joins the pieces
               └── deid.export shard K-1 ──┘  → ids files → put batches, or finished
"""

from __future__ import annotations

import errno
import os
from typing import Any

from celery.utils.log import get_task_logger

from ..app import RETRY_ON, deid_task
from ..fs.folders import records_folder
from ..ids.export import IDS_JSON, IDS_PICKLE, IdsPiece, IdsWriter, join_pieces, remove_pieces
from ..run.lifecycle import fail_run, finish_run
from ..run.names import ENTITY_SETS
from ..run.plan import first_stage
from ..run.report import write_inspect_report
from ..run.store import RunStore
from .context import RunContext, run_context
from .dispatch import send_many

__all__ = ["finalize", "export", "NotReady", "FINALIZE_POLL", "export_shards"]

log = get_task_logger(__name__)

FINALIZE_POLL = 5
"""Seconds between checks when finalize fires before every batch of the first stage is done."""


class NotReady(Exception):
    """The chord fired before every batch committed: a batch that ran twice (its worker died
    after storing its result, before acknowledging it) is counted twice by the chord. Finalize
    then waits for the store's own count, which counts each batch once."""


def export_shards(files: int, per_shard: int) -> int:
    """How many shards export the identifiers of ``files`` files, about ``per_shard`` each: a
    power of two (each shard takes whole entity sets) from 1 to
    :data:`~deid_workers.run.store.ENTITY_SETS`."""
    shards = 1
    while shards * 2 <= min(ENTITY_SETS, files // per_shard):
        shards *= 2
    return shards


def records(ctx: RunContext) -> str:
    """The folder of the run's identifiers (a run recorded before it had one: the default)."""
    return ctx.record.records or records_folder(ctx.record.outfolder)


def check_replace(ctx: RunContext) -> None:
    """Refuse (FileExistsError) to replace ids files an earlier run wrote, unless
    ``--overwrite``: users edit ``deid-ids.json`` between get and put. Files this run wrote
    (a redelivered finalize) are its own and are rewritten."""
    if ctx.record.overwrite:
        return
    for name in (IDS_PICKLE, IDS_JSON):
        try:
            older = os.stat(os.path.join(records(ctx), name)).st_mtime < ctx.record.created
        except FileNotFoundError:
            continue
        if older:
            raise FileExistsError(errno.EEXIST, f"{name} of an earlier run is in the records "
                                  "folder (give --overwrite to replace it)")


def write_ids(run_id: str) -> tuple[str, str, int]:
    """Stream the run's identifiers into the ids files; returns (pkl, json, entities)."""
    ctx = run_context(run_id)
    check_replace(ctx)
    writer = IdsWriter(records(ctx))
    n = _write_entities(writer, ctx.store)
    return str(writer.pkl_path), str(writer.json_path), n


def _piece_name(run_id: str, shard: int) -> str:
    return f"deid-ids.{run_id}.{shard}"


def _piece_names(run_id: str, shards: int) -> list[str]:
    return [_piece_name(run_id, n) for n in range(shards)]


def write_piece(run_id: str, shard: int, shards: int) -> int:
    """Write export shard ``shard`` of ``shards`` as a piece; returns its entities."""
    ctx = run_context(run_id)
    return _write_entities(IdsPiece(records(ctx), _piece_name(run_id, shard)), ctx.store,
                           shard, shards)


def _write_entities(writer: IdsWriter, store: RunStore, part: int = 0, parts: int = 1) -> int:
    """Stream the entities of shard ``part`` of ``parts`` through ``writer``; returns them."""
    n = 0
    with writer:
        for entity, items in store.iter_ids_json(part, parts):
            writer.add_entity_json(entity, items)
            n += 1
    return n


def run_finalize(run_id: str, *, send_puts: Any = None, send_shards: Any = None) -> dict[str, int]:
    """The task body, callable without Celery; ``send_puts(run_id, batches)`` sends put batches,
    ``send_shards(run_id, shards, count)`` the export shards other than 0.

    It decides on one snapshot of the run (record, counters, committed batches: one round
    trip), since on a cluster each read is a network latency while the whole cluster waits."""
    ctx = run_context(run_id)
    store = ctx.store
    first = first_stage(ctx.record.action)
    view = store.snapshot("finalize", first, "export", "put", "ocr")
    rec = view.record
    if rec.get("state") in ("finished", "failed") or view.done["finalize"]:
        return {"already_done": 1}  # a redelivered or duplicate finalize
    n_batches = int(rec.get("n_batches") or store.batch_count())
    done = len(view.done[first])
    if not rec.get("walk_done") or done < n_batches:
        raise NotReady(f"run {run_id}: {done} of {n_batches} {first} batches done")
    if ctx.record.action == "inspect" and ctx.record.ocr:
        read = len(view.done["ocr"])
        if read < n_batches:  # the report holds what OCR found: wait for every ocr batch
            raise NotReady(f"run {run_id}: {read} of {n_batches} ocr batches done")
    if ctx.record.action in ("get", "all") and not ctx.record.print_ids:
        # The count is kept with the run, so a redelivered finalize splits the same way.
        shards = int(rec.get("export_shards") or 0) or export_shards(
            view.counters.get("get:valid", 0), ctx.settings.export_shard_files)
        store.update(state="finalize", stage="finalize", export_shards=shards)
        if shards > 1:
            exported = view.done["export"]
            (send_shards or send_export)(run_id, [n for n in range(1, shards) if n not in exported],
                                         shards)
            return run_export(run_id, 0, shards, send_puts=send_puts, exported=exported)
        pkl, js, entities = write_ids(run_id)
        log.info("run %s: identifiers of %d entities exported", run_id, entities)
        return _end_finalize(ctx, n_batches, {"batches": n_batches, "entities": entities},
                             send_puts, view.done["put"], ids_pkl=pkl, ids_json=js)
    store.update(state="finalize", stage="finalize")
    if ctx.record.action == "inspect":
        tsv, js = write_inspect_report(store, ctx.record.outfolder, n_batches,
                                       ocr=bool(ctx.record.ocr))
        store.update(report_tsv=tsv, report_json=js)
    return _end_finalize(ctx, n_batches, {"batches": n_batches}, send_puts, view.done["put"])


def run_export(run_id: str, shard: int, shards: int, *, send_puts: Any = None,
               exported: set[int] | None = None) -> dict[str, int]:
    """Write one export shard; the task that commits the last one joins the pieces and
    finishes what finalize started. ``exported``: the shards committed, when the caller
    (finalize, for shard 0) has just read them.

    The commit's count is atomic, so of two shards finishing together only one joins. A
    redelivered shard that finds every shard committed joins too: its earlier delivery may
    have died while joining (rarely, two joins then run; both publish the same files).
    """
    ctx = run_context(run_id)
    store = ctx.store
    if exported is None:
        view = store.snapshot("finalize", "export")
        if view.done["finalize"]:
            return {"already_done": 1}
        exported = view.done["export"]
    if shard in exported:
        entities = 0  # written by an earlier delivery; its count is in the counters already
    else:
        entities = write_piece(run_id, shard, shards)
    committed = store.commit_batch("export", shard, {"entities": entities}).done
    if committed < shards:
        return {"shard": shard, "entities": entities}
    names = _piece_names(run_id, shards)
    try:
        check_replace(ctx)
        pkl, js = join_pieces(records(ctx), names)
    except FileNotFoundError:
        if store.snapshot("finalize").done["finalize"]:
            return {"already_done": 1}  # another join finished and removed the pieces
        raise
    view = store.snapshot("put")
    total = view.counters.get("export:entities", 0)
    log.info("run %s: identifiers of %d entities exported in %d shards", run_id, total, shards)
    n_batches = int(view.record.get("n_batches") or store.batch_count())
    result = _end_finalize(ctx, n_batches, {"batches": n_batches, "entities": total}, send_puts,
                           view.done["put"], ids_pkl=str(pkl), ids_json=str(js))
    remove_pieces(records(ctx), names)
    return result


def _end_finalize(ctx: RunContext, n_batches: int, result: dict[str, int],
                  send_puts: Any, put_done: set[int], **fields: Any) -> dict[str, int]:
    """Finalize's end, once its export or report is written: note ``fields`` (the ids files'
    paths) in the run record, then send the put batches not in ``put_done`` (committed, as
    read with the snapshot) for ``--action all``, or mark the run finished."""
    store, run_id = ctx.store, ctx.store.run_id
    if ctx.record.action == "all":
        # Put is sent before finalize commits: a finalize that dies in between is redelivered
        # and sends again (put batches are idempotent), rather than leaving put never sent.
        store.update(state="put", stage="put", **fields)
        pending = [n for n in range(n_batches) if n not in put_done]
        (send_puts or send_put)(run_id, pending)
        result["put_batches"] = len(pending)
        store.commit_batch("finalize", 0, {})
        if not pending:  # put batches just sent cannot be done yet: nothing to finish
            finish_run(store, ctx.final_stage)
    else:
        if fields:
            store.update(**fields)
        store.commit_batch("finalize", 0, {})
        store.set_state("finished")
    log.info("run %s finalized (%s, %d batches)", run_id, ctx.record.action, n_batches)
    return result


def send_export(run_id: str, shards: list[int], count: int) -> None:
    """Send export shards ``shards`` (of ``count``) over a single broker connection."""
    send_many("deid.export", [(run_id, n, count) for n in shards])


def send_put(run_id: str, batches: list[int]) -> None:
    """Send one put task per batch over a single broker connection."""
    send_many("deid.put", [(run_id, n) for n in batches])


@deid_task("deid.finalize")
def finalize(self: Any, run_id: str) -> dict[str, int]:
    """Export ids or the inspect report, then start put for ``--action all``."""
    try:
        return run_finalize(run_id)
    except NotReady as exc:
        log.info("%s; checking again in %d s", exc, FINALIZE_POLL)
        limit = max(1, run_context(run_id).settings.run_expiry // FINALIZE_POLL)
        raise self.retry(exc=exc, countdown=FINALIZE_POLL, max_retries=limit) from None
    except RETRY_ON:
        raise
    except Exception as exc:
        # Left to the producer's watch of the chord, the run was never marked failed with
        # --no-wait, and a waiting producer's resume re-sent finalize to fail again.
        fail_finalize(run_context(run_id), exc, what="finalize")
        raise


@deid_task("deid.export")
def export(self: Any, run_id: str, shard: int, shards: int) -> dict[str, int]:
    """One shard of a sharded ids export (the last one also joins; see the module doc)."""
    try:
        return run_export(run_id, shard, shards)
    except RETRY_ON:
        raise
    except Exception as exc:
        fail_finalize(run_context(run_id), exc, what="identifiers export")
        raise


def fail_finalize(ctx: RunContext, exc: BaseException, *, what: str) -> None:
    """Mark the run failed by ``what``'s error, in one line without paths or values.

    The pieces of a sharded export go (hidden files of identifiers are easy to overlook) and
    its commits are forgotten, so a resume, once the cause is fixed, writes every shard again.
    """
    store = ctx.store
    shards = int(store.record().get("export_shards") or 1)
    if shards > 1:
        store.forget_stage("export")
        remove_pieces(records(ctx), _piece_names(store.run_id, shards))
    fail_run(store, what, exc)
