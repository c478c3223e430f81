"""queue/bounce.py: the Notifier queues DSNs as new messages from <>, by the rules of RFC 3461."""

from __future__ import annotations

import email
import email.policy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pytest

from postoffice.errors import TempFail
from postoffice.message.dsn import parse_dsn
from postoffice.queue.bounce import DOUBLE_BOUNCE, Notifier
from postoffice.queue.envelope import Envelope, EnvelopeRecipient, RcptState
from postoffice.queue.spool import FileSpool
from postoffice.testing.clock import FakeClock
from postoffice.testing.memory_spool import MemorySpool

HOST = "mail.example.test"
BODY = b"From: alice@example.test\r\nSubject: lunch\r\n\r\nSee you at noon.\r\n"


@dataclass
class Rig:
    spool: MemorySpool
    clock: FakeClock
    notifier: Notifier
    submitted: list[Envelope] = field(default_factory=list)

    def put(self, *rcpts: EnvelopeRecipient, body: bytes = BODY, **kw: object) -> Envelope:
        """A queued message whose recipients are in the given states."""
        msg = self.spool.begin()
        values: dict[str, object] = {
            "queue_id": msg.queue_id,
            "sender": "alice@example.test",
            "recipients": rcpts,
            "arrival_time": self.clock() - 3600,
            "size": len(body),
        }
        values.update(kw)
        env = Envelope(**values)  # type: ignore[arg-type]
        self.spool.put(env, body)
        return env

    def dsn(self, i: int = -1) -> tuple[Envelope, bytes]:
        env = self.submitted[i]
        return env, self.spool.body(env.queue_id)


def make_rig(**kw: object) -> Rig:
    spool = MemorySpool()
    clock = FakeClock()
    submitted: list[Envelope] = []
    notifier = Notifier(
        spool,
        hostname=HOST,
        clock=clock,
        submit=submitted.append,
        **kw,  # type: ignore[arg-type]
    )
    return Rig(spool, clock, notifier, submitted)


def failed(address: str = "bob@example.test", **kw: object) -> EnvelopeRecipient:
    kw.setdefault("reason", "550 5.1.1 User unknown")
    return EnvelopeRecipient(address=address, state=RcptState.BOUNCED, **kw)  # type: ignore[arg-type]


def pending(address: str = "x@remote.example", **kw: object) -> EnvelopeRecipient:
    kw.setdefault("reason", "451 4.4.1 No route to deliver to")
    return EnvelopeRecipient(address=address, **kw)  # type: ignore[arg-type]


def delivered(address: str = "bob@example.test", **kw: object) -> EnvelopeRecipient:
    kw.setdefault("reason", "250 2.0.0 delivered to maildir")
    kw.setdefault("notify", frozenset({"SUCCESS"}))
    return EnvelopeRecipient(address=address, state=RcptState.DELIVERED, **kw)  # type: ignore[arg-type]


@pytest.fixture
def bounce_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="postoffice.queue.bounce")
    return caplog


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "postoffice.queue.bounce"]


async def test_a_bounce_is_a_new_message_from_the_null_sender(
    bounce_log: pytest.LogCaptureFixture,
) -> None:
    rig = make_rig()
    env = rig.put(failed(), failed("carol@example.test"), pending())
    await rig.notifier.on_bounce(env, env.recipients[:2])
    assert len(rig.submitted) == 1
    dsn_env, data = rig.dsn()
    assert rig.spool.commits == [dsn_env.queue_id]
    assert rig.spool.load(dsn_env.queue_id) is not None  # committed before submit
    assert dsn_env.sender == ""
    assert [r.address for r in dsn_env.recipients] == ["alice@example.test"]
    assert dsn_env.recipients[0].notify is None
    assert dsn_env.notification == "failure"
    assert (dsn_env.body_type, dsn_env.smtputf8, dsn_env.size) == ("7BIT", False, len(data))
    assert dsn_env.arrival_time == rig.clock()
    report = parse_dsn(data)
    assert [r.final_recipient for r in report.recipients] == [
        "bob@example.test", "carol@example.test",
    ]  # one DSN listing every recipient  # fmt: skip
    assert report.returned == BODY
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert msg["To"] == "alice@example.test"
    assert msg["From"] == f"Mail Delivery Subsystem <MAILER-DAEMON@{HOST}>"
    qid, new = env.queue_id, dsn_env.queue_id
    assert lines(bounce_log) == [
        f"{qid}: sender non-delivery notification: {new}",
        f"{new}: from=<>, size={len(data)}, nrcpt=1 (queue active)",
    ]
    assert rig.notifier.statistics().failure == 1


