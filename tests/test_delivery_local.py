"""Tests for delivery/local.py: end-to-end into Maildir and mbox, traversal, failures."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import pytest

from postoffice.delivery import local
from postoffice.delivery.local import LocalAgent, mailbox_for, parse_template
from postoffice.errors import ConfigError, PermFail
from postoffice.queue.envelope import Envelope, EnvelopeRecipient
from postoffice.queue.interfaces import Bounced, Deferred, Delivered
from postoffice.smtp import replies
from postoffice.store import maildir

BODY = b"Subject: test\r\nFrom: alice@example.org\r\n\r\nHello\r\nFrom me\r\n"


def spool(tmp_path: Path, body: bytes = BODY) -> Callable[[str], BinaryIO]:
    qdir = tmp_path / "queue"
    qdir.mkdir(exist_ok=True)
    (qdir / "Q1").write_bytes(body)

    def open_body(queue_id: str) -> BinaryIO:
        return open(qdir / queue_id, "rb")

    return open_body


def envelope(*addresses: str, sender: str = "alice@example.org") -> Envelope:
    return Envelope(
        queue_id="Q1",
        sender=sender,
        recipients=tuple(EnvelopeRecipient(address=a) for a in addresses),
        arrival_time=1795281136.0,
    )


def new_files(root: Path) -> list[Path]:
    return sorted((root / "new").iterdir()) if (root / "new").exists() else []


async def test_maildir_end_to_end(tmp_path: Path) -> None:
    template = f"maildir:{tmp_path}/mail/{{domain}}/{{user}}"
    agent = LocalAgent(spool(tmp_path), template, hostname="mx.example")
    env = envelope("Bob@Example.NET", "carol@example.net")
    outcomes = await agent.deliver(env, env.recipients)
    assert [type(o) for o in outcomes] == [Delivered, Delivered]
    assert outcomes[0].recipient is env.recipients[0]
    assert outcomes[0].reply == local.DELIVERED_MAILDIR
    assert outcomes[0].relay == "local"
    (bob,) = new_files(tmp_path / "mail" / "example.net" / "bob")
    data = bob.read_bytes()
    assert data == (
        b"Return-Path: <alice@example.org>\nDelivered-To: Bob@Example.NET\n"
        + BODY.replace(b"\r\n", b"\n")
    )
    vsize = len(data) + data.count(b"\n")
    assert bob.name.endswith(f",S={len(data)},W={vsize}")
    (carol,) = new_files(tmp_path / "mail" / "example.net" / "carol")
    assert b"Delivered-To: carol@example.net\n" in carol.read_bytes()
    assert agent.statistics() == {"delivered": 2, "deferred": 0, "bounced": 0}


async def test_mbox_end_to_end_with_executor(tmp_path: Path) -> None:
    template = f"mbox:{tmp_path}/spool/{{user}}"
    with ThreadPoolExecutor(2) as ex:
        agent = LocalAgent(spool(tmp_path), template, hostname="mx", executor=ex)
        env = envelope("bob@example.net", sender="")
        (outcome,) = await agent.deliver(env, env.recipients)
    assert isinstance(outcome, Delivered)
    assert outcome.reply == local.DELIVERED_MBOX
    data = (tmp_path / "spool" / "bob").read_bytes()
    assert data.startswith(b"From MAILER-DAEMON ")
    assert b"\nReturn-Path: <>\nDelivered-To: bob@example.net\n" in data
    assert data.endswith(b"Hello\n>From me\n\n")


async def test_duplicate_mailboxes_delivered_once(tmp_path: Path) -> None:
    template = f"maildir:{tmp_path}/m/{{user}}"
    agent = LocalAgent(spool(tmp_path), template, hostname="h")
    env = envelope("bob@a.example", "BOB@b.example", "bob@a.example", "eve@a.example")
    outcomes = await agent.deliver(env, env.recipients)
    assert all(isinstance(o, Delivered) for o in outcomes)
    assert [o.recipient for o in outcomes] == list(env.recipients)
    assert len(new_files(tmp_path / "m" / "bob")) == 1
    assert len(new_files(tmp_path / "m" / "eve")) == 1


@pytest.mark.parametrize(
    "address",
    [
        "../etc@example.net",
        "..@example.net",
        ".hidden@example.net",
        "a/b@example.net",
        "x@../../etc",
        "x@a/b",
        "nul\x00@example.net",
        "cr\r\n@example.net",
        "@example.net",
        "bob@",
        '"../x"@example.net',
        "back\\slash@example.net",
    ],
)
async def test_path_traversal_refused(tmp_path: Path, address: str) -> None:
    template = f"maildir:{tmp_path}/mail/{{domain}}/{{user}}"
    agent = LocalAgent(spool(tmp_path), template, hostname="h")
    env = envelope(address, "ok@example.net")
    bad, good = await agent.deliver(env, env.recipients)
    assert isinstance(bad, Bounced)
    assert bad.reply == replies.MAILBOX_NAME_INVALID
    assert isinstance(good, Delivered)
    made = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_dir()}
    assert made <= {
        "queue",
        "mail",
        "mail/example.net",
        "mail/example.net/ok",
        "mail/example.net/ok/cur",
        "mail/example.net/ok/new",
        "mail/example.net/ok/tmp",
    }


def test_mailbox_for() -> None:
    assert mailbox_for("maildir:/m/{domain}/{user}", "Bob@Example.NET") == (
        "maildir",
        "/m/example.net/bob",
    )
    assert mailbox_for("mbox:/var/mail/{user}", "x@y") == ("mbox", "/var/mail/x")
    assert mailbox_for("mbox:/var/mail/{address}", "X@Y") == ("mbox", "/var/mail/x@y")
    assert mailbox_for("mbox:/m/{user}", '"john doe"@x') == ("mbox", "/m/john doe")
    assert mailbox_for("mbox:/m/{user}", "john.doe@x") == ("mbox", "/m/john.doe")
    # The domain is not checked when the template does not use it.
    assert mailbox_for("mbox:/m/{user}", "bob@[192.0.2.1]") == ("mbox", "/m/bob")
    with pytest.raises(PermFail):
        mailbox_for("mbox:/m/{user}", "a..b@x")


def test_parse_template(tmp_path: Path) -> None:
    assert parse_template("maildir:/x/{user}") == ("maildir", "/x/{user}")
    for bad in ("/x/{user}", "imap:/x/{user}", "mbox:", "maildir:/x/shared"):
        with pytest.raises(ConfigError):
            parse_template(bad)
    with pytest.raises(ConfigError):
        LocalAgent(spool(tmp_path), "nope:/x", hostname="h")


async def test_tempfail_becomes_deferred(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    template = f"maildir:{tmp_path}/m/{{user}}"
    agent = LocalAgent(spool(tmp_path), template, hostname="h")
    maildir.make_maildir(str(tmp_path / "m" / "bob"))

    def enospc(*args: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", enospc)
    env = envelope("bob@x")
    (outcome,) = await agent.deliver(env, env.recipients)
    monkeypatch.undo()
    assert isinstance(outcome, Deferred)
    assert outcome.reply == replies.INSUFFICIENT_STORAGE
    assert "No space" in outcome.detail
    assert agent.statistics()["deferred"] == 1


async def test_permfail_becomes_bounced(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "bob").write_bytes(b"a file, not a Maildir")
    agent = LocalAgent(spool(tmp_path), f"maildir:{tmp_path}/m/{{user}}", hostname="h")
    env = envelope("bob@x")
    (outcome,) = await agent.deliver(env, env.recipients)
    assert isinstance(outcome, Bounced)
    assert outcome.reply == maildir.MAILBOX_UNAVAILABLE


async def test_missing_body_is_deferred(tmp_path: Path) -> None:
    open_body = spool(tmp_path)
    agent = LocalAgent(open_body, f"maildir:{tmp_path}/m/{{user}}", hostname="h")
    env = Envelope(
        queue_id="GONE",
        sender="",
        recipients=(EnvelopeRecipient(address="bob@x"),),
        arrival_time=0.0,
    )
    (outcome,) = await agent.deliver(env, env.recipients)
    assert isinstance(outcome, Deferred)
    assert outcome.reply == replies.LOCAL_ERROR
    assert not new_files(tmp_path / "m" / "bob")


async def test_no_recipients(tmp_path: Path) -> None:
    agent = LocalAgent(spool(tmp_path), f"maildir:{tmp_path}/m/{{user}}", hostname="h")
    assert await agent.deliver(envelope("a@b"), []) == []


async def test_system_users_mailbox_belongs_to_the_user(tmp_path: Path) -> None:
    import pwd

    from postoffice.queue.envelope import Envelope, EnvelopeRecipient
    from postoffice.routing.targets import Mailbox, to_spec

    nobody = pwd.getpwnam("nobody")
    body = tmp_path / "body"
    body.write_bytes(b"Subject: s\r\n\r\nx\r\n")
    mbox = tmp_path / "spool" / "nobody"
    mbox.parent.mkdir()
    target = Mailbox(address="nobody@example.test", spec=f"mbox:{mbox}", user="nobody")
    rcpt = EnvelopeRecipient(address="nobody@example.test", target=to_spec(target))
    env = Envelope(queue_id="Q1", sender="a@b.example", recipients=(rcpt,), arrival_time=0.0)
    agent = LocalAgent(lambda _qid: body.open("rb"), "maildir:/unused/{user}", hostname="h")
    (outcome,) = await agent.deliver(env, [rcpt])
    assert outcome.reply.code == 250
    assert mbox.stat().st_uid == nobody.pw_uid


def owned(address: str, owner: str) -> EnvelopeRecipient:
    return EnvelopeRecipient(address=address, sender=owner)


async def test_a_list_owners_copy_has_the_owner_as_return_path(tmp_path: Path) -> None:
    template = f"maildir:{tmp_path}/m/{{user}}"
    agent = LocalAgent(spool(tmp_path), template, hostname="h")
    env = Envelope(
        queue_id="Q1",
        sender="alice@example.org",
        recipients=(owned("bob@x", "owner-list@x"), EnvelopeRecipient(address="eve@x")),
        arrival_time=0.0,
    )
    outcomes = await agent.deliver(env, env.recipients)
    assert all(isinstance(o, Delivered) for o in outcomes)
    (bob,) = new_files(tmp_path / "m" / "bob")
    assert bob.read_bytes().startswith(b"Return-Path: <owner-list@x>\n")
    (eve,) = new_files(tmp_path / "m" / "eve")
    assert eve.read_bytes().startswith(b"Return-Path: <alice@example.org>\n")


async def test_same_mailbox_with_different_senders_gets_both_copies(tmp_path: Path) -> None:
    template = f"maildir:{tmp_path}/m/{{user}}"
    agent = LocalAgent(spool(tmp_path), template, hostname="h")
    rcpts = (
        EnvelopeRecipient(address="bob@x"),
        owned("bob@x", "owner-list@x"),
        owned("BOB@x", "owner-list@x"),  # same mailbox, same sender: once
    )
    env = Envelope(queue_id="Q1", sender="alice@example.org", recipients=rcpts, arrival_time=0.0)
    outcomes = await agent.deliver(env, rcpts)
    assert [o.recipient for o in outcomes] == list(rcpts)
    assert all(isinstance(o, Delivered) for o in outcomes)
    paths = {f.read_bytes().split(b"\n", 1)[0] for f in new_files(tmp_path / "m" / "bob")}
    assert paths == {b"Return-Path: <alice@example.org>", b"Return-Path: <owner-list@x>"}


async def test_mbox_from_line_and_direct_delivery_use_the_owner(tmp_path: Path) -> None:
    agent = LocalAgent(spool(tmp_path), f"mbox:{tmp_path}/spool/{{user}}", hostname="h")
    env = Envelope(
        queue_id="Q1", sender="", recipients=(owned("bob@x", "owner-list@x"),), arrival_time=0.0
    )
    (outcome,) = await agent.deliver_content(env, env.recipients, BODY)  # the session's path
    assert isinstance(outcome, Delivered)
    data = (tmp_path / "spool" / "bob").read_bytes()
    assert data.startswith(b"From owner-list@x ")
    assert b"\nReturn-Path: <owner-list@x>\n" in data
