"""smtp.client — the ESMTP client adapter: one connection to one peer over asyncio streams.

Description:
    Moves bytes between a TCP connection and the sans-I/O engine
    (smtp/client_protocol.py), runs the clocks, and applies the TLS and
    AUTH policy. The delivery agent (delivery/smtp.py) decides where to
    connect; this module talks to one address.

        conn = await SmtpClientConnection.open(host="mx.example", address="192.0.2.1",
                                               port=25, settings=settings)
        done = await conn.send(transaction)     # TransactionDone, never raises
        await conn.reset()                      # RSET: is an idle connection alive?
        await conn.quit()

    `open` connects (connect_timeout), reads the greeting, says EHLO (HELO
    after a 5xx), applies the STARTTLS policy, authenticates when
    credentials are given, and returns a connection ready for
    transactions — or raises `SessionFailure` (a DeliveryFailure with the
    reply for the recipients and a reason for the log) after closing
    everything. `send` returns the engine's TransactionDone: a lost
    connection or an expired timer ends the transaction with 451 4.4.2
    for the recipients without a final answer. Several transactions may
    go over one connection (the engine sends RSET itself when a failed one
    left the server mid-transaction). `deliver_transactions` does open,
    send each, quit in one call.

    STARTTLS policy (`settings.tls`, RFC 3207):
      none     never STARTTLS.
      may      STARTTLS when offered, certificate not checked
               (opportunistic, RFC 7435); a refused STARTTLS goes on in
               plaintext; a failed handshake raises SessionFailure with
               `plaintext_retry=True`, and the agent connects again to the
               same address without TLS, as Postfix does.
      encrypt  STARTTLS required, certificate not checked: not offered,
               refused or failed → SessionFailure 4.7.4 / 4.7.5.
      verify   as encrypt, and the certificate must chain to a trusted CA
               and match the host name we connected to (the MX name, or
               the nexthop's), RFC 6125.
    SSL contexts come from `settings.ssl_context_factory(verify)` when
    given (tests pass a trustme CA), else ssl.create_default_context() for
    verify and a context with verification off for may/encrypt.

    AUTH (RFC 4954): with `settings.auth_user` and a peer offering AUTH,
    PLAIN or LOGIN — only over TLS unless `allow_plaintext_auth`; a peer
    without AUTH gets the mail unauthenticated (Postfix does the same); a
    refusal raises SessionFailure 4.7.0 (the agent defers: a wrong
    password must not bounce mail).

    Timeouts (RFC 5321 §4.5.3.2): connect_timeout for the TCP connection
    and the TLS handshake; command_timeout for the greeting and every
    reply; data_timeout for writing the content and for the reply after
    it (§4.5.3.2.6: 10 minutes). A timeout is a lost connection
    ("conversation timed out"), never an exception.

Security:
    Runs as the mail user; trusts nothing the peer sends (the engine
    parses it). Without "verify" TLS protects against passive listeners
    only. Credentials are never sent in plaintext unless allowed, and
    never logged.

Config:
    [smtp_client] connect_timeout, command_timeout, data_timeout, tls,
    helo_name (via ClientSettings.from_config); the agent adds per
    destination tls_policy and the smart host's credentials.

See also:
    RFC 5321 §3.1, §4.5.3.2; RFC 3207; RFC 4954; RFC 7435;
    smtp/client_protocol.py, delivery/smtp.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn, TypeVar

from postoffice.config.schema import Config
from postoffice.errors import DeliveryFailure
from postoffice.smtp.client_protocol import (
    AuthResult,
    ClientConfig,
    ClientProtocol,
    Closed,
    Event,
    Extensions,
    Greeted,
    RecipientResult,
    ResetDone,
    State,
    TlsReady,
    TlsRefused,
    Transaction,
    TransactionDone,
)
from postoffice.smtp.replies import Reply

__all__ = [
    "TLS_POLICIES",
    "ClientSettings",
    "SessionFailure",
    "SmtpClientConnection",
    "default_ssl_context",
    "deliver_transactions",
    "transient",
]

TLS_POLICIES = ("none", "may", "encrypt", "verify")
READ_SIZE = 65536
CLOSE_TIMEOUT = 5.0  # seconds to wait for the transport to close (TLS close_notify)
QUIT_TIMEOUT = 10.0  # at most this long for the reply to QUIT: nothing depends on it


def transient(reply: Reply) -> Reply:
    """`reply` as a temporary failure: 554 5.7.1 → 454 4.7.1 (same text)."""
    if reply.code < 500:
        return reply
    enhanced = "4" + reply.enhanced[1:] if reply.enhanced else "4.0.0"
    return Reply(code=reply.code - 100, enhanced=enhanced, text=reply.text)


class SessionFailure(DeliveryFailure):
    """No transaction was possible over this connection.

    `reply` is for every recipient (always transient); `reason` is for the
    log; `plaintext_retry` says the TLS handshake failed under "may"."""

    def __init__(self, reply: Reply, reason: str, *, plaintext_retry: bool = False) -> None:
        super().__init__(reply, reason)
        self.plaintext_retry = plaintext_retry


def default_ssl_context(verify: bool) -> ssl.SSLContext:
    """The system's CA store with host name checks (verify), or encryption
    without authentication (may, encrypt: RFC 7435 opportunistic TLS)."""
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientSettings:
    """How to talk to one peer."""

    helo_name: str
    connect_timeout: float = 30.0
    command_timeout: float = 300.0
    data_timeout: float = 600.0
    tls: str = "may"  # one of TLS_POLICIES
    auth_user: str = ""
    auth_password: str = ""
    allow_plaintext_auth: bool = False
    ssl_context_factory: Callable[[bool], ssl.SSLContext] | None = None

    @classmethod
    def from_config(cls, config: Config) -> ClientSettings:
        c = config.smtp_client
        return cls(
            helo_name=c.helo_name or config.hostname or "localhost",
            connect_timeout=c.connect_timeout,
            command_timeout=c.command_timeout,
            data_timeout=c.data_timeout,
            tls=c.tls,
        )

    def ssl_context(self, verify: bool) -> ssl.SSLContext:
        factory = self.ssl_context_factory or default_ssl_context
        return factory(verify)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "Connection timed out"
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)  # asyncio's own strerror names the address again
    return type(exc).__name__


class SmtpClientConnection:
    """One SMTP session to one peer address (see the module manual)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        host: str,
        address: str,
        port: int,
        settings: ClientSettings,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.host = host
        self.address = address
        self.port = port
        self.settings = settings
        self.engine = ClientProtocol(ClientConfig(helo_name=settings.helo_name))
        self.transactions = 0  # transactions sent (or refused locally) on this connection
        self._broken = False

    # -- properties -----------------------------------------------------------------------

    @property
    def relay(self) -> str:
        """`host[address]:port` for the log (Postfix's relay= value)."""
        return f"{self.host}[{self.address}]:{self.port}"

    @property
    def extensions(self) -> Extensions:
        return self.engine.extensions

    @property
    def tls(self) -> bool:
        return self.engine.tls

    @property
    def usable(self) -> bool:
        """Ready for another transaction."""
        return not self._broken and self.engine.state is State.READY

    # -- opening ----------------------------------------------------------------------------

    @classmethod
    async def open(
        cls, *, host: str, address: str, port: int, settings: ClientSettings
    ) -> SmtpClientConnection:
        """Connect and greet; SessionFailure when no transaction is possible."""
        relay = f"{host}[{address}]:{port}"
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(address, port, limit=READ_SIZE),
                settings.connect_timeout,
            )
        except (OSError, TimeoutError) as exc:
            reason = f"connect to {relay}: {_reason(exc)}"
            raise SessionFailure(Reply(code=451, enhanced="4.4.1", text=reason), reason) from None
        conn = cls(reader, writer, host=host, address=address, port=port, settings=settings)
        try:
            await conn._start()
        except BaseException:
            conn.abort()
            raise
        return conn

    async def _start(self) -> None:
        events = await self._until(Greeted)
        greeted = _first(events, Greeted)
        if greeted is None:
            self._fail_closed(events, "refused to talk to me")
        policy = self.settings.tls
        if policy not in TLS_POLICIES:
            raise SessionFailure(
                Reply(code=451, enhanced="4.3.5", text="TLS policy misconfigured"),
                f"unknown TLS policy {policy!r}",
            )
        if policy != "none":
            await self._starttls(policy)
        if self.settings.auth_user and self.extensions.auth:
            await self._authenticate()

    async def _starttls(self, policy: str) -> None:
        required = policy in ("encrypt", "verify")
        if not self.extensions.starttls:
            if required:
                await self.quit()
                text = "TLS is required, but was not offered by host"
                raise SessionFailure(
                    Reply(code=450, enhanced="4.7.4", text=text), f"{text} {self.relay}"
                )
            return
        self.engine.starttls()
        events = await self._until(TlsReady, TlsRefused)
        if _first(events, TlsReady) is None:
            refused = _first(events, TlsRefused)
            if refused is None:
                self._fail_closed(events, "dropped the connection at STARTTLS")
            elif not required:
                return  # RFC 3207 §4: go on without TLS
            await self.quit()
            text = f"TLS is required, but host refused to start TLS: {refused.reply}"
            raise SessionFailure(
                Reply(code=450, enhanced="4.7.4", text=text), f"{text} ({self.relay})"
            )
        context = self.settings.ssl_context(policy == "verify")
        try:
            await asyncio.wait_for(
                self._writer.start_tls(context, server_hostname=self.host),
                self.settings.connect_timeout,
            )
        except (OSError, TimeoutError, ssl.SSLError, ssl.CertificateError) as exc:
            self.abort()
            reason = f"TLS handshake with {self.relay} failed: {_reason(exc)}"
            if isinstance(exc, ssl.SSLCertVerificationError):
                reason = f"TLS certificate of {self.relay} not trusted: {exc.verify_message}"
            raise SessionFailure(
                Reply(code=454, enhanced="4.7.5", text="Cannot start TLS: handshake failure"),
                reason,
                plaintext_retry=not required,
            ) from None
        self.engine.tls_started()
        events = await self._until(Greeted)
        if _first(events, Greeted) is None:
            self._fail_closed(events, "refused EHLO after STARTTLS")

    async def _authenticate(self) -> None:
        s = self.settings
        events = self.engine.authenticate(
            s.auth_user, s.auth_password, allow_plaintext=s.allow_plaintext_auth
        )
        if not events:
            events = await self._until(AuthResult)
        result = _first(events, AuthResult)
        if result is not None and result.ok:
            return
        if result is None:
            self._fail_closed(events, "dropped the connection during AUTH")
        await self.quit()
        reply = transient(result.reply)
        raise SessionFailure(
            Reply(code=reply.code, enhanced=reply.enhanced or "4.7.0", text=reply.text),
            f"SASL authentication failed with {self.relay}: {result.reply}",
        )

    def _fail_closed(self, events: list[Event], what: str) -> NoReturn:
        """The session ended before it was ready: raise for the agent."""
        closed = _first(events, Closed)
        self.abort()
        reply = closed.reply if closed is not None else Reply(code=451, enhanced="4.4.2")
        stage = closed.stage if closed is not None else "session"
        reason = f"host {self.relay} {what}: {reply} (in reply to {stage})"
        if reply.enhanced == "4.4.2" or reply.enhanced == "4.5.0":
            reason = f"{reply.text} with {self.relay}"
        raise SessionFailure(transient(reply), reason)

    # -- transactions -----------------------------------------------------------------------

    async def send(self, tx: Transaction) -> TransactionDone:
        """Send one transaction; the per-recipient results, never an exception
        for what a peer or the network does."""
        if not self.usable:
            reply = Reply(code=451, enhanced="4.4.2", text="Connection no longer usable")
            results = tuple(
                RecipientResult(address=r.address, reply=reply, stage="session")
                for r in tx.recipients
            )
            return TransactionDone(results=results, content_sent=False)
        self.transactions += 1
        events = self.engine.send_transaction(tx)
        if not events:
            events = await self._until(TransactionDone)
        done = _first(events, TransactionDone)
        assert done is not None  # the engine always ends a transaction
        return done

    async def reset(self) -> bool:
        """RSET: True when the peer answered 250 (the connection is alive)."""
        if not self.usable:
            return False
        self.engine.reset()
        events = await self._until(ResetDone)
        done = _first(events, ResetDone)
        return done is not None and 200 <= done.reply.code < 300

    async def quit(self) -> None:
        """QUIT (RFC 5321 §4.1.1.10: wait for the reply), then close."""
        if self.usable:
            self.engine.quit()
            await self._until(Closed, timeout=min(QUIT_TIMEOUT, self.settings.command_timeout))
        await self.close()

    def abort(self) -> None:
        """Close at once, without QUIT."""
        self._broken = True
        if not self._writer.is_closing():
            self._writer.close()

    async def close(self) -> None:
        self.abort()
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
            await asyncio.wait_for(self._writer.wait_closed(), CLOSE_TIMEOUT)

    # -- the pump -----------------------------------------------------------------------------

    async def _until(self, *wanted: type[Event], timeout: float | None = None) -> list[Event]:
        """Send what the engine queued and read until it emits `wanted` or Closed."""
        collected: list[Event] = []
        while True:
            collected.extend(await self._flush())
            if any(isinstance(e, (*wanted, Closed)) for e in collected) or self.engine.closed:
                if self.engine.closed:
                    self._broken = True
                return collected
            collected.extend(await self._read(timeout))

    async def _flush(self) -> list[Event]:
        out = self.engine.data_to_send()
        if not out or self._broken:
            return []
        timeout = self.settings.data_timeout if len(out) > READ_SIZE else None
        try:
            self._writer.write(out)
            await asyncio.wait_for(self._writer.drain(), timeout or self.settings.command_timeout)
        except TimeoutError:
            return self._lost(timed_out=True)
        except (OSError, ssl.SSLError):
            return self._lost(timed_out=False)
        return []

    async def _read(self, timeout: float | None = None) -> list[Event]:
        engine = self.engine
        if timeout is None:
            timeout = self.settings.command_timeout  # RFC 5321 §4.5.3.2.1-5, 7
            if engine.awaiting == "final":
                timeout = self.settings.data_timeout  # RFC 5321 §4.5.3.2.6
        try:
            data = await asyncio.wait_for(self._reader.read(READ_SIZE), timeout)
        except TimeoutError:
            return self._lost(timed_out=True)
        except (OSError, ssl.SSLError):
            return self._lost(timed_out=False)
        if not data:
            return self._lost(timed_out=False)
        return engine.receive_data(data)

    def _lost(self, *, timed_out: bool) -> list[Event]:
        events = self.engine.connection_lost(timed_out=timed_out)
        self.abort()
        return events


_E = TypeVar("_E", bound=Event)


def _first(events: Sequence[Event], kind: type[_E]) -> _E | None:
    for event in events:
        if isinstance(event, kind):
            return event
    return None


async def deliver_transactions(
    *,
    host: str,
    address: str,
    port: int,
    transactions: Sequence[Transaction],
    settings: ClientSettings,
) -> list[TransactionDone]:
    """Open one connection, send every transaction over it, QUIT.

    Raises SessionFailure when the connection cannot be opened; a
    transaction that finds the connection gone gets 451 4.4.2 results."""
    conn = await SmtpClientConnection.open(host=host, address=address, port=port, settings=settings)
    try:
        return [await conn.send(tx) for tx in transactions]
    finally:
        await conn.quit()
