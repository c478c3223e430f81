"""The POP3 adapter (pop3/server.py) over loopback sockets, in-process, with MemoryStore.

STLS (RFC 2595) with poplib and the injection case (commands pipelined
after STLS are discarded, never run), implicit TLS (RFC 8314), plaintext
logins refused off loopback before TLS, the autologout timer (RFC 1939 §3:
no reply, no update), the connection limit, a client that pipelines RETRs
without reading (back-pressure), and shutdown.
"""

from __future__ import annotations

import asyncio
import poplib
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trustme

from conftest import HOSTNAME, PASSWORD, make_site
from pop3_support import MemoryDrops, memory_deps, sized_message
from postoffice.config.load import load_config
from postoffice.net.tls import server_context
from postoffice.pop3.server import Pop3Connection, Pop3Server
from postoffice.pop3.session import Client, Pop3Deps
from postoffice.testing.pop3_transcript import MemoryTransport, settle

USER = "alice@example.test"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_context(tmp_path: Path, ca: trustme.CA) -> ssl.SSLContext:
    leaf = ca.issue_cert(HOSTNAME, "localhost", "127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    key.chmod(0o600)
    return server_context(str(cert), str(key))


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


class Harness:
    def __init__(self, root: Path, tls: ssl.SSLContext | None, extra_toml: str = "") -> None:
        self.site = make_site(root / "site", extra_toml=extra_toml)
        self.config = load_config(str(self.site.config))
        self.drops = MemoryDrops()
        self.folder = self.drops.fill(USER, "seed")
        deps = memory_deps(self.config, self.drops)
        self.deps = Pop3Deps(
            config=deps.config, auth=deps.auth, open_inbox=deps.open_inbox, tls_context=tls
        )

    @asynccontextmanager
    async def serving(
        self, *, implicit: bool = False, autologout: float | None = None
    ) -> AsyncIterator[tuple[Pop3Server, int]]:
        server = Pop3Server(self.deps, autologout=autologout)
        bound = await server.start(
            [("127.0.0.1", 0)], ssl_context=self.deps.tls_context if implicit else None
        )
        try:
            yield server, bound[0][1]
        finally:
            await server.stop(grace=5)


async def until_idle(server: Pop3Server) -> None:
    for _ in range(2000):
        if not server.connections:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("connections still open")


async def test_stls_with_poplib(tmp_path: Path, tls_context: ssl.SSLContext, ca) -> None:  # type: ignore[no-untyped-def]
    h = Harness(tmp_path, tls_context)

    def client(port: int) -> tuple[bytes, list[bytes], tuple[int, int], bytes]:
        p = poplib.POP3("127.0.0.1", port, timeout=10)
        before = p.capa()
        assert "STLS" in before
        p.stls(client_context(ca))
        after = p.capa()
        p.user(USER)
        p.pass_(PASSWORD)
        stat = p.stat()
        _, lines, _ = p.retr(1)
        quit_reply = p.quit()
        return quit_reply, lines, stat, b" ".join(k.encode() for k in after)

    async with h.serving() as (server, port):
        quit_reply, lines, stat, after = await asyncio.to_thread(client, port)
        await until_idle(server)
    assert stat == (2, 320)
    assert b"Subject: message 1" in lines
    assert b"STLS" not in after and b"USER" in after
    assert quit_reply.startswith(b"+OK")
    assert SEEN_AFTER(h) == [1]


def SEEN_AFTER(h: Harness) -> list[int]:
    return [m.uid for m in h.folder.sync().messages if "\\Seen" in m.flags]


async def test_commands_pipelined_after_stls_are_discarded(
    tmp_path: Path, tls_context: ssl.SSLContext, ca: trustme.CA
) -> None:
    h = Harness(tmp_path, tls_context)

    def client(port: int) -> tuple[bytes, bytes]:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        f = raw.makefile("rb")
        f.readline()
        # RFC 2595 §4 / CVE-2011-0411: an attacker appends commands to STLS
        raw.sendall(b"STLS\r\nUSER alice@example.test\r\nPASS secret-pw\r\nDELE 1\r\nQUIT\r\n")
        go = f.readline()
        tls = client_context(ca).wrap_socket(raw, server_hostname=HOSTNAME)
        tls.sendall(b"STAT\r\n")
        g = tls.makefile("rb")
        answer = g.readline()
        tls.sendall(b"QUIT\r\n")
        g.readline()
        tls.close()
        return go, answer

    async with h.serving() as (server, port):
        go, answer = await asyncio.to_thread(client, port)
        await until_idle(server)
    assert go == b"+OK Begin TLS negotiation now.\r\n"
    # Had USER/PASS run, STAT would answer +OK; the client is not logged in.
    assert answer == b"-ERR Command not valid in this state.\r\n"
    assert len(h.folder.sync().messages) == 2 and not h.folder.locked


async def test_plaintext_after_stls_fails_the_handshake(
    tmp_path: Path, tls_context: ssl.SSLContext
) -> None:
    h = Harness(tmp_path, tls_context)

    def client(port: int) -> bytes:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        f = raw.makefile("rb")
        f.readline()
        raw.sendall(b"STLS\r\n")
        assert f.readline().startswith(b"+OK")
        raw.sendall(b"USER alice@example.test\r\n")  # not a TLS record
        rest = raw.recv(4096)
        raw.close()
        return rest

    async with h.serving() as (server, port):
        rest = await asyncio.to_thread(client, port)
        await until_idle(server)
    assert not rest.startswith(b"+OK")
    assert not h.folder.locked


async def test_implicit_tls(tmp_path: Path, tls_context: ssl.SSLContext, ca: trustme.CA) -> None:
    h = Harness(tmp_path, tls_context)

    def client(port: int) -> tuple[list[str], tuple[int, int]]:
        p = poplib.POP3_SSL("127.0.0.1", port, context=client_context(ca), timeout=10)
        caps = list(p.capa())
        p.user(USER)
        p.pass_(PASSWORD)
        stat = p.stat()
        p.dele(1)
        p.quit()
        return caps, stat

    async with h.serving(implicit=True) as (server, port):
        caps, stat = await asyncio.to_thread(client, port)
        await until_idle(server)
    assert "STLS" not in caps and "USER" in caps
    assert stat == (2, 320)
    assert [m.uid for m in h.folder.sync().messages] == [2]


async def test_plaintext_logins_off_loopback_wait_for_tls(
    tmp_path: Path, tls_context: ssl.SSLContext
) -> None:
    h = Harness(tmp_path, tls_context)
    conn = Pop3Connection(Pop3Server(h.deps))
    transport = MemoryTransport(Client(ip="192.0.2.7", local_ip="192.0.2.1"))
    conn.connection_made(transport)
    conn.data_received(b"CAPA\r\nUSER alice@example.test\r\nAUTH PLAIN AGEAYg==\r\n")
    await settle(conn)
    out = bytes(transport.out).decode()
    assert "\r\nUSER\r\n" not in out and "SASL SCRAM-SHA-256 CRAM-MD5\r\n" in out
    assert "STLS\r\n" in out
    text = "-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections."
    assert out.count(text) == 2
    conn.connection_lost(None)


async def test_autologout_closes_without_reply_or_update(tmp_path: Path) -> None:
    h = Harness(tmp_path, None)

    def client(port: int) -> bytes:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        f = raw.makefile("rb")
        f.readline()
        raw.sendall(b"USER alice@example.test\r\nPASS secret-pw\r\nDELE 1\r\n")
        for _ in range(3):
            f.readline()
        rest = f.read()  # until the server closes: RFC 1939 §3, no response
        raw.close()
        return rest

    async with h.serving(autologout=0.3) as (server, port):
        rest = await asyncio.to_thread(client, port)
        await until_idle(server)
    assert rest == b""
    assert len(h.folder.sync().messages) == 2 and not h.folder.locked


async def test_connection_limit(tmp_path: Path) -> None:
    h = Harness(tmp_path, None, extra_toml="[pop3]\nlisten = []\nmax_connections = 1\n")

    def client(port: int) -> tuple[bytes, bytes]:
        first = socket.create_connection(("127.0.0.1", port), timeout=10)
        ok = first.makefile("rb").readline()
        second = socket.create_connection(("127.0.0.1", port), timeout=10)
        refused = second.makefile("rb").read()
        first.close()
        second.close()
        return ok, refused

    async with h.serving() as (server, port):
        ok, refused = await asyncio.to_thread(client, port)
        await until_idle(server)
    assert ok.startswith(b"+OK POP3 server ready")
    assert refused == b"-ERR [SYS/TEMP] Too many connections, try again later.\r\n"


async def test_a_client_that_does_not_read(tmp_path: Path) -> None:
    h = Harness(tmp_path, None)
    big = [sized_message(i, 200_000) for i in range(3, 43)]
    for data in big:
        h.folder.deliver(data)
    count = 42

    def client(port: int) -> list[bytes]:
        raw = socket.create_connection(("127.0.0.1", port), timeout=20)
        f = raw.makefile("rb")
        f.readline()
        raw.sendall(b"USER alice@example.test\r\nPASS secret-pw\r\n")
        f.readline()
        f.readline()
        # 42 RETRs at once (8 MB of replies), read nothing for a while
        raw.sendall(b"".join(b"RETR %d\r\n" % n for n in range(1, count + 1)) + b"QUIT\r\n")
        heads = []
        while True:
            line = f.readline()
            if not line:
                break
            if line.startswith((b"+OK", b"-ERR")):
                heads.append(line)
        raw.close()
        return heads

    async with h.serving() as (server, port):
        heads = await asyncio.to_thread(client, port)
        await until_idle(server)
    assert heads[:2] == [b"+OK 120 octets\r\n", b"+OK 200 octets\r\n"]
    assert heads[2:-1] == [b"+OK 200000 octets\r\n"] * 40
    assert heads[-1].startswith(b"+OK mail.example.test POP3 server signing off")


async def test_shutdown_tells_idle_clients(tmp_path: Path) -> None:
    h = Harness(tmp_path, None)
    server = Pop3Server(h.deps)
    port = (await server.start([("127.0.0.1", 0)]))[0][1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reader.readline()
    writer.write(b"USER alice@example.test\r\nPASS secret-pw\r\nDELE 1\r\n")
    for _ in range(3):
        await reader.readline()
    await server.stop(grace=5)
    assert await reader.read() == b"-ERR [SYS/TEMP] Server shutting down.\r\n"
    writer.close()
    assert len(h.folder.sync().messages) == 2 and not h.folder.locked
