"""The QMTP listener under the access policy: tcprules, limits, access, RBLSMTPD, relay.

A real QMTP server on loopback (smtp.qmtp.start_qmtp_server) with the
intake as handler and gate, the in-memory spool and a PolicyEngine built
from map texts; clients connect from different loopback addresses
(127.0.0.2, 127.0.0.3 ...) so that each rule applies to one of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from conftest import LiveServer, make_site, wait_until
from policy_support import HOSTNAME, LOCAL, fake_resolve, make_engine, user_exists
from postoffice.config.schema import Config
from postoffice.policy.engine import PolicyEngine
from postoffice.policy.limits import ConnectionLimits
from postoffice.policy.listener import QMTP, SMTP, ListenerRules
from postoffice.policy.relay import RecipientPolicy
from postoffice.queue.envelope import Envelope
from postoffice.smtp.qmtp import (
    NetstringReader,
    QmtpServer,
    encode_package,
    parse_response,
    start_qmtp_server,
)
from postoffice.smtp.qmtp_session import QmtpIntake
from postoffice.smtp.replies import Reply
from postoffice.smtp.session import SessionDeps
from postoffice.testing.memory_spool import MemorySpool

MESSAGE = b"Subject: over qmtp\r\n\r\nhello\r\n"


class Site:
    def __init__(self, engine: PolicyEngine | None) -> None:
        self.spool = MemorySpool()
        self.submitted: list[Envelope] = []
        config = Config(hostname=HOSTNAME, local_domains=LOCAL)
        self.deps = SessionDeps(
            config=config,
            policy=RecipientPolicy(
                local_domains=LOCAL,
                user_exists=user_exists,
                trusted_networks=("127.0.0.1/32",),
                resolve=fake_resolve,
            ),
            spool=self.spool,
            submit=self.submitted.append,
            qualify=lambda a: a,
            clock=lambda: 1795000000.0,
            policy_engine=engine,
        )
        self.server: QmtpServer | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.addresses[0][1]

    def bodies(self) -> list[bytes]:
        return [self.spool.open_body(e.queue_id).read() for e in self.spool.envelopes()]


@asynccontextmanager
async def qmtp_site(tmp_path: Path, **engine: Any) -> AsyncIterator[Site]:
    site = Site(make_engine(tmp_path, **engine))
    intake = QmtpIntake(lambda: site.deps)
    site.server = await start_qmtp_server(intake, "127.0.0.1", 0, timeout=10, gate=intake)
    try:
        yield site
    finally:
        await site.server.stop()


class Conn:
    """A raw QMTP client bound to a chosen loopback source address."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.netstrings = NetstringReader(4096)
        self.got: list[bytes] = []

    @classmethod
    async def open(cls, site: Site, source: str) -> Conn:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", site.port, local_addr=(source, 0)
        )
        return cls(reader, writer)

    async def send(self, sender: str, recipients: Sequence[str]) -> list[Reply]:
        self.writer.write(encode_package(MESSAGE, sender, recipients))
        await self.writer.drain()
        while len(self.got) < len(recipients):
            data = await asyncio.wait_for(self.reader.read(4096), 10)
            if not data:
                break
            self.got += self.netstrings.feed(data)
        answers, self.got = self.got[: len(recipients)], self.got[len(recipients) :]
        return [parse_response(a) for a in answers]

    async def closed_by_server(self) -> bool:
        return await asyncio.wait_for(self.reader.read(1), 10) == b""

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def codes(answers: Sequence[Reply]) -> list[str]:
    """The enhanced codes (QMTP carries K/Z/D and the "#x.y.z" of the text only)."""
    return [r.enhanced for r in answers]


async def send_from(site: Site, source: str, sender: str, recipients: list[str]) -> list[Reply]:
    conn = await Conn.open(site, source)
    try:
        return await conn.send(sender, recipients)
    finally:
        await conn.close()


