"""QMTP intake: packages from the QMTP listener go through the same policy and spool as SMTP.

Description:
    `QmtpIntake(deps)` is both the handler and the gate that
    `smtp.qmtp.start_qmtp_server(intake, ..., gate=intake)` calls.

    Per connection (the gate), when SessionDeps has a PolicyEngine: the
    client's name (forward-confirmed reverse DNS) and the connect checks
    of policy/engine.py, exactly as before an SMTP greeting: tcprules,
    per-client limits, access `Connect:`, RBLSMTPD and DNS blocklists. A
    4xx (a limit: 421) closes the connection, which a QMTP client takes as
    a temporary failure (QMTP §2); a 5xx (a tcprules deny, access REJECT,
    a blocklist) answers every recipient of every package with it (D), so
    the sender learns at once instead of retrying. With delay_checks the
    refusal comes at the recipients, as for SMTP. The connection leaves
    the limits' count when it closes.

    Per package (the handler): the content streams into a new spool
    message (with our Received: line first, "with QMTP", the client's name
    and "(may be forged)" as for SMTP); at the end the sender goes through
    the engine's MAIL checks (message rate, access `From:`, the sender
    domain) and each recipient through its RCPT checks (access `To:`,
    local users and aliases, relay rights); a sender refusal answers every
    recipient. A DISCARD (access Connect:/From:/To:) answers positively and
    keeps nothing, with a log line. When [smtp.policy] require_auth is on,
    every recipient is refused (530 5.7.0): QMTP has no AUTH. Connections
    are `qmtp` listeners for the limits and the [smtp.policy] overrides
    (policy/listener.py). The accepted recipients are committed with
    their routing targets, and each recipient gets its own reply (K / Z /
    D on the wire). Nothing is acknowledged before the commit returns
    (DESIGN.md: the spool is the commit point).

    Without a PolicyEngine (tests, old wiring) the recipient policy alone
    decides (local users, aliases, relay rights of the client's address).

Security:
    The client's address decides relaying, as for SMTP; QMTP has no AUTH.
    A failing connect check (a bug below us) lets the client in, with the
    traceback in the log, as the SMTP adapter does.

Config:
    [smtp] qmtp_listen (app.py), [smtp.policy]; everything policy/engine.py
    reads.

See also:
    smtp/qmtp.py (the protocol), smtp/session.py (the SMTP equivalent),
    policy/engine.py, cr.yp.to/proto/qmtp.txt, qmail-qmtpd(8).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from postoffice.errors import TempFail
from postoffice.message.headers import build_received
from postoffice.policy.engine import ClientState, Kind, PolicyEngine
from postoffice.policy.listener import QMTP
from postoffice.policy.relay import Decision
from postoffice.queue.envelope import Envelope, EnvelopeRecipient
from postoffice.queue.interfaces import IncomingMessage
from postoffice.routing.targets import envelope_recipients
from postoffice.smtp import replies
from postoffice.smtp.auth_exchange import AUTH_REQUIRED
from postoffice.smtp.qmtp import QmtpPeer
from postoffice.smtp.replies import Reply
from postoffice.smtp.session import SessionDeps

log = logging.getLogger("postoffice.smtp.qmtp")


class _Client:
    """One QMTP connection as the policy engine sees it."""

    __slots__ = ("engine", "state")

    def __init__(self, engine: PolicyEngine, state: ClientState) -> None:
        self.engine = engine  # the engine that counted it (a reload replaces deps)
        self.state = state


class _Package:
    """One QMTP package on its way into the spool."""

    def __init__(self, deps: SessionDeps, peer: QmtpPeer, client: _Client | None) -> None:
        self.deps = deps
        self.peer = peer
        self.client = client
        self.msg: IncomingMessage | None = None

    @property
    def _client_name(self) -> str:
        state = self.client.state if self.client is not None else None
        return state.hostname if state is not None and state.hostname else "unknown"

    @property
    def _label(self) -> str:
        return f"{self._client_name}[{self.peer.ip}]"

    def _begin(self) -> IncomingMessage:
        msg = self.deps.spool.begin()
        state = self.client.state if self.client is not None else None
        msg.write(
            build_received(
                helo="",
                client_name=self._client_name,
                client_ip=self.peer.ip,
                hostname=self.deps.config.hostname,
                protocol="QMTP",
                queue_id=msg.queue_id,
                recipient=None,
                when=self.deps.clock(),
                forged=state is not None and bool(state.hostname) and not state.name_confirmed,
            )
        )
        return msg

    def write(self, data: bytes) -> None:
        if self.msg is None:
            self.msg = self._begin()
        self.msg.write(data)

    async def finish(self, sender: str, recipients: Sequence[str]) -> Sequence[Reply]:
        if self.msg is None:
            self.msg = self._begin()
        msg = self.msg
        refusal, discard = await self._sender_refusal(sender)
        if refusal is not None:
            msg.abort()
            return [refusal] * len(recipients)
        answers: list[Reply] = []
        queued: list[EnvelopeRecipient] = []
        for raw in recipients:
            rcpt = self.deps.qualify(raw)
            decision, why = await self._check_rcpt(rcpt)
            discard = discard or why
            answers.append(decision.reply)
            if not decision.accepted:
                log.info(
                    "NOQUEUE: reject: QMTP from %s: %s; from=<%s> to=<%s> proto=QMTP",
                    self._label, decision.reply, sender, rcpt,
                )  # fmt: skip
                continue
            if decision.resolution is None:
                queued.append(EnvelopeRecipient(address=rcpt))
            else:
                queued += envelope_recipients(decision.resolution, rcpt)
        if discard and any(a.is_positive for a in answers):
            # sendmail's DISCARD: the client is told it was taken, nothing is kept.
            msg.abort()
            log.info("%s: discard: %s from %s", msg.queue_id, discard, self._label)
            ok = replies.QUEUED.with_text(f"Ok: queued as {msg.queue_id}")
            return [ok if a.is_positive else a for a in answers]
        if not queued:
            msg.abort()
            return answers
        envelope = Envelope(
            queue_id=msg.queue_id,
            sender=sender,
            recipients=tuple(queued),
            arrival_time=self.deps.clock(),
            size=msg.size,
            body_type="8BITMIME",
            client_address=self.peer.ip,
            client_name=self._client_name,
            protocol="QMTP",
        )
        try:
            await self.deps.spool.commit(msg, envelope)
        except TempFail as e:
            msg.abort()
            log.warning("%s: queue file write error: %s", msg.queue_id, e.reason)
            return [e.reply if a.is_positive else a for a in answers]
        log.info(
            "%s: from=<%s>, size=%d, nrcpt=%d (queue active, QMTP from %s)",
            msg.queue_id, sender, envelope.size, len(queued), self._label,
        )  # fmt: skip
        self.deps.submit(envelope)
        ok = replies.QUEUED.with_text(f"Ok: queued as {msg.queue_id}")
        return [ok if a.is_positive else a for a in answers]

    async def _sender_refusal(self, sender: str) -> tuple[Reply | None, str]:
        """(the reply every recipient gets, None to go on; a DISCARD reason)."""
        client = self.client
        if client is None:
            return None, ""
        engine, state = client.engine, client.state
        if engine.listener_rules(state).require_auth:  # [smtp.policy]: QMTP cannot AUTH
            log.info(
                "NOQUEUE: reject: MAIL from %s: %s; from=<%s> proto=QMTP (require_auth)",
                self._label, AUTH_REQUIRED, sender,
            )  # fmt: skip
            return AUTH_REQUIRED, ""
        verdict = await engine.on_mail(state, sender)
        if not verdict.accepted:
            log.info(
                "NOQUEUE: reject: MAIL from %s: %s; from=<%s> proto=QMTP (%s)",
                self._label, verdict.reply, sender, verdict.reason,
            )  # fmt: skip
            return verdict.reply, ""
        if verdict.kind is Kind.DISCARD:
            return None, verdict.reason or "access DISCARD"
        return None, ""

    async def _check_rcpt(self, rcpt: str) -> tuple[Decision, str]:
        """The decision for one recipient, and a DISCARD reason ("" when none)."""
        client = self.client
        if client is None:
            return self.deps.policy.check_rcpt(rcpt, client_ip=self.peer.ip), ""
        verdict = await client.engine.on_rcpt(client.state, rcpt)
        why = (verdict.reason or "access DISCARD") if verdict.kind is Kind.DISCARD else ""
        return verdict.decision, why

    def abort(self) -> None:
        if self.msg is not None:
            self.msg.abort()
            self.msg = None


class QmtpIntake:
    """The QmtpHandler and QmtpGate for app.py: one _Package per package, with the
    session dependencies in force at that moment (a reload replaces them)."""

    def __init__(self, deps: Callable[[], SessionDeps]) -> None:
        self.deps = deps
        self._clients: dict[QmtpPeer, _Client] = {}

    def __call__(self, peer: QmtpPeer) -> _Package:
        return _Package(self.deps(), peer, self._clients.get(peer))

    async def open(self, peer: QmtpPeer) -> Reply | None:
        """The connect checks (see the module doc); None when the client may go on."""
        engine = self.deps().policy_engine
        if engine is None or peer.ip == "unix":
            return None
        try:
            state = await engine.new_client(peer.ip, listener=QMTP)
            self._clients[peer] = _Client(engine, state)  # close() releases what it counts
            verdict = await engine.on_connect(state)
        except Exception:  # a bug below us: let the client in, log the traceback
            log.exception("QMTP connect check failed for %s", peer.label)
            return None
        label = f"{state.hostname or 'unknown'}[{peer.ip}]"
        if verdict.accepted:
            if verdict.kind is Kind.DISCARD:
                log.info("QMTP %s: connect: discard (%s)", label, verdict.reason)
            return None
        log.info("NOQUEUE: reject: CONNECT from %s: %s (%s) proto=QMTP",
                 label, verdict.reply, verdict.reason)  # fmt: skip
        return verdict.reply

    def close(self, peer: QmtpPeer) -> None:
        """The connection is over: release its place in the limits."""
        client = self._clients.pop(peer, None)
        if client is not None:
            client.engine.on_disconnect(client.state)
