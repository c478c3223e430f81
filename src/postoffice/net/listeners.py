"""net.listeners — open the listening sockets of a protocol server, and stop them gracefully.

Description:
    `bind(factory, listen, backlog=…)` creates one asyncio server per
    (host, port) with SO_REUSEADDR and returns the servers and the bound
    addresses (port 0 becomes the port the kernel chose, which the log line
    "listening for … on HOST:PORT" reports).

    `drain(servers, connections, grace=…)` is the stop every listener
    shares: close the listening sockets, then, every 50 ms until `grace`
    seconds have passed or no connection is left, ask each live connection
    to `shutdown()` (an idle one is told — SMTP 421, POP3 -ERR, IMAP BYE —
    and closed; a busy one finishes its command first and is told at the
    next round); what is left is aborted (`finish(conn)` then runs for
    each, for adapters that must clean up after an abort).

See also:
    smtp/server.py, pop3/server.py, imap/server.py, app.py (stop()).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from typing import Protocol, TypeVar


class Drainable(Protocol):
    @property
    def transport(self) -> asyncio.Transport | None: ...

    def shutdown(self) -> None:
        """Server stopping: tell an idle client and close; idempotent."""


_C = TypeVar("_C", bound=Drainable)


async def bind(
    factory: Callable[[], asyncio.Protocol],
    listen: list[tuple[str, int]],
    *,
    backlog: int = 512,
) -> tuple[list[asyncio.Server], list[tuple[str, int]]]:
    """Listen on every address; (servers, bound addresses)."""
    loop = asyncio.get_running_loop()
    servers: list[asyncio.Server] = []
    bound: list[tuple[str, int]] = []
    for host, port in listen:
        srv = await loop.create_server(factory, host, port, reuse_address=True, backlog=backlog)
        servers.append(srv)
        for sock in srv.sockets:
            name = sock.getsockname()
            bound.append((str(name[0]), int(name[1])))
    return servers, bound


async def drain(
    servers: list[asyncio.Server],
    connections: Collection[_C],
    *,
    grace: float,
    finish: Callable[[_C], None] | None = None,
) -> None:
    """Stop listening, let connections end within `grace` seconds, abort the rest."""
    for srv in servers:
        srv.close()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while connections:
        for conn in list(connections):
            conn.shutdown()
        if not connections or loop.time() >= deadline:
            break
        await asyncio.sleep(0.05)
    for conn in list(connections):
        if conn.transport is not None:
            conn.transport.abort()
        if finish is not None:
            finish(conn)
    for srv in servers:
        await srv.wait_closed()
