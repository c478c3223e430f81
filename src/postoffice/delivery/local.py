"""delivery.local — the local delivery agent: queued message → the recipient's Maildir or mbox.

Description:
    `LocalAgent` implements queue.interfaces.DeliveryAgent for recipients
    that routing resolved to a local mailbox. For each recipient it

    1. fills the mailbox template (`[delivery] mailbox`, e.g.
       `maildir:/srv/mail/{domain}/{user}` or `mbox:/var/mail/{user}`):
       `{user}` is the local part, `{domain}` the domain, `{address}` both
       joined by "@", all lower-cased (Postfix local(8) folds the local part
       to lower case; domains are case-insensitive, RFC 5321 §2.4);
    2. prepends `Return-Path: <sender>` (RFC 5321 §4.4: added at final
       delivery; the recipient's own sender when it has one, the list
       owner — Envelope.sender_for) and `Delivered-To: recipient` (Postfix
       local(8), for loop detection);
    3. opens the queued body with `spool_open_body(queue_id)` and runs the
       mailbox writer (store/maildir.py, store/mbox.py, chosen by the
       template's scheme through the WRITERS registry) in `executor`
       (the loop's default executor when None): blocking file I/O and
       fsync never run on the event loop.

    Recipients whose mailbox paths and senders are identical within one
    call are delivered once and share the outcome (a mailbox reached both
    directly and through a list with an owner gets both copies, as their
    Return-Paths differ). Distinct mailboxes are written
    concurrently, as many at a time as the executor allows.

    Outcomes (CONVENTIONS.md §8): Delivered 250 2.0.0 "delivered to
    maildir" / "delivered to mailbox" (Postfix's words), Deferred with the
    writer's TempFail reply, Bounced with its PermFail reply. relay is
    "local"; detail is the reason for the log. Unexpected exceptions are
    bugs and propagate.

Security:
    The values substituted into the path come from the envelope, which a
    remote client controls: an empty value, or one containing "/", NUL, a
    control character, "..", or starting with "." is refused with
    553 5.1.3 (MAILBOX_NAME_INVALID; RFC 3463 X.1.3 "Bad destination
    mailbox address syntax") before any file is touched — a recipient must
    never name a path outside its mailbox. A quoted local part
    (`"john doe"@example`) is unquoted first. Files are written with the
    server's own uid; per-user privileges belong to delivery/pipe.

Config:
    [delivery] mailbox (config_dir/state_dir already expanded by the loader).

See also:
    RFC 5321 §4.4 (Return-Path), store/maildir.py, store/mbox.py,
    queue/interfaces.py, Postfix local(8).
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import pwd
import re
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import BinaryIO

from postoffice.errors import ConfigError, PermFail, TempFail
from postoffice.message.headers import build_delivered_to, build_return_path
from postoffice.queue.envelope import Envelope, EnvelopeRecipient
from postoffice.queue.interfaces import Bounced, Deferred, Delivered, Outcome
from postoffice.routing.targets import Mailbox, from_spec
from postoffice.smtp import replies
from postoffice.smtp.replies import Reply
from postoffice.store.interfaces import MailboxWriter
from postoffice.store.maildir import MaildirWriter
from postoffice.store.mbox import MboxWriter

log = logging.getLogger(__name__)

DELIVERED_MAILDIR = Reply.of(250, "2.0.0", "delivered to maildir")
DELIVERED_MBOX = Reply.of(250, "2.0.0", "delivered to mailbox")

# The mailbox writers by template scheme (CONVENTIONS.md §7). Each factory
# takes the mailbox path, this host's name, and whether it may wait for a
# locked mailbox (the queue may; a direct delivery inside an SMTP transaction
# may not: a busy mbox — a POP3 session holds it — sends the message to the
# queue at once instead of keeping the client waiting).
WRITERS: dict[str, Callable[[str, str, bool], MailboxWriter]] = {
    "maildir": lambda path, hostname, patient: MaildirWriter(path, hostname=hostname),
    "mbox": lambda path, hostname, patient: MboxWriter(path, attempts=10 if patient else 1),
}
_SUCCESS = {"maildir": DELIVERED_MAILDIR, "mbox": DELIVERED_MBOX}
_KIND: dict[type, str] = {Delivered: "delivered", Deferred: "deferred", Bounced: "bounced"}
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f/\\]")


def _unquote(local: str) -> str:
    """`"john doe"` → `john doe` (RFC 5321 §4.1.2 Quoted-string); other local parts as they are."""
    if len(local) >= 2 and local[0] == '"' and local[-1] == '"':
        return re.sub(r"\\(.)", r"\1", local[1:-1])
    return local


def _check(value: str, what: str, address: str) -> str:
    if not value or value.startswith(".") or ".." in value or _BAD_CHARS.search(value):
        raise PermFail(
            replies.MAILBOX_NAME_INVALID, f"unsafe {what} in {address!r} for a mailbox path"
        )
    return value


def mailbox_for(template: str, address: str) -> tuple[str, str]:
    """(scheme, path) of the mailbox for `address`; PermFail 553 5.1.3 for an unsafe address."""
    scheme, _, path_template = template.partition(":")
    at = address.rfind("@")
    local, domain = (address[:at], address[at + 1 :]) if at >= 0 else (address, "")
    user = _check(_unquote(local).lower(), "local part", address)
    needs_domain = "{domain}" in path_template or "{address}" in path_template
    domain = _check(domain.lower(), "domain", address) if needs_domain else domain.lower()
    path = (
        path_template.replace("{user}", user)
        .replace("{domain}", domain)
        .replace("{address}", f"{user}@{domain}" if domain else user)
    )
    return scheme, path


def parse_template(template: str) -> tuple[str, str]:
    """Check a `[delivery] mailbox` value; ConfigError when the scheme or path is wrong."""
    scheme, sep, path = template.partition(":")
    if not sep or scheme not in WRITERS:
        raise ConfigError(
            f"mailbox must start with one of {', '.join(k + ':' for k in WRITERS)}; "
            f"got {template!r}",
            key="delivery.mailbox",
        )
    if not path or ("{user}" not in path and "{address}" not in path):
        raise ConfigError(
            "mailbox path must contain {user} or {address} (one mailbox per user)",
            key="delivery.mailbox",
        )
    return scheme, path


class LocalAgent:
    """Deliver to local mailboxes (see the module manual)."""

    def __init__(
        self,
        spool_open_body: Callable[[str], BinaryIO],
        mailbox_template: str,
        *,
        hostname: str,
        executor: Executor | None = None,
    ) -> None:
        parse_template(mailbox_template)
        self._open_body = spool_open_body
        self._template = mailbox_template
        self._hostname = hostname
        self._executor = executor
        self._stats = {"delivered": 0, "deferred": 0, "bounced": 0}

    def statistics(self) -> dict[str, int]:
        """Counts of recipient outcomes since start: delivered, deferred, bounced."""
        return dict(self._stats)

    async def deliver(
        self, envelope: Envelope, recipients: Sequence[EnvelopeRecipient]
    ) -> list[Outcome]:
        """One Outcome per recipient, in order (queue.interfaces.DeliveryAgent)."""
        return await self._deliver(envelope, recipients, self._open_body, patient=True)

    async def deliver_content(
        self, envelope: Envelope, recipients: Sequence[EnvelopeRecipient], content: bytes
    ) -> list[Outcome]:
        """The same, for a message still in memory (the SMTP session's direct delivery)."""
        return await self._deliver(
            envelope, recipients, lambda _qid: io.BytesIO(content), patient=False
        )

    async def _deliver(
        self,
        envelope: Envelope,
        recipients: Sequence[EnvelopeRecipient],
        opener: Callable[[str], BinaryIO],
        *,
        patient: bool,
    ) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(recipients)
        by_path: dict[tuple[str, str, str], list[int]] = {}
        for i, rcpt in enumerate(recipients):
            try:
                scheme, path = self._mailbox(rcpt)
            except PermFail as e:
                outcomes[i] = Bounced(recipient=rcpt, reply=e.reply, relay="local", detail=e.reason)
                continue
            by_path.setdefault((scheme, path, envelope.sender_for(rcpt)), []).append(i)
        loop = asyncio.get_running_loop()
        jobs = [
            loop.run_in_executor(
                self._executor,
                self._deliver_one,
                envelope,
                recipients[idx[0]],
                scheme,
                path,
                opener,
                patient,
            )
            for (scheme, path, _sender), idx in by_path.items()
        ]
        results = await asyncio.gather(*jobs)
        for idx, (reply, failure) in zip(by_path.values(), results, strict=True):
            for i in idx:
                rcpt = recipients[i]
                if failure is None:
                    outcomes[i] = Delivered(
                        recipient=rcpt, reply=reply, relay="local", detail=reply.text
                    )
                elif isinstance(failure, TempFail):
                    outcomes[i] = Deferred(
                        recipient=rcpt, reply=reply, relay="local", detail=failure.reason
                    )
                else:
                    outcomes[i] = Bounced(
                        recipient=rcpt, reply=reply, relay="local", detail=failure.reason
                    )
        done = [o for o in outcomes if o is not None]
        assert len(done) == len(recipients)
        for o in done:
            self._stats[_KIND[type(o)]] += 1
        return done

    def _mailbox(self, rcpt: EnvelopeRecipient) -> tuple[str, str]:
        """(scheme, path): routing's Mailbox target when it resolved one, else the
        template filled from the address (mail queued before routing existed)."""
        if rcpt.target:
            try:
                target = from_spec(rcpt.address, rcpt.target)
            except ValueError as e:
                raise PermFail(replies.MAILBOX_NAME_INVALID, f"bad target: {e}") from e
            if not isinstance(target, Mailbox):
                raise PermFail(replies.MAILBOX_NAME_INVALID, "not a mailbox target")
            scheme, _, path = target.spec.partition(":")
            if scheme not in WRITERS or not os.path.isabs(path):
                raise PermFail(replies.MAILBOX_NAME_INVALID, f"bad mailbox {target.spec!r}")
            return scheme, path
        return mailbox_for(self._template, rcpt.address)

    def _deliver_one(
        self,
        envelope: Envelope,
        rcpt: EnvelopeRecipient,
        scheme: str,
        path: str,
        opener: Callable[[str], BinaryIO],
        patient: bool,
    ) -> tuple[Reply, TempFail | PermFail | None]:
        """Blocking: write one mailbox. Runs in the executor."""
        sender = envelope.sender_for(rcpt)
        prefix = build_return_path(sender) + build_delivered_to(rcpt.address)
        writer = WRITERS[scheme](path, self._hostname, patient)
        try:
            try:
                source = opener(envelope.queue_id)
            except OSError as e:
                raise TempFail(
                    replies.LOCAL_ERROR, f"cannot open queued message: {e.strerror or e}"
                ) from e
            with source:
                where = writer.deliver(
                    source, prefix=prefix, sender=sender, arrival=envelope.arrival_time
                )
        except (TempFail, PermFail) as e:
            return e.reply, e
        owner = self._owner(rcpt)
        if owner:
            _give_to(where, owner)
        log.debug("%s: to=<%s> stored in %s", envelope.queue_id, rcpt.address, where)
        return _SUCCESS[scheme], None

    @staticmethod
    def _owner(rcpt: EnvelopeRecipient) -> str:
        """The system user a Mailbox target belongs to ("" = the server's own)."""
        if not rcpt.target:
            return ""
        try:
            target = from_spec(rcpt.address, rcpt.target)
        except ValueError:
            return ""
        return target.user if isinstance(target, Mailbox) else ""


def _give_to(path: str, user: str) -> None:
    """A system user's mailbox file belongs to the user, not to the server.

    The writers create files with the server's uid; a new Maildir file or
    a new mbox of a system user (routing: ~/Maildir/, /var/spool/mail/USER)
    is handed over. Files already owned by someone else are left alone, and
    a symlink is never followed."""
    try:
        pw = pwd.getpwnam(user)
        st = os.lstat(path)
        if st.st_uid == os.geteuid() and st.st_uid != pw.pw_uid:
            os.chown(path, pw.pw_uid, pw.pw_gid, follow_symlinks=False)
    except (KeyError, OSError) as e:
        log.warning("cannot give %s to %s: %s", path, user, e)
