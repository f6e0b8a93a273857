"""Settings, built once from the environment (and CLI flags); nobody else reads ``os.environ``.

Precedence is CLI flag, then ``DEID_*`` variable, then the default below. Tests build a
:class:`Settings` from a plain dict instead of patching the environment. A run's settings are
stored with the run in Redis, so every worker of a cluster applies the same ones.
"""

from __future__ import annotations

import os
import secrets as _secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = [
    "Settings",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_EXPORT_SHARD_FILES",
    "DEFAULT_DATE_SHIFT_MIN",
    "DEFAULT_DATE_SHIFT_MAX",
    "DEFAULT_MAX_FILE_BYTES",
    "DEFAULT_MAX_PIXEL_BYTES",
    "load_secret",
    "default_secret_path",
]

DEFAULT_BATCH_SIZE = 100
"""Files per task. Measured with benchmarks/ (2 workers, 2,106 small files, ``--action all``):
25 / 50 / 100 / 200 files gave 856 / 904 / 971 / 1,008 files/s once a file cost about a
millisecond, as messaging became a bigger share of a batch. 100 takes most of that gain while
work still spreads over the workers of a small run and a batch that must be redone (a crashed
worker, a poison file) stays short."""

DEFAULT_EXPORT_SHARD_FILES = 1000
"""Files' identifiers per shard of the ids export (finalize), about 65 ms of one worker's time:
well above the few ms a shard task costs, so a small run exports in one piece and a million
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

DEFAULT_MAX_RETRIES = 3
DEFAULT_RUN_EXPIRY = 7 * 24 * 3600
"""Seconds a run's state (including identifiers) stays in Redis after its last update."""

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
    batch_size: int = DEFAULT_BATCH_SIZE  # DEID_BATCH_SIZE
    workers: int | None = None  # DEID_WORKERS; embedded mode only, None = number of cores
    secret: bytes | None = field(default=None, repr=False)  # DEID_SECRET
    secret_file: str | None = None  # DEID_SECRET_FILE; where the generated key lives
    entity_field: str = "PatientID"  # DEID_ENTITY_FIELD
    item_field: str = "SOPInstanceUID"  # DEID_ITEM_FIELD
    date_shift_min: int = DEFAULT_DATE_SHIFT_MIN  # DEID_DATE_SHIFT_MIN
    date_shift_max: int = DEFAULT_DATE_SHIFT_MAX  # DEID_DATE_SHIFT_MAX
    visibility_timeout: int = DEFAULT_VISIBILITY_TIMEOUT  # DEID_VISIBILITY_TIMEOUT
    task_time_limit: int = DEFAULT_TASK_TIME_LIMIT  # DEID_TASK_TIME_LIMIT
    max_retries: int = DEFAULT_MAX_RETRIES  # DEID_MAX_RETRIES
    run_expiry: int = DEFAULT_RUN_EXPIRY  # DEID_RUN_EXPIRY
    export_shard_files: int = DEFAULT_EXPORT_SHARD_FILES  # DEID_EXPORT_SHARD_FILES
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES  # DEID_MAX_FILE_BYTES
    max_pixel_bytes: int = DEFAULT_MAX_PIXEL_BYTES  # DEID_MAX_PIXEL_BYTES
    # DEID_QUARANTINE: --clean-pixels' folder for held-back files; None = the output folder's
    # sibling <outfolder>-quarantine. The shipped images set a mounted one (compose, k8s).
    quarantine: str | None = None
    message_level: str = "INFO"  # MESSAGELEVEL, as deid reads it
    log_json: bool = False  # DEID_LOG_JSON
    # DEID_TEST_CRASH_ON: tests only. A worker SIGKILLs itself on any file whose relative path
    # contains this text, so the suite can prove poison-file quarantine with a real crash.
    test_crash_on: str | None = None
    # DEID_TEST_HANG_ON: tests only. A worker sleeps forever on any file whose relative path
    # contains this text (a decoder stuck in a loop); "hard:<text>" also ignores the soft time
    # limit, as a hang inside C code does, so only the hard limit's kill ends it.
    test_hang_on: str | None = None

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
        if self.batch_size < 1:
            raise ConfigError("DEID_BATCH_SIZE: expected a positive integer")
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
        if self.task_time_limit >= self.visibility_timeout:
            raise ConfigError(
                "DEID_TASK_TIME_LIMIT: must be below DEID_VISIBILITY_TIMEOUT, "
                "else a hung batch is redelivered while it still runs"
            )

    def resolve_secret(self) -> tuple[bytes, str | None]:
        """The HMAC key and where it came from (None when it came from DEID_SECRET)."""
        if self.secret:
            return self.secret, None
        path = Path(self.secret_file) if self.secret_file else default_secret_path()
        return load_secret(path), str(path)


_INT_FIELDS = {
    "batch_size", "workers", "date_shift_min", "date_shift_max", "visibility_timeout",
    "task_time_limit", "max_retries", "run_expiry", "export_shard_files", "max_file_bytes",
    "max_pixel_bytes",
}


def _convert(env_name: str, field_name: str, raw: str) -> Any:
    if field_name in _INT_FIELDS:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{env_name}: expected an integer") from None
    if field_name == "secret":
        return raw.encode("utf-8")
    if field_name == "log_json":
        return _parse_bool(raw)
    if field_name == "message_level":
        return raw.strip().upper()
    return raw


def default_secret_path() -> Path:
    """``$XDG_CONFIG_HOME/deid-workers/secret.key`` (``~/.config`` when unset)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "deid-workers" / "secret.key"


def load_secret(path: Path) -> bytes:
    """Read the key at ``path``, creating a random one (mode 0600) the first time.

    Created with O_EXCL so two processes starting at once agree on one key.
    """
    try:
        data = path.read_bytes().strip()
        if data:
            return data
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = _secrets.token_hex(32).encode("ascii")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as fh:
        fh.write(key + b"\n")
    return key