async def test_tcprules_deny_refuses_every_recipient_and_others_get_in(tmp_path: Path) -> None:
    async with qmtp_site(tmp_path, tcprules="127.0.0.2:deny\n:allow\n") as site:
        refused = await send_from(site, "127.0.0.2", "a@sender.example", ["alice@example.test"] * 2)
        assert [(r.code, r.enhanced) for r in refused] == [(554, "5.7.1")] * 2
        assert site.spool.envelopes() == []
        ok = await send_from(site, "127.0.0.3", "a@sender.example", ["alice@example.test"])
        assert [r.code for r in ok] == [250]
        assert len(site.spool.envelopes()) == 1


async def test_connection_limit_closes_and_the_count_is_released(tmp_path: Path) -> None:
    limits = ConnectionLimits(max_connections_per_ip=1)
    async with qmtp_site(tmp_path, limits=limits) as site:
        first = await Conn.open(site, "127.0.0.4")
        assert [r.code for r in await first.send("", ["alice@example.test"])] == [250]
        second = await Conn.open(site, "127.0.0.4")
        assert await second.closed_by_server()  # 421: no response at all, the client retries
        await second.close()
        await first.close()
        # the first connection's place is given back when it closes
        for _ in range(100):
            if limits.open_connections("127.0.0.4", group="qmtp") == 0:
                break
            await asyncio.sleep(0.01)
        assert limits.open_connections("127.0.0.4", group="qmtp") == 0
        again = await send_from(site, "127.0.0.4", "", ["alice@example.test"])
        assert [r.code for r in again] == [250]


async def test_access_from_reject_and_to_error(tmp_path: Path) -> None:
    access = (
        'From:spammer@bad.example REJECT\nTo:bob@example.test ERROR:5.7.1:550 "Bob takes no mail"\n'
    )
    async with qmtp_site(
        tmp_path, access=access, blacklist_recipients=True, accept_unresolvable_domains=True
    ) as site:
        refused = await send_from(
            site, "127.0.0.5", "spammer@bad.example", ["alice@example.test", "bob@example.test"]
        )
        assert codes(refused) == ["5.7.1", "5.7.1"]
        mixed = await send_from(
            site, "127.0.0.5", "x@good.example", ["alice@example.test", "bob@example.test"]
        )
        assert codes(mixed) == ["2.0.0", "5.7.1"]
        assert "Bob takes no mail" in mixed[1].text
        [envelope] = site.spool.envelopes()
        assert [r.address for r in envelope.recipients] == ["alice@example.test"]


async def test_discard_is_accepted_and_dropped(tmp_path: Path) -> None:
    access = "Connect:127.0.0.6 DISCARD\nFrom:quiet@example.org DISCARD\n"
    async with qmtp_site(tmp_path, access=access, accept_unresolvable_domains=True) as site:
        got = await send_from(site, "127.0.0.6", "x@example.org", ["alice@example.test"])
        assert [r.code for r in got] == [250]
        got = await send_from(site, "127.0.0.7", "quiet@example.org", ["alice@example.test"])
        assert [r.code for r in got] == [250]
        assert site.spool.envelopes() == [] and site.submitted == []
        got = await send_from(site, "127.0.0.7", "loud@example.org", ["alice@example.test"])
        assert [r.code for r in got] == [250]
        assert len(site.spool.envelopes()) == 1


async def test_rblsmtpd_and_relaying_denied(tmp_path: Path) -> None:
    tcprules = '127.0.0.8:allow,RBLSMTPD="-You are listed"\n127.0.0.9:allow,RELAYCLIENT=""\n'
    async with qmtp_site(tmp_path, tcprules=tcprules, accept_unresolvable_domains=True) as site:
        listed = await send_from(site, "127.0.0.8", "x@example.org", ["alice@example.test"])
        assert codes(listed) == ["5.7.1"] and listed[0].text == "You are listed"
        # an untrusted client: local users yes, other domains no
        got = await send_from(
            site, "127.0.0.10", "x@example.org", ["alice@example.test", "far@remote.example"]
        )
        assert codes(got) == ["2.0.0", "5.7.1"]
        assert "Relaying denied" in got[1].text
        # RELAYCLIENT from tcprules relays
        got = await send_from(site, "127.0.0.9", "x@example.org", ["far@remote.example"])
        assert [r.code for r in got] == [250]


