"""The SMTP server adapter: moves bytes between sockets and the sans-I/O engine.

Description:
    One asyncio.Protocol per connection. Bytes go into
    `ServerProtocol.receive_data`; each event goes to `SmtpSession.handle`;
    answers go back with `ServerProtocol.answer`. When an answer is a
    coroutine (the spool commit of DataEnd) reading pauses until it is done,
    so replies stay in command order and a pipelining client cannot make us
    buffer without bound. Output is flushed once per batch of input
    (RFC 2920 §3.1: the server may group replies).

    Timeouts follow RFC 5321 §4.5.3.2: `[smtp] command_timeout` while
    waiting for a command, `[smtp] data_timeout` between data blocks; on
    expiry the client gets `421 4.4.2` and the connection closes.

    `SmtpServer` owns the listening sockets, the connection limit (421
    4.7.0 beyond `[smtp] max_connections`) and a graceful `stop()`
    (stop accepting, tell idle clients 421, let running transactions end).
    `start(listen, ssl_context=None, submission=False)` may be called once
    per kind of listener: [smtp] listen; [submission] listen with
    `submission=True` (port 587, RFC 6409); [submission] tls_listen with
    `ssl_context` and `submission=True` (port 465, implicit TLS, RFC 8314
    §3.3: the handshake comes first, the 220 greeting is sent over TLS).
    Sessions see the kind as `Peer.submission`.

STARTTLS (RFC 3207):
    Advertised when SessionDeps.tls_context is set. When the session
    answers StartTLS with 220, the adapter, in the same callback: stops
    reading (`pause_reading`), writes the 220, and runs the first step of
    `loop.start_tls(..., server_side=True)`, which makes the TLS layer the
    socket's reader (`net.starttls.start_now`: an eager start, because uvloop starts
    reading a new connection after connection_made() whatever
    pause_reading() said). So no read can happen between the 220 and the
    TLS layer taking over. The engine has already dropped whatever followed
    STARTTLS in the same read (a pipelined `RSET`, an injected `MAIL
    FROM`); plaintext that arrives later is read by the TLS layer, where it
    fails the handshake (RFC 3207 §4.2, CVE-2011-0411). Decrypted input
    that rides with the client's last handshake flight is kept and
    processed once the handshake is done. Then `engine.tls_started()`
    forgets HELO/EHLO and the transaction (EHLO is required again), the
    session is marked TLS (Received: "with ESMTPS", RFC 3848) with the
    protocol and cipher for its "(using ...)" comment, and "Anonymous TLS
    connection established from ..." is logged. A failed handshake (or one
    that takes longer than command_timeout) is logged as "SSL_accept error
    from ..." and the connection closed. Implicit TLS takes the same path
    from connection_made(), before the greeting.

Security:
    Plaintext received before a TLS handshake is never interpreted (see
    above). The TLS context and its policy come from net/tls.py.

Config:
    [smtp] listen, max_connections, command_timeout, data_timeout;
    [submission] listen, tls_listen; [tls] (through SessionDeps.tls_context).

See also:
    smtp/protocol.py, smtp/session.py, net/tls.py, RFC 3207, RFC 8314,
    RFC 3848, RFC 6409.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
from collections.abc import Callable, Coroutine
from typing import Any, cast

from postoffice.net.listeners import bind, drain
from postoffice.net.starttls import begin_upgrade, finish_upgrade
from postoffice.net.tls import describe_connection
from postoffice.policy.engine import PolicyEngine
from postoffice.smtp import events as ev
from postoffice.smtp import replies
from postoffice.smtp.events import EngineConfig
from postoffice.smtp.protocol import ServerProtocol
from postoffice.smtp.session import Peer, SessionDeps, SmtpSession

log = logging.getLogger("postoffice.smtp")


class SmtpConnection(asyncio.Protocol):
    """One client connection."""

    def __init__(
        self,
        server: SmtpServer,
        *,
        implicit_tls: ssl.SSLContext | None = None,
        submission: bool = False,
    ) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.engine: ServerProtocol | None = None
        self.session: SmtpSession | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._busy = False  # waiting for an async answer
        self._pending_input: list[bytes] = []
        self._closed = False
        self._gone = False  # connection_lost done (or its equivalent after a failed handshake)
        self._implicit_tls = implicit_tls
        self._submission = submission
        self._upgrading = False  # between the decision to start TLS and the handshake's end
        self._tls_layer = False  # loop.start_tls() took the socket: input comes decrypted
        self._early: list[bytes] = []  # decrypted input that came before _handshake resumed
        self.answer_task: asyncio.Future[replies.Reply] | None = None
        self.connect_task: asyncio.Future[None] | None = None
        self._policy: PolicyEngine | None = None
        self.handshake_task: asyncio.Task[None] | None = None

    # -- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peername = transport.get_extra_info("peername") or ("", 0)
        ip, port = str(peername[0]), int(peername[1]) if len(peername) > 1 else 0
        peer = Peer(ip=ip, port=port, name=_peer_name(ip), submission=self._submission)
        deps = self.server.deps
        self.session = SmtpSession(deps, peer)
        config = self.server.engine_config()
        if deps.auth is not None:  # RFC 4954: AUTH offered; only under TLS off loopback
            loopback = ip in ("127.0.0.1", "::1") or ip.startswith("127.")
            config = dataclasses.replace(
                config,
                auth_mechanisms=tuple(deps.config.auth.mechanisms),
                auth_requires_tls=deps.config.auth.require_tls and not loopback,
            )
        self.engine = ServerProtocol(config)
        log.info("connect from %s", peer.label)
        self.server.connections.add(self)
        if self._implicit_tls is not None:  # RFC 8314 §3.3: TLS first, then the greeting
            # (at once: uvloop reads a new socket right after connection_made)
            self._start_tls(self._implicit_tls)
            return
        self._greet()

    def _greet(self) -> None:
        """The greeting — after the connect-time policy when there is one."""
        policy = self.server.deps.policy_engine
        if policy is None or self._policy is not None or self.session is None:
            self._greet_now()
            return
        # tcprules, access Connect:, blocklists, limits: decided before the greeting.
        self._busy = True  # input that comes early waits in _pending_input
        self._policy = policy  # the engine that counted this client (reloads replace deps)
        self.connect_task = asyncio.ensure_future(self._connect_check(policy, self.session.peer))

    async def _connect_check(self, policy: PolicyEngine, peer: Peer) -> None:
        session = self.session
        assert session is not None and self.engine is not None
        try:
            state = await policy.new_client(peer.ip, listener=peer.listener)
            verdict = await policy.on_connect(state)
        except Exception:  # a bug below us: let the client in, log the traceback
            log.exception("connect check failed for %s", peer.label)
            self._busy = False
            if not self._closed:
                self._greet_now()
            return
        session.client = state
        self._busy = False
        if self._closed:
            return
        if state.hostname:  # the PTR name; Received: notes when it is not confirmed
            session.peer = dataclasses.replace(session.peer, name=state.hostname)
        if not verdict.accepted:
            log.info("NOQUEUE: reject: CONNECT from %s: %s (%s)", peer.label, verdict.reply,
                     verdict.reason)  # fmt: skip
            self.engine.greeting(verdict.reply)  # 554 / 421: the engine closes after it
            self._flush()
            return
        self._greet_now()
        pending, self._pending_input = self._pending_input, []
        if pending and not self._closed:
            self._pump(b"".join(pending))

    def _greet_now(self) -> None:
        engine, session = self.engine, self.session
        assert engine is not None and session is not None
        if len(self.server.connections) > self.server.max_connections:
            log.warning("too many connections: refusing %s", session.peer.label)
            engine.greeting(replies.TOO_MANY_CONNECTIONS)
        elif self.server.stopping:
            engine.greeting(replies.SHUTTING_DOWN)
        else:
            engine.greeting(session.greeting())
        self._flush()
        self._arm_timer()

    def data_received(self, data: bytes) -> None:
        if self._upgrading:
            if self._tls_layer:  # over TLS already, before _handshake() resumed: keep it
                self._early.append(data)
            # else RFC 3207 §4.2 / CVE-2011-0411: plaintext sent before the TLS
            # handshake is never interpreted. (Reading is paused, so this is
            # only a second line of defence.)
            return
        if self._busy:
            self._pending_input.append(data)
            return
        self._pump(data)

    def eof_received(self) -> bool | None:
        if (
            self.engine is not None
            and self.session is not None
            and not self._busy
            and not self._upgrading
        ):
            for event in self.engine.eof_received():
                self.session.handle(event)
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        task = self.handshake_task
        if self._upgrading and task is not None and not task.done():
            return  # _handshake() ends the connection, and logs why
        self._finish()

    def _finish(self) -> None:
        """The connection is over: forget the session, once."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._gone:
            return
        self._gone = True
        if self.session is not None:
            s = self.session
            s.close()
            if self._policy is not None and s.client is not None:
                self._policy.on_disconnect(s.client)
            log.info("disconnect from %s %s", s.peer.label, _command_counts(s.counts))
        self.server.connections.discard(self)

    # -- the pump ---------------------------------------------------------------

    def _pump(self, data: bytes) -> None:
        engine, session = self.engine, self.session
        assert engine is not None and session is not None
        events = engine.receive_data(data)
        while events:
            answered = False
            for event in events:
                answer = session.handle(event)
                if not event.needs_answer:
                    continue
                if answer is None:  # a session bug: never leave the client hanging
                    answer = replies.LOCAL_ERROR
                if isinstance(answer, replies.Reply):
                    engine.answer(answer)
                    if isinstance(event, ev.StartTLS) and 200 <= answer.code < 300:
                        # The engine has dropped the rest of this read; read no more.
                        self._starttls()
                        return
                    answered = True
                    continue
                self._await_answer(answer)
                return
            events = engine.receive_data(b"") if answered else []
        self._flush()

    def _await_answer(self, coro: Coroutine[Any, Any, replies.Reply]) -> None:
        self._busy = True
        assert self.transport is not None
        self.transport.pause_reading()
        self._flush()
        task = asyncio.ensure_future(coro)
        task.add_done_callback(self._answered)
        self.answer_task = task  # for in-process drivers (testing/transcript.py)

    def _answered(self, task: asyncio.Future[replies.Reply]) -> None:
        engine = self.engine
        assert engine is not None
        try:
            reply = task.result()
        except Exception:  # a bug below us: tell the client to retry, log the traceback
            log.exception("session failed to answer")
            reply = replies.LOCAL_ERROR
        self._busy = False
        if self._closed:
            return
        engine.answer(reply)
        pending, self._pending_input = self._pending_input, []
        self._pump(b"".join(pending))
        if (
            not self._busy
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
        if engine.closed and not self._closed:
            self._closed = True
            transport.close()
        else:
            self._arm_timer()

    # -- TLS ------------------------------------------------------------------------

    def _starttls(self) -> None:
        """The session answered STARTTLS with 220 (RFC 3207 §4)."""
        session = self.session
        assert session is not None
        context = session.deps.tls_context
        if context is None:  # a session that says 220 without a context: refuse to go on
            log.error("STARTTLS from %s answered 220 without a TLS context", session.peer.label)
            self._upgrading = True  # nothing more is read in plaintext either way
            self._flush()
            if self.transport is not None:
                self.transport.close()
            self._finish()
            return
        self._start_tls(context)

    def _start_tls(self, context: ssl.SSLContext) -> None:
        transport = self.transport
        session = self.session
        assert transport is not None and session is not None
        self._upgrading = True
        self._pending_input.clear()
        # From here the TLS layer reads the socket, never the engine: stop
        # reading before the 220 leaves, so no plaintext read can slip in
        # between it and the handshake (RFC 3207 §4.2, CVE-2011-0411).
        transport.pause_reading()
        self._flush()  # the 220 (written before any TLS record; none for implicit TLS)
        started = begin_upgrade(
            transport, self, context, timeout=session.deps.config.smtp.command_timeout
        )
        self._tls_layer = True  # from now on input reaches us only decrypted
        self.handshake_task = asyncio.ensure_future(self._handshake(transport, started))

    async def _handshake(
        self, raw: asyncio.Transport, started: asyncio.Future[asyncio.Transport | None]
    ) -> None:
        engine, session = self.engine, self.session
        assert engine is not None and session is not None
        tls, reason = await finish_upgrade(started)
        if tls is None:
            if not self._closed:
                log.info("SSL_accept error from %s: %s", session.peer.label, reason)
            self.server.tls_failures += 1
            self._closed = True
            raw.abort()
            self._finish()
            return
        self.server.tls_handshakes += 1
        if self._closed:  # timed out, shut down or gone while the handshake ended
            tls.abort()
            self._finish()
            return
        self.transport = tls
        self._upgrading = False
        engine.tls_started()  # RFC 3207 §4.2: EHLO again, no transaction
        session.tls = True
        session.tls_info = describe_connection(tls.get_extra_info("ssl_object"))
        log.info("Anonymous TLS connection established from %s: %s",
                 session.peer.label, session.tls_info)  # fmt: skip
        if self._implicit_tls is not None:
            self._greet()
        else:
            self._arm_timer()
        early, self._early = self._early, []
        if early and not self._closed:
            self._pump(b"".join(early))

    # -- timeouts ----------------------------------------------------------------

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._closed or self.engine is None:
            return
        cfg = self.server.deps.config.smtp
        # RFC 5321 §4.5.3.2.5 / §4.5.3.2.7
        timeout = cfg.data_timeout if self.engine.awaiting == "data" else cfg.command_timeout
        self._timer = asyncio.get_running_loop().call_later(timeout, self._timed_out)

    def _timed_out(self) -> None:
        if self._upgrading:  # nothing can be said in plaintext now: just close
            if self.session is not None:
                log.info("SSL_accept error from %s: timeout", self.session.peer.label)
            self._closed = True
            if self.transport is not None:
                self.transport.abort()
            return
        if self._busy or self.engine is None:
            self._arm_timer()
            return
        if self.session is not None:
            log.info("timeout after %s from %s", self.engine.awaiting, self.session.peer.label)
        self.engine.close(replies.TIMEOUT)
        self._flush()

    def shutdown(self) -> None:
        """Server stopping: an idle client gets 421 now; a busy one finishes first."""
        if self._upgrading and not self._closed and self.transport is not None:
            self._closed = True  # mid-handshake: nothing to say, nothing to finish
            self.transport.abort()
            return
        if self.engine is None or self._busy or self._closed:
            return
        if self.engine.awaiting == "command":
            self.engine.close(replies.SHUTTING_DOWN)
            self._flush()


# Postfix's "disconnect from ... ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5".
_COMMAND_NAMES = {
    "Hello": "ehlo", "MailFrom": "mail", "RcptTo": "rcpt", "DataStart": "data",
    "Reset": "rset", "Verify": "vrfy", "Expand": "expn", "StartTLS": "starttls",
    "Quit": "quit", "Etrn": "etrn", "AuthStart": "auth", "CommandRejected": "unknown",
}  # fmt: skip


def _command_counts(counts: dict[str, int]) -> str:
    parts = [(name, counts[event]) for event, name in _COMMAND_NAMES.items() if event in counts]
    total = sum(n for _, n in parts)
    return " ".join([*(f"{name}={n}" for name, n in parts), f"commands={total}"])


def _peer_name(ip: str) -> str:
    # Reverse DNS arrives with dns.py; until then loopback is "localhost" and
    # everything else "unknown" (Postfix's word for a client without a name).
    if ip in ("127.0.0.1", "::1") or ip.startswith("127."):
        return "localhost"
    return "unknown"


class SmtpServer:
    """Listening sockets plus the set of live connections."""

    def __init__(
        self,
        deps: SessionDeps,
        *,
        engine_config: Callable[[], EngineConfig] | None = None,
    ) -> None:
        self.deps = deps
        self.connections: set[SmtpConnection] = set()
        self.stopping = False
        self.tls_handshakes = 0
        self.tls_failures = 0
        self._servers: list[asyncio.Server] = []
        self._engine_config = engine_config

    @property
    def max_connections(self) -> int:
        return self.deps.config.smtp.max_connections

    def engine_config(self) -> EngineConfig:
        if self._engine_config is not None:
            return self._engine_config()
        return engine_config_from(self.deps)

    def set_deps(self, deps: SessionDeps) -> None:
        """Reload: new connections use the new configuration and maps."""
        self.deps = deps

    def statistics(self) -> dict[str, int]:
        return {
            "connections": len(self.connections),
            "tls_handshakes": self.tls_handshakes,
            "tls_failures": self.tls_failures,
        }

    async def start(
        self,
        listen: list[tuple[str, int]],
        *,
        ssl_context: ssl.SSLContext | None = None,
        submission: bool = False,
    ) -> list[tuple[str, int]]:
        """Listen on `listen`; returns the bound addresses. `ssl_context`:
        implicit TLS (RFC 8314 §3.3); `submission`: a submission port (RFC 6409)."""

        def connection() -> SmtpConnection:
            return SmtpConnection(self, implicit_tls=ssl_context, submission=submission)

        servers, bound = await bind(connection, listen)
        self._servers.extend(servers)
        return bound

    async def stop(self, grace: float = 10.0) -> None:
        self.stopping = True
        await drain(self._servers, self.connections, grace=grace)


def engine_config_from(deps: SessionDeps) -> EngineConfig:
    cfg = deps.config
    return EngineConfig(
        hostname=cfg.hostname,
        max_message_size=cfg.limits.max_message_size,
        max_recipients=cfg.limits.max_recipients,
        max_errors=cfg.smtp.max_errors,
        etrn=deps.flush_domain is not None,
        starttls=deps.tls_context is not None,  # RFC 3207: only with a certificate
    )
