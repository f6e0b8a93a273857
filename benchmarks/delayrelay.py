"""A TCP relay that holds every byte for a fixed delay in each direction: network latency for
kernels without ``tc netem`` (``CONFIG_NET_SCH_NETEM`` unset, as in some VM kernels).

    python -m benchmarks.delayrelay --to 127.0.0.1:6379 --listen 10.77.1.1:6380=2 ...

Each ``--listen ADDRESS:PORT=MS`` accepts connections there and relays them to ``--to``,
delaying what flows each way by ``MS`` milliseconds, in order (a round trip gains twice that):
what netem's ``delay`` does to a request/response protocol such as Redis's. It runs in the
Redis host's namespace (:mod:`benchmarks.netem`), so the bytes still cross the veth link.
The relay costs some CPU of its own at every delay, 0 included, so the benchmark compares
delays through the same relay.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections import deque

__all__ = ["main"]


class _Side(asyncio.Protocol):
    """One end of a relayed connection: what it receives goes, ``delay`` later and in order,
    to its peer's transport. Protocols rather than streams: the relay's own cost per chunk
    is what the no-delay run pays too, so it should be small."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.peer: _Side | None = None
        self.transport: asyncio.Transport | None = None
        self.pending: deque[tuple[float, bytes | None]] = deque()
        self.timer: asyncio.TimerHandle | None = None
        self.early: list[bytes | None] = []  # received before the peer was connected

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._forward(data)

    def eof_received(self) -> bool:
        self._forward(None)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()

    def _forward(self, data: bytes | None) -> None:
        peer = self.peer
        if peer is None or peer.transport is None:
            self.early.append(data)
            return
        if not self.delay and not self.pending:
            _deliver(peer.transport, data)
            return
        loop = asyncio.get_running_loop()
        self.pending.append((loop.time() + self.delay, data))
        if self.timer is None:
            self.timer = loop.call_at(self.pending[0][0], self._flush)

    def _flush(self) -> None:
        self.timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        assert self.peer is not None and self.peer.transport is not None
        while self.pending and self.pending[0][0] <= now:
            _deliver(self.peer.transport, self.pending.popleft()[1])
        if self.pending:
            self.timer = loop.call_at(self.pending[0][0], self._flush)

    def joined(self) -> None:
        """The peer is connected: forward what came before it."""
        early, self.early = self.early, []
        for data in early:
            self._forward(data)


def _deliver(transport: asyncio.Transport, data: bytes | None) -> None:
    if transport.is_closing():
        return
    if data is None:
        if transport.can_write_eof():
            # the peer may have gone in the meantime (a worker killed at the end of a run)
            with contextlib.suppress(OSError):
                transport.write_eof()
    else:
        transport.write(data)


async def _serve(listen: str, port: int, delay_ms: float, to_host: str, to_port: int) -> None:
    loop = asyncio.get_running_loop()
    delay = delay_ms / 1000.0

    def accept() -> _Side:
        client = _Side(delay)

        async def connect() -> None:
            try:
                _, server = await loop.create_connection(lambda: _Side(delay), to_host, to_port)
            except OSError:
                if client.transport is not None:
                    client.transport.close()
                return
            client.peer, server.peer = server, client
            client.joined()
            server.joined()

        loop.create_task(connect())
        return client

    server = await loop.create_server(accept, listen, port)
    async with server:
        await server.serve_forever()


def _split(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


async def _main(args: argparse.Namespace) -> None:
    to_host, to_port = _split(args.to)
    servers = []
    for spec in args.listen:
        where, _, ms = spec.partition("=")
        host, port = _split(where)
        servers.append(_serve(host, port, float(ms or 0), to_host, to_port))
    await asyncio.gather(*servers)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.delayrelay", description=__doc__)
    p.add_argument("--to", required=True, help="where to relay: HOST:PORT")
    p.add_argument("--listen", action="append", required=True, metavar="HOST:PORT=MS",
                   help="accept here and delay each direction by MS milliseconds")
    args = p.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
