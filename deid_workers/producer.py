"""Submit, wait for and resume runs: the producer side of the pipeline.

The producer never holds the file list. It walks ``--input`` lazily, writes each batch of
relative paths into Redis as it goes, and sends tasks that carry only ``(run_id, batch_no)``.

Why the get (and inspect) stage is a chord with a *generator* header: workers start on batch 0
while the walk is still listing folders, and finalize fires once, after the last batch, joined
by the Redis result backend (crash-safe, in Redis). The generator is ours: :func:`_walk` walks,
stores a batch, and yields its number; the header tasks are tiny immutable signatures
``deid.get(run_id, n)``. :func:`~deid_workers.tasks.dispatch.send_chord` publishes them as
Celery's chord does for a generator header but keeps nothing per task: Celery's own path holds
every signature and one ``AsyncResult`` per batch, which made the producer grow by 80 MB over
a million files.

``put`` batches are not a chord (nothing runs after them); progress and completion come from
the store's counters, and the last put batch marks the run finished. With ``--ids``, the ids
file goes first, in chunks that workers write into the store (:func:`send_ids`,
:mod:`deid_workers.tasks.load`), ahead of the put batches on the same queue.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import redis

from .app import app
from .config import DEFAULT_BATCH_SIZE, DEFAULT_STALL_SECONDS, Settings, auto_batch
from .errors import IdentifiersError, StoreError
from .fs.walk import iter_batches
from .ids.chunks import iter_ids_chunks
from .prepare import Prepared, Submission, input_path, prepare
from .progress import Progress
from .run.client import redis_client
from .run.lifecycle import finish_run
from .run.memory import MemoryWatch, out_of_memory, redis_reason
from .run.plan import final_stage, first_stage
from .run.record import RunRecord
from .run.store import RunStore, new_run_id
from .tasks import dispatch
from .tasks.resend import resend_after_first, resend_after_put

__all__ = ["submit", "resume", "wait", "connect"]

log = logging.getLogger(__name__)

POLL_SECONDS = 0.2
"""How often the producer reads the counters while it waits: cheap (two small reads), and
a small run should not wait half a second for nothing after its last batch."""

RECONNECT_SECONDS = 120.0
"""How long :func:`wait` keeps trying a lost Redis before it gives up (the run goes on)."""

RECONNECT_BACKOFF_MAX = 5.0
"""Longest pause between two reconnection attempts."""

_PROG = "deid-submit"

STALL_SECONDS = float(DEFAULT_STALL_SECONDS)
"""How long a run may show no progress, with nothing queued or taken, before the producer
re-sends what is not done (the workers do the same for runs nobody waits for: tasks/resend.py)."""

CHORD_CHECK_SECONDS = 2.0
"""How often it asks the result backend whether the chord failed (a header batch gave up)."""

IDS_WINDOW = 4
"""Chunks of an ids file left waiting in Redis at most: past that the producer writes the
oldest itself, so Redis never holds much raw text and a run sent before any worker is up
still gets its ids (the producer then writes them all, as it always did)."""

CHORD_RECOVERIES = 2
"""Failed chords the producer answers with a resume before it calls the run failed: a batch
that fails for real fails again, a chord cut by a Redis restart does not."""


def connect(settings: Settings) -> Any:
    """A redis client for the settings' broker, checked with a PING (StoreError if down)."""
    if not settings.broker_url:
        raise StoreError("no broker: set --broker or DEID_BROKER_URL")
    client = redis_client(str(settings.effective_broker_url()), **settings.tls_options())
    try:
        client.ping()
    except Exception as exc:
        raise StoreError(f"cannot reach Redis at {_safe_url(settings.broker_url)}: "
                         f"{type(exc).__name__}") from exc
    return client


