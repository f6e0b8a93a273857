"""Settings, built once from the environment (and CLI flags); nobody else reads ``os.environ``.

Precedence is CLI flag, then ``DEID_*`` variable, then the default below. Tests build a
:class:`Settings` from a plain dict instead of patching the environment. A run's settings are
stored with the run in Redis, so every worker of a cluster applies the same ones.
"""

from __future__ import annotations

import hashlib as _hashlib
import math
import os
import secrets as _secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = [
    "Settings",
    "DEFAULT_RUN_EXPIRY",
    "DEFAULT_BATCH_SIZE",
    "auto_batch",
    "DEFAULT_EXPORT_SHARD_FILES",
    "DEFAULT_DATE_SHIFT_MIN",
    "DEFAULT_DATE_SHIFT_MAX",
    "DEFAULT_MAX_FILE_BYTES",
    "DEFAULT_MAX_PIXEL_BYTES",
    "load_secret",
    "default_secret_path",
    "default_demo_path",
]

DEFAULT_BATCH_SIZE = 100
"""Files per task. Bigger batches spend less on messaging per file; 100 takes most of that
gain (benchmarks/measurements.md) while work still spreads over the workers of a small run and
a batch that must be redone (a crashed worker, a poison file) stays short. Where Redis is a
network latency away, a run's batches grow with it unless a size is given (:func:`auto_batch`)."""

BATCH_ROUND_TRIPS = 6
"""Redis round trips a batch of files waits for in ``--action all``, whatever its size: get's
start, commit and chord, put's start and commit, and about one for taking it
(``python -m benchmarks.roundtrips``)."""

BATCH_FILE_MS = 1.0
"""Work per file of ``--action all`` that :func:`auto_batch` counts on, in milliseconds: small
files on a fast core (about 2 ms on the 2-vCPU VM of benchmarks/measurements.md). Lower means
bigger batches, so the latency's share stays under :data:`BATCH_LATENCY_SHARE` on faster CPUs."""

BATCH_LATENCY_SHARE = 0.05
"""The share of a batch's time its fixed round trips may take when :func:`auto_batch` sizes it."""

MAX_AUTO_BATCH = 500
"""The largest batch :func:`auto_batch` picks: batches count files, not bytes, and a batch of
big multi-frame files (seconds each) must stay well inside ``DEID_TASK_TIME_LIMIT``."""


def auto_batch(rtt_ms: float) -> tuple[int, int]:
    """``(batch size, tail size)`` for a run whose Redis is ``rtt_ms`` away (a round trip).

    Each batch waits for :data:`BATCH_ROUND_TRIPS` round trips whatever its size, so with the
    round trip at a few milliseconds batches of :data:`DEFAULT_BATCH_SIZE` spend a tenth of
    their time or more waiting for the network: the size grows until those round trips are
    :data:`BATCH_LATENCY_SHARE` of the batch's work, up to :data:`MAX_AUTO_BATCH`. Big batches
    balance badly at the end of a run, so the walk cuts its last files (under two batches'
    worth) into batches of the default size again (the tail size; 0 when the size is the
    default). Near Redis (a LAN, a unix socket) the default stays.
    """
    wanted = math.ceil(BATCH_ROUND_TRIPS * max(0.0, rtt_ms)
                       / (BATCH_LATENCY_SHARE * BATCH_FILE_MS))
    size = max(DEFAULT_BATCH_SIZE, min(MAX_AUTO_BATCH, wanted))
    return size, (DEFAULT_BATCH_SIZE if size > DEFAULT_BATCH_SIZE else 0)

DEFAULT_EXPORT_SHARD_FILES = 1000
"""Files' identifiers per shard of the ids export (finalize): well above what a shard task
costs itself (benchmarks/measurements.md), so a small run exports in one piece and a million
files in 16 (the most: the entity sets a run keeps)."""

DEFAULT_DATE_SHIFT_MIN = -365
DEFAULT_DATE_SHIFT_MAX = -1
"""``deid_func:date_shift`` picks a per-patient shift in days inside this closed range; never 0,
so a shifted date is never the original one."""

DEFAULT_VISIBILITY_TIMEOUT = 3600
"""Seconds Redis waits before redelivering an unacknowledged task. Must exceed the longest
batch, else a slow batch runs twice (harmless, tasks are idempotent, but wasteful)."""

