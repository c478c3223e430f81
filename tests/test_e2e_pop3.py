"""POP3 end to end: `postoffice serve`, mail delivered over SMTP into real Maildirs, real clients.

One live server for the module (each test has its own user): poplib over
plaintext, STLS and implicit TLS (trustme CA), APOP with the digest
computed from the live banner, the maildrop lock between two live
sessions, deliveries while a session is open (nothing lost, the next
session sees them), fetchmail and getmail when installed, the
Dovecot-style log lines, and the autologout floor of RFC 1939 §3.
"""

from __future__ import annotations

import hashlib
import os
import poplib
import pwd
import shutil
import smtplib
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
import trustme

from conftest import HOSTNAME, PASSWORD, LiveServer, Site, make_site, need_programs
from pop3_support import pop3_port, pop3s_port
from postoffice.config.load import load_config
from postoffice.errors import ConfigError

USERS = tuple(f"{name}@example.test" for name in (
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
))  # fmt: skip


class Pop3Site:
    def __init__(self, root: Path) -> None:
        self.ca = trustme.CA()
        leaf = self.ca.issue_cert(HOSTNAME, "localhost", "127.0.0.1")
        root.mkdir(parents=True)
        cert, key = root / "cert.pem", root / "key.pem"
        cert.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
        key.write_bytes(leaf.private_key_pem.bytes())
        key.chmod(0o600)
        extra = (
            f'[tls]\ncert = "{cert}"\nkey = "{key}"\n'
            '[pop3]\nlisten = ["127.0.0.1:0"]\n'
            '[pop3s]\nlisten = ["127.0.0.1:0"]\n'
            "[auth]\nfailure_delay = 0.01\nmax_failure_delay = 0.02\n"
        )
        self.site: Site = make_site(root / "site", users=USERS, extra_toml=extra)
        self.server = LiveServer(self.site)
        self.host, self.port = pop3_port(self.server)
        self.tls_port = pop3s_port(self.server)[1]

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx

    def send(self, to: str, subject: str, body: str = "hello\n.leading dot\n") -> None:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "sender@example.org", to, subject
        msg.set_content(body)
        with smtplib.SMTP(self.server.host, self.server.port, timeout=10) as s:
            s.send_message(msg)

    def pop(self, user: str) -> poplib.POP3:
        p = poplib.POP3(self.host, self.port, timeout=10)
        p.user(user)
        p.pass_(PASSWORD)
        return p


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pop3Site]:
    s = Pop3Site(tmp_path_factory.mktemp("pop3") / "root")
    try:
        yield s
    finally:
        s.server.stop()


def count(live: Pop3Site, user: str) -> tuple[int, int]:
    p = live.pop(user)
    try:
        return p.stat()
    finally:
        p.quit()


def subjects(p: poplib.POP3) -> list[str]:
    out = []
    for n in range(1, p.stat()[0] + 1):
        _, lines, _ = p.top(n, 0)
        out += [x.decode()[9:] for x in lines if x.startswith(b"Subject: ")]
    return out


def test_poplib_plaintext(live: Pop3Site) -> None:
    user = USERS[0]
    for i in range(3):
        live.send(user, f"plain {i}")
    p = live.pop(user)
    count, size = p.stat()
    assert count == 3 and size > 0
    _, listing, _ = p.list()
    assert sum(int(x.split()[1]) for x in listing) == size
    _, uidls, _ = p.uidl()
    _, lines, octets = p.retr(1)
    assert b"Subject: plain 0" in lines and b".leading dot" in lines  # unstuffed by poplib
    assert octets >= int(listing[0].split()[1])
    p.dele(2)
    assert p.quit().startswith(b"+OK")
    live.server.wait_for(
        rf"pop3-login: Login: user=<{user}>, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, secured"
    )
    live.server.wait_for(rf"pop3\({user}\): Disconnected: Logged out top=0/0, retr=1/\d+, del=1/3")
    p = live.pop(user)
    assert subjects(p) == ["plain 0", "plain 2"]
    _, again, _ = p.uidl()
    assert [again[0].split()[1], again[1].split()[1]] == [uidls[0].split()[1], uidls[2].split()[1]]
    p.quit()
    maildir = live.site.maildir(user)
    names = os.listdir(maildir / "cur") + os.listdir(maildir / "new")
    assert len(names) == 2
    assert sum(1 for n in os.listdir(maildir / "cur") if n.endswith(":2,S")) == 1  # RETR'd


def test_poplib_stls(live: Pop3Site) -> None:
    user = USERS[1]
    live.send(user, "over stls")
    p = poplib.POP3(live.host, live.port, timeout=10)
    assert "STLS" in p.capa()
    p.stls(live.client_context())
    assert "STLS" not in p.capa()
    p.user(user)
    p.pass_(PASSWORD)
    assert subjects(p) == ["over stls"]
    p.quit()
    live.server.wait_for(rf"pop3-login: Login: user=<{user}>, method=PLAIN, .*, TLS")


def test_poplib_implicit_tls(live: Pop3Site) -> None:
    user = USERS[2]
    live.send(user, "over pop3s")
    p = poplib.POP3_SSL(live.host, live.tls_port, context=live.client_context(), timeout=10)
    assert "STLS" not in p.capa()
    p.user(user)
    p.pass_(PASSWORD)
    _, lines, _ = p.retr(1)
    assert b"Subject: over pop3s" in lines
    p.dele(1)
    p.quit()
    assert count(live, user) == (0, 0)


