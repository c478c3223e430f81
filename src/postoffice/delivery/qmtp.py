"""delivery.qmtp — the QMTP delivery agent: queued mail to a qmail-style QMTP server.

Description:
    `QmtpAgent` implements queue.interfaces.DeliveryAgent for recipients
    whose target is `Remote` with a `qmtp:` next hop, from a mailertable
    entry such as

        office.example     qmtp:[gateway.office.example]

    Next-hop spellings (delivery/lmtp.py parse_nexthop, port 209 by
    default, QMTP §7):

        qmtp:host, qmtp:[host]              TCP port 209
        qmtp:host:port, qmtp:[host]:port    another port
        qmtp:inet:host:port                 the same, Postfix's spelling
        qmtp:[2001:db8::1]:209              IPv6 addresses in brackets
        qmtp:unix:/path, qmtp:/path         a unix-domain socket

    The host is connected to as named: no MX lookup. Per call the
    recipients are grouped by next hop and each group goes as one package
    (smtp/qmtp.py), up to `max_recipients` a package, several packages
    over one connection. The responses decide the outcomes: K Delivered,
    Z Deferred, D Bounced (the HCMSSC "(#5.1.1)" in a response is its RFC
    3463 status). A connection that fails defers what it has not answered
    (451 4.4.1 cannot connect, 451 4.4.2 lost connection); an unparsable
    next hop defers with 451 4.3.5.

    The message goes as the spool keeps it (CRLF lines: QMTP's encoding
    #1), 8-bit as it is: QMTP is 8-bit clean.

Security:
    Runs in the server process as the mail system's user; reads the queued
    body only.

Config:
    None read here: app.py passes the timeouts ([smtp_client]).

See also:
    smtp/qmtp.py, delivery/lmtp.py (next hops, outcomes),
    routing/mailertable.py, cr.yp.to/proto/qmtp.txt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import BinaryIO

from postoffice.delivery.lmtp import Endpoint, deliver_by_endpoint, open_body_or_defer, outcome
from postoffice.queue.envelope import Envelope, EnvelopeRecipient
from postoffice.queue.interfaces import Deferred, Outcome
from postoffice.smtp.qmtp import QMTP_PORT, QmtpClient
from postoffice.smtp.replies import Reply

log = logging.getLogger("postoffice.delivery.qmtp")

CANNOT_CONNECT = Reply(code=451, enhanced="4.4.1", text="Cannot connect to the QMTP server")


class QmtpAgent:
    """Delivers to `qmtp:` next hops (DeliveryAgent)."""

    def __init__(
        self,
        *,
        open_body: Callable[[str], BinaryIO],
        max_recipients: int = 100,
        connect_timeout: float = 30.0,
        timeout: float = 600.0,
    ) -> None:
        self._open_body = open_body  # FileSpool.open_body
        self._max_recipients = max(1, max_recipients)
        self._connect_timeout = connect_timeout
        self._timeout = timeout

    async def deliver(
        self, envelope: Envelope, recipients: Sequence[EnvelopeRecipient]
    ) -> list[Outcome]:
        async def send(ep: Endpoint, rcpts: list[EnvelopeRecipient]) -> list[Outcome]:
            return await self._deliver_to(ep, envelope, rcpts)

        return await deliver_by_endpoint(recipients, "qmtp", QMTP_PORT, send)

    async def _connect(self, ep: Endpoint) -> QmtpClient | str:
        """A client, or why there is none (for the log)."""
        try:
            return await QmtpClient.connect(
                ep.host, ep.port, timeout=self._connect_timeout, path=ep.path
            )
        except (OSError, TimeoutError) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else "timed out"
            return f"connect to {ep.label}: {why}"

    async def _deliver_to(
        self, ep: Endpoint, envelope: Envelope, rcpts: list[EnvelopeRecipient]
    ) -> list[Outcome]:
        out: list[Outcome] = []
        client: QmtpClient | None = None
        try:
            for start in range(0, len(rcpts), self._max_recipients):
                batch = rcpts[start : start + self._max_recipients]
                if client is None or not client.usable:
                    got = await self._connect(ep)
                    if isinstance(got, str):
                        log.info("%s: %s", envelope.queue_id, got)
                        out += [
                            Deferred(recipient=r, reply=CANNOT_CONNECT, relay=ep.label, detail=got)
                            for r in rcpts[start:]
                        ]
                        return out
                    client = got
                    client.timeout = self._timeout
                out += await self._package(client, envelope, batch)
        finally:
            if client is not None:
                await client.close()
        return out

    async def _package(
        self, client: QmtpClient, envelope: Envelope, batch: list[EnvelopeRecipient]
    ) -> list[Outcome]:
        body = open_body_or_defer(self._open_body, envelope, batch)
        if isinstance(body, list):
            return body
        with body:
            sender = envelope.sender_for(batch[0])  # batches share one sender
            got = await client.send(sender, [r.address for r in batch], body)
        return [
            outcome(r, reply, relay=client.peer, stage="the QMTP package")
            for r, reply in zip(batch, got, strict=True)
        ]
