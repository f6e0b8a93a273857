"""The run record: what the producer decided about a run, read by every worker.

Why settings travel with the run: every worker must apply the same batch size, fields and
limits whatever its own environment says, or one patient would get different pseudonyms, or
files different limits, on different hosts.
"""

from __future__ import annotations

__all__ = ["RUN_SETTINGS"]

RUN_SETTINGS = ("entity_field", "item_field", "date_shift_min", "date_shift_max",
                "batch_size", "max_retries", "run_expiry", "export_shard_files",
                "max_file_bytes", "max_pixel_bytes")
"""Settings the producer stores with a run and every worker applies, whatever its own env says.
The secret is NOT among them: it never travels through Redis; each worker resolves its own."""
