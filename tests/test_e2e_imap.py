"""IMAP end to end: a live `postoffice serve` with imaplib and IMAPClient.

Plain IMAP, STARTTLS and implicit TLS (a trustme CA), every common
command through real client libraries, two sessions watching each other
(a delivery over SMTP shows as EXISTS during IDLE; a flag change and an
expunge in one session reach the other), and abuse over the socket (a
1 GB literal, an over-long line, NUL octets, unbalanced parentheses,
hostile names) after which the server still serves.
"""

from __future__ import annotations

import imaplib
import smtplib
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from imapclient import IMAPClient

from conftest import HOSTNAME, PASSWORD, LiveServer, make_site, wait_until
from imap_support import FAST_AUTH, imap_address, seed

ALICE = "alice@example.test"
BOB = "bob@example.test"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, ca: trustme.CA) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("imap-e2e")
    leaf = ca.issue_cert(HOSTNAME, "localhost", "127.0.0.1")
    cert, key = root / "cert.pem", root / "key.pem"
    cert.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    key.chmod(0o600)
    site = make_site(
        root / "site",
        extra_toml=FAST_AUTH
        + f'[tls]\ncert = "{cert}"\nkey = "{key}"\n'
        + '[imap]\nlisten = ["127.0.0.1:0"]\n[imaps]\nlisten = ["127.0.0.1:0"]\n',
    )
    seed(site, ALICE, 3)
    server = LiveServer(site)
    try:
        yield server
    finally:
        server.stop()


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


def plain(server: LiveServer) -> imaplib.IMAP4:
    host, port = imap_address(server)
    return imaplib.IMAP4(host, port, timeout=10)


def login(server: LiveServer, user: str = ALICE) -> imaplib.IMAP4:
    conn = plain(server)
    conn.login(user, PASSWORD)
    return conn