def test_apop_with_the_live_banner(live: Pop3Site) -> None:
    user = USERS[3]
    live.send(user, "apop")
    p = poplib.POP3(live.host, live.port, timeout=10)
    stamp = p.getwelcome().split()[-1].decode()
    assert stamp.startswith("<") and stamp.endswith(f"@{HOSTNAME}>")
    digest = hashlib.md5((stamp + PASSWORD).encode()).hexdigest()
    assert p._shortcmd(f"APOP {user} {digest}").startswith(b"+OK")  # type: ignore[attr-defined]
    assert subjects(p) == ["apop"]
    p.quit()
    q = poplib.POP3(live.host, live.port, timeout=10)
    with pytest.raises(poplib.error_proto, match="AUTH"):
        q.apop(user, "wrong")  # poplib computes the digest from the new banner
    q.quit()


def test_the_maildrop_lock_between_live_sessions(live: Pop3Site) -> None:
    user = USERS[4]
    live.send(user, "locked")
    first = live.pop(user)
    second = poplib.POP3(live.host, live.port, timeout=10)
    second.user(user)
    with pytest.raises(poplib.error_proto, match=r"\[IN-USE\] maildrop already locked"):
        second.pass_(PASSWORD)
    second.quit()
    first.quit()
    third = live.pop(user)
    assert third.stat()[0] == 1
    third.quit()


def test_deliveries_during_a_session_are_not_lost(live: Pop3Site) -> None:
    user = USERS[5]
    live.send(user, "before 1")
    live.send(user, "before 2")
    p = live.pop(user)
    assert p.stat()[0] == 2
    for i in range(5):  # Maildir delivery never waits for the POP3 lock
        live.send(user, f"during {i}")
    assert p.stat()[0] == 2  # the session's snapshot
    _, uids, _ = p.uidl()
    p.dele(1)
    p.quit()
    p = live.pop(user)
    assert subjects(p) == ["before 2", *(f"during {i}" for i in range(5))]
    _, after, _ = p.uidl()
    assert after[0].split()[1] == uids[1].split()[1]
    assert len({x.split()[1] for x in after}) == 6
    p.quit()


def test_fetchmail(live: Pop3Site, tmp_path: Path) -> None:
    need_programs("fetchmail", package="fetchmail")
    user = USERS[6]
    for i in range(3):
        live.send(user, f"fetchmail {i}")
    out = tmp_path / "fetched"
    out.mkdir()
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        "set no bouncemail\n"
        f"poll {live.host} with proto POP3 port {live.port} uidl\n"
        f'  user "{user}" there with password "{PASSWORD}" is "nobody" here\n'
        f"  sslproto '' mda \"/bin/sh -c 'cat > {out}/msg.$$'\"\n"
    )
    rc.chmod(0o600)
    env = dict(os.environ, HOME=str(tmp_path), FETCHMAILHOME=str(tmp_path))
    done = subprocess.run(
        ["fetchmail", "-f", str(rc), "--nosyslog", "--nodetach", "-v"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    fetched = sorted(f.read_text() for f in out.iterdir())
    assert len(fetched) == 3
    assert all("Subject: fetchmail" in text for text in fetched)
    assert count(live, user) == (0, 0)  # fetchmail deletes what it fetched


def test_getmail(live: Pop3Site, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    need_programs("getmail", package="getmail6")
    user = USERS[7]
    for i in range(2):
        live.send(user, f"getmail {i}")
    # getmail refuses to deliver as root: as root, it delivers as nobody into a
    # Maildir nobody can reach (pytest's tmp_path is private to root).
    outer = Path(tempfile.mkdtemp())
    request.addfinalizer(lambda: shutil.rmtree(outer, ignore_errors=True))
    outer.chmod(0o755)
    maildir = outer / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    as_user = ""
    if os.geteuid() == 0:
        as_user = "user = nobody\n"
        nobody = pwd.getpwnam("nobody")
        for path in (maildir, *(maildir / sub for sub in ("cur", "new", "tmp"))):
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
    rc = tmp_path / "getmailrc"
    rc.write_text(
        "[retriever]\ntype = SimplePOP3SSLRetriever\n"
        f"server = {live.host}\nport = {live.tls_port}\nusername = {user}\npassword = {PASSWORD}\n"
        f"ca_certs = {tmp_path / 'ca.pem'}\n"
        f"[destination]\ntype = Maildir\npath = {maildir}/\n{as_user}"
        "[options]\ndelete = true\nread_all = true\nverbose = 1\n"
    )
    live.ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    done = subprocess.run(
        ["getmail", "--getmaildir", str(tmp_path), "--rcfile", str(rc)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    got = [p.read_text() for p in (maildir / "new").iterdir()]
    assert sorted(t.split("Subject: ")[1].split("\n")[0] for t in got) == ["getmail 0", "getmail 1"]
    assert count(live, user) == (0, 0)


def test_autologout_below_ten_minutes_is_refused(tmp_path: Path) -> None:
    from postoffice.app import App

    site = make_site(tmp_path / "s", extra_toml="[pop3]\nlisten = []\nautologout = 60.0\n")
    with pytest.raises(ConfigError, match="600"):
        App(load_config(str(site.config)))
