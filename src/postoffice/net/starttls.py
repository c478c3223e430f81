"""net.starttls — the two pieces every TLS upgrade shares: an eager start and a one-line error.

Description:
    `start_now(coro)` runs a coroutine up to its first suspension at once
    (see its docstring: loop.start_tls() must swap the protocol before the
    loop reads the socket again, which a Task would not guarantee under
    uvloop). The SMTP, POP3 and IMAP adapters use it for STARTTLS / STLS
    and implicit TLS alike.

    `handshake_error(exc)` is the short reason a failed handshake gets in
    the log ("TLS handshake failed: <reason>"), never a traceback.

    `begin_upgrade(transport, protocol, context, timeout=…)` starts a
    server-side handshake at once; `finish_upgrade(started)` awaits it and
    returns the TLS transport, or None and the reason (a handshake that
    failed, timed out, or a connection that ended before it began).

See also:
    RFC 3207 (SMTP STARTTLS), RFC 2595 (POP3 STLS, IMAP STARTTLS), RFC 8314
    (implicit TLS); smtp/server.py, pop3/server.py, imap/server.py, net/tls.py.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger("postoffice.tls")

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


def begin_upgrade(
    transport: asyncio.Transport,
    protocol: asyncio.BaseProtocol,
    context: ssl.SSLContext,
    *,
    timeout: float,
) -> asyncio.Future[asyncio.Transport | None]:
    """Start the server side of a TLS handshake on `transport` now.

    The caller has paused reading and flushed its last plaintext reply: from
    here the TLS layer reads the socket, never the engine (RFC 3207 §4.2,
    RFC 2595 §3.1; CVE-2011-0411). Await the result with `finish_upgrade`."""
    loop = asyncio.get_running_loop()
    # start_tls() hands the socket to the TLS layer in its first step: run
    # that step now, not on the next turn of the loop (see start_now).
    return start_now(
        loop.start_tls(
            transport, protocol, context, server_side=True, ssl_handshake_timeout=timeout
        )
    )


async def finish_upgrade(
    started: asyncio.Future[asyncio.Transport | None],
) -> tuple[asyncio.Transport | None, str]:
    """(the TLS transport, "") or (None, why the handshake failed, for the log)."""
    try:
        tls = await started
    except (OSError, EOFError) as e:  # ssl.SSLError, ConnectionError, TimeoutError
        return None, handshake_error(e)
    except Exception:  # a bug below us: log it, close this connection only
        log.exception("TLS handshake failed")
        return None, "internal error"
    if tls is None or tls.is_closing() or tls.get_extra_info("ssl_object") is None:
        return None, "lost connection"  # uvloop: the connection ended before it began
    return tls, ""
