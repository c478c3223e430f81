"""delivery.smtp — the remote delivery agent: queued mail → other MTAs over SMTP.

Description:
    `RemoteAgent` implements queue.interfaces.DeliveryAgent for recipients
    whose target is routing.targets.Remote (transport "smtp"). One call:

    1. groups the recipients by destination: the target's nexthop, or the
       recipient's domain when it is "" (RFC 5321 §5.1). Nexthops, as
       routing writes them (mailertable, smart_host):
           ""                 MX of the recipient domain ("user@[192.0.2.1]":
                              that address, RFC 5321 §4.1.3)
           "[host]"           that host, no MX lookup; "[host]:port" too
           "host", "host:port"  MX of host
       The port defaults to [smtp_client] port. A nexthop that cannot be
       parsed, or a target that is not Remote, bounces (553 5.1.2 / 5.3.5).
    2. reads the queued message once (in the executor) and applies the
       SenderRewriter when given: the header block (genericstable,
       masquerading) and the envelope senders, as mail leaves the host.
       A recipient's envelope sender is Envelope.sender_for(rcpt): the list
       owner (owner-LIST) for a list's copies, else the message's; each is
       rewritten like any envelope sender (sendmail's masquerade_envelope
       and genericstable apply to every MAIL FROM, the owner's too).
    3. per destination, concurrently, within the connection limits
       (`max_connections` in all, `max_connections_per_destination` each,
       asyncio semaphores held for the whole attempt): the recipients
       grouped by envelope sender (one MAIL FROM per transaction), in
       transactions of at most `max_recipients` (RFC 5321 §4.5.3.1.8), each
       sent over an idle pooled connection to that destination when there
       is one, else to the MX hosts in order (RFC 5321 §5.1: preference
       order, the resolver randomises equals), each host's addresses in
       order, at most MAX_ADDRESSES connection attempts per transaction.
       When this host is itself one of the MX hosts only more preferred
       ones are tried; none left is a mail loop (554 5.4.6, as Postfix's
       "mail for ... loops back to myself").

    Which failures move on to the next address (RFC 5321 §5.1 "try the
    next"): a refused or timed-out connection, a greeting or EHLO/HELO
    that is not 2xx (a 5xx greeting is only skipped — the mail is
    deferred, as Postfix's smtp_skip_5xx_greeting), STARTTLS required but
    unavailable or failing, AUTH refused, and a session that ends (421,
    lost connection, timeout, malformed reply) or a 4xx to MAIL FROM
    before any content was sent. A TLS handshake failure under "may" is
    retried once on the same address in plaintext (Postfix does the same).
    Everything else is final for this attempt: per recipient, 2xx →
    Delivered, 4xx → Deferred, 5xx → Bounced (RCPT replies per recipient;
    the reply to DATA or to the end of data for all accepted ones). A
    connection lost after the content went out defers every recipient
    without an answer and is not retried elsewhere (the message may have
    arrived, RFC 5321 §6.1). When every address failed: Deferred with the
    last failure.

    DNS: DnsPermFail for the MX lookup bounces with its reply (550 5.1.2
    no such domain, 556 5.1.10 null MX); DnsTempFail defers (451 4.4.3).
    When no MX host has an address: bounce (550 5.4.4) if every lookup
    failed permanently, else defer.

    Connection reuse: after a transaction a connection that is still ready
    and has sent fewer than `max_messages_per_connection` messages is kept
    idle for `idle_timeout` seconds (RemoteAgent argument, default 5; 0
    turns pooling off), at most `max_connections_per_destination` per
    destination; the next transaction to that destination — the next
    chunk of recipients, or the next message — takes it. A pooled
    connection the peer has meanwhile closed fails before any content is
    sent, so the transaction simply goes on with a fresh connection (no
    RSET probe needed). close() says QUIT to every idle connection.

    Outcomes: relay "mx.example[192.0.2.1]:25" (Postfix's relay=; "none"
    when no connection was made); the reply is the peer's own (a
    transient copy, 4xx, when a 5xx made us skip a host); detail is
    Postfix-like: "host mx.example[192.0.2.1] said: 550 5.1.1 ... (in
    reply to RCPT TO command)". Expected failures are values; only bugs
    raise.

Security:
    Runs as the mail user. Trusts the resolver and, under TLS "verify",
    the CA store; otherwise STARTTLS only stops passive listeners. The
    smart host's password is only sent over TLS unless
    `allow_plaintext_auth` (tests, a loopback relay).

Config:
    hostname; [smtp_client] port, helo_name, connect_timeout,
    command_timeout, data_timeout, max_recipients,
    max_messages_per_connection, max_connections,
    max_connections_per_destination, tls, tls_policy (keys: the domain
    or "[host]", optionally with ":port"), smart_host_user,
    smart_host_password (used when the nexthop is [routing] smart_host).

See also:
    RFC 5321 §5.1 (locating the target host), §4.5.3.1.8, §6.1; RFC 7505;
    smtp/client.py, smtp/client_protocol.py, dns.py, routing/targets.py,
    routing/generics.py, queue/interfaces.py, Postfix smtp(8).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from typing import Any, BinaryIO, Protocol

from postoffice.config.schema import Config
from postoffice.dns import DnsPermFail, DnsTempFail, MxHost
from postoffice.message.headers import header_end
from postoffice.queue.envelope import Envelope, EnvelopeRecipient
from postoffice.queue.interfaces import Bounced, Deferred, Delivered, Outcome
from postoffice.routing.generics import SenderRewriter
from postoffice.routing.targets import Remote, from_spec
from postoffice.smtp.client import (
    TLS_POLICIES,
    ClientSettings,
    SessionFailure,
    SmtpClientConnection,
    transient,
)
from postoffice.smtp.client_protocol import Recipient, Transaction, TransactionDone
from postoffice.smtp.replies import Reply

__all__ = [
    "MAX_ADDRESSES",
    "Destination",
    "MxResolver",
    "RemoteAgent",
    "parse_nexthop",
]

log = logging.getLogger(__name__)

MAX_ADDRESSES = 10  # connection attempts per transaction (Postfix: smtp_mx_address_limit 5)

BAD_NEXTHOP = Reply(code=553, enhanced="5.1.2", text="Bad destination host")
NOT_REMOTE = Reply(code=554, enhanced="5.3.5", text="Not a remote destination")
TLS_MISCONFIGURED = Reply(code=451, enhanced="4.3.5", text="TLS policy misconfigured")
UNREADABLE = Reply(code=451, enhanced="4.3.0", text="Cannot read the queued message")
NO_ROUTE = Reply(code=451, enhanced="4.4.1", text="No mail server could be reached")


class MxResolver(Protocol):
    """What the agent needs of dns.Resolver (tests pass a small fake)."""

    async def mx(self, domain: str) -> list[MxHost]: ...

    async def addresses(self, host: str) -> list[str]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Destination:
    """Where a group of recipients goes."""

    name: str  # the domain whose MX is looked up, or the host itself
    mx: bool  # False: "[host]" or an address literal, no MX lookup
    port: int
    nexthop: str  # as routing gave it ("" = the recipient domain's MX)
    key: str  # pools, limits and tls_policy: "domain", "[host]", either with ":port"


def parse_nexthop(nexthop: str, domain: str, default_port: int) -> Destination:
    """The Destination of a nexthop (see the module manual); ValueError if malformed."""
    text = nexthop.strip() or domain.strip()
    port = default_port
    if text.startswith("["):  # "[host]", "[host]:port", an address literal
        close = text.find("]")
        if close < 0:
            raise ValueError(f"unbalanced brackets in {text!r}")
        host, rest, mx = text[1:close], text[close + 1 :], False
        if host.lower().startswith("ipv6:"):
            host = host[5:]  # RFC 5321 §4.1.3 IPv6-address-literal
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise ValueError(f"bad port in {text!r}")
            port = int(rest[1:])
    else:
        host, sep, digits = text.rpartition(":")
        if not sep:
            host = digits
        elif not digits.isdigit() or ":" in host:
            raise ValueError(f"bad port in {text!r}")
        else:
            port = int(digits)
        mx = True
    host = host.strip().lower().rstrip(".")
    if not host or any(c.isspace() or c in "[]/\\@" for c in host):
        raise ValueError(f"bad host in {text!r}")
    if not 0 < port < 65536:
        raise ValueError(f"bad port in {text!r}")
    key = host if mx else f"[{host}]"
    if port != default_port:
        key = f"{key}:{port}"
    return Destination(name=host, mx=mx, port=port, nexthop=nexthop.strip(), key=key)


class _Pool:
    """Idle connections by destination key, each closed after idle_timeout."""

    def __init__(self, idle_timeout: float, per_key: int) -> None:
        self.idle_timeout = idle_timeout
        self.per_key = per_key
        self._idle: dict[str, list[tuple[SmtpClientConnection, asyncio.TimerHandle]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return sum(len(v) for v in self._idle.values())

    def take(self, key: str) -> SmtpClientConnection | None:
        entries = self._idle.get(key)
        while entries:
            conn, timer = entries.pop()
            timer.cancel()
            if conn.usable:
                return conn
            self.background(conn.close())
        self._idle.pop(key, None)
        return None

    def put(self, key: str, conn: SmtpClientConnection) -> None:
        entries = self._idle.setdefault(key, [])
        if not conn.usable or self.idle_timeout <= 0 or len(entries) >= self.per_key:
            self.background(conn.quit())
            return
        timer = asyncio.get_running_loop().call_later(self.idle_timeout, self._expire, key, conn)
        entries.append((conn, timer))

    def _expire(self, key: str, conn: SmtpClientConnection) -> None:
        entries = self._idle.get(key, [])
        for i, (c, _timer) in enumerate(entries):
            if c is conn:
                del entries[i]
                self.background(conn.quit())
                break
        if not entries:
            self._idle.pop(key, None)

    def background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for key in list(self._idle):
            for conn, timer in self._idle.pop(key):
                timer.cancel()
                self.background(conn.quit())
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class _Limits:
    """The global and per-destination connection semaphores."""

    def __init__(self, total: int, per_destination: int) -> None:
        self._total = asyncio.Semaphore(max(1, total))
        self._per = max(1, per_destination)
        self._by_key: dict[str, tuple[asyncio.Semaphore, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        sem, users = self._by_key.get(key) or (asyncio.Semaphore(self._per), 0)
        self._by_key[key] = (sem, users + 1)
        try:
            async with sem, self._total:  # the destination's slot first
                yield
        finally:
            sem, users = self._by_key[key]
            if users <= 1:
                del self._by_key[key]
            else:
                self._by_key[key] = (sem, users - 1)


class RemoteAgent:
    """Deliver to other MTAs over SMTP (see the module manual)."""

    def __init__(
        self,
        resolver: MxResolver,
        spool_open_body: Callable[[str], BinaryIO],
        config: Config,
        *,
        rewriter: SenderRewriter | None = None,
        ssl_context_factory: Callable[[bool], ssl.SSLContext] | None = None,
        allow_plaintext_auth: bool = False,
        idle_timeout: float = 5.0,
        executor: Executor | None = None,
    ) -> None:
        c = config.smtp_client
        self._resolver = resolver
        self._open_body = spool_open_body
        self._config = config
        self._rewriter = rewriter
        self._executor = executor
        self._hostname = config.hostname.strip().lower().rstrip(".")
        self._settings = replace(
            ClientSettings.from_config(config),
            ssl_context_factory=ssl_context_factory,
            allow_plaintext_auth=allow_plaintext_auth,
        )
        self._pool = _Pool(idle_timeout, max(1, c.max_connections_per_destination))
        self._limits = _Limits(c.max_connections, c.max_connections_per_destination)
        self._stats = dict.fromkeys(
            ("delivered", "deferred", "bounced", "connections", "reused", "tls"), 0
        )

    def statistics(self) -> dict[str, int]:
        """Recipient outcomes and connections since start; `idle` pooled now."""
        return {**self._stats, "idle": len(self._pool)}

    async def close(self) -> None:
        """QUIT every idle connection (server shutdown, end of a test)."""
        await self._pool.close()

    # -- DeliveryAgent ------------------------------------------------------------------------

    async def deliver(
        self, envelope: Envelope, recipients: Sequence[EnvelopeRecipient]
    ) -> list[Outcome]:
        """One Outcome per recipient, in order (queue.interfaces.DeliveryAgent)."""
        outcomes: list[Outcome | None] = [None] * len(recipients)
        groups: dict[Destination, list[int]] = {}
        for i, rcpt in enumerate(recipients):
            dest = self._destination(rcpt)
            if isinstance(dest, Reply):
                outcomes[i] = Bounced(recipient=rcpt, reply=dest, detail=dest.text)
            else:
                groups.setdefault(dest, []).append(i)
        if groups:
            loaded = await self._load(envelope)
            if isinstance(loaded, Reply):
                for idx in groups.values():
                    for i in idx:
                        outcomes[i] = Deferred(recipient=recipients[i], reply=loaded)
            else:
                jobs = [
                    self._deliver_to(dest, envelope, loaded, [recipients[i] for i in idx])
                    for dest, idx in groups.items()
                ]
                for idx, got in zip(groups.values(), await asyncio.gather(*jobs), strict=True):
                    for i, outcome in zip(idx, got, strict=True):
                        outcomes[i] = outcome
        done = [o for o in outcomes if o is not None]
        assert len(done) == len(recipients)
        for o in done:
            key = (
                "delivered"
                if isinstance(o, Delivered)
                else "bounced"
                if isinstance(o, Bounced)
                else "deferred"
            )
            self._stats[key] += 1
        return done

    def _destination(self, rcpt: EnvelopeRecipient) -> Destination | Reply:
        nexthop = ""
        if rcpt.target:
            try:
                target = from_spec(rcpt.address, rcpt.target)
            except ValueError:
                return NOT_REMOTE
            if not isinstance(target, Remote):
                return NOT_REMOTE
            nexthop = target.nexthop
        domain = rcpt.address.rpartition("@")[2] if "@" in rcpt.address else ""
        try:
            return parse_nexthop(nexthop, domain, self._config.smtp_client.port)
        except ValueError:
            return BAD_NEXTHOP

    async def _load(self, envelope: Envelope) -> bytes | Reply:
        """The content as it leaves the host (header rewritten)."""
        loop = asyncio.get_running_loop()
        try:
            content = await loop.run_in_executor(self._executor, self._read, envelope.queue_id)
        except OSError as exc:
            log.error("%s: cannot read the queued message: %s", envelope.queue_id, exc)
            return UNREADABLE
        if self._rewriter is not None:
            end, _ = header_end(content)
            content = self._rewriter.rewrite_headers(content[:end]) + content[end:]
        return content

    def _senders(self, envelope: Envelope, rcpts: list[EnvelopeRecipient]) -> dict[str, list[int]]:
        """The recipients' indexes by MAIL FROM as it leaves the host, in first-seen order."""
        by_sender: dict[str, list[int]] = {}
        rewritten: dict[str, str] = {}
        for i, rcpt in enumerate(rcpts):
            sender = envelope.sender_for(rcpt)
            if sender not in rewritten:
                out = sender
                if self._rewriter is not None and sender:
                    out = self._rewriter.envelope_sender(sender)
                rewritten[sender] = out
            by_sender.setdefault(rewritten[sender], []).append(i)
        return by_sender

    def _read(self, queue_id: str) -> bytes:
        with self._open_body(queue_id) as f:
            return f.read()

    # -- one destination ---------------------------------------------------------------------

    def _client_settings(self, dest: Destination) -> ClientSettings | Reply:
        c = self._config.smtp_client
        bare = dest.key.rsplit(":", 1)[0] if dest.port != c.port else dest.key
        policy = c.tls_policy.get(dest.key, c.tls_policy.get(bare, c.tls)).strip().lower()
        if policy not in TLS_POLICIES:
            return TLS_MISCONFIGURED
        settings = replace(self._settings, tls=policy)
        smart = self._config.routing.smart_host.strip()
        if smart and dest.nexthop == smart and c.smart_host_user:
            settings = replace(
                settings, auth_user=c.smart_host_user, auth_password=c.smart_host_password
            )
        return settings

    async def _deliver_to(
        self,
        dest: Destination,
        envelope: Envelope,
        content: bytes,
        rcpts: list[EnvelopeRecipient],
    ) -> list[Outcome]:
        settings = self._client_settings(dest)
        if isinstance(settings, Reply):
            return [Deferred(recipient=r, reply=settings, detail=settings.text) for r in rcpts]
        size = max(1, self._config.smtp_client.max_recipients)
        outcomes: list[Outcome | None] = [None] * len(rcpts)
        async with self._limits.hold(dest.key):
            for sender, idx in self._senders(envelope, rcpts).items():
                for start in range(0, len(idx), size):
                    part = idx[start : start + size]
                    chunk = [rcpts[i] for i in part]
                    tx = Transaction(
                        sender=sender,
                        recipients=tuple(_recipient(r) for r in chunk),
                        content=content,
                        body=envelope.body_type,
                        smtputf8=envelope.smtputf8,
                        ret=envelope.ret,
                        envid=envelope.envid,
                    )
                    got = await self._transaction(dest, settings, envelope.queue_id, tx, chunk)
                    for i, outcome in zip(part, got, strict=True):
                        outcomes[i] = outcome
        return [o for o in outcomes if o is not None]

    async def _transaction(
        self,
        dest: Destination,
        settings: ClientSettings,
        queue_id: str,
        tx: Transaction,
        rcpts: list[EnvelopeRecipient],
    ) -> list[Outcome]:
        out: list[Outcome | None] = [None] * len(rcpts)
        pending = list(range(len(rcpts)))
        while pending and (conn := self._pool.take(dest.key)) is not None:
            self._stats["reused"] += 1
            pending = await self._send(conn, tx, rcpts, pending, out)
            self._release(dest, conn)
        if not pending:
            return [o for o in out if o is not None]
        failure: Deferred | Bounced | None = None
        try:
            async with contextlib.aclosing(self._addresses(dest)) as candidates:
                async for host, address in candidates:
                    fresh = await self._connect(queue_id, host, address, dest, settings)
                    if isinstance(fresh, SessionFailure):
                        failure = self._failed(rcpts[0], fresh, host, address, dest)
                        continue
                    pending = await self._send(fresh, tx, rcpts, pending, out)
                    self._release(dest, fresh)
                    if not pending:
                        break
        except (DnsPermFail, DnsTempFail) as exc:
            failure = self._dns_failure(rcpts[0], exc)
        except _Loop as exc:
            failure = Bounced(recipient=rcpts[0], reply=exc.reply, detail=exc.reply.text)
        for i in pending:
            if out[i] is None:  # never got as far as a transaction
                if failure is None:
                    failure = Deferred(recipient=rcpts[i], reply=NO_ROUTE, detail=NO_ROUTE.text)
                out[i] = replace(failure, recipient=rcpts[i])
        return [o for o in out if o is not None]

    async def _addresses(self, dest: Destination) -> AsyncGenerator[tuple[str, str], None]:
        """(host, address) to try in order; raises the DNS error that decides
        when no host had an address."""
        hosts = await self._mx_hosts(dest)
        tried = 0
        last_error: DnsPermFail | DnsTempFail | None = None
        temporary = False
        any_address = False
        for host in hosts:
            try:
                addresses = await self._resolver.addresses(host)
            except (DnsPermFail, DnsTempFail) as exc:
                last_error = exc
                temporary = temporary or isinstance(exc, DnsTempFail)
                log.info("%s: %s", dest.key, exc.reason)
                continue
            for address in addresses:
                if tried >= MAX_ADDRESSES:
                    return
                tried += 1
                any_address = True
                yield host, address
        if not any_address and last_error is not None:
            if temporary and isinstance(last_error, DnsPermFail):
                raise DnsTempFail(last_error.reason)
            raise last_error

    async def _mx_hosts(self, dest: Destination) -> list[str]:
        if not dest.mx:
            return [dest.name]
        mxs = await self._resolver.mx(dest.name)
        # RFC 5321 §5.1: when we are an MX host, only more preferred hosts are tried.
        own = [m.preference for m in mxs if m.host.lower().rstrip(".") == self._hostname]
        if own:
            mxs = [m for m in mxs if m.preference < min(own)]
            if not mxs:
                text = f"mail for {dest.name} loops back to myself"
                raise _Loop(Reply(code=554, enhanced="5.4.6", text=text))
        return [m.host for m in mxs]

    async def _connect(
        self, queue_id: str, host: str, address: str, dest: Destination, settings: ClientSettings
    ) -> SmtpClientConnection | SessionFailure:
        for attempt in (settings, replace(settings, tls="none")):
            try:
                conn = await SmtpClientConnection.open(
                    host=host, address=address, port=dest.port, settings=attempt
                )
            except SessionFailure as failure:
                log.info("%s: %s", queue_id, failure.reason)
                if failure.plaintext_retry and attempt.tls != "none":
                    log.info("%s: trying %s[%s] again without TLS", queue_id, host, address)
                    continue
                return failure
            self._stats["connections"] += 1
            if conn.tls:
                self._stats["tls"] += 1
            return conn
        raise AssertionError("unreachable")  # pragma: no cover

    def _failed(
        self,
        rcpt: EnvelopeRecipient,
        failure: SessionFailure,
        host: str,
        address: str,
        dest: Destination,
    ) -> Deferred:
        relay = f"{host}[{address}]:{dest.port}"
        return Deferred(recipient=rcpt, reply=failure.reply, relay=relay, detail=failure.reason)

    def _dns_failure(
        self, rcpt: EnvelopeRecipient, exc: DnsPermFail | DnsTempFail
    ) -> Deferred | Bounced:
        detail = f"Host or domain name lookup failed: {exc.reason}"
        if isinstance(exc, DnsPermFail):
            return Bounced(recipient=rcpt, reply=exc.reply, detail=detail)
        return Deferred(recipient=rcpt, reply=exc.reply, detail=detail)

    async def _send(
        self,
        conn: SmtpClientConnection,
        tx: Transaction,
        rcpts: list[EnvelopeRecipient],
        pending: list[int],
        out: list[Outcome | None],
    ) -> list[int]:
        """Send to the `pending` recipients over `conn`; those to retry elsewhere."""
        if len(pending) != len(tx.recipients):
            tx = replace(tx, recipients=tuple(tx.recipients[i] for i in pending))
        done: TransactionDone = await conn.send(tx)
        retry = []
        host = f"{conn.host}[{conn.address}]"
        for i, result in zip(pending, done.results, strict=True):
            reply, stage, rcpt = result.reply, result.stage, rcpts[i]
            if stage in ("session", "local"):
                detail = f"{reply.text} (host {host})"
            else:
                detail = f"host {host} said: {reply} (in reply to {stage} command)"
            if 200 <= reply.code < 300:
                out[i] = Delivered(recipient=rcpt, reply=reply, relay=conn.relay, detail=reply.text)
            elif reply.code >= 500:
                out[i] = Bounced(recipient=rcpt, reply=reply, relay=conn.relay, detail=detail)
            else:
                out[i] = Deferred(
                    recipient=rcpt, reply=transient(reply), relay=conn.relay, detail=detail
                )
                if stage in ("session", "MAIL FROM") and not done.content_sent:
                    retry.append(i)  # RFC 5321 §5.1: the next host may do better
        return retry

    def _release(self, dest: Destination, conn: SmtpClientConnection) -> None:
        limit = self._config.smtp_client.max_messages_per_connection
        if conn.usable and conn.transactions < limit:
            self._pool.put(dest.key, conn)
        else:
            self._pool.background(conn.quit())


class _Loop(Exception):
    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.text)
        self.reply = reply


def _recipient(rcpt: EnvelopeRecipient) -> Recipient:
    orcpt = rcpt.orcpt
    if orcpt is None and rcpt.orig and rcpt.orig != rcpt.address:
        orcpt = f"rfc822;{rcpt.orig}"  # RFC 3461 §4.2: the address as first given
    return Recipient(address=rcpt.address, notify=rcpt.notify, orcpt=orcpt)
