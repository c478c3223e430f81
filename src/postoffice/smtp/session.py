"""The SMTP session: answers the engine's events with policy and the spool.

Description:
    One SmtpSession per connection (or per `sendmail -bs` run). It never
    touches sockets: the adapter (smtp/server.py) feeds engine events to
    `handle()` and passes the answers back to the engine. Most events are
    answered at once; `DataEnd` returns a coroutine because committing to
    the spool waits for fsync (DESIGN.md: 250 only after the commit).

    Per message it prepends our `Received:` (RFC 5321 §4.4), counts the
    `Received:` fields already present for the hop limit (RFC 5321 §6.3,
    554 5.4.6), streams the content into the spool, commits, hands the
    envelope to the queue manager and replies `250 2.0.0 Ok: queued as QID`.

    ETRN (RFC 1985) asks `deps.flush_domain` to requeue the deferred mail
    for a domain (`ETRN example.org`) or a domain and its subdomains
    (`ETRN @example.org`) and answers at once, before any delivery:

        250 2.0.0 Queuing for node <x> started      messages were requeued
        251 2.0.0 OK, no messages waiting for node <x>
        458 4.3.0 Unable to queue messages for node <x>   no flush_domain
        459 4.7.0 Node <x> not allowed: mail for it is delivered here
                                                     (a local domain)
        459 4.5.4 Node <x> not allowed: queue names are not supported
                                                     (`ETRN #queue`)
        501 5.5.4 (the engine) not a domain; 503 before EHLO/HELO or in a
        transaction; 502 when EngineConfig.etrn is off.

States:
    idle → (MAIL accepted) transaction → (DATA 354) receiving → idle.
    Reset, DataAborted and a failed write drop the transaction.

Security:
    Trusts nothing from the client: addresses come parsed by the engine,
    the HELO name is sanitised when it goes into Received:. Replies never
    carry paths or exception text (CONVENTIONS.md §5). Any client may send
    ETRN: it only hastens delivery to the node's own MX, so it reveals and
    redirects nothing (RFC 1985 §1: unlike TURN).

Config:
    hostname, [smtp] vrfy, expn, [limits] max_hops.

See also:
    smtp/protocol.py (the engine), smtp/events.py, policy/relay.py,
    queue/interfaces.py, RFC 5321 §3.3 (mail transactions), §7.3 (VRFY),
    RFC 1985 (ETRN), cli/queue.py (flush_for_etrn: a flush_domain).
"""

from __future__ import annotations

import dataclasses
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from postoffice.auth.backend import AuthBackend
from postoffice.config.schema import Config
from postoffice.errors import TempFail
from postoffice.message.headers import build_received, count_received, format_date, has_header
from postoffice.observe.log import delivery_line
from postoffice.policy.engine import ClientState, Kind, PolicyEngine
from postoffice.policy.listener import SMTP, SUBMISSION, listener_rules, rules_for
from postoffice.policy.relay import Decision, RecipientPolicy
from postoffice.queue.envelope import Envelope, EnvelopeRecipient, RcptState
from postoffice.queue.interfaces import Delivered, IncomingMessage, Outcome, Spool
from postoffice.routing.targets import Mailbox, envelope_recipients
from postoffice.smtp import auth_exchange as ax
from postoffice.smtp import events as ev
from postoffice.smtp import replies
from postoffice.smtp.auth_session import AuthDriver
from postoffice.smtp.replies import Reply

log = logging.getLogger("postoffice.smtp")
local_log = logging.getLogger("postoffice.delivery.local")

# How much of the message start we keep to find the end of the header block.
_HEADER_SCAN_LIMIT = 256 * 1024

Answer = Reply | None | Coroutine[Any, Any, Reply]

# Delivers an in-memory message to local recipients (delivery/local.py's
# LocalAgent.deliver_content, wired by app.py); one Outcome per recipient.
DirectDelivery = Callable[[Envelope, Sequence[EnvelopeRecipient], bytes], Awaitable[list[Outcome]]]


