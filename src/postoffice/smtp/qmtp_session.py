"""QMTP intake: packages from the QMTP listener go through the same policy and spool as SMTP.

Description:
    `QmtpIntake(deps)` is the handler `smtp.qmtp.start_qmtp_server` calls for
    each package: the content streams into a new spool message (with our
    Received: line first, "with QMTP"); at the end every recipient is
    checked by the recipient policy (local users, aliases, relay rights of
    the client's address) exactly as an SMTP RCPT would be, the accepted
    ones are committed with their routing targets, and each recipient gets
    its own reply (K / Z / D on the wire). Nothing is acknowledged before the
    commit returns (DESIGN.md: the spool is the commit point).

Security:
    The client's address decides relaying, as for SMTP; QMTP has no AUTH.

See also:
    smtp/qmtp.py (the protocol), smtp/session.py (the SMTP equivalent),
    cr.yp.to/proto/qmtp.txt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from postoffice.errors import TempFail
from postoffice.message.headers import build_received
from postoffice.queue.envelope import Envelope, EnvelopeRecipient
from postoffice.queue.interfaces import IncomingMessage
from postoffice.routing.targets import envelope_recipients
from postoffice.smtp import replies
from postoffice.smtp.qmtp import QmtpPeer
from postoffice.smtp.replies import Reply
from postoffice.smtp.session import SessionDeps

log = logging.getLogger("postoffice.smtp.qmtp")


class _Package:
    """One QMTP package on its way into the spool."""

    def __init__(self, deps: SessionDeps, peer: QmtpPeer) -> None:
        self.deps = deps
        self.peer = peer
        self.msg: IncomingMessage | None = None

    def _begin(self) -> IncomingMessage:
        msg = self.deps.spool.begin()
        msg.write(
            build_received(
                helo="",
                client_name="unknown",
                client_ip=self.peer.ip,
                hostname=self.deps.config.hostname,
                protocol="QMTP",
                queue_id=msg.queue_id,
                recipient=None,
                when=self.deps.clock(),
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
        answers: list[Reply] = []
        queued: list[EnvelopeRecipient] = []
        for raw in recipients:
            rcpt = self.deps.qualify(raw)
            decision = self.deps.policy.check_rcpt(rcpt, client_ip=self.peer.ip)
            answers.append(decision.reply)
            if not decision.accepted:
                continue
            if decision.resolution is None:
                queued.append(EnvelopeRecipient(address=rcpt))
            else:
                queued += envelope_recipients(decision.resolution, rcpt)
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
            client_name="unknown",
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
            msg.queue_id, sender, envelope.size, len(queued), self.peer.label,
        )  # fmt: skip
        self.deps.submit(envelope)
        ok = replies.QUEUED.with_text(f"Ok: queued as {msg.queue_id}")
        return [ok if a.is_positive else a for a in answers]

    def abort(self) -> None:
        if self.msg is not None:
            self.msg.abort()
            self.msg = None


class QmtpIntake:
    """The QmtpHandler for app.py: one _Package per package, with the session
    dependencies in force at that moment (a reload replaces them)."""

    def __init__(self, deps: Callable[[], SessionDeps]) -> None:
        self.deps = deps

    def __call__(self, peer: QmtpPeer) -> _Package:
        return _Package(self.deps(), peer)