async def test_delay_checks_refuse_at_the_recipients(tmp_path: Path) -> None:
    access = "Connect:127.0.0.11 REJECT\nFrom:friend@example.org OK\n"
    async with qmtp_site(
        tmp_path, access=access, delay_checks=True, accept_unresolvable_domains=True
    ) as site:
        got = await send_from(site, "127.0.0.11", "x@example.org", ["alice@example.test"])
        assert codes(got) == ["5.7.1"] and "Access denied" in got[0].text
        got = await send_from(site, "127.0.0.11", "friend@example.org", ["alice@example.test"])
        assert [r.code for r in got] == [250]  # From: OK skips the delayed connect refusal


async def test_received_names_the_client_and_protocol(tmp_path: Path) -> None:
    async with qmtp_site(tmp_path) as site:
        got = await send_from(site, "127.0.0.1", "x@example.org", ["alice@example.test"])
        assert [r.code for r in got] == [250]
        [body] = site.bodies()
        # the name from the engine (127.0.0.1 is localhost without DNS), not "unknown"
        assert body.startswith(b"Received: from localhost (localhost [127.0.0.1])")
        assert b"with QMTP" in body and body.endswith(MESSAGE)


async def test_without_an_engine_the_recipient_policy_decides(tmp_path: Path) -> None:
    site = Site(None)
    intake = QmtpIntake(lambda: site.deps)
    site.server = await start_qmtp_server(intake, "127.0.0.1", 0, timeout=10, gate=intake)
    try:
        got = await send_from(
            site, "127.0.0.12", "x@example.org", ["alice@example.test", "far@remote.example"]
        )
        assert codes(got) == ["2.0.0", "5.7.1"] and "Relaying denied" in got[1].text
    finally:
        await site.server.stop()


async def test_a_failing_connect_check_lets_the_client_in(tmp_path: Path) -> None:
    async with qmtp_site(tmp_path) as site:
        engine = site.deps.policy_engine
        assert engine is not None

        async def broken(state: object) -> object:
            raise RuntimeError("a bug below the intake")

        engine.on_connect = broken  # type: ignore[method-assign,assignment]
        got = await send_from(site, "127.0.0.1", "x@example.org", ["alice@example.test"])
        assert [r.code for r in got] == [250]


async def test_live_server_applies_tcprules_to_qmtp(tmp_path: Path) -> None:
    """app.py wires the intake as the gate: a `postoffice serve` QMTP listener."""
    site = make_site(
        tmp_path / "site",
        extra_toml='[smtp]\nqmtp_listen = ["127.0.0.1:0"]\n'
        "[policy]\naccept_unresolvable_domains = true\n",
    )
    (site.root / "tcprules").write_text("127.0.0.2:deny\n:allow\n")
    (site.root / "tcprules").chmod(0o600)
    server = await asyncio.to_thread(LiveServer, site)
    try:
        m = await asyncio.to_thread(server.wait_for, r"listening for QMTP on (\S+):(\d+)")
        port = int(m.group(2))
        for source, expected in (("127.0.0.2", "5.7.1"), ("127.0.0.3", "2.0.0")):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=(source, 0)
            )
            conn = Conn(reader, writer)
            try:
                assert codes(await conn.send("x@example.org", ["alice@example.test"])) == [expected]
            finally:
                await conn.close()
        assert await asyncio.to_thread(
            wait_until, lambda: len(site.delivered("alice@example.test")) == 1
        )
        await asyncio.to_thread(server.wait_for, r"reject: CONNECT from unknown\[127\.0\.0\.2\]")
    finally:
        await asyncio.to_thread(server.stop)


async def test_require_auth_refuses_every_package(tmp_path: Path) -> None:
    async with qmtp_site(tmp_path) as site:
        engine = site.deps.policy_engine
        assert engine is not None
        engine.listeners = {QMTP: ListenerRules(kind=QMTP, require_auth=True)}
        got = await send_from(site, "127.0.0.1", "x@example.org", ["alice@example.test"] * 2)
        assert codes(got) == ["5.7.0", "5.7.0"] and site.spool.envelopes() == []
        # the smtp kind's rules are not the qmtp kind's
        engine.listeners = {SMTP: ListenerRules(kind=SMTP, require_auth=True)}
        got = await send_from(site, "127.0.0.1", "x@example.org", ["alice@example.test"])
        assert codes(got) == ["2.0.0"]