DEFAULT_TASK_TIME_LIMIT = 1800
"""Hard limit of one batch, below the visibility timeout so a hung batch dies before it is
redelivered to a second worker."""

DEFAULT_STALL_SECONDS = 30
"""Seconds a running run may show no progress while no task is queued or taken anywhere
before what it has not done is sent again (by a waiting deid-submit, and by the workers'
liveness thread for runs nobody waits for): a task message can be lost when Redis dies
between a worker's pop of it and kombu's note of it as taken."""

DEFAULT_LIVENESS_TTL = 20
"""Seconds a worker's liveness key lives unless its main process refreshes it (every quarter
of this). A worker silent for longer is presumed dead and the batches it took go back to the
queues (:mod:`deid_workers.tasks.liveness`); a worker cut off for longer has its batches redone
elsewhere, and its own late results are dropped. Recovery from a dead node takes about this
plus a quarter of it."""

DEFAULT_PREFETCH = 2
"""Batches each pool process of a worker holds: the one it runs and one taken ahead. Taking a
batch costs the worker's main process Redis round trips (take, note), which the one taken
ahead hides behind the running batch instead of leaving the pool process idle for them
(``python -m benchmarks --netem``; acks and events go out beside, tasks/offloop.py). Set 1
when single batches take minutes (huge multi-frame files): near the end of a run a batch
taken ahead waits behind the slow one while other workers may be idle. A dead worker's
batches, those taken ahead included, go back to the queues within a liveness TTL or so
(tasks/liveness.py)."""

DEFAULT_MAX_RETRIES = 3
DEFAULT_RUN_EXPIRY = 2 * 24 * 3600
"""Seconds a run's state (including its sealed identifiers) stays in Redis after its last
update: two days, so a run whose producer died on a Friday night can still be resumed on
Saturday, and identifiers do not outlive a run by a week (it was 7 days). A run must finish
(or be resumed) within this time of its last write; ``--purge`` removes it at once."""

DEFAULT_MAX_FILE_BYTES = 1 << 30
"""Largest file a worker reads (``DEID_MAX_FILE_BYTES``, 1 GiB), judged before reading. A read
holds the whole file in memory and put holds its encoded output beside it, so a file costs
about twice its size; the shipped worker pods are limited to 1 GiB (deploy/k8s/worker.yaml)
and could not write a bigger file anyway. Raise it together with the workers' memory."""

DEFAULT_MAX_PIXEL_BYTES = 1 << 30
"""Largest image a worker decodes to clean its pixels (``DEID_MAX_PIXEL_BYTES``): rows x
columns x frames x samples x bits allocated, in bytes (1 GiB). Cleaning holds the decoded
pixels, the scrubbed copy and its bytes at once, so an image costs about three times its
decoded size; a 1 GiB image is already past what a shipped 1 GiB worker pod can hold, and past
any single ultrasound, CT or MR series' frame set we have seen in one file (a long 1080p RGB
cine of 500 frames is 3 GB and would need bigger workers). Checked before any allocation."""

_ENV_PREFIX = "DEID_"