def _safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def submit(settings: Settings, sub: Submission | Prepared, client: Any = None, *,
           tick: Callable[[RunStore], object] | None = None) -> RunStore:
    """Create the run, load ids for put, walk the input and enqueue every batch.

    ``sub`` is checked first (:func:`prepare`) unless it was already. Returns as soon as
    everything is enqueued; :func:`wait` follows the run. For an archive that takes a while
    (the walk, an ids file): ``tick(store)`` is called after each batch and each ids chunk
    sent, so the caller can show the run's progress meanwhile.
    """
    prepared = sub if isinstance(sub, Prepared) else prepare(settings, sub)
    try:
        keys = settings.cluster_keys()
        client = client if client is not None else connect(settings)
        settings = _batch_settings(settings, client)
    except BaseException:
        prepared.discard()  # the run never started: no folder of it stays behind
        raise
    sub, recipe, sources = prepared.sub, prepared.recipe, prepared.sources
    ids, ids_fields, quarantine = prepared.ids, prepared.ids_fields, prepared.quarantine
    run_id = new_run_id()
    record = RunRecord(
        action=sub.action,
        input=os.path.abspath(sub.input),
        outfolder=os.path.abspath(sub.outfolder),
        records=os.path.abspath(sub.records),
        overwrite=sub.overwrite,
        print_ids=sub.print_ids,
        recipe_texts=tuple(text for _, text in sources),
        # a recipe error a worker meets names the author's file
        recipe_files=tuple(os.path.basename(name or "") for name, _ in sources),
        recipe_sha=recipe.sha256,
        recipe_name=recipe.name,
        profile=sub.profile,
        settings=RunRecord.run_settings(settings),
        key_location=sub.key_location,
        verify=sub.verify,
        clean_pixels=sub.clean_pixels,
        ocr=sub.ocr,
        ocr_allowlist=prepared.ocr_allowlist[0] if prepared.ocr_allowlist else None,
        ocr_allowlist_name=prepared.ocr_allowlist[1] if prepared.ocr_allowlist else None,
        quarantine_groups=tuple(sub.quarantine_groups),
        layout=sub.layout,
        quarantine=quarantine,
        # a resume cuts the ids file the same way
        ids_path=os.path.abspath(str(sub.ids_path)) if ids is not None else None,
        ids_fields=tuple(ids_fields) if ids is not None and ids_fields is not None else None,
        input_file=sub.input_file,
        embedded=sub.embedded,
        key_created=sub.key_created,
    )
    # Created running, with its chord's id: what sending the first stage would note next is
    # written now, in the same round trip.
    started = _started(sub.action)
    store = RunStore.create(client, run_id, record.spec(), expiry=settings.run_expiry, keys=keys,
                            mutable={"walk_done": False, "stage": first_stage(sub.action),
                                     **started})
    log.info("run %s: %s of %s with recipe %s", run_id, sub.action, input_path(sub), recipe.name)
    with refused_writes(run_id):
        if ids is not None:
            try:
                chunks, items = send_ids(store, ids, tick=tick)
            except IdentifiersError:
                store.purge()  # a bad part further in the file: no put batch was sent
                raise
            log.info("run %s: sent ids of %d items in %d chunks", run_id, items, chunks)
        send_first_stage(store, settings, sub, tick=tick, started=started)
    return store


def _started(action: str) -> dict[str, Any]:
    """The record's fields of a run whose first stage is being sent: running, and for a
    chord (get, inspect, all) its body's task id."""
    fields: dict[str, Any] = {"state": "running"}
    if action != "put":
        fields["finalize_task"] = str(uuid.uuid4())
    return fields


def round_trip_ms(client: Any, pings: int = 2) -> float:
    """Redis' round trip as this process sees it, in milliseconds: the fastest of a few PINGs
    on a connection already open (the fastest, since a busy moment only adds to it)."""
    best = float("inf")
    for _ in range(pings):
        start = time.perf_counter()
        client.ping()
        best = min(best, time.perf_counter() - start)
    return best * 1000


def _batch_settings(settings: Settings, client: Any) -> Settings:
    """``settings`` with the run's batch size decided: the one given (``--batch``,
    ``DEID_BATCH_SIZE``), or, on a cluster, :func:`~deid_workers.config.auto_batch` of the
    round trip measured now (the producer usually runs beside the workers; give a size where
    it does not). The run record keeps the size, so a resume cuts the same batches."""
    if settings.batch_size is not None:
        return settings
    if not settings.broker_mode:  # a private Redis on a unix socket: no network latency
        return settings.with_overrides(batch_size=DEFAULT_BATCH_SIZE)
    rtt = round_trip_ms(client)
    size, tail = auto_batch(rtt)
    if size != DEFAULT_BATCH_SIZE:
        log.info("Redis is %.1f ms away (a round trip): batches of %d files, the last ones of "
                 "%d (--batch or DEID_BATCH_SIZE to choose)", rtt, size, tail)
    return settings.with_overrides(batch_size=size, batch_tail=tail)


