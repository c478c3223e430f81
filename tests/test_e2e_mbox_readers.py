"""POP3 and IMAP over an mbox maildrop, end to end: delivery writes it, they read and expunge it.

`[delivery] mailbox = "mbox:..."` makes every local mailbox an mbox file
(as /var/spool/mail/USER for system users); the same file is the POP3
maildrop (store/mbox_folder.py), with its UID list under state_dir/index.
"""

from __future__ import annotations

import imaplib
import poplib
import smtplib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import PASSWORD, LiveServer, make_site, wait_until
from imap_support import imap_address
from pop3_support import pop3_port


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[LiveServer, Path]]:
    extra = (
        '[delivery]\nmailbox = "mbox:{state_dir}/spool/{user}"\n[pop3]\nlisten = ["127.0.0.1:0"]\n'
    )
    site = make_site(tmp_path / "site", users=("alice@example.test",), extra_toml=extra)
    server = LiveServer(site)
    try:
        yield server, site.root / "state" / "spool" / "alice"
    finally:
        server.stop()


def send(server: LiveServer, subject: str) -> None:
    body = f"Subject: {subject}\r\nFrom: s@example.org\r\n\r\nFrom the start\r\n.dot\r\n"
    with smtplib.SMTP(server.host, server.port, timeout=10) as s:
        s.sendmail("s@example.org", ["alice@example.test"], body.encode())


def test_pop3_reads_and_expunges_an_mbox_and_keeps_uidls(live: tuple[LiveServer, Path]) -> None:
    server, mbox = live
    host, port = pop3_port(server)
    for n in range(3):
        send(server, f"m{n}")
    assert wait_until(lambda: mbox.exists() and mbox.read_bytes().count(b"\nSubject: m") == 3)
    p = poplib.POP3(host, port, timeout=10)
    p.user("alice@example.test")
    p.pass_(PASSWORD)
    assert p.stat()[0] == 3
    uidls = [line.split()[1] for line in p.uidl()[1]]
    lines = p.retr(2)[1]
    assert b"Subject: m1" in lines and b"From the start" in lines and b".dot" in lines
    p.dele(1)
    p.quit()
    text = mbox.read_bytes()
    assert b"Subject: m0" not in text and text.count(b"\nSubject: m") == 2
    send(server, "m3")
    assert wait_until(lambda: mbox.read_bytes().count(b"\nSubject: m") == 3)
    p = poplib.POP3(host, port, timeout=10)
    p.user("alice@example.test")
    p.pass_(PASSWORD)
    again = [line.split()[1] for line in p.uidl()[1]]
    assert again[:2] == uidls[1:]  # the survivors keep their UIDLs
    assert again[2] not in uidls  # the new message has a new one
    assert b"Subject: m3" in p.top(3, 0)[1]
    p.quit()


def test_imap_reads_flags_and_expunges_the_same_mbox(live: tuple[LiveServer, Path]) -> None:
    server, mbox = live
    host, port = imap_address(server)
    for n in range(2):
        send(server, f"i{n}")
    assert wait_until(lambda: mbox.exists() and mbox.read_bytes().count(b"\nSubject: i") == 2)
    m = imaplib.IMAP4(host, port, timeout=10)
    try:
        m.login("alice@example.test", PASSWORD)
        typ, listing = m.list()
        assert typ == "OK" and [x for x in listing if x] == [b'(\\HasNoChildren) "." INBOX']
        assert m.create("Archive")[0] == "NO"  # an mbox maildrop has no folders
        assert m.select("INBOX") == ("OK", [b"2"])
        typ, data = m.fetch("2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK" and b"Subject: i1" in data[0][1]
        assert m.store("1", "+FLAGS", "(\\Deleted)")[0] == "OK"
        assert m.expunge() == ("OK", [b"1"])
        typ, data = m.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK" and b"Subject: i1" in data[0][1]
    finally:
        m.logout()
    text = mbox.read_bytes()
    assert b"Subject: i0" not in text and b"Subject: i1" in text


def test_a_delivery_while_pop3_holds_the_mbox_is_queued_not_waited_for(
    live: tuple[LiveServer, Path],
) -> None:
    server, mbox = live
    host, port = pop3_port(server)
    send(server, "first")
    assert wait_until(lambda: mbox.exists() and b"Subject: first" in mbox.read_bytes())
    p = poplib.POP3(host, port, timeout=10)
    p.user("alice@example.test")
    p.pass_(PASSWORD)  # the session holds the mbox's locks from here to QUIT
    started = time.monotonic()
    send(server, "second")  # direct delivery finds the mbox busy: queued, 250 at once
    assert time.monotonic() - started < 5.0
    assert b"Subject: second" not in mbox.read_bytes()
    assert p.stat()[0] == 1
    p.quit()  # the lock goes; the queue's attempt (it may wait) delivers
    assert wait_until(lambda: b"Subject: second" in mbox.read_bytes(), timeout=20)
