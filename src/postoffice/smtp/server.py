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

Config:
    [smtp] listen, max_connections, command_timeout, data_timeout.

See also:
    smtp/protocol.py, smtp/session.py, net/listen.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, cast

from postoffice.smtp import replies
from postoffice.smtp.events import EngineConfig
from postoffice.smtp.protocol import ServerProtocol
from postoffice.smtp.session import Peer, SessionDeps, SmtpSession

log = logging.getLogger("postoffice.smtp")


class SmtpConnection(asyncio.Protocol):
    """One client connection."""

    def __init__(self, server: SmtpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.engine: ServerProtocol | None = None
        self.session: SmtpSession | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._busy = False  # waiting for an async answer
        self._pending_input: list[bytes] = []
        self._closed = False
        self.answer_task: asyncio.Future[replies.Reply] | None = None

    # -- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peername = transport.get_extra_info("peername") or ("", 0)
        ip, port = str(peername[0]), int(peername[1]) if len(peername) > 1 else 0
        peer = Peer(ip=ip, port=port, name=_peer_name(ip))
        deps = self.server.deps
        self.session = SmtpSession(deps, peer)
        self.engine = ServerProtocol(self.server.engine_config())
        log.info("connect from %s", peer.label)
        self.server.connections.add(self)
        if len(self.server.connections) > self.server.max_connections:
            log.warning("too many connections: refusing %s", peer.label)
            self.engine.greeting(replies.TOO_MANY_CONNECTIONS)
        elif self.server.stopping:
            self.engine.greeting(replies.SHUTTING_DOWN)
        else:
            self.engine.greeting(self.session.greeting())
        self._flush()
        self._arm_timer()

    def data_received(self, data: bytes) -> None:
        if self._busy:
            self._pending_input.append(data)
            return
        self._pump(data)

    def eof_received(self) -> bool | None:
        if self.engine is not None and self.session is not None and not self._busy:
            for event in self.engine.eof_received():
                self.session.handle(event)
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self.session is not None:
            s = self.session
            s.close()
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
        if not self._busy and self.transport is not None and not self._closed:
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
        if self._busy or self.engine is None:
            self._arm_timer()
            return
        if self.session is not None:
            log.info("timeout after %s from %s", self.engine.awaiting, self.session.peer.label)
        self.engine.close(replies.TIMEOUT)
        self._flush()

    def shutdown(self) -> None:
        """Server stopping: an idle client gets 421 now; a busy one finishes first."""
        if self.engine is None or self._busy or self._closed:
            return
        if self.engine.awaiting == "command":
            self.engine.close(replies.SHUTTING_DOWN)
            self._flush()


# Postfix's "disconnect from ... ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5".
_COMMAND_NAMES = {
    "Hello": "ehlo", "MailFrom": "mail", "RcptTo": "rcpt", "DataStart": "data",
    "Reset": "rset", "Verify": "vrfy", "Expand": "expn", "StartTLS": "starttls",
    "Quit": "quit", "Etrn": "etrn", "CommandRejected": "unknown",
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
        self._servers: list[asyncio.AbstractServer] = []
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

    async def start(self, listen: list[tuple[str, int]]) -> list[tuple[str, int]]:
        loop = asyncio.get_running_loop()
        bound: list[tuple[str, int]] = []
        for host, port in listen:
            srv = await loop.create_server(
                lambda: SmtpConnection(self), host, port, reuse_address=True, backlog=512
            )
            self._servers.append(srv)
            for sock in srv.sockets:
                name = sock.getsockname()
                bound.append((str(name[0]), int(name[1])))
        return bound

    async def stop(self, grace: float = 10.0) -> None:
        self.stopping = True
        for srv in self._servers:
            srv.close()
        for conn in list(self.connections):
            conn.shutdown()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self.connections and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
        for srv in self._servers:
            await srv.wait_closed()


def engine_config_from(deps: SessionDeps) -> EngineConfig:
    cfg = deps.config
    return EngineConfig(
        hostname=cfg.hostname,
        max_message_size=cfg.limits.max_message_size,
        max_recipients=cfg.limits.max_recipients,
        max_errors=cfg.smtp.max_errors,
        etrn=deps.flush_domain is not None,
    )