def test_imaplib_session(live: LiveServer) -> None:
    c = login(live, BOB)
    try:
        typ, boxes = c.list()
        assert typ == "OK"
        names = [b.decode().rsplit(" ", 1)[-1] for b in boxes if isinstance(b, bytes)]
        assert names == ["INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"]
        assert c.create("Projects")[0] == "OK"
        typ, data = c.append("INBOX", r"(\Flagged)", None, b"Subject: one\r\n\r\nbody one\r\n")
        assert typ == "OK" and b"APPENDUID" in data[0]
        c.append("INBOX", None, None, b"Subject: two\r\n\r\nbody two\r\n")
        typ, data = c.select("INBOX")
        assert (typ, data) == ("OK", [b"2"])
        typ, data = c.fetch("1:2", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK"
        assert b"\\Flagged" in data[0][0] and data[0][1] == b"Subject: one\r\n\r\n"
        assert c.search(None, "SUBJECT", "two") == ("OK", [b"2"])
        assert c.search(None, "FLAGGED") == ("OK", [b"1"])
        typ, data = c.uid("COPY", "1:2", "Projects")
        assert typ == "OK"
        typ, data = c.fetch("2", "(BODY[TEXT])")
        assert data[0][1] == b"body two\r\n"
        assert c.fetch("2", "FLAGS")[1][0] == b"2 (FLAGS (\\Seen \\Recent))"
        c.store("1", "+FLAGS", "\\Deleted")
        typ, data = c.expunge()
        assert (typ, data) == ("OK", [b"1"])
        assert c.status("Projects", "(MESSAGES UNSEEN)")[1] == [b"Projects (MESSAGES 2 UNSEEN 2)"]
        assert c.close()[0] == "OK"
        assert c.rename("Projects", "Done")[0] == "OK"
        assert c.delete("Done")[0] == "OK"
    finally:
        c.logout()


def test_starttls_and_implicit_tls(live: LiveServer, ca: trustme.CA) -> None:
    c = plain(live)
    assert "STARTTLS" in c.capabilities
    c.starttls(ssl_context=client_context(ca))
    assert "STARTTLS" not in c.capabilities
    assert c.sock.version() in ("TLSv1.2", "TLSv1.3")  # type: ignore[attr-defined]
    c.login(ALICE, PASSWORD)
    assert c.select("INBOX", readonly=True)[0] == "OK"
    c.logout()
    host, port = imap_address(live, "IMAPS")
    s = imaplib.IMAP4_SSL(host, port, ssl_context=client_context(ca), timeout=10)
    try:
        s.login(ALICE, PASSWORD)
        typ, data = s.select("INBOX", readonly=True)
        assert typ == "OK" and int(data[0]) >= 3
    finally:
        s.logout()
    live.wait_for(r"TLS connection established from 127\.0\.0\.1")


def test_imapclient(live: LiveServer) -> None:
    host, port = imap_address(live)
    with IMAPClient(host, port=port, ssl=False, timeout=10) as c:
        c.login(ALICE, PASSWORD)
        assert c.has_capability("IMAP4REV2") and c.has_capability("MOVE")
        folders = {name: flags for flags, _, name in c.list_folders()}
        assert b"\\Sent" in folders["Sent"]
        info = c.select_folder("INBOX", readonly=True)
        assert info[b"EXISTS"] >= 3 and info[b"UIDVALIDITY"] > 0
        uids = c.search(["SUBJECT", "Hello"])
        assert uids == [1]
        data = c.fetch(uids, ["ENVELOPE", "BODYSTRUCTURE", "RFC822.SIZE"])
        env = data[1][b"ENVELOPE"]
        assert env.subject == b"Hello Bob" and env.from_[0].mailbox == b"alice"
        assert data[1][b"RFC822.SIZE"] == 197
        c.unselect_folder()
        assert c.folder_status("Drafts", ["MESSAGES"]) == {b"MESSAGES": 0}
        assert c.namespace().personal == (("", "."),)


def _send(live: LiveServer, to: str, subject: str) -> None:
    m = live.wait_for(r"listening for SMTP on (\S+):(\d+)")
    with smtplib.SMTP(m.group(1), int(m.group(2)), timeout=10) as s:
        s.sendmail("carol@example.org", [to], f"Subject: {subject}\r\n\r\nnew mail\r\n")


def test_delivery_during_idle_and_updates_between_sessions(live: LiveServer) -> None:
    host, port = imap_address(live)
    watcher = IMAPClient(host, port=port, ssl=False, timeout=10)
    other = login(live)
    try:
        watcher.login(ALICE, PASSWORD)
        count = watcher.select_folder("INBOX")[b"EXISTS"]
        watcher.idle()
        _send(live, ALICE, "during idle")
        deadline = time.monotonic() + 10
        seen: list[tuple[int, bytes]] = []
        while time.monotonic() < deadline and (count + 1, b"EXISTS") not in seen:
            seen += [r[:2] for r in watcher.idle_check(timeout=1) if len(r) >= 2]
        watcher.idle_done()
        assert (count + 1, b"EXISTS") in seen
        # A flag change in one session is a FETCH in the other at its next command.
        other.select("INBOX")
        other.store("1", "+FLAGS", "\\Flagged")
        responses = watcher.noop()[1]
        assert (1, b"FETCH", (b"UID", 1, b"FLAGS", (b"\\Seen", b"\\Flagged"))) in responses
        # An expunge in one session is an EXPUNGE in the other.
        other.store(str(count + 1), "+FLAGS", "\\Deleted")
        other.expunge()
        responses = watcher.noop()[1]
        assert (count + 1, b"EXPUNGE") in responses
    finally:
        other.logout()
        watcher.logout()


def _raw(live: LiveServer) -> socket.socket:
    host, port = imap_address(live)
    sock = socket.create_connection((host, port), timeout=10)
    assert sock.recv(4096).startswith(b"* OK")
    return sock


def _exchange(sock: socket.socket, data: bytes, tag: bytes) -> bytes:
    sock.sendall(data)
    buf = b""
    while not any(line.startswith(tag + b" ") for line in buf.split(b"\r\n")):
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf


def test_abuse_over_the_socket(live: LiveServer) -> None:
    sock = _raw(live)
    try:
        assert b"a1 OK" in _exchange(sock, b"a1 LOGIN alice@example.test secret-pw\r\n", b"a1")
        out = _exchange(sock, b"a2 APPEND INBOX {1073741824}\r\n", b"a2")
        assert b"a2 NO [TOOBIG]" in out and b"+ " not in out
        out = _exchange(sock, b"a3 NOOP " + b"x" * 70_000 + b"\r\n", b"a3")
        assert b"a3 BAD" in out
        assert b"a4 BAD" in _exchange(sock, b'a4 CREATE "a\x00b"\r\n', b"a4")
        assert b"a5 BAD" in _exchange(sock, b"a5 SEARCH (OR ALL (ALL\r\n", b"a5")
        for name in (b'"../../etc"', b'"a/b"', b'"~root"', b'".x"'):
            assert b"a6 NO" in _exchange(sock, b"a6 CREATE " + name + b"\r\n", b"a6")
            assert b"a7 NO" in _exchange(sock, b"a7 SELECT " + name + b"\r\n", b"a7")
            assert b"a8 NO" in _exchange(sock, b"a8 RENAME Trash " + name + b"\r\n", b"a8")
            assert b"a9 NO" in _exchange(sock, b"a9 APPEND " + name + b" {5}\r\n", b"a9")
        assert b"b1 OK" in _exchange(sock, b"b1 NOOP\r\n", b"b1")
        # A non-synchronizing 1 GB literal cannot be skipped: BYE, the connection ends.
        out = _exchange(sock, b"b2 APPEND INBOX {1073741824+}\r\n", b"* BYE")
        assert b"* BYE" in out
    finally:
        sock.close()
    site_root = Path(live.site.maildir(ALICE))
    assert not (site_root.parent / "etc").exists()
    assert not any(p.name.startswith((".~", "..", ".a")) for p in site_root.iterdir())
    c = login(live)  # unharmed
    assert c.select("INBOX")[0] == "OK"
    c.logout()


def test_connection_closes_after_too_many_errors(live: LiveServer) -> None:
    sock = _raw(live)
    try:
        sock.sendall(b"".join(b"x%d FOO\r\n" % i for i in range(40)))
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        assert data.count(b"BAD") >= 20 and b"* BYE" in data
    finally:
        sock.close()
    assert wait_until(lambda: bool(login(live).logout()))


def test_starttls_drops_pipelined_plaintext(live: LiveServer, ca: trustme.CA) -> None:
    """A command sent in plaintext right after STARTTLS is never run (CVE-2011-0411's kin)."""
    sock = _raw(live)
    try:
        sock.sendall(b"a1 STARTTLS\r\na2 LOGIN alice@example.test secret-pw\r\n")
        data = b""
        while b"a1 " not in data:
            data += sock.recv(4096)
        assert data.startswith(b"a1 OK")
        tls = client_context(ca).wrap_socket(sock, server_hostname="localhost")
        tls.sendall(b"a3 CAPABILITY\r\n")
        reply = b""
        while b"a3 " not in reply:
            reply += tls.recv(4096)
        assert b"a2" not in reply  # the injected LOGIN was dropped
        assert b"LOGINDISABLED" not in reply and b"AUTH=PLAIN" in reply
        assert b"STARTTLS" not in reply
        tls.close()
    finally:
        sock.close()