# See SessionDeps.flush_domain.
FlushDomain = Callable[[ev.Etrn], Awaitable[int]]

# RFC 1985 §5 replies (the enhanced codes are ours: RFC 3463 X.3.0, X.5.4, X.7.0).
ETRN_STARTED = Reply(code=250, enhanced="2.0.0", text="Queuing for node {} started")
ETRN_NOTHING = Reply(code=251, enhanced="2.0.0", text="OK, no messages waiting for node {}")
ETRN_UNABLE = Reply(code=458, enhanced="4.3.0", text="Unable to queue messages for node {}")
ETRN_NOT_ALLOWED = Reply(code=459, enhanced="4.7.0", text="Node {} not allowed: {}")
ETRN_NO_QUEUES = Reply(
    code=459, enhanced="4.5.4", text="Node {} not allowed: queue names are not supported"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionDeps:
    """What every session shares; built once by app.py."""

    config: Config
    policy: RecipientPolicy
    spool: Spool
    submit: Callable[[Envelope], None]
    qualify: Callable[[str], str]
    clock: Callable[[], float] = time.time
    # Direct delivery (see "Direct delivery" in the manual); None = always queue.
    deliver_now: DirectDelivery | None = None
    direct_max_size: int = 256 * 1024
    direct_max_recipients: int = 16
    # ETRN (RFC 1985): requeue the deferred mail for a node and wake the queue manager;
    # returns how many messages it started. It gets the smtp.events.Etrn event (use
    # Etrn.selects(domain) to pick recipients; cli.queue.flush_for_etrn(spool) is one);
    # may raise TempFail to refuse with its reply (e.g. a 459 of its own). None: 458.
    flush_domain: FlushDomain | None = None
    # SMTP AUTH (RFC 4954): None = not offered.
    auth: AuthBackend | None = None
    # The access database, tcprules, blocklists and limits (policy/engine.py);
    # None = RecipientPolicy alone (trusted networks and local users).
    policy_engine: PolicyEngine | None = None
    # STARTTLS (RFC 3207): answered 220 when set, else 454; the adapter (smtp/server.py)
    # does the handshake with it (net/tls.py: TlsReloader.context).
    tls_context: ssl.SSLContext | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Peer:
    """The client: its address, port and name (reverse DNS, or "unknown")."""

    ip: str
    port: int = 0
    name: str = "unknown"
    # A submission listener (RFC 6409: [submission] listen or tls_listen).
    submission: bool = False

    @property
    def label(self) -> str:
        return f"{self.name}[{self.ip}]"

    @property
    def listener(self) -> str:
        """The kind of listener, for its [*.policy] overrides (policy/listener.py)."""
        return SUBMISSION if self.submission else SMTP


@dataclass(slots=True)
class _Transaction:
    sender: str
    params: ev.MailParams
    recipients: list[EnvelopeRecipient] = field(default_factory=list)
    all_local: bool = True
    content: bytearray | None = None  # a copy for direct delivery, while small
    message: IncomingMessage | None = None
    head: bytearray = field(default_factory=bytearray)
    head_done: bool = False
    hops: int = 0
    failed: TempFail | None = None
    discard: str = ""  # the access database said DISCARD: accept and drop (why)
    held: bytearray = field(default_factory=bytearray)  # submission: header not yet written
    block: bytes = b""  # submission: the message's header block


class SmtpSession:
    """Decisions for one SMTP connection."""

    def __init__(self, deps: SessionDeps, peer: Peer, *, protocol: str = "ESMTP") -> None:
        self.deps = deps
        self.peer = peer
        self.protocol = protocol  # RFC 3848 "with" keyword base: SMTP / ESMTP
        self.helo = ""
        self.esmtp = False
        self.tls = False  # set by the adapter after the handshake (STARTTLS or implicit TLS)
        self.tls_info = ""  # what was negotiated, for Received: (net/tls.describe_connection)
        self._tx: _Transaction | None = None
        self.counts: dict[str, int] = {}
        self._auth = AuthDriver(deps.auth, peer.ip, peer.label) if deps.auth else None
        self.client: ClientState | None = None  # set by the adapter after on_connect
        # AUTH before MAIL: submission by default, or as [smtp.policy]/[submission.policy] say
        self.require_auth = rules_for(listener_rules(deps.config), peer.listener).require_auth
        self.queued: list[str] = []  # queue ids accepted in this session

    # -- the adapter's entry points ------------------------------------

    def greeting(self) -> Reply:
        cfg = self.deps.config
        return Reply(code=220, text=f"{cfg.hostname} {cfg.smtp.banner}")

    def handle(self, event: ev.Event) -> Answer:
        """Answer one engine event: a Reply, None (notification) or a coroutine."""
        name = type(event).__name__
        self.counts[name] = self.counts.get(name, 0) + 1
        if isinstance(event, ev.DataChunk):
            self._on_chunk(event.data)
            return None
        if isinstance(event, ev.RcptTo):
            return self._on_rcpt(event)
        if isinstance(event, ev.MailFrom):
            return self._on_mail(event)
        if isinstance(event, ev.DataStart):
            return self._on_data_start(event)
        if isinstance(event, ev.DataEnd):
            return self._on_data_end(event)
        if isinstance(event, ev.Hello):
            return self._on_hello(event)
        if isinstance(event, ev.Reset | ev.Quit):
            self._drop()
            return None
        if isinstance(event, ev.DataAborted):
            self._drop()
            log.info("%s: reject: %s from %s", "NOQUEUE", event.reply, self.peer.label)
            return None
        if isinstance(event, ev.Verify):
            return self._on_verify(event.argument)
        if isinstance(event, ev.Expand):
            return self._on_expand(event.argument)
        if isinstance(event, ev.Etrn):
            return self._on_etrn(event)
        if isinstance(event, ev.AuthStart):
            return self._auth_start(event)
        if isinstance(event, ev.AuthResponse):
            return self._auth_respond(event)
        if isinstance(event, ev.AuthAborted):
            if self._auth is not None:
                self._auth.abort()
            return None
        if isinstance(event, ev.StartTLS):
            # RFC 3207 §4: 454 when TLS is not available.
            if self.deps.tls_context is None:
                return Reply(code=454, enhanced="4.7.0", text="TLS not available")
            # RFC 3207 §4.2: after the 220 the adapter does the handshake, and what
            # the client said before it (HELO, a transaction) is forgotten.
            self._drop()
            self.helo = ""
            self.esmtp = False
            if self._auth is not None:  # RFC 4954 §4: AUTH again after STARTTLS
                self._auth.user = None
            return replies.READY_TO_START_TLS
        if isinstance(event, ev.CommandRejected):
            log.debug("%s: %s -> %s", self.peer.label, event.command, event.reply)
            return None
        if event.needs_answer:  # an event this session does not know: refuse, never hang
            return replies.NOT_IMPLEMENTED
        return None

    def close(self) -> None:
        """The connection is gone: forget any unfinished message."""
        self._drop()

    # -- commands --------------------------------------------------------

    def _on_hello(self, event: ev.Hello) -> Reply:
        self._drop()
        self.helo = event.domain
        self.esmtp = event.verb != "HELO"
        return Reply(code=250, text=self.deps.config.hostname)

    @property
    def auth_user(self) -> str | None:
        """The authenticated login, if any (RFC 4954)."""
        return self._auth.user if self._auth is not None else None

    async def _auth_start(self, event: ev.AuthStart) -> Reply:
        if self._auth is None:
            return ax.AUTH_UNKNOWN_MECHANISM
        reply = await self._auth.start(event)
        self._note_auth()
        return reply

    async def _auth_respond(self, event: ev.AuthResponse) -> Reply:
        if self._auth is None:
            return ax.AUTH_CANCELLED
        reply = await self._auth.respond(event)
        self._note_auth()
        return reply

    def _note_auth(self) -> None:
        if self.client is not None:  # the policy engine lets authenticated users relay
            self.client.authenticated = self.auth_user or ""

    def _on_mail(self, event: ev.MailFrom) -> Reply | Coroutine[Any, Any, Reply]:
        self._drop()
        user = self.auth_user
        if self.require_auth and user is None:
            # RFC 6409 §4.3 / RFC 4954 §6: a submission port needs AUTH first.
            return ax.AUTH_REQUIRED
        engine, client = self.deps.policy_engine, self.client
        if engine is not None and client is not None:
            # [auth] sender_login_binding: the engine's MAIL checks (policy/sender_login.py)
            return self._mail_policy(engine, client, event)
        if (
            user is not None
            and event.sender
            and self.deps.config.auth.sender_login_binding
            and event.sender.lower() != user.lower()
        ):
            # Without a policy engine the login may send as itself only.
            text = f"{replies.echo(event.sender)}... Sender address not owned by user {user}"
            return Reply(code=553, enhanced="5.7.1", text=text)
        self._tx = _Transaction(sender=event.sender, params=event.params)
        return replies.SENDER_OK

    async def _mail_policy(
        self, engine: PolicyEngine, client: ClientState, event: ev.MailFrom
    ) -> Reply:
        verdict = await engine.on_mail(client, event.sender)
        if not verdict.accepted:
            log.info(
                "NOQUEUE: reject: MAIL from %s: %s; from=<%s> proto=%s helo=<%s> (%s)",
                self.peer.label, verdict.reply, event.sender, self.protocol, self.helo,
                verdict.reason,
            )  # fmt: skip
            return verdict.reply
        self._tx = _Transaction(sender=event.sender, params=event.params)
        if verdict.kind is Kind.DISCARD:
            self._tx.discard = verdict.reason or "access DISCARD"
        return replies.SENDER_OK

    def _on_rcpt(self, event: ev.RcptTo) -> Reply | Coroutine[Any, Any, Reply]:
        tx = self._tx
        if tx is None:  # the engine prevents this; refuse rather than crash
            return replies.BAD_SEQUENCE
        rcpt = self.deps.qualify(event.recipient)
        engine, client = self.deps.policy_engine, self.client
        if engine is not None and client is not None:
            return self._rcpt_policy(engine, client, tx, rcpt, event)
        decision = self.deps.policy.check_rcpt(
            rcpt, client_ip=self.peer.ip, authenticated=self.auth_user is not None
        )
        return self._take_rcpt(tx, rcpt, event, decision)

    async def _rcpt_policy(
        self,
        engine: PolicyEngine,
        client: ClientState,
        tx: _Transaction,
        rcpt: str,
        event: ev.RcptTo,
    ) -> Reply:
        verdict = await engine.on_rcpt(client, rcpt)
        if verdict.kind is Kind.DISCARD:
            tx.discard = tx.discard or verdict.reason or "access DISCARD"
        if self._tx is not tx:  # the client reset meanwhile (cannot happen: reading waits)
            return replies.BAD_SEQUENCE
        return self._take_rcpt(tx, rcpt, event, verdict.decision)

    def _take_rcpt(
        self, tx: _Transaction, rcpt: str, event: ev.RcptTo, decision: Decision
    ) -> Reply:
        if not decision.accepted:
            log.info(
                "NOQUEUE: reject: RCPT from %s: %s; from=<%s> to=<%s> proto=%s helo=<%s>",
                self.peer.label, decision.reply, tx.sender, rcpt, self.protocol, self.helo,
            )  # fmt: skip
            return decision.reply
        resolution = decision.resolution
        if resolution is None:  # no router: deliver to the address itself
            tx.recipients.append(
                EnvelopeRecipient(
                    address=rcpt, notify=event.params.notify, orcpt=event.params.orcpt
                )
            )
            tx.all_local = tx.all_local and decision.local
            return decision.reply
        # One envelope recipient per target (aliases, virtusertable ...): the queue
        # keeps where each copy goes, and the original address for the log and DSNs.
        tx.recipients += envelope_recipients(
            resolution, rcpt, notify=event.params.notify, orcpt=event.params.orcpt
        )
        tx.all_local = tx.all_local and all(isinstance(t, Mailbox) for t in resolution.targets)
        return decision.reply

    def _on_data_start(self, event: ev.DataStart) -> Reply:
        tx = self._tx
        if tx is None or not tx.recipients:
            return replies.NO_VALID_RECIPIENTS
        try:
            msg = self.deps.spool.begin()
            tx.message = msg
            first = tx.recipients[0]
            only = (first.orig or first.address) if len(tx.recipients) == 1 else None
            if self._direct_possible(tx):
                tx.content = bytearray()
            self._write(
                tx,
                build_received(
                    helo=self.helo,
                    client_name=self.peer.name,
                    client_ip=self.peer.ip,
                    hostname=self.deps.config.hostname,
                    protocol=self._with_protocol(tx),
                    queue_id=msg.queue_id,
                    recipient=only,
                    when=self.deps.clock(),
                    forged=self._forged(),
                    tls=self.tls_info or None,
                ),
            )
        except TempFail as e:
            log.warning("NOQUEUE: cannot start a message from %s: %s", self.peer.label, e.reason)
            self._drop()
            return e.reply
        log.info("%s: client=%s", msg.queue_id, self.peer.label)
        return replies.START_DATA if not event.bdat else replies.OK

    def _on_chunk(self, data: bytes) -> None:
        tx = self._tx
        if tx is None or tx.message is None or tx.failed is not None:
            return
        if not tx.head_done:
            self._scan_head(tx, data)
            if self.peer.submission:
                # RFC 6409 §8: hold the header until it is complete, then add
                # what an MSA adds (Date:, Message-ID:) in front of it.
                tx.held += data
                if not tx.head_done:
                    return
                data, tx.held = self._msa_complete(tx, bytes(tx.held)), bytearray()
        try:
            self._write(tx, data)
        except TempFail as e:
            tx.failed = e

    def _msa_complete(self, tx: _Transaction, content: bytes) -> bytes:
        """Content with the Date: and Message-ID: a submission server adds when
        they are missing (RFC 6409 §8.2, §8.3); the header block is tx.block."""
        extra = b""
        if not has_header(tx.block, "date"):
            extra += f"Date: {format_date(self.deps.clock())}\r\n".encode()
        if not has_header(tx.block, "message-id"):
            assert tx.message is not None
            host = self.deps.config.hostname
            extra += f"Message-ID: <{tx.message.queue_id}@{host}>\r\n".encode()
        return extra + content

    def _write(self, tx: _Transaction, data: bytes) -> None:
        assert tx.message is not None
        tx.message.write(data)
        if tx.content is not None:
            if len(tx.content) + len(data) > self.deps.direct_max_size:
                tx.content = None  # too big to hold: it goes through the queue
            else:
                tx.content += data

    def _direct_possible(self, tx: _Transaction) -> bool:
        deps = self.deps
        return (
            deps.deliver_now is not None
            and tx.all_local
            and len(tx.recipients) <= deps.direct_max_recipients
            # A success DSN (RFC 3461 §4.1) is the queue's job.
            and not any(r.notify and "SUCCESS" in r.notify for r in tx.recipients)
        )

    def _scan_head(self, tx: _Transaction, data: bytes) -> None:
        start = max(0, len(tx.head) - 3)
        tx.head += data
        end = tx.head.find(b"\r\n\r\n", start)
        if tx.head.startswith(b"\r\n"):
            end = 0
        if end >= 0 or len(tx.head) >= _HEADER_SCAN_LIMIT:
            block = bytes(tx.head[: end + 2] if end >= 0 else tx.head)
            tx.block = block if self.peer.submission else b""
            tx.hops = count_received(block)
            tx.head_done = True
            tx.head = bytearray()

    def _on_data_end(self, event: ev.DataEnd) -> Coroutine[Any, Any, Reply] | Reply:
        tx = self._tx
        if tx is None or tx.message is None:
            return replies.BAD_SEQUENCE
        if not tx.head_done:
            tx.hops = count_received(bytes(tx.head))
            if tx.held:  # a submission whose header never ended: complete it now
                tx.block, tx.head_done = bytes(tx.head), True
                try:
                    self._write(tx, self._msa_complete(tx, bytes(tx.held)))
                except TempFail as e:
                    tx.failed = e
                tx.held = bytearray()
        if tx.failed is not None:
            failure = tx.failed
            log.warning("%s: write failed: %s", tx.message.queue_id, failure.reason)
            self._drop()
            return failure.reply
        if tx.discard:  # sendmail's DISCARD: the client is told 250, nothing is kept
            qid = tx.message.queue_id
            self._drop()
            log.info("%s: discard: %s from %s", qid, tx.discard, self.peer.label)
            return replies.QUEUED.with_text(f"Ok: queued as {qid}")
        max_hops = self.deps.config.limits.max_hops
        if tx.hops >= max_hops:  # RFC 5321 §6.3: a loop; our own Received: is not counted
            qid = tx.message.queue_id
            self._drop()
            log.info("%s: reject: too many hops (%d) from %s", qid, tx.hops, self.peer.label)
            return replies.TOO_MANY_HOPS
        return self._commit(tx, event.size)

    async def _commit(self, tx: _Transaction, size: int) -> Reply:
        msg = tx.message
        assert msg is not None
        envelope = Envelope(
            queue_id=msg.queue_id,
            sender=tx.sender,
            recipients=tuple(tx.recipients),
            arrival_time=self.deps.clock(),
            size=msg.size,
            body_type=tx.params.body,
            smtputf8=tx.params.smtputf8,
            ret=tx.params.ret,
            envid=tx.params.envid,
            client_address=self.peer.ip,
            client_name=self.peer.name,
            helo=self.helo,
            protocol=self._with_protocol(tx),
        )
        self._tx = None
        if tx.content is not None and self.deps.deliver_now is not None:
            envelope = await self._deliver_now(envelope, bytes(tx.content), self.deps.deliver_now)
            tx.content = None
            if envelope.done:
                msg.abort()  # every recipient has it on disk: nothing to queue
                self.queued.append(msg.queue_id)
                return replies.QUEUED.with_text(f"Ok: queued as {msg.queue_id}")
        try:
            await self.deps.spool.commit(msg, envelope)
        except TempFail as e:
            msg.abort()
            log.warning("%s: queue file write error: %s", msg.queue_id, e.reason)
            return e.reply
        log.info(
            "%s: from=<%s>, size=%d, nrcpt=%d (queue active)",
            msg.queue_id, envelope.sender, envelope.size, len(envelope.recipients),
        )  # fmt: skip
        self.queued.append(msg.queue_id)
        self.deps.submit(envelope)
        return replies.QUEUED.with_text(f"Ok: queued as {msg.queue_id}")

    async def _deliver_now(
        self, envelope: Envelope, content: bytes, deliver: DirectDelivery
    ) -> Envelope:
        """Direct delivery: write the mailboxes before replying (see the manual).

        Returns the envelope with the delivered recipients marked; the rest
        go through the queue as usual."""
        start = self.deps.clock()
        outcomes = await deliver(envelope, envelope.recipients, content)
        now = self.deps.clock()
        log.info(
            "%s: from=<%s>, size=%d, nrcpt=%d (delivered at once)",
            envelope.queue_id, envelope.sender, envelope.size, len(envelope.recipients),
        )  # fmt: skip
        delivered = {o.recipient.address for o in outcomes if isinstance(o, Delivered)}
        for o in outcomes:
            if isinstance(o, Delivered):
                reply = o.reply
                local_log.info(
                    delivery_line(
                        envelope.queue_id, o.recipient.address, o.relay,
                        now - envelope.arrival_time,
                        (start - envelope.arrival_time, 0.0, 0.0, now - start),
                        reply.enhanced, "sent",
                        " ".join(p for p in (str(reply.code), reply.enhanced, reply.text) if p),
                    )
                )  # fmt: skip
        recipients = tuple(
            dataclasses.replace(r, state=RcptState.DELIVERED, reason="delivered at once")
            if r.address in delivered
            else r
            for r in envelope.recipients
        )
        return dataclasses.replace(envelope, recipients=recipients)

    def _on_verify(self, argument: str) -> Reply:
        mode = self.deps.config.smtp.vrfy
        if mode == "off":
            return replies.NOT_IMPLEMENTED
        if mode == "on":
            addr = self.deps.qualify(argument.strip().strip("<>"))
            decision = self.deps.policy.check_rcpt(addr, client_ip="")
            if decision.local and decision.accepted:
                return Reply(code=250, enhanced="2.1.5", text=f"<{addr}>")
            return replies.USER_UNKNOWN.with_text(f"{replies.echo(addr)}... User unknown")
        # RFC 5321 §3.5.3 / §7.3: 252 neither confirms nor denies.
        return replies.CANNOT_VRFY

    def _on_expand(self, argument: str) -> Reply:
        if not self.deps.config.smtp.expn:
            return replies.NOT_IMPLEMENTED
        addr = self.deps.qualify(argument.strip().strip("<>"))
        decision = self.deps.policy.check_rcpt(addr, client_ip="")
        if decision.local and decision.accepted:
            return Reply(code=250, enhanced="2.1.5", text=f"<{addr}>")
        return replies.USER_UNKNOWN.with_text(f"{replies.echo(addr)}... User unknown")

    def _on_etrn(self, event: ev.Etrn) -> Reply | Coroutine[Any, Any, Reply]:
        """RFC 1985: start the queue for a node; the delivery itself happens later."""
        node = replies.echo(event.argument)[1:-1]
        flush = self.deps.flush_domain
        if event.kind == "queue":  # "#name": implementation-specific; we have one queue
            reply = _fill(ETRN_NO_QUEUES, node)
        elif flush is None:
            reply = _fill(ETRN_UNABLE, node)
        elif self.deps.policy.is_local_domain(event.node):
            # Mail for a local domain is delivered here, never queued for the node.
            reply = _fill(ETRN_NOT_ALLOWED, node, "mail for it is delivered here")
        else:
            return self._flush(event, node, flush)
        log.info("ETRN %s from %s: %s", node, self.peer.label, reply)
        return reply

    async def _flush(self, event: ev.Etrn, node: str, flush: FlushDomain) -> Reply:
        try:
            started = await flush(event)
        except TempFail as e:
            log.warning("ETRN %s from %s: %s", node, self.peer.label, e.reason)
            return e.reply
        log.info("ETRN %s from %s: %d messages requeued", node, self.peer.label, started)
        return _fill(ETRN_STARTED if started else ETRN_NOTHING, node)

    # -- helpers -------------------------------------------------------------

    def _forged(self) -> bool:
        """The client's PTR name did not resolve back to it (policy/engine.py)."""
        client = self.client
        return client is not None and bool(client.hostname) and not client.name_confirmed

    def _with_protocol(self, tx: _Transaction) -> str:
        # RFC 3848 §2: ESMTP, ESMTPS (TLS), UTF8SMTP (RFC 6531 §3.7.3) ...
        if not self.esmtp:
            return "SMTP"
        base = "UTF8SMTP" if tx.params.smtputf8 else "ESMTP"
        # RFC 3848 §2: ESMTPS (TLS), ESMTPA (AUTH), ESMTPSA (both).
        return base + ("S" if self.tls else "") + ("A" if self.auth_user else "")

    def _drop(self) -> None:
        tx = self._tx
        self._tx = None
        if tx is not None and tx.message is not None:
            tx.message.abort()


def _fill(reply: Reply, *values: str) -> Reply:
    return reply.with_text(reply.text.format(*values))
