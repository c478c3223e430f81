"""SMTP AUTH end to end: who may relay, the submission port, and relay tricks at the SMTP level.

The site trusts only 127.0.0.2 for relaying, so a client on 127.0.0.1 is an
outsider until it authenticates (RFC 4954; loopback may AUTH without TLS).
"""

from __future__ import annotations

import smtplib
from pathlib import Path

import pytest

from conftest import PASSWORD, LiveServer, Site, make_site, wait_until

EXTRA = (
    '[relay]\ntrusted_networks = ["127.0.0.2/32"]\n'
    "[auth]\nfailure_delay = 0.01\nmax_failure_delay = 0.02\n"
    '[submission]\nlisten = ["127.0.0.1:0"]\n'
    "[policy]\naccept_unresolvable_domains = true\n"  # the test site has no DNS
)


@pytest.fixture
def server(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = LiveServer(make_site(tmp_path / "site", extra_toml=EXTRA))
    yield s
    s.stop()


def _client(server: LiveServer, port: int | None = None) -> smtplib.SMTP:
    c = smtplib.SMTP(server.host, port or server.port, timeout=10)
    c.ehlo("client.example.org")
    return c


def test_outsider_may_not_relay(server: LiveServer) -> None:
    with _client(server) as c:
        assert "auth" in c.esmtp_features
        c.mail("x@example.org")
        code, msg = c.rcpt("someone@elsewhere.example")
        assert (code, msg[:5]) == (550, b"5.7.1")
        c.rset()  # relay after RSET: still refused
        c.mail("x@example.org")
        assert c.rcpt("someone@elsewhere.example")[0] == 550
        assert c.rcpt("alice@example.test")[0] == 250  # local mail is always accepted


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_authenticated_user_may_relay(server: LiveServer, mechanism: str) -> None:
    with _client(server) as c:
        c.user, c.password = "alice@example.test", PASSWORD
        method = {"PLAIN": c.auth_plain, "LOGIN": c.auth_login, "CRAM-MD5": c.auth_cram_md5}
        code, _ = c.auth(mechanism, method[mechanism])
        assert code == 235
        c.mail("alice@example.test")
        assert c.rcpt("someone@elsewhere.example")[0] == 250
    server.wait_for(r"sasl_method=" + mechanism + r", sasl_username=alice@example.test")


def test_failed_auth_opens_nothing(server: LiveServer) -> None:
    with _client(server) as c:
        with pytest.raises(smtplib.SMTPAuthenticationError) as ei:
            c.login("alice@example.test", "Zq9-guessed")
        assert ei.value.smtp_code == 535
        c.mail("x@example.org")
        assert c.rcpt("someone@elsewhere.example")[0] == 550
        c.rset()  # (smtplib takes AUTH's 503 inside a transaction for success)
        with pytest.raises(smtplib.SMTPAuthenticationError):
            c.login("nobody@example.test", PASSWORD)  # unknown user: the same answer
    assert not any(PASSWORD in line or "Zq9-guessed" in line for line in server.lines)


def test_received_says_esmtpa(server: LiveServer, tmp_path: Path) -> None:
    site: Site = server.site
    with _client(server) as c:
        c.login("bob@example.test", PASSWORD)
        c.sendmail("bob@example.test", ["alice@example.test"], "Subject: a\r\n\r\nx\r\n")
    assert wait_until(lambda: len(site.delivered("alice@example.test")) == 1)
    assert b" with ESMTPA id " in site.delivered("alice@example.test")[0].read_bytes()


def test_submission_port_needs_auth(server: LiveServer) -> None:
    m = server.wait_for(r"listening for submission on (\S+):(\d+)")
    with _client(server, int(m.group(2))) as c:
        code, msg = c.docmd("MAIL", "FROM:<alice@example.test>")
        assert (code, msg[:5]) == (530, b"5.7.0")
        c.login("alice@example.test", PASSWORD)
        c.mail("alice@example.test")
        assert c.rcpt("bob@example.test")[0] == 250
        assert c.rcpt("someone@elsewhere.example")[0] == 250  # submission relays for users


def test_auth_twice_and_during_a_transaction(server: LiveServer) -> None:
    with _client(server) as c:
        c.login("alice@example.test", PASSWORD)
        assert c.docmd("AUTH", "PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQtcHc=")[0] == 503
        c.mail("alice@example.test")
        assert c.docmd("AUTH", "PLAIN")[0] == 503


def test_submission_adds_date_and_message_id(server: LiveServer) -> None:
    site: Site = server.site
    m = server.wait_for(r"listening for submission on (\S+):(\d+)")
    with _client(server, int(m.group(2))) as c:
        c.login("alice@example.test", PASSWORD)
        c.sendmail("alice@example.test", ["bob@example.test"], "Subject: bare\r\n\r\nbody\r\n")
        c.sendmail(
            "alice@example.test",
            ["bob@example.test"],
            "Subject: full\r\nDate: Sat, 21 Nov 2026 10:00:00 +0000\r\n"
            "Message-ID: <own@example.test>\r\n\r\nbody\r\n",
        )
    assert wait_until(lambda: len(site.delivered("bob@example.test")) == 2)
    texts = [p.read_bytes() for p in site.delivered("bob@example.test")]
    bare = next(t for t in texts if b"Subject: bare" in t)
    full = next(t for t in texts if b"Subject: full" in t)
    assert b"\nDate: " in bare and b"\nMessage-ID: <" in bare  # RFC 6409 §8.2, §8.3
    assert full.count(b"\nDate: ") == 1 and full.count(b"Message-ID:") == 1
    assert bare.endswith(b"\n\nbody\n")