@contextlib.contextmanager
def refused_writes(run_id: str) -> Iterator[None]:
    """Redis refusing a write because it is out of memory (``maxmemory`` with
    ``noeviction``, as deploy/ sets it) ends the producer with one line saying so and what to
    do, instead of a traceback."""
    try:
        yield
    except redis.exceptions.ResponseError as exc:
        if not out_of_memory(exc):
            raise
        raise StoreError(f"run {run_id}: {redis_reason(exc, run_id)}") from None


def send_ids(store: RunStore, chunks: Iterable[tuple[str, int]], *,
             skip: Callable[[int], bool] = lambda n: False,
             window: int = IDS_WINDOW,
             tick: Callable[[RunStore], object] | None = None) -> tuple[int, int]:
    """Keep each chunk of an ids file in Redis and send a ``deid.load`` for it; returns
    (chunks, items). Chunks ``skip`` names (a resume: already written) are only counted.

    At most ``window`` chunks wait: when that many are not written yet, the producer writes
    the oldest itself (its ``deid.load`` then finds it done). The count goes into the run
    record last: a put batch waits until that many chunks are written.
    """
    waiting: deque[tuple[int, str]] = deque()
    n = items = 0
    with dispatch.sender("deid.load", store.run_id) as send:
        for text, count in chunks:
            if not skip(n):
                if len(waiting) >= window:
                    done = store.committed("load", [k for k, _ in waiting])
                    waiting = deque(w for w in waiting if w[0] not in done)
                if len(waiting) >= window:
                    oldest, old_text = waiting.popleft()
                    if store.write_ids_chunk(oldest, old_text) is None:
                        raise StoreError(f"run {store.run_id} is gone from Redis")
                store.stage_ids_chunk(n, text)
                send(n)
                waiting.append((n, text))
            n += 1
            items += count
            if tick is not None:
                tick(store)
    store.update(ids_chunks=n, ids_items=items)
    return n, items


def _walk(store: RunStore, sub: Submission, settings: Settings, *,
          skip: Callable[[int], bool] = lambda n: False,
          tick: Callable[[RunStore], object] | None = None) -> Iterator[int]:
    """Walk the input, store every batch, and yield the numbers of batches to send.

    Batch numbers follow the walk order, which is deterministic (sorted names), so a resumed
    walk gives the same batches. The walk's end is recorded before the last number is yielded
    to the chord machinery (which looks one ahead), so finalize always sees ``walk_done``.
    """
    def on_error(rel: str, reason: str) -> None:
        log.warning("not walked: %s: %s", rel, reason)
        store.add_outcome("unlisted", rel, reason, counter="walk:unlisted")

    n = 0
    batches = (iter([[sub.input_file]]) if sub.input_file
               else iter_batches(sub.input, settings.batch_size or DEFAULT_BATCH_SIZE,
                                 tail=settings.batch_tail, on_error=on_error))
    for paths in batches:
        store.add_batch(n, paths)
        if not skip(n):
            yield n
        n += 1
        if tick is not None:
            tick(store)
    store.update(walk_done=True, n_batches=n)


def send_first_stage(store: RunStore, settings: Settings, sub: Submission,
                     *, skip: Callable[[int], bool] = lambda n: False,
                     tick: Callable[[RunStore], object] | None = None,
                     started: dict[str, Any] | None = None) -> None:
    """Send the run's first stage: a chord for get/inspect/all, plain tasks for put.
    ``started``: the fields of :func:`_started` the run already holds (a new run)."""
    run_id = store.run_id
    if started is None:
        started = _started(sub.action)
        store.update(**started)
    if sub.action == "put":
        with dispatch.sender("deid.put", run_id) as send:
            for n in _walk(store, sub, settings, skip=skip, tick=tick):
                send(n)
        rec = store.record()
        finish_run(store, final_stage(bool(rec.get("clean_pixels")), rec.get("ocr")))
        return
    body_id = str(started["finalize_task"])
    dispatch.send_chord("deid.inspect" if sub.action == "inspect" else "deid.get", run_id,
                        _walk(store, sub, settings, skip=skip, tick=tick), "deid.finalize",
                        body_id)


