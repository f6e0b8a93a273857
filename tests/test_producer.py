"""producer: the progress line (the rest runs in tests/integration)."""

from __future__ import annotations

from deid_workers.producer import Progress


def test_progress_shows_the_clean_stage_with_clean_pixels():
    rec = {"action": "all", "walk_done": True, "n_batches": 4, "stage": "put",
           "clean_pixels": True}
    c = {"walk:files": 20, "get:files": 20, "get:valid": 19, "put:files": 10, "put:batches": 2,
         "put:to_clean": 3, "clean:files": 1}
    line = Progress.line(rec, c, 5.0)
    assert "put 10/19  clean 1/3+  2.0 files/s" in line  # rate follows put until put is in
    c.update({"put:files": 19, "put:batches": 4, "clean:files": 2})
    assert "clean 2/3  0.4 files/s" in Progress.line(rec, c, 5.0)
    assert "clean" not in Progress.line({**rec, "clean_pixels": False}, c, 5.0)
