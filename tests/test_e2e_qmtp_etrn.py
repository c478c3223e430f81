"""QMTP in and ETRN, end to end against a live `postoffice serve`."""

from __future__ import annotations

import asyncio
import smtplib
from pathlib import Path

from conftest import LiveServer, make_site, wait_until
from postoffice.smtp.qmtp import QmtpClient


async def test_qmtp_package_is_delivered_and_refusals_are_per_recipient(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site", extra_toml='[smtp]\nqmtp_listen = ["127.0.0.1:0"]\n')
    server = await asyncio.to_thread(LiveServer, site)
    try:
        m = await asyncio.to_thread(server.wait_for, r"listening for QMTP on (\S+):(\d+)")
        client = await QmtpClient.connect(m.group(1), int(m.group(2)), timeout=10)
        try:
            replies = await client.send(
                "sender@example.org",
                ["alice@example.test", "nobody@example.test"],
                b"Subject: over qmtp\r\n\r\nhello\r\n",
            )
        finally:
            await client.close()
        assert [r.code // 100 for r in replies] == [2, 5]
        assert await asyncio.to_thread(
            wait_until, lambda: len(site.delivered("alice@example.test")) == 1
        )
        data = site.delivered("alice@example.test")[0].read_bytes()
        assert b"with QMTP" in data and data.endswith(b"\n\nhello\n")
    finally:
        await asyncio.to_thread(server.stop)


def test_etrn_is_offered_when_enabled_and_answers(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site", extra_toml="[smtp]\netrn = true\n")
    server = LiveServer(site)
    try:
        with smtplib.SMTP(server.host, server.port, timeout=10) as s:
            s.ehlo("office.example.org")
            assert s.has_extn("etrn")
            code, _ = s.docmd("ETRN", "remote.example")
            assert code in (250, 251)  # started, or nothing waiting (RFC 1985 §5)
            assert s.docmd("ETRN", "example.test")[0] == 459  # a domain we hold mail for
    finally:
        server.stop()