def resume(settings: Settings, run_id: str, client: Any = None) -> tuple[RunStore, str]:
    """Send again what a run has not done; returns (store, what was done in words).

    The walk is redone (it is deterministic), batches already committed are skipped. A run
    whose first stage is complete but whose finalize did not run gets finalize again; for
    ``all``, pending put batches are re-sent. A failed run is taken up again the same way.
    """
    client = client if client is not None else connect(settings)
    store = RunStore.load(client, run_id, keys=settings.cluster_keys())
    rec = store.record()
    if rec.get("state") == "finished":
        return store, "already finished; nothing to do"
    if rec.get("state") == "failed":
        # Its cause may be fixed by now (a full disk, a missing folder): the run goes on from
        # where it stopped, and fails again, with a fresh reason, if the cause is still there.
        store.update(state="running", error=None, finished=None)
    record = RunRecord.of(rec)
    sub = Submission(action=record.action, input=record.input, outfolder=record.outfolder,
                     overwrite=record.overwrite, print_ids=record.print_ids,
                     records=record.records, input_file=record.input_file)
    run_settings = record.applied_to(settings)
    first = first_stage(sub.action)
    done_first = store.done_batches(first)
    walk_done = bool(rec.get("walk_done"))
    n_batches = int(rec.get("n_batches") or 0)
    if first == "put" or not walk_done or len(done_first) < n_batches:
        store.update(state="running")
        if first == "put":
            _resend_ids(store, rec)
        send_first_stage(store, run_settings, sub, skip=done_first.__contains__)
        if first == "put":
            resend_after_put(store, record, int(store.record().get("n_batches") or 0))
        return store, f"re-sent the {first} batches not done ({len(done_first)} were done)"
    return store, resend_after_first(store, record, n_batches)


def _resend_ids(store: RunStore, rec: dict[str, Any]) -> None:
    """Send again the chunks of the run's ids file that are not written (the producer died
    while sending them, or a load failed); the file is cut the same way again."""
    path, total = rec.get("ids_path"), rec.get("ids_chunks")
    done = store.done_batches("load")
    if not path or (total is not None and len(done) >= int(total)):
        return
    fields = rec.get("ids_fields")  # None: a run sent before the fields were chosen
    chunks, _ = send_ids(store, iter_ids_chunks(path, fields=fields), skip=done.__contains__)
    log.warning("run %s: re-sent %d chunks of its ids file", store.run_id, chunks - len(done))


