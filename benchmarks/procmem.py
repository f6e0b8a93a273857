"""Memory of processes read from ``/proc`` (Linux), so the benchmark needs no psutil.

Why a sampler thread and not one reading at the end: the embedded workers and redis-server exit
with ``deid-submit``, taking their peak (``VmHWM``) with them, so the tree is read while the
run is live and the last value seen per pid is kept.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["ProcInfo", "TreeSampler", "children", "proc_info", "rss_mb", "peak_rss_mb"]


def _status(pid: int | str) -> dict[str, str]:
    out = {}
    with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def _kb(value: str) -> float:
    return int(value.split()[0]) / 1024 if value else 0.0


def rss_mb(pid: int | str = "self") -> float:
    """Current resident set size in MiB."""
    return _kb(_status(pid).get("VmRSS", ""))


def peak_rss_mb(pid: int | str = "self") -> float:
    """Peak resident set size (VmHWM) in MiB since the process started."""
    return _kb(_status(pid).get("VmHWM", ""))


def _ppids() -> dict[int, int]:
    """pid -> parent pid of every process we can see."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as fh:
                text = fh.read()
        except OSError:
            continue
        # comm may hold spaces and parentheses: the fields after the last ')' are fixed.
        rest = text[text.rfind(")") + 2:].split()
        out[int(name)] = int(rest[1])
    return out


def children(pid: int) -> list[int]:
    """All descendants of ``pid`` (children, grandchildren...), by walking /proc."""
    ppids = _ppids()
    found: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        kids = [p for p, pp in ppids.items() if pp == parent]
        found.extend(kids)
        frontier.extend(kids)
    return found


@dataclass
class ProcInfo:
    pid: int
    ppid: int
    name: str
    cmdline: list[str]
    peak_rss_mb: float


def proc_info(pid: int) -> ProcInfo | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmd = [c.decode(errors="replace") for c in fh.read().split(b"\0") if c]
        st = _status(pid)
        return ProcInfo(pid, int(st.get("PPid", "0")), st.get("Name", "?"), cmd,
                        _kb(st.get("VmHWM", "")))
    except OSError:
        return None


@dataclass
class TreeSampler:
    """Sample a process tree every ``interval`` s in a thread: peak RSS per pid, plus a probe.

    ``probe`` is called each round with the current infos (the benchmark reads Redis's
    ``INFO memory`` there); its return values are kept in ``probes``.
    """

    root: int
    interval: float = 0.25
    probe: Callable[[dict[int, ProcInfo]], object] | None = None
    infos: dict[int, ProcInfo] = field(default_factory=dict)
    probes: list[object] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        current = {}
        for pid in [self.root, *children(self.root)]:
            info = proc_info(pid)
            if info is not None and info.cmdline:
                current[pid] = info
                old = self.infos.get(pid)
                if old is None or info.peak_rss_mb >= old.peak_rss_mb:
                    self.infos[pid] = info
        if self.probe is not None:
            try:
                value = self.probe(current)
            except Exception:  # the probed thing may be starting or gone: skip the round
                value = None
            if value is not None:
                self.probes.append(value)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample()
            except OSError:
                pass
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeSampler:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
