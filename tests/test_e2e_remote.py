"""Mail leaving the host, end to end: SMTP in → queue → DNS MX (fake DNS) → a fake MX.

The server runs as a subprocess; the fake DNS server (postoffice.testing.fake_dns)
and the scripted MX (tests/test_smtp_client.FakeMx) run in this process, all on
loopback. Blocking calls go to threads so the fake MX keeps serving.
"""

from __future__ import annotations

import asyncio
import email
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import LiveServer, Site, make_site, wait_until
from postoffice.testing.fake_dns import FakeDnsServer
from test_smtp_client import FakeMx, running

HOST = "linux102.example.com"
USERS = tuple(f"{u}@{HOST}" for u in ("dl", "test", "root", "lee"))


@pytest.fixture
def dns() -> Iterator[FakeDnsServer]:
    zones = {
        "remote.example": {"MX": [(10, "mx.remote.example")]},
        "mx.remote.example": {"A": ["127.0.0.1"]},
        "nowhere.example": "NXDOMAIN",
    }
    with FakeDnsServer(zones) as server:
        yield server


def _site(tmp_path: Path, dns: FakeDnsServer, mx_port: int, extra: str = "", **maps: str) -> Site:
    site = make_site(
        tmp_path / "site",
        users=USERS,
        domains=("localhost", HOST),
        extra_toml=(
            f'[dns]\nnameservers = ["{dns.address}"]\ntimeout = 2.0\n'
            f'[smtp_client]\nport = {mx_port}\ntls = "none"\n' + extra
        ),
    )
    text = site.config.read_text().replace('hostname = "mail.example.test"', f'hostname = "{HOST}"')
    site.config.write_text(text)
    for name, content in maps.items():
        (site.root / name).write_text(content)
        (site.root / name).chmod(0o644)
    return site


def _send(port: int, sender: str, rcpts: list[str], body: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.sendmail(sender, rcpts, body)


async def _deliver(site: Site, mx: FakeMx, sender: str, rcpts: list[str], body: str) -> LiveServer:
    server = await asyncio.to_thread(LiveServer, site)
    await asyncio.to_thread(_send, server.port, sender, rcpts, body)
    return server


async def test_remote_recipient_reaches_the_mx(tmp_path: Path, dns: FakeDnsServer) -> None:
    async with running(FakeMx()) as mx:
        site = _site(tmp_path, dns, mx.port)
        body = f"From: dl@{HOST}\r\nSubject: out\r\n\r\nhello\r\n"
        server = await _deliver(site, mx, f"dl@{HOST}", ["friend@remote.example"], body)
        try:
            await asyncio.wait_for(_until(lambda: bool(mx.messages)), 20)
            (msg,) = mx.messages
            assert msg.sender == f"dl@{HOST}" and msg.recipients == ["friend@remote.example"]
            assert b"Subject: out" in msg.content and b"Received: from " in msg.content
            await asyncio.to_thread(
                server.wait_for,
                r"to=<friend@remote.example>, "
                r"relay=mx\.remote\.example\[127\.0\.0\.1\]:\d+, .*status=sent",
            )
        finally:
            await asyncio.to_thread(server.stop)


async def test_genericstable_and_masquerading_rewrite_outgoing_mail(
    tmp_path: Path, dns: FakeDnsServer
) -> None:
    # Seed 002: genericstable test@linux102.example.com → yangmei@tonk.com;
    # MASQUERADE_AS(163.com), EXPOSED_USER(root), masquerade_envelope.
    async with running(FakeMx()) as mx:
        site = _site(
            tmp_path, dns, mx.port,
            extra='[routing]\nmasquerade_as = "163.com"\nmasquerade_envelope = true\n',
            genericstable=f"test@{HOST} yangmei@tonk.com\n",
        )  # fmt: skip
        server = await asyncio.to_thread(LiveServer, site)
        try:
            for user in ("test", "dl", "root"):
                await asyncio.to_thread(
                    _send, server.port, f"{user}@{HOST}", ["friend@remote.example"],
                    f"From: {user}@{HOST}\r\nSubject: {user}\r\n\r\nx\r\n",
                )  # fmt: skip
            await asyncio.wait_for(_until(lambda: len(mx.messages) == 3), 20)
        finally:
            await asyncio.to_thread(server.stop)
    by_subject = {
        email.message_from_bytes(m.content)["Subject"]: (m, email.message_from_bytes(m.content))
        for m in mx.messages
    }
    assert by_subject["test"][1]["From"] == "yangmei@tonk.com"  # genericstable
    assert by_subject["dl"][1]["From"] == "dl@163.com"  # masquerading
    assert by_subject["dl"][0].sender == "dl@163.com"  # masquerade_envelope
    assert by_subject["root"][1]["From"] == f"root@{HOST}"  # EXPOSED_USER(root)


async def test_remote_refusal_bounces_to_the_local_sender(
    tmp_path: Path, dns: FakeDnsServer
) -> None:
    async with running(FakeMx(rcpt_reply=lambda a: b"550 5.1.1 no such user here")) as mx:
        site = _site(tmp_path, dns, mx.port)
        server = await _deliver(site, mx, f"lee@{HOST}", ["ghost@remote.example"],
                                "Subject: lost\r\n\r\nx\r\n")  # fmt: skip
        try:
            await asyncio.to_thread(
                wait_until, lambda: len(site.delivered(f"lee@{HOST}")) == 1, timeout=20
            )
        finally:
            await asyncio.to_thread(server.stop)
    dsn = email.message_from_bytes(site.delivered(f"lee@{HOST}")[0].read_bytes())
    assert dsn.get_content_type() == "multipart/report"
    assert b"5.1.1" in site.delivered(f"lee@{HOST}")[0].read_bytes()


async def test_unknown_domain_bounces(tmp_path: Path, dns: FakeDnsServer) -> None:
    async with running(FakeMx()) as mx:
        site = _site(tmp_path, dns, mx.port)
        server = await _deliver(
            site, mx, f"lee@{HOST}", ["x@nowhere.example"], "Subject: nx\r\n\r\nx\r\n"
        )
        try:
            await asyncio.to_thread(
                wait_until, lambda: len(site.delivered(f"lee@{HOST}")) == 1, timeout=20
            )
        finally:
            await asyncio.to_thread(server.stop)
    assert not mx.messages


async def _until(check) -> None:  # type: ignore[no-untyped-def]
    while not check():
        await asyncio.sleep(0.02)
