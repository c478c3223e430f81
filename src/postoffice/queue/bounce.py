"""queue.bounce — the notifier: queues the DSNs that tell senders what became of their mail.

Description:
    Notifier(spool, *, hostname, clock, submit, postmaster="postmaster",
    max_lifetime=None, size_limit=BOUNCE_SIZE_LIMIT) provides the queue
    manager's three hooks, each `async (envelope, recipients) -> None`:

        on_bounce(envelope, recipients)   recipients failed     -> "failure" DSN
        on_delay(envelope, recipients)    still pending (warn)  -> "delay" DSN
        on_success(envelope, recipients)  delivered (NOTIFY=SUCCESS) -> "success" DSN,
                                          or "relayed" for those an SMTP relay took

    Each call makes at most one notification per envelope sender listing
    every recipient it may mention (message/dsn.py builds it:
    multipart/report, RFC 3464 and RFC 6522), writes it into the spool as a
    NEW message (begin, write, commit) from the null sender <> (RFC 5321
    §6.1) to that sender, and hands its envelope to `submit` (the manager's
    submit_nowait) for delivery. The queue manager calls on_bounce once per
    delivery attempt with the recipients that failed in it, on_delay once
    per message (queue.warn_after) and on_success once per attempt: one
    DSN per original envelope and sender and kind and event, never one per
    recipient.

    A recipient's sender is Envelope.sender_for(rcpt): the list owner
    (owner-LIST, sendmail) for the copies a list with an owner sent, else
    the original sender. The owner gets its own DSN, written as if it had
    sent the copy (its address in the report and the To:), so list
    members' failures never reach the original sender (RFC 3461 §6.2.7.3:
    a list's return address is its administrator's). This holds for mail
    from <> as well: the owner's copy was not from <>.

    The rules:
      * NOTIFY (RFC 3461 §4.1, message/dsn.wants_dsn): NEVER mentions no
        one; a list mentions a recipient only in the kinds it names; no
        NOTIFY means FAILURE,DELAY. A call whose recipients all opted out
        sends nothing (log: `not sent (NOTIFY)`).
      * Never a notification to the null sender (RFC 5321 §4.5.5, §6.1):
        a message from <> — a bounce, ours or someone else's — that
        fails (for recipients without an owner) is reported once to the
        postmaster (a "double bounce",
        subject "Postmaster Copy: Undelivered Mail", headers only), and that
        copy is marked in its envelope (`notification: "double-bounce"`);
        when the copy fails too it is dropped with the log line Postfix
        writes, `QID: undeliverable postmaster notification discarded`.
        Delay and success notices for mail from <> are not sent at all.
      * What is returned (RFC 3461 §4.3, message/dsn.returns_full): the
        whole message for failures with RET=FULL, or without RET up to
        `size_limit` (50 000 bytes, Postfix's bounce_size_limit); the
        header otherwise. Only what is returned is read from the spool.
      * Delay DSNs carry Will-Retry-Until = arrival + max_lifetime when
        `max_lifetime` is given.

    The new message's envelope: sender "", one recipient (the sender, or
    `postmaster@hostname` when `postmaster` has no domain), no NOTIFY
    (a failed notification must still reach the postmaster),
    BODY=8BITMIME when the DSN has 8-bit octets, SMTPUTF8 when its header
    does, protocol "local", `notification` = the DSN's kind.

    Log lines (logger postoffice.queue.bounce, Postfix's bounce(8) shape):

        QID: sender non-delivery notification: NEWQID
        QID: sender delay notification: NEWQID
        QID: sender delivery status notification: NEWQID
        QID: postmaster non-delivery notification: NEWQID
        QID: undeliverable postmaster notification discarded
        NEWQID: from=<>, size=N, nrcpt=1 (queue active)

    A spool that cannot take the notification raises TempFail to the
    caller (the manager logs it; a delay warning is then tried again at
    the next deferral). statistics() counts what was sent and dropped.

Security:
    Runs in the server process as the mail user. Everything in the DSN
    that came from outside (addresses, remote replies, the original
    header) is sanitised by message/dsn.py. Bounce loops end by
    construction: nothing goes to <>, and the postmaster copy of a failed
    notice is never itself reported.

Config:
    hostname (Reporting-MTA, MAILER-DAEMON@hostname, Message-ID),
    [queue] max_lifetime (Will-Retry-Until); the postmaster address.

See also:
    message/dsn.py, queue/manager.py (calls the hooks), RFC 3464, RFC 3461
    §4.1-§4.4, RFC 6522, RFC 3834 §5, RFC 5321 §6.1 (the duty to
    report failures) and §4.5.5 (the null reverse-path), Postfix bounce(8).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from postoffice.message.dsn import (
    BOUNCE_SIZE_LIMIT,
    DsnKind,
    build_dsn,
    needs_8bitmime,
    needs_smtputf8,
    remote_mta,
    returns_full,
    wants_dsn,
)
from postoffice.observe.log import bounce_line, from_line
from postoffice.queue.envelope import Envelope, EnvelopeRecipient
from postoffice.queue.interfaces import Spool

log = logging.getLogger("postoffice.queue.bounce")

DOUBLE_BOUNCE = "double-bounce"  # Envelope.notification of a postmaster copy
_HEADER_READ_LIMIT = 1 << 20  # octets read looking for the end of the header
_CHUNK = 64 * 1024
_WHAT: dict[DsnKind, str] = {
    "failure": "non-delivery",
    "delay": "delay",
    "success": "delivery status",
    "relayed": "delivery status",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class NotifierStatistics:
    failure: int  # sender non-delivery notifications queued
    delay: int  # delay warnings queued
    success: int  # success and relayed notifications queued
    postmaster: int  # postmaster copies (double bounces) queued
    discarded: int  # failed postmaster copies dropped
    suppressed: int  # notifications not sent: NOTIFY, or mail from <>


def _read_original(spool: Spool, queue_id: str, full: bool) -> bytes:
    """The message (full) or enough of its beginning to hold the header."""
    with spool.open_body(queue_id) as f:
        if full:
            return f.read()
        data = bytearray()
        while len(data) < _HEADER_READ_LIMIT:
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            data += chunk
            if data.startswith((b"\r\n", b"\n")) or b"\n\n" in data or b"\n\r\n" in data:
                break
        return bytes(data)


class Notifier:
    """Makes and queues delivery status notifications (the queue manager's hooks)."""

    def __init__(
        self,
        spool: Spool,
        *,
        hostname: str,
        clock: Callable[[], float],
        submit: Callable[[Envelope], None],
        postmaster: str = "postmaster",
        max_lifetime: float | None = None,
        size_limit: int = BOUNCE_SIZE_LIMIT,
    ) -> None:
        self._spool = spool
        self._hostname = hostname or "localhost"
        self._clock = clock
        self._submit = submit
        self._postmaster = postmaster if "@" in postmaster else f"{postmaster}@{self._hostname}"
        self._max_lifetime = max_lifetime
        self._size_limit = size_limit
        self._n = dict.fromkeys(
            ("failure", "delay", "success", "postmaster", "discarded", "suppressed"), 0
        )

    # --- the hooks ---------------------------------------------------------------------

    async def on_bounce(self, envelope: Envelope, recipients: Sequence[EnvelopeRecipient]) -> None:
        """Recipients failed: a non-delivery notification (or a postmaster copy)."""
        await self._notify("failure", envelope, recipients)

    async def on_delay(self, envelope: Envelope, recipients: Sequence[EnvelopeRecipient]) -> None:
        """Recipients are still pending after queue.warn_after: a delay warning."""
        await self._notify("delay", envelope, recipients)

    async def on_success(self, envelope: Envelope, recipients: Sequence[EnvelopeRecipient]) -> None:
        """Recipients were delivered: "delivered" for local ones, "relayed" for SMTP relays.

        A recipient counts as relayed when its relay names a remote host
        (`mx.example[192.0.2.1]:25`): the next hop did not take over the
        duty to report (RFC 3461 §5.2.2; see the report on passing NOTIFY on)."""
        relayed = [r for r in recipients if remote_mta(r.relay) is not None]
        delivered = [r for r in recipients if remote_mta(r.relay) is None]
        if delivered:
            await self._notify("success", envelope, delivered)
        if relayed:
            await self._notify("relayed", envelope, relayed)

    # --- the work ------------------------------------------------------------------------

    async def _notify(
        self, kind: DsnKind, env: Envelope, recipients: Sequence[EnvelopeRecipient]
    ) -> str | None:
        """Queue `kind` notifications about `recipients`, one per sender; the first's
        queue id, or None."""
        qid = env.queue_id
        wanted = [r for r in recipients if wants_dsn(r.notify, kind)]
        if not wanted:
            if recipients:
                self._n["suppressed"] += 1
                log.info("%s: sender %s notification: not sent (NOTIFY)", qid, _WHAT[kind])
            return None
        if env.notification == DOUBLE_BOUNCE:
            if kind == "failure":
                self._n["discarded"] += 1
                log.info("%s: undeliverable postmaster notification discarded", qid)
            else:
                self._n["suppressed"] += 1
            return None
        by_sender: dict[str, list[EnvelopeRecipient]] = {}
        for r in wanted:  # one DSN per sender: the original one, or a list owner
            by_sender.setdefault(env.sender_for(r), []).append(r)
        queued = [await self._notify_sender(kind, env, to, rs) for to, rs in by_sender.items()]
        return next((q for q in queued if q is not None), None)

    async def _notify_sender(
        self, kind: DsnKind, env: Envelope, to: str, wanted: list[EnvelopeRecipient]
    ) -> str | None:
        """Queue one `kind` notification to `to` ("" = the null sender) about `wanted`."""
        qid = env.queue_id
        notification = str(kind)
        if to != env.sender:  # a list owner's copies: report as if the owner had sent them
            env = replace(env, sender=to)
        if not to:  # RFC 5321 §4.5.5: never to <>; a failure goes to the postmaster once
            if kind != "failure":
                self._n["suppressed"] += 1
                log.debug("%s: no %s notification to the null sender", qid, _WHAT[kind])
                return None
            to, notification = self._postmaster, DOUBLE_BOUNCE
        copy = notification == DOUBLE_BOUNCE
        full = env.size <= 0 or returns_full(
            kind, env.ret, env.size, size_limit=self._size_limit, postmaster_copy=copy
        )
        try:
            original = await asyncio.to_thread(_read_original, self._spool, qid, full)
        except OSError as e:  # the message is gone: report without returning it
            log.warning("%s: cannot read the message for its notification: %s", qid, e)
            original = b""
        now = self._clock()
        until = None
        if kind == "delay" and self._max_lifetime is not None:
            until = env.arrival_time + self._max_lifetime
        msg = self._spool.begin()
        try:
            data = build_dsn(
                kind=kind, envelope=env, recipients=wanted, reporting_mta=self._hostname,
                original=original, now=now, queue_id_new=msg.queue_id, to=to,
                will_retry_until=until, size_limit=self._size_limit,
            )  # fmt: skip
            msg.write(data)
            dsn_env = Envelope(
                queue_id=msg.queue_id,
                sender="",
                recipients=(EnvelopeRecipient(address=to),),
                arrival_time=now,
                size=len(data),
                body_type="8BITMIME" if needs_8bitmime(data) else "7BIT",
                smtputf8=needs_smtputf8(data) or not to.isascii(),
                client_name="localhost",
                protocol="local",
                local_submission=True,
                notification=notification,
            )
            await self._spool.commit(msg, dsn_env)
        except BaseException:
            msg.abort()  # safe in every state; a commit that went through stays committed
            raise
        if copy:
            self._n["postmaster"] += 1
            log.info("%s: postmaster non-delivery notification: %s", qid, msg.queue_id)
        else:
            self._n["success" if kind == "relayed" else kind] += 1
            log.info("%s", bounce_line(qid, msg.queue_id, _WHAT[kind]))
        log.info("%s", from_line(msg.queue_id, "", len(data), 1))
        self._submit(dsn_env)
        return msg.queue_id

    def statistics(self) -> NotifierStatistics:
        n = self._n
        return NotifierStatistics(
            failure=n["failure"],
            delay=n["delay"],
            success=n["success"],
            postmaster=n["postmaster"],
            discarded=n["discarded"],
            suppressed=n["suppressed"],
        )