@pytest.mark.parametrize(
    ("notify", "sent"),
    [
        (None, True),
        (frozenset({"FAILURE"}), True),
        (frozenset({"NEVER"}), False),
        (frozenset({"SUCCESS", "DELAY"}), False),
    ],
)
async def test_notify_decides_failure_dsns(notify: frozenset[str] | None, sent: bool) -> None:
    rig = make_rig()
    env = rig.put(failed(notify=notify))
    await rig.notifier.on_bounce(env, env.recipients)
    assert len(rig.submitted) == (1 if sent else 0)
    assert rig.spool.messages.keys() == {env.queue_id} | {e.queue_id for e in rig.submitted}


async def test_only_recipients_that_asked_are_listed(bounce_log: pytest.LogCaptureFixture) -> None:
    rig = make_rig()
    env = rig.put(
        failed("a@example.test", notify=frozenset({"NEVER"})),
        failed("b@example.test"),
        failed("c@example.test", notify=frozenset({"SUCCESS"})),
    )
    await rig.notifier.on_bounce(env, env.recipients)
    (r,) = parse_dsn(rig.dsn()[1]).recipients
    assert r.final_recipient == "b@example.test"
    rig.submitted.clear()
    await rig.notifier.on_bounce(env, [env.recipients[0]])
    assert rig.submitted == []
    assert (
        lines(bounce_log)[-1]
        == f"{env.queue_id}: sender non-delivery notification: not sent (NOTIFY)"
    )


async def test_delay_warning_with_will_retry_until() -> None:
    rig = make_rig(max_lifetime=5 * 86400.0)
    env = rig.put(pending(), ret="FULL")
    await rig.notifier.on_delay(env, env.recipients)
    dsn_env, data = rig.dsn()
    assert dsn_env.notification == "delay"
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert msg["Subject"] == "Delayed Mail (still being retried)"
    report = parse_dsn(data)
    (r,) = report.recipients
    assert (r.action, r.status) == ("delayed", "4.4.1")
    assert r.will_retry_until == "Wed, 20 Jan 2027 07:00:00 +0000"  # arrival + 5 days
    assert report.returned == BODY.split(b"\r\n\r\n")[0] + b"\r\n"  # headers only
    assert rig.notifier.statistics().delay == 1


async def test_success_and_relayed(bounce_log: pytest.LogCaptureFixture) -> None:
    rig = make_rig()
    env = rig.put(
        delivered("bob@example.test", relay="local"),
        delivered("x@remote.example", relay="mx.remote.example[192.0.2.5]:25"),
    )
    await rig.notifier.on_success(env, env.recipients)
    assert [e.notification for e in rig.submitted] == ["success", "relayed"]
    ok = parse_dsn(rig.dsn(0)[1]).recipients
    assert [(r.final_recipient, r.action) for r in ok] == [("bob@example.test", "delivered")]
    relayed = parse_dsn(rig.dsn(1)[1]).recipients
    assert [(r.final_recipient, r.action, r.remote_mta) for r in relayed] == [
        ("x@remote.example", "relayed", "dns; mx.remote.example")
    ]
    assert lines(bounce_log)[0] == (
        f"{env.queue_id}: sender delivery status notification: {rig.submitted[0].queue_id}"
    )
    assert rig.notifier.statistics().success == 2


async def test_never_a_delay_or_success_notice_to_the_null_sender() -> None:
    rig = make_rig()
    env = rig.put(pending(), sender="")
    await rig.notifier.on_delay(env, env.recipients)
    env = rig.put(delivered(), sender="")
    await rig.notifier.on_success(env, env.recipients)
    assert rig.submitted == []
    assert rig.notifier.statistics().suppressed == 2


async def test_a_failed_bounce_goes_once_to_the_postmaster_then_is_dropped(
    bounce_log: pytest.LogCaptureFixture,
) -> None:
    rig = make_rig()
    bounce = rig.put(failed("alice@example.test"), sender="", notification="failure")
    await rig.notifier.on_bounce(bounce, bounce.recipients)
    copy, data = rig.dsn()
    assert copy.sender == ""
    assert [r.address for r in copy.recipients] == [f"postmaster@{HOST}"]
    assert copy.notification == DOUBLE_BOUNCE
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert msg["Subject"] == "Postmaster Copy: Undelivered Mail"
    assert parse_dsn(data).returned_type == "text/rfc822-headers"
    assert lines(bounce_log)[0] == (
        f"{bounce.queue_id}: postmaster non-delivery notification: {copy.queue_id}"
    )
    # The copy fails too: dropped with Postfix's log line, nothing queued.
    failed_copy = rig.put(failed(f"postmaster@{HOST}"), sender="", notification=DOUBLE_BOUNCE)
    await rig.notifier.on_bounce(failed_copy, failed_copy.recipients)
    assert len(rig.submitted) == 1
    assert lines(bounce_log)[-1] == (
        f"{failed_copy.queue_id}: undeliverable postmaster notification discarded"
    )
    st = rig.notifier.statistics()
    assert (st.postmaster, st.discarded, st.failure) == (1, 1, 0)


