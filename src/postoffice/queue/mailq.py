"""`mailq` output: the queue listed in sendmail's layout (`sendmail -bp`).

Description:
    format_mailq(entries, *, queue_dir="/var/spool/mqueue", tz=None) -> str

    takes (envelope, state) pairs (or QueueEntry values) and prints them as
    sendmail 8 does, so that scripts written for sendmail's mailq keep
    working:

        \t\t/var/spool/mqueue (2 requests)
        -----Q-ID----- --Size-- -----Q-Time----- ------------Sender/Recipient-----------
        1K0SK030FWT00AK50000YS*     1234 Mon Nov 18 20:03 <alice@example.org>
                         (Deferred: 451 4.4.1 No route to deliver to ...)
        \t\t\t\t\t <bob@example.net>
        \t\tTotal requests: 2

    One block per message, oldest first: the queue id and a status mark,
    the size in bytes, the arrival time (ctime's "Mon Nov 18 20:03"), the
    sender (`MAILER-DAEMON` for the null sender `<>`); then the reason of
    the last failed attempt, if any; then every recipient not yet done.
    The id column is as wide as our ids (22 characters) instead of
    sendmail's 14; the dashed header grows with it.

    Status marks: `*` active (due or being delivered, as sendmail marks a
    locked job), ` ` deferred, `!` held (Postfix's mark for the hold
    queue; sendmail marks its quarantine with `X`). An empty queue prints
    `Mail queue is empty`.

    Pure: no I/O; the time zone is the local one unless `tz` is given.

See also:
    sendmail(8) -bp, mailq(1), cli/ (the `mailq` entry point), queue/spool.py.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable

from postoffice.queue.envelope import Envelope
from postoffice.queue.interfaces import QueueEntry

_MARK = {"active": "*", "deferred": " ", "hold": "!"}
_REASON_INDENT = " " * 17
_RCPT_INDENT = "\t\t\t\t\t "  # column 41, as sendmail prints it


def _when(t: float, tz: datetime.tzinfo | None) -> str:
    d = datetime.datetime.fromtimestamp(t, tz) if tz else datetime.datetime.fromtimestamp(t)
    return f"{d:%a %b} {d.day:2d} {d:%H:%M}"  # ctime(3) minus seconds and year


def _sender(address: str) -> str:
    return f"<{address}>" if address else "MAILER-DAEMON"


def format_mailq(
    entries: Iterable[QueueEntry | tuple[Envelope, str]],
    *,
    queue_dir: str = "/var/spool/mqueue",
    tz: datetime.tzinfo | None = None,
) -> str:
    """The queue in sendmail's `mailq` layout, ending with a newline."""
    pairs = sorted(
        ((e.envelope, e.state) if isinstance(e, QueueEntry) else e for e in entries),
        key=lambda p: (p[0].arrival_time, p[0].queue_id),
    )
    if not pairs:
        return "Mail queue is empty\n"
    width = max(14, *(len(env.queue_id) for env, _ in pairs))
    n = len(pairs)
    lines = [
        f"\t\t{queue_dir} ({n} request{'s' if n != 1 else ''})",
        f"{'Q-ID'.center(width, '-')} --Size-- -----Q-Time----- "
        "------------Sender/Recipient-----------",
    ]
    for env, state in pairs:
        mark = _MARK.get(state, "?")
        lines.append(
            f"{env.queue_id:<{width}}{mark}{env.size:>8} "
            f"{_when(env.arrival_time, tz)} {_sender(env.sender)}"
        )
        if state == "hold":
            lines.append(f"{_REASON_INDENT}(Held: {env.last_reason or 'by the administrator'})")
        elif env.last_reason:
            lines.append(f"{_REASON_INDENT}(Deferred: {env.last_reason})")
        lines.extend(f"{_RCPT_INDENT}<{r.address}>" for r in env.pending)
    lines.append(f"\t\tTotal requests: {n}")
    return "\n".join(lines) + "\n"
