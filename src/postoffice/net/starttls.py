"""net.starttls — the two pieces every TLS upgrade shares: an eager start and a one-line error.

Description:
    `start_now(coro)` runs a coroutine up to its first suspension at once
    (see its docstring: loop.start_tls() must swap the protocol before the
    loop reads the socket again, which a Task would not guarantee under
    uvloop). The SMTP, POP3 and IMAP adapters use it for STARTTLS / STLS
    and implicit TLS alike.

    `handshake_error(exc)` is the short reason a failed handshake gets in
    the log ("TLS handshake failed: <reason>"), never a traceback.

See also:
    RFC 3207 (SMTP STARTTLS), RFC 2595 (POP3 STLS, IMAP STARTTLS), RFC 8314
    (implicit TLS); smtp/server.py, pop3/server.py, imap/server.py, net/tls.py.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Coroutine
from typing import Any, TypeVar

_T = TypeVar("_T")


def start_now(coro: Coroutine[Any, Any, _T]) -> asyncio.Future[_T]:
    """Run `coro` up to its first suspension at once, then on as the futures
    it awaits complete; the returned future has its result.

    An eager task, for loop.start_tls(): its first step swaps the socket's
    protocol for the TLS layer, and that must happen before the loop reads
    the socket again. uvloop starts reading a new connection right after
    connection_made() returns, whatever pause_reading() said; a Task would
    take its first step only on the next turn of the loop, after that read,
    and the ClientHello would reach us instead of the TLS layer. (No
    cancellation: a handshake is ended by aborting its transport.)"""
    loop = asyncio.get_running_loop()
    result: asyncio.Future[_T] = loop.create_future()

    def step(_: object = None) -> None:
        try:
            awaited = coro.send(None)
        except StopIteration as stop:
            result.set_result(stop.value)
            return
        except asyncio.CancelledError:
            result.cancel()
            return
        except Exception as exc:  # handed to whoever awaits the result
            result.set_exception(exc)
            return
        if awaited is None:  # a bare yield (asyncio.sleep(0))
            loop.call_soon(step)
        elif asyncio.isfuture(awaited):
            awaited._asyncio_future_blocking = False  # what Task does; marks the await as proper
            awaited.add_done_callback(step)
        else:
            coro.close()
            result.set_exception(RuntimeError(f"unexpected yield from start_tls: {awaited!r}"))

    step()
    return result


def handshake_error(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or exc.strerror or type(exc).__name__
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