async def test_a_foreign_bounce_that_fails_goes_to_the_postmaster() -> None:
    rig = make_rig(postmaster="hostmaster@example.test")
    env = rig.put(failed(), sender="")  # from <>, not made here
    await rig.notifier.on_bounce(env, env.recipients)
    (copy,) = rig.submitted
    assert copy.recipients[0].address == "hostmaster@example.test"


OWNER = "owner-list@example.test"


async def test_a_list_owners_failures_go_to_the_owner_in_a_dsn_of_their_own(
    bounce_log: pytest.LogCaptureFixture,
) -> None:
    rig = make_rig()
    env = rig.put(
        failed("m1@example.test", sender=OWNER),
        failed("carol@example.test"),
        failed("m2@example.test", sender=OWNER),
    )
    await rig.notifier.on_bounce(env, env.recipients)
    assert [[r.address for r in e.recipients] for e in rig.submitted] == [
        [OWNER],
        ["alice@example.test"],
    ]  # one DSN per sender, in first-seen order
    owner_env, owner_data = rig.dsn(0)
    assert owner_env.sender == "" and owner_env.notification == "failure"
    report = parse_dsn(owner_data)
    assert [r.final_recipient for r in report.recipients] == ["m1@example.test", "m2@example.test"]
    assert report.returned == BODY  # the owner's copy is returned whole, not a postmaster copy
    msg = email.message_from_bytes(owner_data, policy=email.policy.default)
    assert msg["To"] == OWNER
    assert msg["Subject"] != "Postmaster Copy: Undelivered Mail"
    _, sender_data = rig.dsn(1)
    assert [r.final_recipient for r in parse_dsn(sender_data).recipients] == ["carol@example.test"]
    assert sum("sender non-delivery notification" in line for line in lines(bounce_log)) == 2
    assert rig.notifier.statistics().failure == 2


async def test_delay_warnings_for_a_lists_copies_go_to_the_owner() -> None:
    rig = make_rig()
    env = rig.put(pending(sender=OWNER))
    await rig.notifier.on_delay(env, env.recipients)
    ((to,),) = [tuple(r.address for r in e.recipients) for e in rig.submitted]
    assert to == OWNER
    assert rig.dsn()[0].notification == "delay"


async def test_mail_from_the_null_sender_through_a_list_with_an_owner() -> None:
    rig = make_rig()
    env = rig.put(failed("m1@example.test", sender=OWNER), failed(), sender="")
    await rig.notifier.on_bounce(env, env.recipients)
    got = {e.recipients[0].address: e.notification for e in rig.submitted}
    # The owner's copy was not from <>: a plain DSN to the owner; the rest is a
    # postmaster copy, as ever for mail from <>.
    assert got == {OWNER: "failure", f"postmaster@{HOST}": DOUBLE_BOUNCE}
    assert all(e.recipients[0].address for e in rig.submitted)  # never to <>
    # A failed postmaster copy is still dropped, whatever its recipients' senders.
    copy = rig.put(
        failed(f"postmaster@{HOST}", sender=OWNER), sender="", notification=DOUBLE_BOUNCE
    )
    await rig.notifier.on_bounce(copy, copy.recipients)
    assert len(rig.submitted) == 2


async def test_large_messages_return_headers_and_only_the_header_is_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig = make_rig()
    body = BODY + b"x" * 200_000 + b"\r\n"
    env = rig.put(failed(), body=body)
    read: list[int] = []
    original_open = rig.spool.open_body

    def spy(qid: str) -> BinaryIO:
        f = original_open(qid)
        real_read = f.read

        def counting(n: int = -1) -> bytes:
            data = real_read(n)
            read.append(len(data))
            return data

        f.read = counting  # type: ignore[method-assign]
        return f

    monkeypatch.setattr(rig.spool, "open_body", spy)
    await rig.notifier.on_bounce(env, env.recipients)
    report = parse_dsn(rig.dsn()[1])
    assert report.returned_type == "text/rfc822-headers"
    assert sum(read) <= 64 * 1024


async def test_ret_hdrs_and_ret_full() -> None:
    rig = make_rig()
    env = rig.put(failed(), ret="HDRS")
    await rig.notifier.on_bounce(env, env.recipients)
    assert parse_dsn(rig.dsn()[1]).returned_type == "text/rfc822-headers"
    body = BODY + b"y" * 60_000 + b"\r\n"
    env = rig.put(failed(), ret="FULL", body=body)
    await rig.notifier.on_bounce(env, env.recipients)
    assert parse_dsn(rig.dsn()[1]).returned == body


