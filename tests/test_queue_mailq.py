"""`mailq` output in sendmail's layout."""

from __future__ import annotations

import datetime

from postoffice.queue.envelope import Envelope, EnvelopeRecipient, RcptState
from postoffice.queue.interfaces import QueueEntry
from postoffice.queue.mailq import format_mailq

UTC = datetime.UTC
T = datetime.datetime(2026, 11, 18, 20, 3, tzinfo=UTC).timestamp()


def env(qid: str, **kw: object) -> Envelope:
    base: dict[str, object] = {
        "queue_id": qid,
        "sender": "emma@lab1.campus",
        "recipients": (EnvelopeRecipient(address="dave@lab2.campus"),),
        "arrival_time": T,
        "size": 36,
    }
    base.update(kw)
    return Envelope(**base)  # type: ignore[arg-type]


def test_empty() -> None:
    assert format_mailq([]) == "Mail queue is empty\n"


def test_layout() -> None:
    a = env("1K0SK030FWT00AK50000YS", last_reason="451 4.4.1 No route to deliver to")
    b = env(
        "1K0SK030FWT00AK50001YS",
        sender="",
        arrival_time=T + 86400 * 5,
        size=1234,
        recipients=(
            EnvelopeRecipient(address="x@y", state=RcptState.DELIVERED),
            EnvelopeRecipient(address="z@y"),
        ),
    )
    c = env("1K0SK030FWT00AK50002YS")
    out = format_mailq(
        [(b, "active"), QueueEntry(envelope=a, state="deferred"), (c, "hold")], tz=UTC
    )
    assert out == (
        "\t\t/var/spool/mqueue (3 requests)\n"
        "---------Q-ID--------- --Size-- -----Q-Time----- ------------Sender/Recipient-----------\n"
        "1K0SK030FWT00AK50000YS       36 Wed Nov 18 20:03 <emma@lab1.campus>\n"
        "                 (Deferred: 451 4.4.1 No route to deliver to)\n"
        "\t\t\t\t\t <dave@lab2.campus>\n"
        "1K0SK030FWT00AK50002YS!      36 Wed Nov 18 20:03 <emma@lab1.campus>\n"
        "                 (Held: by the administrator)\n"
        "\t\t\t\t\t <dave@lab2.campus>\n"
        "1K0SK030FWT00AK50001YS*    1234 Mon Nov 23 20:03 MAILER-DAEMON\n"
        "\t\t\t\t\t <z@y>\n"
        "\t\tTotal requests: 3\n"
    )


def test_one_request_and_queue_dir() -> None:
    out = format_mailq([(env("1K0SK030FWT00AK50000YS"), "active")], queue_dir="/q", tz=UTC)
    assert out.startswith("\t\t/q (1 request)\n")
    assert out.endswith("\t\tTotal requests: 1\n")
