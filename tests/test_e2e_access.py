"""Seed 002's access database over SMTP: RELAY, REJECT and DISCARD as sendmail applies them."""

from __future__ import annotations

import smtplib
from pathlib import Path

from conftest import LiveServer, make_site, wait_until

EXTRA = (
    '[relay]\ntrusted_networks = ["10.9.9.9/32"]\n'  # loopback is not trusted by itself here
    "[policy]\naccept_unresolvable_domains = true\n"  # the test site has no DNS
)


def _site(tmp_path: Path, access: str, extra: str = ""):  # type: ignore[no-untyped-def]
    site = make_site(tmp_path / "site", extra_toml=EXTRA + extra)
    (site.root / "access").write_text(access)
    (site.root / "access").chmod(0o644)
    return site


def test_relay_for_127_0_0_1_from_the_access_map(tmp_path: Path) -> None:
    server = LiveServer(_site(tmp_path, "127.0.0.1 RELAY\n"))
    try:
        with smtplib.SMTP(server.host, server.port, timeout=10) as s:
            s.ehlo("c.example.org")
            s.mail("x@example.org")
            assert s.rcpt("someone@elsewhere.example")[0] == 250
    finally:
        server.stop()


def test_reject_an_address_and_discard_a_sender(tmp_path: Path) -> None:
    site = _site(
        tmp_path,
        "From:spammer@example.org REJECT\n"
        "From:quiet@example.org DISCARD\n"
        'To:bob@example.test ERROR:5.7.1:550 "Bob takes no mail"\n',
        "blacklist_recipients = true\n",  # To: entries for local users (sendmail's feature)
    )
    server = LiveServer(site)
    try:
        with smtplib.SMTP(server.host, server.port, timeout=10) as s:
            s.ehlo("c.example.org")
            code, _ = s.mail("spammer@example.org")
            assert code == 550
            s.rset()
            s.mail("x@example.org")
            assert s.rcpt("alice@example.test")[0] == 250
            code, msg = s.rcpt("bob@example.test")
            assert code == 550 and b"Bob takes no mail" in msg
            s.rset()
            # DISCARD: the client is told 250, nothing is delivered (seed 002).
            s.mail("quiet@example.org")
            assert s.rcpt("alice@example.test")[0] == 250
            assert s.data(b"Subject: gone\r\n\r\nx\r\n")[0] == 250
            s.mail("x@example.org")
            s.rcpt("alice@example.test")
            assert s.data(b"Subject: kept\r\n\r\nx\r\n")[0] == 250
        assert wait_until(lambda: len(site.delivered("alice@example.test")) == 1)
        assert b"Subject: kept" in site.delivered("alice@example.test")[0].read_bytes()
        server.wait_for(r"discard: ")
    finally:
        server.stop()