async def test_8bit_original_makes_an_8bitmime_dsn() -> None:
    rig = make_rig()
    body = "Subject: café\r\n\r\nà midi\r\n".encode()
    env = rig.put(failed(), body=body, body_type="8BITMIME")
    await rig.notifier.on_bounce(env, env.recipients)
    dsn_env, data = rig.dsn()
    assert dsn_env.body_type == "8BITMIME"
    assert parse_dsn(data).returned_type == "message/global"  # UTF-8 in the header


async def test_utf8_sender_makes_an_smtputf8_dsn() -> None:
    rig = make_rig()
    env = rig.put(failed(), sender="用户@例子.广告", smtputf8=True)
    await rig.notifier.on_bounce(env, env.recipients)
    dsn_env, _data = rig.dsn()
    assert dsn_env.smtputf8 and dsn_env.body_type == "8BITMIME"
    assert dsn_env.recipients[0].address == "用户@例子.广告"


async def test_a_missing_body_still_sends_the_report(bounce_log: pytest.LogCaptureFixture) -> None:
    rig = make_rig()
    env = Envelope(
        queue_id="01KDSN0000000000000000GONE", sender="alice@example.test",
        recipients=(failed(),), arrival_time=rig.clock(), size=100,
    )  # fmt: skip
    await rig.notifier.on_bounce(env, env.recipients)
    report = parse_dsn(rig.dsn()[1])
    assert report.returned is None
    assert any("cannot read the message" in x for x in lines(bounce_log))


async def test_a_spool_failure_raises_and_leaves_nothing() -> None:
    rig = make_rig()
    env = rig.put(failed())
    rig.spool.fail_next_commit()
    with pytest.raises(TempFail):
        await rig.notifier.on_bounce(env, env.recipients)
    assert rig.submitted == []
    assert rig.spool.messages.keys() == {env.queue_id}
    rig.spool.fail_next_write()
    with pytest.raises(TempFail):
        await rig.notifier.on_delay(env, [pending()])
    assert rig.submitted == [] and rig.spool.aborts == 1


async def test_with_a_file_spool(tmp_path: Path) -> None:
    spool = FileSpool(tmp_path, durable=False)
    try:
        submitted: list[Envelope] = []
        clock = FakeClock()
        notifier = Notifier(spool, hostname=HOST, clock=clock, submit=submitted.append)
        msg = spool.begin()
        msg.write(BODY)
        env = Envelope(
            queue_id=msg.queue_id, sender="alice@example.test",
            recipients=(failed(orcpt="rfc822;bob@example.test"),), arrival_time=clock(),
            envid="E-1",
        )  # fmt: skip
        await spool.commit(msg, env)
        env = Envelope.from_bytes(env.to_bytes())
        stored = spool.load(msg.queue_id)
        assert stored is not None
        await notifier.on_bounce(stored.envelope, stored.envelope.recipients)
        (dsn_env,) = submitted
        entry = spool.load(dsn_env.queue_id)
        assert entry is not None and entry.state == "active"
        assert entry.envelope == dsn_env  # the notification kind survives the file format
        with spool.open_body(dsn_env.queue_id) as f:
            report = parse_dsn(f.read())
        assert report.original_envelope_id == "E-1"
        assert report.recipients[0].original_recipient == "bob@example.test"
        assert report.returned is not None and report.returned.endswith(b"See you at noon.\r\n")
    finally:
        spool.close()


def test_envelope_keeps_the_new_fields_and_reads_old_files() -> None:
    env = Envelope(
        queue_id="01KDSN0000000000000000ENV1", sender="",
        recipients=(EnvelopeRecipient(address="a@b", relay="mx.b[192.0.2.1]:25"),),
        arrival_time=1.0, warned=12.5, notification=DOUBLE_BOUNCE,
    )  # fmt: skip
    data = env.to_bytes()
    assert b"warned: 12.5\n" in data and b'notification: "double-bounce"\n' in data
    assert Envelope.from_bytes(data) == env
    old = Envelope(
        queue_id="01KDSN0000000000000000ENV2", sender="a@b",
        recipients=(EnvelopeRecipient(address="c@d"),), arrival_time=1.0,
    ).to_bytes()  # fmt: skip
    assert b"warned" not in old and b"notification" not in old and b"relay" not in old
    again = Envelope.from_bytes(old)
    assert (again.warned, again.notification, again.recipients[0].relay) == (0.0, "", "")
