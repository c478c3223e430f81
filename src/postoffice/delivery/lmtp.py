"""delivery.lmtp — the LMTP delivery agent: queued mail into a mail store (Dovecot, Cyrus).

Description:
    `LmtpAgent` implements queue.interfaces.DeliveryAgent for recipients
    whose target (routing/targets.py) is `Remote` with an `lmtp:` next hop
    — a mailertable entry such as

        example.org     lmtp:unix:/run/dovecot/lmtp

    Next-hop spellings (parse_nexthop; the same for `qmtp:`, see
    delivery/qmtp.py, whose default port is 209):

        lmtp:unix:/run/dovecot/lmtp     a unix-domain socket
        lmtp:/run/dovecot/lmtp          the same (an absolute path)
        lmtp:host:port                  TCP, e.g. lmtp:mailstore.example:24
        lmtp:[host]:port, lmtp:[host]   the same; brackets as sendmail writes
                                        them ("no MX lookup": LMTP and QMTP
                                        never look up MX, the host is used
                                        as named)
        lmtp:inet:host:port             Postfix's spelling, the same
        lmtp:host                       TCP port 24 (Postfix's and Dovecot's
                                        habit; LMTP has no registered port)
        lmtp:[2001:db8::1]:24           an IPv6 address needs the brackets

    Per call the recipients are grouped by next hop; each group goes over
    one connection (smtp/lmtp_client.py), at most `max_recipients` per
    transaction, several transactions per connection. The server's reply
    for each recipient decides its outcome (CONVENTIONS.md §8):

        2xx  Delivered  status=sent (250 2.0.0 <bob@example.org> Saved)
        4xx  Deferred   host store[10.0.0.5]:24 said: 452 4.2.2 Mailbox is
                        full (in reply to end of DATA)
        5xx  Bounced    host ... said: 550 5.1.1 User unknown (in reply to
                        RCPT TO)

    A server that cannot be reached, refuses the session or drops the
    connection defers (451 4.4.1 / 4.4.2) the recipients it has not
    answered; one whose 250 arrived stays delivered. A reply without an
    RFC 3463 code gets X.0.0 of its class, so that DSNs carry a status. An
    unparsable next hop defers with 451 4.3.5 (mail routing misconfigured:
    the administrator fixes the mailertable, nothing bounces). relay= in
    the log is `host[address]:port`, or the socket's path.

Security:
    Runs in the server process as the mail system's user and only opens the
    queued body to read it. What the next hop may be is the mailertable's
    business (an administrator's file).

Config:
    None read here: app.py passes hostname (LHLO) and the timeouts
    ([smtp_client] connect_timeout, command_timeout, data_timeout).

See also:
    smtp/lmtp_client.py, routing/mailertable.py, routing/targets.py
    (transport() sends `lmtp:` next hops here), queue/manager.py,
    RFC 2033, RFC 3463.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from postoffice.errors import TempFail
from postoffice.queue.envelope import Envelope, EnvelopeRecipient
from postoffice.queue.interfaces import Bounced, Deferred, Delivered, Outcome
from postoffice.routing.targets import Remote, from_spec
from postoffice.smtp.lmtp_client import LmtpClient
from postoffice.smtp.replies import Reply

log = logging.getLogger("postoffice.delivery.lmtp")

LMTP_PORT = 24
MISROUTED = Reply(code=451, enhanced="4.3.5", text="Mail routing misconfigured")
BODY_MISSING = Reply(code=451, enhanced="4.3.0", text="Queued message content is missing")


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """Where a next hop points: a TCP host and port, or a unix socket path."""

    host: str = ""
    port: int = 0
    path: str = ""

    @property
    def label(self) -> str:
        if self.path:
            return self.path
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_nexthop(nexthop: str, scheme: str, default_port: int) -> Endpoint:
    """The Endpoint of `scheme:...` (see the module docstring); ValueError otherwise."""
    mailer, sep, rest = nexthop.partition(":")
    if not sep or mailer.lower() != scheme:
        raise ValueError(f"not a {scheme}: next hop: {nexthop!r}")
    rest = rest.strip()
    if rest.startswith("unix:"):
        rest = rest[5:]
        if not rest.startswith("/"):
            raise ValueError(f"unix socket path is not absolute: {nexthop!r}")
    if rest.startswith("/"):
        if "\0" in rest:
            raise ValueError(f"bad socket path: {nexthop!r}")
        return Endpoint(path=rest)
    rest = rest.removeprefix("inet:")
    port = default_port
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0:
            raise ValueError(f"unbalanced brackets: {nexthop!r}")
        host, tail = rest[1:end], rest[end + 1 :]
        if tail:
            if not tail.startswith(":"):
                raise ValueError(f"junk after the host: {nexthop!r}")
            port = _port(tail[1:], nexthop)
    else:
        host, sep, p = rest.rpartition(":")
        if not sep:
            host = p
        else:
            port = _port(p, nexthop)
        if ":" in host:
            raise ValueError(f"an IPv6 address needs brackets: {nexthop!r}")
    host = host.removeprefix("IPv6:")
    if not host or any(c.isspace() or c in "/[]" for c in host):
        raise ValueError(f"bad host in {nexthop!r}")
    return Endpoint(host=host, port=port)


def _port(text: str, nexthop: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"bad port in {nexthop!r}")
    return int(text)


async def deliver_by_endpoint(
    recipients: Sequence[EnvelopeRecipient],
    scheme: str,
    default_port: int,
    send: Callable[[Endpoint, list[EnvelopeRecipient]], Awaitable[list[Outcome]]],
) -> list[Outcome]:
    """Group recipients by the Endpoint of their target, `send` each group (concurrently);
    one Outcome per recipient, in order. A bad target defers with MISROUTED."""
    # One transaction per endpoint and envelope sender (owner-LIST copies carry
    # their own sender: EnvelopeRecipient.sender).
    groups: dict[tuple[Endpoint, str], list[int]] = {}
    outcomes: list[Outcome | None] = [None] * len(recipients)
    for i, rcpt in enumerate(recipients):
        try:
            target = from_spec(rcpt.address, rcpt.target)
            if not isinstance(target, Remote):
                raise ValueError(f"not a remote target: {rcpt.target!r}")
            endpoint = parse_nexthop(target.nexthop, scheme, default_port)
            groups.setdefault((endpoint, rcpt.sender), []).append(i)
        except ValueError as e:
            log.warning("<%s>: %s", rcpt.address, e)
            outcomes[i] = Deferred(
                recipient=rcpt, reply=MISROUTED, relay="none", detail=MISROUTED.text
            )
    done = await asyncio.gather(
        *(send(ep, [recipients[i] for i in ix]) for (ep, _), ix in groups.items())
    )
    for ix, got in zip(groups.values(), done, strict=True):
        for i, o in zip(ix, got, strict=True):
            outcomes[i] = o
    return [o for o in outcomes if o is not None]


def open_body_or_defer(
    open_body: Callable[[str], BinaryIO], envelope: Envelope, batch: list[EnvelopeRecipient]
) -> BinaryIO | list[Outcome]:
    """The queued message, or a deferral for the whole batch when it is gone
    (a concurrent removal; the queue decides again)."""
    try:
        return open_body(envelope.queue_id)
    except FileNotFoundError:
        return [
            Deferred(recipient=r, reply=BODY_MISSING, relay="none", detail=BODY_MISSING.text)
            for r in batch
        ]


def outcome(rcpt: EnvelopeRecipient, reply: Reply, *, relay: str, stage: str) -> Outcome:
    """A peer's reply for one recipient as the queue's Outcome."""
    if not reply.enhanced:  # a DSN needs a status: X.0.0 of the reply's class
        reply = dataclasses.replace(reply, enhanced=f"{min(5, max(2, reply.code // 100))}.0.0")
    if 200 <= reply.code < 300:
        return Delivered(recipient=rcpt, reply=reply, relay=relay, detail=reply.text)
    said = f"host {relay} said: {reply}" + (f" (in reply to {stage})" if stage else "")
    if reply.code >= 500:
        return Bounced(recipient=rcpt, reply=reply, relay=relay, detail=said)
    return Deferred(recipient=rcpt, reply=reply, relay=relay, detail=said)


class LmtpAgent:
    """Delivers to `lmtp:` next hops (DeliveryAgent)."""

    def __init__(
        self,
        *,
        open_body: Callable[[str], BinaryIO],
        hostname: str,
        max_recipients: int = 50,
        connect_timeout: float = 30.0,
        timeout: float = 300.0,
        data_timeout: float = 600.0,
    ) -> None:
        self._open_body = open_body  # FileSpool.open_body
        self._hostname = hostname
        self._max_recipients = max(1, max_recipients)
        self._connect_timeout = connect_timeout
        self._timeout = timeout
        self._data_timeout = data_timeout

    async def deliver(
        self, envelope: Envelope, recipients: Sequence[EnvelopeRecipient]
    ) -> list[Outcome]:
        async def send(ep: Endpoint, rcpts: list[EnvelopeRecipient]) -> list[Outcome]:
            return await self._deliver_to(ep, envelope, rcpts)

        return await deliver_by_endpoint(recipients, "lmtp", LMTP_PORT, send)

    async def _deliver_to(
        self, ep: Endpoint, envelope: Envelope, rcpts: list[EnvelopeRecipient]
    ) -> list[Outcome]:
        out: list[Outcome] = []
        client: LmtpClient | None = None
        try:
            for start in range(0, len(rcpts), self._max_recipients):
                batch = rcpts[start : start + self._max_recipients]
                if client is None or client.broken:
                    try:
                        client = await LmtpClient.connect(
                            host=ep.host,
                            port=ep.port,
                            path=ep.path,
                            lhlo=self._hostname,
                            timeout=self._timeout,
                            connect_timeout=self._connect_timeout,
                            data_timeout=self._data_timeout,
                        )
                    except TempFail as e:
                        log.info("%s: %s", envelope.queue_id, e.reason)
                        relay = ep.label
                        out += [
                            Deferred(recipient=r, reply=e.reply, relay=relay, detail=e.reason)
                            for r in rcpts[start:]
                        ]
                        return out
                out += await self._transaction(client, envelope, batch)
        finally:
            if client is not None:
                await client.quit()
        return out

    async def _transaction(
        self, client: LmtpClient, envelope: Envelope, batch: list[EnvelopeRecipient]
    ) -> list[Outcome]:
        body = open_body_or_defer(self._open_body, envelope, batch)
        if isinstance(body, list):
            return body
        with body:
            sender = envelope.sender_for(batch[0])
            results = await client.send(dataclasses.replace(envelope, sender=sender), batch, body)
        return [
            outcome(res.recipient, res.reply, relay=client.peer, stage=res.stage) for res in results
        ]
