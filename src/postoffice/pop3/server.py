"""The POP3 server adapter: moves bytes between sockets and the sans-I/O engine.

Description:
    One asyncio.Protocol per connection. Bytes go into
    `Pop3Protocol.receive_data`; the events go to `Pop3Session.handle`;
    the answers go back with `Pop3Protocol.answer`. When the session
    answers with an async iterator (file reads, password checks, the
    update) reading pauses until the last answer is in, so replies stay in
    command order and a pipelining client cannot make us buffer without
    bound. The session yields the answers of a long pipelined batch in
    groups; each group is written as soon as it is ready, and while the
    transport's buffer is over its high-water mark (pause_writing) the
    next group waits, so a client that pipelines RETRs without reading
    holds at most one group in our memory.

    `Pop3Server` owns the listening sockets, the connection limit
    ("-ERR [SYS/TEMP] Too many connections" beyond `[pop3] max_connections`)
    and a graceful `stop()`: stop accepting, idle clients get "-ERR
    [SYS/TEMP] Server shutting down." (no update: RFC 1939 §6), busy ones
    finish their answer first. `start(listen, ssl_context=None)` may be
    called once per kind of listener: [pop3] listen (plaintext, STLS when a
    TLS context exists) and [pop3s] listen with `ssl_context` (RFC 8314
    §3.3: the handshake first, the greeting over TLS).

Autologout (RFC 1939 §3):
    `[pop3] autologout` seconds (at least 600) without a byte from the
    client close the connection without a response and without the
    update state; the timer restarts on every read. While an answer is
    being worked on the timer waits.

STLS (RFC 2595 §4):
    Offered when a TLS context exists (and not on [pop3s]). When the
    session answers STLS with +OK the adapter, in the same callback, stops
    reading, writes the +OK and hands the socket to the TLS layer with the
    eager start of smtp/server.py (uvloop reads a new socket right after
    connection_made). The engine has already dropped whatever followed STLS
    in the same read; plaintext sent later reaches the TLS layer, where it
    fails the handshake. Then the engine starts afresh in the authorization
    state and the session is marked TLS. A failed handshake is logged and
    the connection closed.

Security:
    Plaintext received before a TLS handshake is never interpreted. USER,
    PASS and AUTH PLAIN/LOGIN wait for TLS except on loopback ([pop3]
    require_tls). The TLS context and its policy come from net/tls.py.

Config:
    [pop3] listen, autologout, require_tls, max_connections; [pop3s]
    listen; [auth] mechanisms; [tls] (through Pop3Deps.tls_context).

See also:
    pop3/protocol.py, pop3/session.py, smtp/server.py (the same adapter for
    SMTP), net/tls.py, RFC 1939, RFC 2595, RFC 8314.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator
from typing import cast

from postoffice.net.listeners import bind, drain
from postoffice.net.starttls import begin_upgrade, finish_upgrade
from postoffice.pop3 import replies
from postoffice.pop3.events import EngineConfig
from postoffice.pop3.protocol import Pop3Protocol
from postoffice.pop3.replies import Answer, Reply
from postoffice.pop3.session import Client, Pop3Deps, Pop3Session
from postoffice.sasl.mechanisms import MECHANISMS

log = logging.getLogger("postoffice.pop3")

SHUTTING_DOWN = Reply(ok=False, code="SYS/TEMP", text="Server shutting down.")


class Pop3Connection(asyncio.Protocol):
    """One client connection."""

    def __init__(self, server: Pop3Server, *, implicit_tls: ssl.SSLContext | None = None) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.engine: Pop3Protocol | None = None
        self.session: Pop3Session | None = None
        self._implicit_tls = implicit_tls
        self._timer: asyncio.TimerHandle | None = None
        self._busy = False  # an async answer is being worked on
        self._stalled = False  # the transport asked us to stop writing
        self._pending_input: list[bytes] = []
        self._closed = False
        self._gone = False
        self._upgrading = False
        self._tls_layer = False
        self._early: list[bytes] = []
        self._drained = asyncio.Event()
        self._drained.set()
        self.answer_task: asyncio.Future[None] | None = None  # for testing/pop3_transcript.py
        self.handshake_task: asyncio.Future[None] | None = None

    # -- asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername") or ("", 0)
        local = transport.get_extra_info("sockname") or ("", 0)
        client = Client(
            ip=str(peer[0]),
            port=int(peer[1]) if len(peer) > 1 else 0,
            local_ip=str(local[0]) if local else "",
            local_port=int(local[1]) if len(local) > 1 else 0,
        )
        deps = self.server.deps
        self.session = Pop3Session(deps, client)
        self.engine = Pop3Protocol(self.server.engine_config(client, tls=self._implicit_tls))
        self.server.connections.add(self)
        if self._implicit_tls is not None:  # RFC 8314 §3.3: TLS first, then the greeting
            self._start_tls(self._implicit_tls)
            return
        self._greet()

    def _greet(self) -> None:
        engine, session = self.engine, self.session
        assert engine is not None and session is not None
        if len(self.server.connections) > self.server.max_connections:
            log.warning("pop3-login: too many connections: refusing rip=%s", session.client.ip)
            engine.greeting(replies.TOO_MANY_CONNECTIONS)
        elif self.server.stopping:
            engine.greeting(SHUTTING_DOWN)
        else:
            engine.greeting(session.greeting())
        self._flush()
        self._arm_timer()

    def data_received(self, data: bytes) -> None:
        if self._upgrading:
            if self._tls_layer:  # decrypted, before _handshake() resumed: keep it
                self._early.append(data)
            # else RFC 2595 §4: plaintext sent before the handshake is never read
            return
        self._arm_timer()  # RFC 1939 §3: activity restarts the autologout timer
        if self._busy or self._stalled:
            self._pending_input.append(data)
            return
        self._pump(data)

    def eof_received(self) -> bool | None:
        if self.engine is not None:
            self.engine.eof_received()
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        task = self.handshake_task
        if self._upgrading and task is not None and not task.done():
            return  # _handshake() ends the connection and logs why
        self._finish()

    def pause_writing(self) -> None:
        self._stalled = True
        self._drained.clear()

    def resume_writing(self) -> None:
        self._drained.set()
        if not self._stalled:
            return
        self._stalled = False
        if not self._busy and not self._closed:
            pending, self._pending_input = self._pending_input, []
            self._pump(b"".join(pending))

    def _finish(self) -> None:
        """The connection is over: tell the session, once."""
        self._closed = True
        self._drained.set()
        if self._timer is not None:
            self._timer.cancel()
        if self._gone:
            return
        self._gone = True
        if self.session is not None:
            reason = self.engine.close_reason if self.engine is not None else ""
            self.session.close(reason or "eof")
        self.server.connections.discard(self)

    # -- the pump ----------------------------------------------------------------

    def _pump(self, data: bytes) -> None:
        engine, session = self.engine, self.session
        assert engine is not None and session is not None
        events = engine.receive_data(data)
        while events:
            answers = session.handle(events)
            if not isinstance(answers, list):
                self._await_answers(answers)
                return
            for answer in answers:
                engine.answer(answer)
            if engine.upgrading:
                self._starttls()
                return
            if self._stalled:  # the client is not reading: wait for resume_writing
                self._flush()
                if self.transport is not None and not self._closed:
                    self.transport.pause_reading()
                return
            events = engine.receive_data(b"")
        self._flush()

    def _await_answers(self, answers: AsyncIterator[list[Answer]]) -> None:
        self._busy = True
        assert self.transport is not None
        self.transport.pause_reading()
        self._flush()
        task = asyncio.ensure_future(self._drive(answers))
        task.add_done_callback(self._answered)
        self.answer_task = task

    async def _drive(self, answers: AsyncIterator[list[Answer]]) -> None:
        engine = self.engine
        assert engine is not None
        async for group in answers:
            for answer in group:
                engine.answer(answer)
            self._flush()
            await self._drained.wait()

    def _answered(self, task: asyncio.Future[None]) -> None:
        engine = self.engine
        assert engine is not None
        try:
            task.result()
        except Exception:  # a bug below us: answer what is left, log the traceback
            log.exception("pop3 session failed to answer")
            while engine.pending:
                engine.answer(replies.TEMP_FAILURE)
        self._busy = False
        if self._closed:
            return
        if engine.upgrading:
            self._starttls()
            return
        pending, self._pending_input = self._pending_input, []
        self._pump(b"".join(pending))
        if (
            not self._busy
            and not self._stalled
            and not self._upgrading
            and self.transport is not None
            and not self._closed
        ):
            self.transport.resume_reading()

    def _flush(self) -> None:
        engine, transport = self.engine, self.transport
        if engine is None or transport is None:
            return
        out = engine.data_to_send()
        if out:
            transport.write(out)
        if engine.finished and not self._closed:
            self._closed = True
            transport.close()

    # -- TLS -------------------------------------------------------------------------

    def _starttls(self) -> None:
        """The session answered STLS with +OK (RFC 2595 §4)."""
        context = self.server.deps.tls_context
        if context is None:  # the engine offers STLS only with a context
            log.error("pop3: STLS answered +OK without a TLS context")
            self._flush()
            if self.transport is not None:
                self.transport.abort()
            self._finish()
            return
        self._start_tls(context)

    def _start_tls(self, context: ssl.SSLContext) -> None:
        transport = self.transport
        assert transport is not None
        self._upgrading = True
        self._pending_input.clear()
        transport.pause_reading()  # no plaintext read between the +OK and the handshake
        self._flush()
        started = begin_upgrade(transport, self, context, timeout=self.server.handshake_timeout)
        self._tls_layer = True
        self.handshake_task = asyncio.ensure_future(self._handshake(transport, started))

    async def _handshake(
        self, raw: asyncio.Transport, started: asyncio.Future[asyncio.Transport | None]
    ) -> None:
        engine, session = self.engine, self.session
        assert engine is not None and session is not None
        tls, reason = await finish_upgrade(started)
        if tls is None:
            if not self._closed:
                log.info("pop3-login: TLS handshake failed: %s: rip=%s", reason, session.client.ip)
            self._closed = True
            raw.abort()
            self._finish()
            return
        if self._closed:
            tls.abort()
            self._finish()
            return
        self.transport = tls
        self._upgrading = False
        engine.tls_started()
        session.tls = True
        if self._implicit_tls is not None:
            self._greet()
        else:
            self._arm_timer()
        early, self._early = self._early, []
        if early and not self._closed:
            self._pump(b"".join(early))

    # -- autologout ----------------------------------------------------------------

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._closed:
            return
        timeout = self.server.autologout
        self._timer = asyncio.get_running_loop().call_later(timeout, self._timed_out)

    def _timed_out(self) -> None:
        if self._busy and not self._closed:
            self._arm_timer()
            return
        engine, transport = self.engine, self.transport
        if engine is None or transport is None or self._closed:
            return
        engine.close(None, reason="timeout")  # RFC 1939 §3: no response, no update
        self._closed = True
        transport.abort() if self._upgrading else transport.close()

    def shutdown(self) -> None:
        """Server stopping: an idle client is told and dropped (no update)."""
        engine, transport = self.engine, self.transport
        if transport is None or engine is None or self._closed:
            return
        if self._upgrading:
            self._closed = True
            transport.abort()
            return
        if self._busy or engine.awaiting != "command":
            return
        engine.close(SHUTTING_DOWN, reason="shutdown")
        self._flush()


class Pop3Server:
    """Listening sockets plus the set of live connections."""

    def __init__(self, deps: Pop3Deps, *, autologout: float | None = None) -> None:
        self.deps = deps
        self.connections: set[Pop3Connection] = set()
        self.stopping = False
        self._autologout = autologout
        self._servers: list[asyncio.Server] = []

    @property
    def autologout(self) -> float:
        """[pop3] autologout, or the value given (tests)."""
        if self._autologout is not None:
            return self._autologout
        return self.deps.config.pop3.autologout

    @property
    def handshake_timeout(self) -> float:
        return min(60.0, self.autologout)

    @property
    def max_connections(self) -> int:
        return self.deps.config.pop3.max_connections

    def set_deps(self, deps: Pop3Deps) -> None:
        """Reload: new connections use the new configuration."""
        self.deps = deps

    def engine_config(self, client: Client, *, tls: ssl.SSLContext | None) -> EngineConfig:
        config = self.deps.config
        return EngineConfig(
            stls=self.deps.tls_context is not None and tls is None,  # RFC 2595 §4
            plaintext_requires_tls=config.pop3.require_tls and not client.loopback,
            sasl_mechanisms=tuple(
                m.upper() for m in config.auth.mechanisms if m.upper() in MECHANISMS
            ),
        )

    def statistics(self) -> dict[str, int]:
        return {"connections": len(self.connections)}

    async def start(
        self, listen: list[tuple[str, int]], *, ssl_context: ssl.SSLContext | None = None
    ) -> list[tuple[str, int]]:
        """Listen on `listen`; the bound addresses. `ssl_context`: implicit TLS."""

        def connection() -> Pop3Connection:
            return Pop3Connection(self, implicit_tls=ssl_context)

        servers, bound = await bind(connection, listen)
        self._servers.extend(servers)
        return bound

    async def stop(self, grace: float = 10.0) -> None:
        self.stopping = True
        await drain(self._servers, self.connections, grace=grace)
