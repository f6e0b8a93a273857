"""Session fixtures over the real-file corpus (see realcorpus.py): one copy of it, and the real
pipeline run over it once.

Why once: a run of deid-submit in embedded mode (a private redis-server and a real Celery
worker, exactly what a user gets) over the ~190 files takes a few seconds, and every test of
the corpus asks questions of the same outputs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from realcorpus import copy_corpus

ROOT = str(Path(__file__).resolve().parents[2])
SECRET = "realdata-secret-0123456789abcdef0123456"
"""Every run of the module uses this key, so put after get finds the same pseudonyms."""


@dataclass
class Corpus:
    root: Path
    paths: list[str]


@dataclass
class Run:
    """One deid-submit run: its JSON summary, its run log by input path, and folders."""

    summary: dict[str, Any]
    log: dict[str, dict[str, Any]]
    outfolder: Path
    stderr: str = field(repr=False, default="")

    def output(self, rel: str) -> Path | None:
        line = self.log[rel]
        return None if line["output"] is None else self.outfolder / line["output"]


@pytest.fixture(scope="session")
def real_corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    """The corpus copied once per session (tests must not change it)."""
    root = tmp_path_factory.mktemp("realdata") / "in"
    paths = copy_corpus(root)
    assert len(paths) > 150, "pydicom's test files went missing?"
    return Corpus(root, paths)


@pytest.fixture(scope="session")
def submit() -> Any:
    """submit(tmp, *args) -> :class:`Run` (see :func:`deid_submit`)."""
    return deid_submit


def deid_submit(tmp: Path, *args: str, timeout: float = 120) -> Run:
    """Run ``python -m deid_workers <args> --json --quiet`` in embedded mode (no broker) with
    the module's key; returns the run (its log read from where the summary says it is)."""
    env = dict(os.environ)
    for name in ("DEID_BROKER_URL", "MESSAGELEVEL", "DEID_SECRET_FILE"):
        env.pop(name, None)
    env.update(DEID_SECRET=SECRET, DEID_WORKERS="2", XDG_CONFIG_HOME=str(tmp / "xdg"),
               PYTHONPATH=os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p))
    proc = subprocess.run([sys.executable, "-m", "deid_workers", *args, "--json", "--quiet"],
                          capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)
    try:
        summary = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"deid-submit {' '.join(args)} exited {proc.returncode}: "
                             f"{proc.stderr[-3000:]}") from None
    log: dict[str, dict[str, Any]] = {}
    if summary.get("run_log"):
        with open(summary["run_log"], encoding="utf-8") as fh:
            for text in fh:
                line = json.loads(text)
                assert line["path"] not in log, f"{line['path']} twice in the run log"
                log[line["path"]] = line
    return Run(summary, log, Path(summary["outfolder"]), proc.stderr)
