"""imap.server — the IMAP server adapter: moves bytes between sockets, the engine and the session.

Description:
    One asyncio.Protocol per connection. Bytes go into
    `ServerProtocol.receive_data` (imap/protocol.py); notification events
    (APPEND octets, aborts, refusals) go straight to the session; the one
    event that needs an answer is answered by a task running the session
    (imap/session.py), and its answer goes back to the engine (finish,
    challenge, start_idle, accept_append). While that task runs, reading
    pauses and input waits here, so a pipelining client is held back by
    TCP, not by our memory; commands are answered in order.

    Untagged responses the session writes go out at once; when the
    transport's buffer is above its high-water mark, `drain()` waits for
    the client (asyncio's pause_writing / resume_writing), so a FETCH of a
    large mailbox is sent as the client reads it.

    Timeouts: `[imap] login_timeout` before login, `[imap] idle_timeout`
    (at least 30 minutes, RFC 9051 §5.4) after it, IDLE included; on
    expiry `* BYE` and the connection closes. A running command never
    times out.

    `ImapServer` owns the listening sockets, the connection limits
    (`[imap] max_connections` in all and `max_connections_per_ip`: BYE
    instead of the greeting), and `stop()`: stop accepting, `* BYE` to
    every connection between commands, a grace period for running ones,
    then close. `start(listen, ssl_context=None)`: [imap] listen
    (STARTTLS when a TLS context is set), or with `ssl_context` [imaps]
    listen (implicit TLS, RFC 8314 §3.3: the handshake comes first).

STARTTLS (RFC 9051 §6.2.1):
    When the session answers OK, the engine drops any input buffered after
    the command and the adapter, in the same callback, stops reading,
    writes the OK and hands the socket to the TLS layer (smtp/server.py's
    eager start_tls, for uvloop), so no plaintext can be read as a command
    after the OK (CVE-2011-0411 and its IMAP relatives). After the
    handshake the engine and session are told (`tls_started`); the client
    asks for CAPABILITY again.

Security:
    Plaintext received before a TLS handshake is never interpreted. The
    engine bounds every input (imap/events.py Limits from [imap]); a task
    that fails answers NO [SERVERBUG] and logs the traceback; a client
    never sees one.

Config:
    [imap] listen, idle_timeout, login_timeout, max_line, max_literal,
    max_connections, max_connections_per_ip; [imaps] listen; [tls].

See also:
    imap/protocol.py, imap/session.py, smtp/server.py, net/tls.py,
    RFC 9051 §5.4, §6.2.1, RFC 8314, RFC 2177.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import cast

from postoffice.imap import events as ev
from postoffice.imap import response as r
from postoffice.imap.events import Limits
from postoffice.imap.protocol import ServerProtocol
from postoffice.imap.session import IDLING, Challenge, ImapDeps, ImapSession, Peer
from postoffice.imap.states import State
from postoffice.net.listeners import bind, drain
from postoffice.net.starttls import begin_upgrade, finish_upgrade
from postoffice.net.tls import describe_connection

log = logging.getLogger("postoffice.imap")

__all__ = ["ImapConnection", "ImapServer", "limits_from"]

SERVERBUG = r.Result(status="NO", text="Internal error; try again", code=r.Code(name="SERVERBUG"))


def limits_from(deps: ImapDeps) -> Limits:
    cfg = deps.config.imap
    return Limits(max_command=cfg.max_line, max_append=cfg.max_literal)


class ImapConnection(asyncio.Protocol):
    """One client connection."""

    def __init__(self, server: ImapServer, *, implicit_tls: ssl.SSLContext | None = None) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.engine: ServerProtocol | None = None
        self.session: ImapSession | None = None
        self.peer = Peer(ip="")
        self._implicit_tls = implicit_tls
        self._timer: asyncio.TimerHandle | None = None
        self._busy = False
        self._pending_input: list[bytes] = []
        self._closed = False
        self._gone = False
        self._upgrading = False
        self._tls_layer = False
        self._early: list[bytes] = []
        self._start_tls = False
        self._write_paused = False
        self._drained: asyncio.Future[None] | None = None
        self.answer_task: asyncio.Task[None] | None = None
        self.handshake_task: asyncio.Task[None] | None = None

    # -- Output for the session --------------------------------------------------

    def write(self, data: bytes) -> None:
        engine = self.engine
        if engine is not None and data:
            engine.send(data)
            self._flush()

    async def drain(self) -> None:
        while self._write_paused and not self._closed:
            if self._drained is None or self._drained.done():
                self._drained = asyncio.get_running_loop().create_future()
            await self._drained

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # -- asyncio.Protocol -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peername = transport.get_extra_info("peername") or ("", 0)
        ip = str(peername[0]) if peername else ""
        port = int(peername[1]) if isinstance(peername, tuple) and len(peername) > 1 else 0
        self.peer = Peer(ip=ip, port=port)
        deps = self.server.deps
        self.engine = ServerProtocol(limits_from(deps))
        tls = self._implicit_tls is not None
        self.session = ImapSession(deps, self.peer, self, tls=tls)
        self.server.added(self)
        log.info("connect from %s", self.peer.label)
        if self._implicit_tls is not None:  # RFC 8314 §3.3: TLS first, then the greeting
            self._begin_tls(self._implicit_tls)
            return
        self._greet()

    def _greet(self) -> None:
        engine, session = self.engine, self.session
        assert engine is not None and session is not None
        refusal = self.server.refusal(self.peer.ip)
        if refusal is not None:
            log.warning("refusing %s: %s", self.peer.label, refusal)
            engine.greeting(r.Result(status="BYE", text=refusal, code=r.Code(name="UNAVAILABLE")))
        else:
            engine.greeting(_greeting_result(session))
        self._flush()
        self._arm_timer()

    def data_received(self, data: bytes) -> None:
        if self._upgrading:
            if self._tls_layer:
                self._early.append(data)
            return  # plaintext before the handshake is never read (RFC 9051 §6.2.1)
        self._arm_timer()
        if self._busy:
            self._pending_input.append(data)
            return
        engine = self.engine
        if engine is None or self._closed:
            return
        self._handle(engine.receive_data(data))

    def eof_received(self) -> bool | None:
        if self.engine is not None and not self._upgrading:
            events = self.engine.eof_received()
            if not self._busy:
                self._handle(events)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        task = self.handshake_task
        if self._upgrading and task is not None and not task.done():
            return  # _handshake() ends the connection, and logs why
        self._finish()

    def _finish(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        self.resume_writing()
        if self._gone:
            return
        self._gone = True
        if self.answer_task is not None and not self.answer_task.done():
            self.answer_task.cancel()
        session = self.session
        if session is not None:
            total = sum(session.counts.values())
            if session.user:  # Dovecot's "imap(user): Disconnected: Logged out" shape
                log.info("imap(%s): Disconnected: Logged out commands=%d, %s",
                         session.user, total, self.peer.label)  # fmt: skip
            else:
                log.info("disconnect from %s commands=%d", self.peer.label, total)
            session.close()
        self.server.removed(self)

    # -- the pump -------------------------------------------------------------------

    def _handle(self, events: list[ev.Event]) -> None:
        session = self.session
        assert session is not None
        for event in events:
            if event.needs_answer:
                self._busy = True
                if self.transport is not None:
                    self.transport.pause_reading()
                self._flush()
                self.answer_task = asyncio.ensure_future(self._answer(event))
                self.answer_task.add_done_callback(self._answered)
                return
            if isinstance(event, ev.AppendData):
                session.append_data(event.data)
            elif isinstance(event, ev.AppendEnd):
                session.append_end()
            elif isinstance(event, ev.AppendAborted):
                session.append_abort()
            elif isinstance(event, ev.AuthAborted):
                session.auth_abort()
            elif isinstance(event, ev.IdleAborted):
                session.stop_idle()
            elif isinstance(event, ev.CommandRefused):
                session.counts["refused"] = session.counts.get("refused", 0) + 1
            elif isinstance(event, ev.Closing):
                log.info("closing %s: %s", self.peer.label, event.reason)
        self._flush()

    async def _answer(self, event: ev.Event) -> None:
        engine, session = self.engine, self.session
        assert engine is not None and session is not None
        try:
            await self._answer_event(engine, session, event)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug below us: this command fails, the connection goes on
            log.exception("%s: failed to answer %s", self.peer.label, type(event).__name__)
            if not engine.closed and engine.awaiting == "answer":
                engine.finish(SERVERBUG)

    async def _answer_event(
        self, engine: ServerProtocol, session: ImapSession, event: ev.Event
    ) -> None:
        if isinstance(event, ev.CommandReady):
            answer = await session.command(event.command)
            if isinstance(answer, Challenge):
                engine.challenge(answer.data)
            elif answer is IDLING:
                engine.start_idle()
            else:
                assert isinstance(answer, r.Result)
                engine.finish(answer)
                if answer.status == "OK" and engine.awaiting == "tls":
                    self._start_tls = True
        elif isinstance(event, ev.AuthResponse):
            reply = await session.auth_response(event.data)
            if isinstance(reply, Challenge):
                engine.challenge(reply.data)
            else:
                engine.finish(reply)
        elif isinstance(event, ev.IdleDone):
            engine.finish(await session.idle_done())
        elif isinstance(event, ev.AppendBegin):
            refusal = await session.append_begin(event)
            if refusal is None:
                engine.accept_append()
            else:
                engine.finish(refusal)
        elif isinstance(event, ev.AppendComplete):
            engine.finish(await session.append_complete())
        else:  # pragma: no cover - every needs_answer event is listed above
            engine.finish(SERVERBUG)

    def _answered(self, task: asyncio.Task[None]) -> None:
        self._busy = False
        if task.cancelled() or self._closed:
            return
        engine, session = self.engine, self.session
        assert engine is not None and session is not None
        engine.utf8 = session.utf8  # ENABLE IMAP4rev2 / UTF8=ACCEPT: names in UTF-8
        if self._start_tls:
            self._start_tls = False
            context = self.server.deps.tls_context
            if context is not None:
                self._begin_tls(context)
                return
        self._flush()
        if self._closed:
            return
        pending, self._pending_input = b"".join(self._pending_input), []
        self._handle(engine.receive_data(pending))
        if not self._busy and not self._closed and self.transport is not None:
            self.transport.resume_reading()

    def _flush(self) -> None:
        engine, transport = self.engine, self.transport
        if engine is None or transport is None:
            return
        out = engine.data_to_send()
        if out and not transport.is_closing():
            transport.write(out)
        if engine.closed and not self._closed:
            self._closed = True
            transport.close()

    # -- TLS -----------------------------------------------------------------------------

    def _begin_tls(self, context: ssl.SSLContext) -> None:
        transport = self.transport
        assert transport is not None
        self._upgrading = True
        self._pending_input.clear()
        transport.pause_reading()  # no plaintext read between the OK and the handshake
        self._flush()
        timeout = self.server.deps.config.imap.login_timeout
        started = begin_upgrade(transport, self, context, timeout=timeout)
        self._tls_layer = True
        self.handshake_task = asyncio.ensure_future(self._handshake(transport, started))

    async def _handshake(
        self, raw: asyncio.Transport, started: asyncio.Future[asyncio.Transport | None]
    ) -> None:
        engine, session = self.engine, self.session
        assert engine is not None and session is not None
        tls, reason = await finish_upgrade(started)
        if tls is None or self._closed:
            if tls is None and not self._closed:
                log.info("TLS handshake failed with %s: %s", self.peer.label, reason)
            self._closed = True
            (tls or raw).abort()
            self._finish()
            return
        self.transport = tls
        self._upgrading = False
        engine.tls_started()
        session.tls_started()
        log.info(
            "TLS connection established from %s: %s",
            self.peer.label, describe_connection(tls.get_extra_info("ssl_object")),
        )  # fmt: skip
        if self._implicit_tls is not None:
            self._greet()
        else:
            self._arm_timer()
        early, self._early = b"".join(self._early), []
        if early and not self._closed:
            self.data_received(early)

    # -- timeouts and shutdown ---------------------------------------------------------------

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._closed:
            return
        cfg = self.server.deps.config.imap
        session = self.session
        logged_in = session is not None and session.state is not State.NOT_AUTHENTICATED
        timeout = cfg.idle_timeout if logged_in else cfg.login_timeout
        self._timer = asyncio.get_running_loop().call_later(timeout, self._timed_out)

    def _timed_out(self) -> None:
        if self._upgrading:
            self._closed = True
            if self.transport is not None:
                self.transport.abort()
            return
        if self._busy or self.engine is None:
            self._arm_timer()
            return
        log.info("timeout from %s", self.peer.label)
        self.engine.close("Autologout; idle for too long")
        self._flush()

    def shutdown(self) -> None:
        """Server stopping: BYE now unless a command is running."""
        if self._upgrading and not self._closed and self.transport is not None:
            self._closed = True
            self.transport.abort()
            return
        if self.engine is None or self._closed or self._busy:
            return
        if self.session is not None:
            self.session.stop_idle()
        self.engine.close("Server shutting down", r.Code(name="UNAVAILABLE"))
        self._flush()


def _finish(conn: ImapConnection) -> None:
    conn._finish()  # an aborted connection still logs out its session


def _greeting_result(session: ImapSession) -> r.Result:
    code = r.Code.atoms("CAPABILITY", session.capabilities())
    return r.Result(status="OK", text="postoffice IMAP ready", code=code)


class ImapServer:
    """Listening sockets plus the live connections."""

    def __init__(self, deps: ImapDeps) -> None:
        self.deps = deps
        self.connections: set[ImapConnection] = set()
        self.per_ip: dict[str, int] = {}
        self.stopping = False
        self._servers: list[asyncio.Server] = []

    def set_deps(self, deps: ImapDeps) -> None:
        """Reload: new connections use the new configuration."""
        self.deps = deps

    def added(self, conn: ImapConnection) -> None:
        self.connections.add(conn)
        self.per_ip[conn.peer.ip] = self.per_ip.get(conn.peer.ip, 0) + 1

    def removed(self, conn: ImapConnection) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            left = self.per_ip.get(conn.peer.ip, 0) - 1
            if left > 0:
                self.per_ip[conn.peer.ip] = left
            else:
                self.per_ip.pop(conn.peer.ip, None)

    def refusal(self, ip: str) -> str | None:
        """Why a new connection from `ip` is refused, or None."""
        cfg = self.deps.config.imap
        if self.stopping:
            return "Server shutting down"
        if len(self.connections) > cfg.max_connections:
            return "Too many connections"
        per_ip = cfg.max_connections_per_ip
        if per_ip and self.per_ip.get(ip, 0) > per_ip:
            return "Too many connections from your address"
        return None

    def statistics(self) -> dict[str, int]:
        return {"connections": len(self.connections), **self.deps.watch.statistics()}

    async def start(
        self, listen: list[tuple[str, int]], *, ssl_context: ssl.SSLContext | None = None
    ) -> list[tuple[str, int]]:
        """Listen on `listen`; returns the bound addresses (implicit TLS with ssl_context)."""

        def connection() -> ImapConnection:
            return ImapConnection(self, implicit_tls=ssl_context)

        servers, bound = await bind(connection, listen, backlog=1024)
        self._servers.extend(servers)
        return bound

    async def stop(self, grace: float = 10.0) -> None:
        self.stopping = True
        await drain(self._servers, self.connections, grace=grace, finish=_finish)