def _parse_bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    """Every tunable of deid-workers, with the environment variable that sets it."""

    broker_url: str | None = None  # DEID_BROKER_URL; None means embedded mode
    # DEID_BATCH_SIZE: files per task; None: the producer picks it per run (config.auto_batch)
    batch_size: int | None = None
    # DEID_BATCH_TAIL: the walk's last files (under two batches' worth) are cut into batches of
    # this many (0: no); auto_batch sets it with a batch size above the default
    batch_tail: int = 0
    workers: int | None = None  # DEID_WORKERS; embedded mode only, None = number of cores
    secret: bytes | None = field(default=None, repr=False)  # DEID_SECRET
    # DEID_SECRET_FILE: a file holding the key (how k8s and compose mount it); in embedded mode
    # also where a generated key is kept (default ~/.config/deid-workers/secret.key)
    secret_file: str | None = None
    # DEID_INPUT_ROOTS / DEID_OUTPUT_ROOTS: the folders (os.pathsep-separated) a worker may read
    # from and write to; a run pointing elsewhere is refused. Required in broker mode.
    input_roots: tuple[str, ...] = ()
    output_roots: tuple[str, ...] = ()
    # DEID_REDIS_PASSWORD_FILE: the broker password, read from a file and put into the broker
    # URL's user part (redis://USER@host/0), so it is never an environment value or argument.
    redis_password_file: str | None = None
    # DEID_REDIS_TLS_CA / _CERT / _KEY: certificates for a rediss:// broker (the CA that signed
    # the server's certificate; a client certificate and key when Redis asks for one).
    redis_tls_ca: str | None = None
    redis_tls_cert: str | None = None
    redis_tls_key: str | None = None
    entity_field: str = "PatientID"  # DEID_ENTITY_FIELD
    item_field: str = "SOPInstanceUID"  # DEID_ITEM_FIELD
    date_shift_min: int = DEFAULT_DATE_SHIFT_MIN  # DEID_DATE_SHIFT_MIN
    date_shift_max: int = DEFAULT_DATE_SHIFT_MAX  # DEID_DATE_SHIFT_MAX
    visibility_timeout: int = DEFAULT_VISIBILITY_TIMEOUT  # DEID_VISIBILITY_TIMEOUT
    task_time_limit: int = DEFAULT_TASK_TIME_LIMIT  # DEID_TASK_TIME_LIMIT
    max_retries: int = DEFAULT_MAX_RETRIES  # DEID_MAX_RETRIES
    liveness_ttl: int = DEFAULT_LIVENESS_TTL  # DEID_LIVENESS_TTL
    stall_seconds: int = DEFAULT_STALL_SECONDS  # DEID_STALL_SECONDS
    prefetch: int = DEFAULT_PREFETCH  # DEID_PREFETCH
    run_expiry: int = DEFAULT_RUN_EXPIRY  # DEID_RUN_EXPIRY
    export_shard_files: int = DEFAULT_EXPORT_SHARD_FILES  # DEID_EXPORT_SHARD_FILES
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES  # DEID_MAX_FILE_BYTES
    max_pixel_bytes: int = DEFAULT_MAX_PIXEL_BYTES  # DEID_MAX_PIXEL_BYTES
    # DEID_QUARANTINE: --clean-pixels' folder for held-back files; None = the output folder's
    # sibling <outfolder>-quarantine. The shipped images set a mounted one (compose, k8s).
    quarantine: str | None = None
    message_level: str = "INFO"  # MESSAGELEVEL, as deid reads it
    log_json: bool = False  # DEID_LOG_JSON
    # DEID_FAST_IO=0: read with dcmread and write with save_as, not deid-workers' own reader and
    # encoder (the same datasets and bytes; see dicom/compat.py). On by default.
    fast_io: bool = True
    # DEID_OFFLOOP=0: a worker's acks and task events are sent by Celery's own event loop, not
    # by the thread beside it (tasks/offloop.py; kombu and Celery as they ship). On by default.
    offloop: bool = True
    # DEID_TEST_CRASH_ON: tests only. A worker SIGKILLs itself on any file whose relative path
    # contains this text, so the suite can prove poison-file quarantine with a real crash.
    test_crash_on: str | None = None
    # DEID_TEST_HANG_ON: tests only. A worker sleeps forever on any file whose relative path
    # contains this text (a decoder stuck in a loop); "hard:<text>" also ignores the soft time
    # limit, as a hang inside C code does, so only the hard limit's kill ends it.
    test_hang_on: str | None = None
    # DEID_TEST_OCR_MISS: tests only. The clean stage blacks out none of the OCR boxes of any
    # file whose relative path contains this text (a redaction that missed its text), so the
    # suite can prove with real OCR that verification quarantines it.
    test_ocr_miss: str | None = None

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, **overrides: Any
    ) -> Settings:
        """Build settings from ``env`` (default ``os.environ``), then apply non-None overrides."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = "MESSAGELEVEL" if f.name == "message_level" else _ENV_PREFIX + f.name.upper()
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            values[f.name] = _convert(name, f.name, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with the given (non-None) values replaced; validated."""
        new = replace(self, **{k: v for k, v in overrides.items() if v is not None})
        new.validate()
        return new

    def validate(self) -> None:
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError("--batch / DEID_BATCH_SIZE: expected a positive integer "
                              "(files per task)")
        if self.batch_tail < 0:
            raise ConfigError("DEID_BATCH_TAIL: expected 0 or a positive integer")
        if self.export_shard_files < 1:
            raise ConfigError("DEID_EXPORT_SHARD_FILES: expected a positive integer")
        if self.max_file_bytes < 1:
            raise ConfigError("DEID_MAX_FILE_BYTES: expected a positive integer")
        if self.max_pixel_bytes < 1:
            raise ConfigError("DEID_MAX_PIXEL_BYTES: expected a positive integer")
        if self.workers is not None and self.workers < 1:
            raise ConfigError("DEID_WORKERS: expected a positive integer")
        if self.date_shift_min > self.date_shift_max:
            raise ConfigError("DEID_DATE_SHIFT_MIN: must not exceed DEID_DATE_SHIFT_MAX")
        if self.date_shift_min <= 0 <= self.date_shift_max and self.date_shift_min == self.date_shift_max:
            raise ConfigError("DEID_DATE_SHIFT_MIN: a shift range of only 0 leaves dates unchanged")
        if self.prefetch < 1:
            raise ConfigError("DEID_PREFETCH: expected a positive integer")
        if self.liveness_ttl < 1:
            raise ConfigError("DEID_LIVENESS_TTL: expected a positive integer (seconds)")
        if self.stall_seconds < 1:
            raise ConfigError("DEID_STALL_SECONDS: expected a positive integer (seconds)")
        for name, roots in (("DEID_INPUT_ROOTS", self.input_roots),
                            ("DEID_OUTPUT_ROOTS", self.output_roots)):
            if any(not os.path.isabs(r) for r in roots):
                raise ConfigError(f"{name}: expected absolute folders separated by "
                                  f"'{os.pathsep}'")
        if self.task_time_limit >= self.visibility_timeout:
            raise ConfigError(
                "DEID_TASK_TIME_LIMIT: must be below DEID_VISIBILITY_TIMEOUT, "
                "else a hung batch is redelivered while it still runs"
            )

    @property
    def broker_mode(self) -> bool:
        """A cluster (or the embedded one's workers): keys and roots must be configured."""
        return bool(self.broker_url)

    def resolve_secret(self, *, create: bool | None = None) -> tuple[bytes, str | None]:
        """The cluster key and the file it came from (None when from ``DEID_SECRET``), checked
        (:func:`~deid_workers.keys.check_secret`).

        ``create`` (default: outside broker mode) makes a random key in ``DEID_SECRET_FILE``
        or the default file when there is none; in broker mode a missing key is a
        :class:`ConfigError`: each process minting its own would give one patient different
        pseudonyms on different workers.
        """
        from .keys import check_secret

        if self.secret:
            return check_secret(self.secret, "DEID_SECRET"), None
        create = not self.broker_mode if create is None else create
        path = Path(self.secret_file) if self.secret_file else default_secret_path()
        if not create and not self.secret_file:
            raise ConfigError("DEID_SECRET_FILE: no cluster key configured; every process of a "
                              "cluster needs the same key (a file, or DEID_SECRET)")
        try:
            key = load_secret(path) if create else path.read_bytes()
        except FileNotFoundError:
            raise ConfigError(f"DEID_SECRET_FILE: {path} does not exist") from None
        except OSError as exc:
            raise ConfigError(f"DEID_SECRET_FILE: cannot read {path} "
                              f"({exc.strerror or type(exc).__name__})") from None
        return check_secret(key, f"DEID_SECRET_FILE {path}"), str(path)

    def cluster_keys(self, *, create: bool | None = None) -> Any:
        """The :class:`~deid_workers.keys.ClusterKeys` of this process's key (cached per key)."""
        key, _ = self.resolve_secret(create=create)
        return _keys_of(key)

    def require_worker_config(self) -> None:
        """What a broker-mode worker must have before it starts: the cluster key and the
        folders it may touch. :class:`ConfigError` names what is missing."""
        self.resolve_secret(create=False)
        for name, roots in (("DEID_INPUT_ROOTS", self.input_roots),
                            ("DEID_OUTPUT_ROOTS", self.output_roots)):
            if not roots:
                raise ConfigError(f"{name}: not set; a worker needs the folders it may "
                                  f"{'read' if 'INPUT' in name else 'write'} "
                                  f"(absolute, separated by '{os.pathsep}')")

    def effective_broker_url(self) -> str | None:
        """The broker URL with the password of ``DEID_REDIS_PASSWORD_FILE`` in it (the URL's
        own password otherwise)."""
        url = self.broker_url
        if not url or not self.redis_password_file:
            return url
        try:
            with open(self.redis_password_file, encoding="utf-8") as fh:
                password = fh.read().strip()
        except OSError as exc:
            raise ConfigError(f"DEID_REDIS_PASSWORD_FILE: cannot read {self.redis_password_file} "
                              f"({exc.strerror or type(exc).__name__})") from None
        from urllib.parse import quote, urlsplit, urlunsplit

        parts = urlsplit(url)
        if not parts.hostname:
            raise ConfigError("DEID_REDIS_PASSWORD_FILE: the broker URL has no host")
        user = quote(parts.username or "", safe="")
        netloc = f"{user}:{quote(password, safe='')}@{parts.hostname}"
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    def tls_options(self) -> dict[str, Any]:
        """redis-py / kombu SSL options for a ``rediss://`` broker (empty for any other)."""
        if not (self.broker_url or "").startswith("rediss://"):
            return {}
        import ssl

        options: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
        for name, value in (("ssl_ca_certs", self.redis_tls_ca),
                            ("ssl_certfile", self.redis_tls_cert),
                            ("ssl_keyfile", self.redis_tls_key)):
            if value:
                options[name] = value
        return options


