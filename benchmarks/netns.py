"""A small lab of Linux network namespaces ("hosts") joined by veth pairs, for tests and the
``--netem`` benchmark: Redis on one host, workers and the producer on others, so that every
Redis call crosses a real network interface that can be cut (link down) or slowed (``tc
netem``).

Topology: a star. The hub host (Redis) has one veth pair to each other host; link ``i`` is the
subnet ``10.77.i.0/24``, the hub at ``.1`` and the host at ``.2``. Addresses live inside the
namespaces, so several labs (other test sessions on the same machine) never clash; namespace
names carry the creating process's pid (``deid-<pid>-<host>``), so a lab left behind by a
killed session is recognised and removed by the next one (:func:`remove_stale`).

Every process started on a host is tracked by pid; :meth:`NetLab.close` kills them, then any
other process still in a namespace (``ip netns pids``), then deletes the namespaces (which
deletes their veths). Needs root and iproute2 (``ip``, ``tc``): :func:`unavailable` says why
not, for a skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["NetLab", "Host", "Link", "unavailable", "remove_stale", "PREFIX"]

PREFIX = "deid-"
"""Namespace names: ``deid-<pid of the creating process>-<host name>``."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def unavailable() -> str | None:
    """Why namespaces cannot be made here (a skip reason), or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"`{tool}` (iproute2) is not installed"
    name = f"{PREFIX}{os.getpid()}-probe"
    probe = _ip("netns", "add", name, check=False)
    if probe.returncode != 0:
        return f"ip netns add failed: {probe.stderr.strip() or probe.returncode}"
    _ip("netns", "del", name, check=False)
    return None


def _namespaces() -> list[str]:
    out = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale() -> list[str]:
    """Remove the labs of sessions that are gone (their pid no longer runs); returns names."""
    removed = []
    for name in _namespaces():
        parts = name.split("-")
        if not name.startswith(PREFIX) or len(parts) < 3 or not parts[1].isdigit():
            continue
        if int(parts[1]) == os.getpid() or _alive(int(parts[1])):
            continue
        _kill_namespace(name)
        _ip("netns", "del", name, check=False)
        removed.append(name)
    return removed


def _ns_pids(name: str) -> list[int]:
    out = _ip("netns", "pids", name, check=False).stdout
    return [int(x) for x in out.split() if x.isdigit()]


def _kill_namespace(name: str) -> None:
    """SIGKILL every process in namespace ``name`` (by pid), until none is left."""
    for _ in range(50):
        pids = [p for p in _ns_pids(name) if p != os.getpid()]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


@dataclass
class Host:
    """One network namespace: a host of the lab."""

    lab: NetLab
    name: str
    ns: str
    procs: list[subprocess.Popen[Any]] = field(default_factory=list)

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` on this host (in its own session, so its group can be signalled);
        ``ip netns exec`` execs the command, so the pid is the command's own."""
        kwargs.setdefault("start_new_session", True)
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns, *argv], **kwargs)
        self.procs.append(proc)
        return proc

    def run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.ns, *argv], capture_output=True,
                              text=True, **kwargs)

    def pids(self) -> list[int]:
        """Every process running in this host's namespace."""
        return _ns_pids(self.ns)

    def kill_all(self) -> None:
        """SIGKILL every process of the host at once, as when the node dies."""
        _kill_namespace(self.ns)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)


@dataclass
class Link:
    """The veth pair between the hub and one host."""

    lab: NetLab
    host: Host
    index: int
    hub_if: str
    host_if: str

    @property
    def hub_address(self) -> str:
        """The hub's address as this host sees it (where it reaches Redis)."""
        return f"10.77.{self.index}.1"

    @property
    def host_address(self) -> str:
        return f"10.77.{self.index}.2"

    def down(self) -> None:
        """Cut the host off: the hub's end of the pair goes down (the host sees no carrier)."""
        _ip("-n", self.lab.hub.ns, "link", "set", self.hub_if, "down")

    def up(self) -> None:
        _ip("-n", self.lab.hub.ns, "link", "set", self.hub_if, "up")

    def delay(self, ms: float) -> None:
        """``tc netem`` delay of ``ms`` on each end (so ``2 * ms`` a round trip); 0 removes it."""
        for ns, dev in ((self.lab.hub.ns, self.hub_if), (self.host.ns, self.host_if)):
            if ms:
                subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "replace", "dev", dev,
                                "root", "netem", "delay", f"{ms}ms"], check=True,
                               capture_output=True, timeout=30)
            else:
                subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", dev,
                                "root"], check=False, capture_output=True, timeout=30)


class NetLab:
    """Hosts around a hub; use as a context manager so that everything goes at the end."""

    def __init__(self, hub: str = "redis") -> None:
        remove_stale()
        self.hosts: dict[str, Host] = {}
        self.links: dict[str, Link] = {}
        self.hub = self.add_host(hub)

    def __enter__(self) -> NetLab:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def add_host(self, name: str) -> Host:
        ns = f"{PREFIX}{os.getpid()}-{name}"
        _ip("netns", "add", ns)
        host = Host(self, name, ns)
        self.hosts[name] = host
        _ip("-n", ns, "link", "set", "lo", "up")
        return host

    def connect(self, name: str) -> Link:
        """A new host joined to the hub by a veth pair; returns the link."""
        host = self.add_host(name)
        index = len(self.links) + 1
        hub_if, host_if = f"to-{name}"[:15], "eth0"
        _ip("-n", self.hub.ns, "link", "add", hub_if, "type", "veth", "peer", "name", host_if,
            "netns", host.ns)
        link = Link(self, host, index, hub_if, host_if)
        _ip("-n", self.hub.ns, "addr", "add", f"{link.hub_address}/24", "dev", hub_if)
        _ip("-n", host.ns, "addr", "add", f"{link.host_address}/24", "dev", host_if)
        _ip("-n", self.hub.ns, "link", "set", hub_if, "up")
        _ip("-n", host.ns, "link", "set", host_if, "up")
        self.links[name] = link
        return link

    def close(self) -> None:
        """Kill every process of every host (by pid), then delete the namespaces (by name)."""
        for host in reversed(list(self.hosts.values())):
            host.kill_all()
        for host in self.hosts.values():
            _ip("netns", "del", host.ns, check=False)
        self.hosts.clear()
        self.links.clear()


@contextlib.contextmanager
def redis_on(host: Host, folder: str, port: int = 6379) -> Iterator[str]:
    """redis-server on ``host``, listening on every address of it and on a unix socket in
    ``folder`` (path sockets are not namespaced: the test process reads Redis through it
    without a link of its own); yields the socket path."""
    from deid_workers.embedded import find_redis_server

    sock = os.path.join(folder, "redis.sock")
    proc = host.popen([find_redis_server(), "--bind", "0.0.0.0", "--port", str(port),
                       "--protected-mode", "no", "--unixsocket", sock, "--unixsocketperm", "700",
                       "--dir", folder, "--save", "", "--appendonly", "no"],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    import redis

    client = redis.Redis(unix_socket_path=sock)
    while True:
        try:
            client.ping()
            break
        except redis.RedisError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start in its namespace") from None
            time.sleep(0.05)
    client.close()
    try:
        yield sock
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
