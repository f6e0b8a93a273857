"""The run record: what the producer decided about a run, read by every worker.

One schema, :class:`RunRecord`: the producer builds it, the store seals and signs it as the
run's spec (:meth:`~deid_workers.run.store.RunStore.create`), and a worker, a resume or a
test reads it back with :meth:`RunRecord.of`. What changes while the run goes (state, stage,
counts of batches, outputs' paths) is not part of it: those are the record's plain fields.

Why settings travel with the run: every worker must apply the same batch size, fields and
limits whatever its own environment says, or one patient would get different pseudonyms, or
files different limits, on different hosts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..config import Settings

__all__ = ["RUN_SETTINGS", "RunRecord"]

RUN_SETTINGS = ("entity_field", "item_field", "date_shift_min", "date_shift_max",
                "batch_size", "batch_tail", "max_retries", "run_expiry", "export_shard_files",
                "max_file_bytes", "max_pixel_bytes")
"""Settings the producer stores with a run and every worker applies, whatever its own env says.
The secret is NOT among them: it never travels through Redis; each worker resolves its own."""


@dataclass(frozen=True)
class RunRecord:
    """What a run is: its action, folders, recipe and settings (the signed part of the run).

    ``recipe_texts`` are the recipe's sources in merge order, ``recipe_files`` the name each
    came from (a recipe error a worker meets names the author's file); ``settings`` holds the
    :data:`RUN_SETTINGS` only. ``ids_path``/``ids_fields`` (put with ``--ids``) let a resume
    cut the ids file the same way again. ``ocr`` is ``--ocr``'s mode
    (:data:`~deid_workers.run.plan.OCR_MODES`), None without it; ``ocr_allowlist`` the text
    of ``--ocr-allowlist`` (workers parse it as the producer did), named by
    ``ocr_allowlist_name``. ``run_id`` and ``created`` are the store's, set when
    the run is written.
    """

    action: str
    input: str
    outfolder: str
    records: str = ""
    overwrite: bool = False
    print_ids: bool = False
    recipe_texts: tuple[str, ...] = field(default=(), repr=False)
    recipe_files: tuple[str, ...] = ()
    recipe_sha: str = ""
    recipe_name: str = ""
    profile: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    key_location: str | None = None
    verify: bool = False
    clean_pixels: bool = False
    ocr: str | None = None
    ocr_allowlist: str | None = field(default=None, repr=False)
    ocr_allowlist_name: str | None = None
    quarantine_groups: tuple[str, ...] = ()
    layout: str = "mirror"
    quarantine: str | None = None
    ids_path: str | None = None
    ids_fields: tuple[str, ...] | None = None
    input_file: str | None = None  # --input named one file: its name (``input`` is its folder)
    embedded: bool = False  # a private Redis and workers that stopped with deid-submit
    key_created: bool = False  # the key file was created for this run (the summary says so)
    run_id: str = ""
    created: float = 0.0

    @property
    def ids_given(self) -> bool:
        """Identifiers were given for the files (put ``--ids``, or all's own get): a file
        without any is worth a warning (:mod:`deid_workers.run.notices`)."""
        return bool(self.ids_path) or self.action == "all"

    @staticmethod
    def run_settings(settings: Settings) -> dict[str, Any]:
        """The part of ``settings`` a run carries (:data:`RUN_SETTINGS`)."""
        return {k: v for k, v in asdict(settings).items() if k in RUN_SETTINGS}

    def applied_to(self, settings: Settings) -> Settings:
        """``settings`` (a worker's own) with this run's settings over them."""
        return settings.with_overrides(**{k: v for k, v in self.settings.items()
                                          if k in RUN_SETTINGS})

    def spec(self) -> dict[str, Any]:
        """The record as the store signs it (JSON types); ``run_id`` and ``created`` are the
        store's to add, the ids fields are there only for a run given ``--ids``, ``ocr`` only
        for a run given ``--ocr``."""
        out = {f.name: getattr(self, f.name) for f in fields(self)
               if f.name not in _STORE_FIELDS}
        for key in ("recipe_texts", "recipe_files", "quarantine_groups"):
            out[key] = list(out[key])
        out["settings"] = dict(self.settings)
        for key in ("ocr", "ocr_allowlist", "ocr_allowlist_name"):
            if out[key] is None:  # a run without --ocr is recorded as before it existed
                del out[key]
        if self.ids_path is None:
            del out["ids_path"], out["ids_fields"]
        elif self.ids_fields is not None:
            out["ids_fields"] = list(self.ids_fields)
        return out

    @classmethod
    def of(cls, rec: Mapping[str, Any]) -> RunRecord:
        """The record of a run as :meth:`~deid_workers.run.store.RunStore.record` returns it
        (changing fields are left out; a field a run was written without takes its default)."""
        fields_ = {f.name for f in fields(cls)}
        values = {k: v for k, v in rec.items() if k in fields_ and v is not None}
        for key in ("recipe_texts", "recipe_files", "quarantine_groups"):
            if key in values:
                values[key] = tuple(str(x) for x in values[key])
        if values.get("ids_fields") is not None:
            values["ids_fields"] = tuple(values["ids_fields"])
        for key in ("records", "recipe_sha", "recipe_name", "layout"):
            if key in values:
                values[key] = str(values[key]) or getattr(cls, key)
        for key in ("overwrite", "print_ids", "verify", "clean_pixels", "embedded",
                    "key_created"):
            if key in values:
                values[key] = bool(values[key])
        for key in ("ocr", "ocr_allowlist", "ocr_allowlist_name"):
            if values.get(key) is not None:
                values[key] = str(values[key])
        if "created" in values:
            values["created"] = float(values["created"])
        values["settings"] = dict(values.get("settings") or {})
        return cls(**values)


_STORE_FIELDS = ("run_id", "created")