_KEYS_CACHE: dict[bytes, Any] = {}


def _keys_of(key: bytes) -> Any:
    from .keys import ClusterKeys

    digest = _hashlib.sha256(key).digest()
    if digest not in _KEYS_CACHE:
        _KEYS_CACHE.clear()  # one key per process, in practice
        _KEYS_CACHE[digest] = ClusterKeys.derive(key)
    return _KEYS_CACHE[digest]


_INT_FIELDS = {
    "batch_size", "batch_tail", "workers", "date_shift_min", "date_shift_max",
    "visibility_timeout",
    "task_time_limit", "max_retries", "run_expiry", "export_shard_files", "liveness_ttl",
    "stall_seconds",
    "prefetch", "max_file_bytes", "max_pixel_bytes",
}


def _convert(env_name: str, field_name: str, raw: str) -> Any:
    if field_name in _INT_FIELDS:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{env_name}: expected an integer") from None
    if field_name == "secret":
        return raw.encode("utf-8")
    if field_name in ("input_roots", "output_roots"):
        return tuple(os.path.realpath(p) if os.path.isabs(p) else p
                     for p in raw.split(os.pathsep) if p.strip())
    if field_name in ("log_json", "fast_io", "offloop"):
        return _parse_bool(raw)
    if field_name == "message_level":
        return raw.strip().upper()
    return raw


def default_secret_path() -> Path:
    """``$XDG_CONFIG_HOME/deid-workers/secret.key`` (``~/.config`` when unset)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "deid-workers" / "secret.key"


def default_demo_path() -> Path:
    """Where deid-submit keeps the demo study it runs on without ``--input``:
    ``$XDG_CACHE_HOME/deid-workers/dicom-cookies`` (``~/.cache`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "deid-workers" / "dicom-cookies"


def load_secret(path: Path) -> bytes:
    """Read the key at ``path``, creating a random one (mode 0600) the first time.

    Written under a temporary name and linked into place, so the file appears whole and two
    processes starting at once agree on one key (the second link fails and reads the first
    one's); the creation is said once, in one WARNING line naming the file.
    """
    try:
        data = path.read_bytes().strip()
        if data:
            return data
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = _secrets.token_hex(32).encode("ascii")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(key + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, path)
    except FileExistsError:
        return path.read_bytes().strip()
    finally:
        os.unlink(tmp)
    import logging

    logging.getLogger(__name__).warning(
        "Created a new secret key in %s (mode 0600). Keep it: runs with the same key give a "
        "patient the same pseudonyms; whoever holds it can recompute them.", path)
    return key