def wait(store: RunStore, *, progress: Progress | None = None, poll: float = POLL_SECONDS,
         health: Callable[[], None] | None = None, timeout: float | None = None,
         reconnect: float = RECONNECT_SECONDS, on_stall: Callable[[], str] | None = None,
         stall_after: float = STALL_SECONDS,
         watch: Callable[[dict[str, Any], dict[str, int]], None] | None = None
         ) -> dict[str, Any]:
    """Follow a run until it is finished or failed; returns the final run record.

    ``watch(record, counters)`` is called each round after the progress bar, with what was
    just read (the CLI prints the workers' warnings from it); a Redis error there waits for
    the next round.

    ``health`` is called each round (embedded mode checks its processes there). A lost
    connection to Redis (a restart, a network blip) is retried with backoff for ``reconnect``
    seconds: the run lives on the workers, not here. Raises StoreError if Redis stays away that
    long, or if it comes back without the run (restarted without persistence).

    ``on_stall`` (the CLI passes :func:`resume`, which re-sends what the store says is not
    done; tasks are idempotent, so that is always safe) is called in two cases:

    - the run has not moved for ``stall_after`` seconds while no task is queued or taken
      anywhere: a task message was lost, which kombu's Redis transport allows when Redis dies
      between a worker's pop of a message and its note in the unacked hash;
    - the chord over the first stage failed, up to :data:`CHORD_RECOVERIES` times: a Redis
      restart can cut the chord's own join (Celery does not retry it) while every batch is
      fine. A batch that fails for real fails again, and then the run is marked failed.

    Every :data:`CHORD_CHECK_SECONDS` it also asks Redis whether it refused a write for lack of
    memory since the wait began (:class:`~deid_workers.run.store.MemoryWatch`): then writes of the
    run are lost, so it raises StoreError saying so and what to do, rather than wait forever.
    """
    started = time.monotonic()
    last_check = last_memory = 0.0
    memory = MemoryWatch(store.client)
    seen: tuple[Any, ...] = ()
    moved = started
    recovered: set[str] = set()  # failed chords already answered by a resume
    committed: dict[str, int] = {}  # batches per stage said at DEBUG
    lost_since: float | None = None
    backoff = poll
    try:
        while True:
            try:
                rec = store.record()
                counters = store.counters()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                now = time.monotonic()
                if lost_since is None:
                    lost_since = now
                    log.warning("run %s: lost the connection to Redis (%s); retrying",
                                store.run_id, type(exc).__name__)
                if now - lost_since > reconnect:
                    raise StoreError(
                        f"run {store.run_id}: Redis unreachable for {reconnect:.0f} s; the "
                        f"workers go on once it is back: follow the run with '{_PROG} --status "
                        f"{store.run_id}' or finish it with '{_PROG} --resume {store.run_id}'"
                    ) from exc
                time.sleep(backoff)
                backoff = min(backoff * 2, RECONNECT_BACKOFF_MAX)
                continue
            if lost_since is not None:
                log.warning("run %s: reconnected to Redis", store.run_id)
                lost_since, backoff = None, poll
            if progress is not None:
                progress.update(rec, counters)
            if watch is not None:
                with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                    watch(rec, counters)
            if log.isEnabledFor(logging.DEBUG):
                _debug_batches(store.run_id, counters, committed)
            if rec.get("state") in ("finished", "failed"):
                return rec
            now = time.monotonic()
            chord_id = rec.get("finalize_task")
            if now - last_memory >= CHORD_CHECK_SECONDS:
                last_memory = now
                full = memory.full()
                if full:  # every worker's write now fails: say so rather than wait forever
                    raise StoreError(
                        f"run {store.run_id}: {full}, so the run cannot go on: purge runs you "
                        f"no longer need ({_PROG} --purge RUN_ID) or raise Redis' maxmemory, then "
                        f"finish it with '{_PROG} --resume {store.run_id}'")
            if (now - last_check >= CHORD_CHECK_SECONDS and chord_id
                    and chord_id not in recovered):
                last_check = now
                if _chord_state(chord_id) == "FAILURE":
                    if on_stall is None or len(recovered) >= CHORD_RECOVERIES:
                        store.set_state("failed", error="a batch failed after its retries")
                        continue
                    # Often not a batch at all but the chord's own join in Redis, cut by a
                    # Redis restart: the store knows what is done, so send the rest again.
                    recovered.add(chord_id)
                    log.warning("run %s: the chord over the first stage failed; re-sending "
                                "what is not done", store.run_id)
                    log.warning("run %s: %s", store.run_id, on_stall())
                    continue
            if (rec.get("stage"), counters) != seen:
                seen, moved = (rec.get("stage"), counters), now
            elif on_stall is not None and now - moved >= stall_after:
                moved = now
                _unstall(store, on_stall, stalled_for=stall_after)
            if health is not None:
                health()
            if timeout is not None and now - started > timeout:
                raise StoreError(f"run {store.run_id}: still running after {timeout:.0f} s")
            time.sleep(poll)
    except StoreError as exc:
        if "unknown to Redis" in str(exc):
            raise StoreError(
                f"run {store.run_id}: its state is gone from Redis (Redis restarted without "
                "persistence, or the run expired or was purged), so it cannot be resumed; "
                "outputs written so far are complete files: start the run again, with "
                "--overwrite to redo them") from exc
        raise
    finally:
        if progress is not None:
            progress.close()


def _debug_batches(run_id: str, counters: dict[str, int], said: dict[str, int]) -> None:
    """At DEBUG, a line each time a stage's committed batches grow (the producer sees batches,
    not files, so this is its finest grain): ``run X: put: 3 batch(es) committed, 300 files``."""
    for stage in ("load", "get", "inspect", "put", "clean"):
        n = counters.get(f"{stage}:batches", 0)
        if n != said.get(stage, 0):
            said[stage] = n
            what = "items" if stage == "load" else "files"
            log.debug("run %s: %s: %d batch(es) committed, %d %s", run_id, stage, n,
                      counters.get(f"{stage}:{what}", 0), what)


def _unstall(store: RunStore, on_stall: Callable[[], str], *, stalled_for: float) -> None:
    """Call ``on_stall`` if no message waits in any deid queue and none is taken by a worker;
    a Redis error only postpones the check to the next stall."""
    from .app import QUEUES
    from .tasks.compat import queue_lengths

    try:
        if any(queue_lengths(store.client, QUEUES).values()):
            return
        log.warning("run %s: no progress for %.0f s and no task queued or taken: a task "
                    "message was lost; re-sending what is not done", store.run_id, stalled_for)
        log.warning("run %s: %s", store.run_id, on_stall())
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        log.warning("run %s: could not check for lost tasks (%s)", store.run_id,
                    type(exc).__name__)


def _chord_state(task_id: str) -> str | None:
    """The chord body's state in the result backend; None when the backend is unreachable
    (the next round asks again)."""
    try:
        return str(app.AsyncResult(task_id).state)
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return None
