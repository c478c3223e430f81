"""delivery.file — the file delivery agent: a queued message appended to a /path, as its user.

Description:
    `FileAgent` implements queue.interfaces.DeliveryAgent for recipients
    that routing resolved to a File target (`/path/file` in aliases or
    ~/.forward; routing/targets.py). For each recipient it looks up the
    target's user (`File.user`; `default_user` when empty) and starts the
    helper delivery/runas.py, which becomes that user and appends the
    message with store/mbox.py's MboxWriter — the way sendmail and Postfix
    local(8) ("EXTERNAL FILE DELIVERY") write files: a `From sender
    time_stamp` line, `Return-Path: <sender>` (Envelope.sender_for: a list
    owner's copy has its own), `Delivered-To: recipient`, the message with
    LF line endings and mboxrd ">From " quoting, an empty line; under a
    dot-lock and an fcntl lock; truncated back to its old length when
    anything fails. The queued message is streamed to the
    helper's stdin (read in `executor`, the loop's default when None).

    `/dev/null` is special, as in sendmail: the message is discarded and
    the recipient counts as delivered (250 2.0.0 "discarded"), without a
    helper.

    Outcomes: Delivered 250 2.0.0 "delivered to file"; the helper's
    TempFail/PermFail replies from MboxWriter (451 4.3.0, 452 4.3.1,
    450 4.2.1 lock busy → Deferred; 550 5.2.0 → Bounced); refusals below.
    The helper has `timeout` seconds (an interval timer inside it: the
    write is undone and it defers with 451 4.3.0); KILL_GRACE seconds
    later its process group is killed. A helper that ends without a
    verdict (crashed, killed) is Deferred: whether the append happened is
    unknown, and delivery is at-least-once.

Security:
    Runs nothing as root: a user with uid or gid 0 is refused with
    550 5.7.1 "file delivery as root refused". The path must be absolute
    without ".." components (550 5.7.1); the helper, already running as
    the user, refuses a symbolic link (lstat, then O_NOFOLLOW), anything
    but a regular file (550 5.2.0), and a file with an execute, set-uid or
    set-gid bit (550 5.7.1 — sendmail refuses such files as alias
    targets); a missing file is created mode 0600 (umask 077) in an
    existing directory (no directory is made: 550 5.2.0). The user's own
    permissions decide everything else: a file the user cannot write
    defers (451 4.3.0) like any storage error, and so does a directory
    where the dot-lock cannot be made. A server not running as root can
    write files only as its own uid (others: 451 4.3.5). Reply texts
    carry no paths; the log detail does.

Config:
    [delivery] default_user, program_timeout (also the file time limit).

See also:
    delivery/runas.py (the helper), delivery/pipe.py, store/mbox.py,
    sendmail aliases(5) and smrsh(8), Postfix local(8) "EXTERNAL FILE
    DELIVERY", routing/targets.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import BinaryIO

from postoffice.delivery.pipe import (
    KILL_GRACE,
    LOCAL_ERROR,
    MISCONFIGURED,
    Stop,
    account_for,
    deliver_each,
    open_queued,
    outcome,
    printable,
    read_chunks,
    run_helper,
)
from postoffice.delivery.runas import Refused, Request, check_file_path
from postoffice.message.headers import build_delivered_to, build_return_path
from postoffice.queue.envelope import Envelope, EnvelopeRecipient
from postoffice.queue.interfaces import Bounced, Deferred, Delivered, Outcome
from postoffice.routing.targets import File, from_spec
from postoffice.smtp.replies import Reply

log = logging.getLogger(__name__)

DELIVERED_FILE = Reply.of(250, "2.0.0", "delivered to file")
DISCARDED = Reply.of(250, "2.0.0", "discarded")
TIME_LIMIT = Reply.of(451, "4.3.0", "file delivery time limit exceeded")
DEV_NULL = "/dev/null"

_KIND: dict[type, str] = {Delivered: "delivered", Deferred: "deferred", Bounced: "bounced"}


class FileAgent:
    """Deliver to /path file targets (see the module manual)."""

    def __init__(
        self,
        spool_open_body: Callable[[str], BinaryIO],
        *,
        hostname: str,
        timeout: float,
        default_user: str,
        executor: Executor | None = None,
    ) -> None:
        self._open_body = spool_open_body
        self.hostname = hostname
        self.timeout = timeout
        self.default_user = default_user
        self._executor = executor
        self._stats = {"delivered": 0, "deferred": 0, "bounced": 0}

    def statistics(self) -> dict[str, int]:
        """Counts of recipient outcomes since start: delivered, deferred, bounced."""
        return dict(self._stats)

    async def deliver(
        self, envelope: Envelope, recipients: Sequence[EnvelopeRecipient]
    ) -> list[Outcome]:
        """One Outcome per recipient, in order (queue.interfaces.DeliveryAgent)."""
        return await deliver_each(recipients, lambda r: self._deliver_one(envelope, r), self._stats)

    async def _deliver_one(self, envelope: Envelope, rcpt: EnvelopeRecipient) -> Outcome:
        loop = asyncio.get_running_loop()
        try:
            target = _file_target(rcpt)
            try:
                check_file_path(target.path)
            except Refused as e:
                r = e.result
                raise Stop("bounced", Reply.of(r.code, r.enhanced, r.text), r.reason) from e
            if target.path == DEV_NULL:
                return outcome("delivered", rcpt, DISCARDED, "discarded to /dev/null")
            account = await loop.run_in_executor(
                self._executor, account_for, target.user or self.default_user, "file"
            )
            body = await loop.run_in_executor(
                self._executor, open_queued, self._open_body, envelope.queue_id
            )
        except Stop as e:
            log.debug("%s: to=<%s> %s", envelope.queue_id, rcpt.address, e.detail)
            return outcome(e.kind, rcpt, e.reply, e.detail)
        sender = envelope.sender_for(rcpt)  # the list owner's, when it has one
        prefix = build_return_path(sender) + build_delivered_to(rcpt.address)
        request = Request(
            mode="file",
            uid=account.uid,
            gid=account.gid,
            groups=account.groups,
            cwd=account.home,
            path=target.path,
            prefix=prefix.decode("utf-8", "replace"),
            sender=sender,
            arrival=envelope.arrival_time,
            timeout=self.timeout,
        )
        try:
            run = await run_helper(
                request,
                read_chunks(body, self._executor, to_lf=False),
                timeout=self.timeout + KILL_GRACE,
                graceful=True,
            )
        finally:
            body.close()
        where = f"{target.path} as {account.name}"
        shown = printable(run.output, 300)
        said = f" (output: {shown})" if shown else ""
        if run.spawn_error:
            return outcome("deferred", rcpt, LOCAL_ERROR, f"cannot start helper: {run.spawn_error}")
        if run.source_error:
            return outcome("deferred", rcpt, LOCAL_ERROR, f"{where}: {run.source_error}")
        if run.result is not None and (run.result.status != "delivered" or run.returncode == 0):
            r = run.result
            reply = Reply.of(r.code, r.enhanced, r.text)
            detail = f"{where}: {r.reason or r.text}"
            return outcome(r.status, rcpt, reply, detail)
        if run.timed_out:
            return outcome("deferred", rcpt, TIME_LIMIT, f"{where}: time limit exceeded{said}")
        return outcome(
            "deferred",
            rcpt,
            LOCAL_ERROR,
            f"{where}: helper ended without a verdict (status {run.returncode}){said}",
        )


def _file_target(rcpt: EnvelopeRecipient) -> File:
    try:
        target = from_spec(rcpt.address, rcpt.target)
    except ValueError as e:
        raise Stop("deferred", MISCONFIGURED, f"bad target spec {rcpt.target!r}") from e
    if not isinstance(target, File):
        raise Stop("deferred", MISCONFIGURED, f"not a file target: {rcpt.target!r}")
    return target
