"""STARTTLS (RFC 3207) and implicit TLS (RFC 8314) through the real adapter, over loopback.

An SmtpServer runs in-process on 127.0.0.1:0 with a trustme certificate;
clients (smtplib, or a raw socket where the byte layout matters) run in a
thread. Covers: the upgrade and the session reset (EHLO again), plaintext
injected after STARTTLS never interpreted (CVE-2011-0411), data that rides
with the client's last handshake flight, Received "with ESMTPS" and the TLS
comment (RFC 3848), implicit TLS on a submissions port, handshake failures
and timeouts, and the same under uvloop. A last test runs `postoffice
serve` with [tls] and [submission] and reloads the certificate on SIGHUP.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trustme

from conftest import HOSTNAME, PASSWORD, LiveServer, make_site, wait_until
from postoffice.auth.passwd_file import UserDB
from postoffice.config.load import load_config
from postoffice.net.tls import server_context
from postoffice.policy.relay import RecipientPolicy
from postoffice.queue.envelope import Envelope
from postoffice.queue.spool import FileSpool
from postoffice.routing.local import LocalRouter
from postoffice.smtp import events as ev
from postoffice.smtp.server import SmtpServer
from postoffice.smtp.session import Peer, SessionDeps, SmtpSession

MESSAGE = b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: tls\r\n\r\nhello\r\n"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def leaf(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert(HOSTNAME, "localhost", "127.0.0.1")


def write_pair(directory: Path, cert: trustme.LeafCert) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(b"".join(p.bytes() for p in cert.cert_chain_pems))
    key_path.write_bytes(cert.private_key_pem.bytes())
    key_path.chmod(0o600)
    return cert_path, key_path


@pytest.fixture
def tls_context(tmp_path: Path, leaf: trustme.LeafCert) -> ssl.SSLContext:
    cert, key = write_pair(tmp_path / "tls", leaf)
    return server_context(str(cert), str(key))


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


class Harness:
    """An in-process SmtpServer with deps built as tests/test_transcripts.py does."""

    def __init__(
        self, root: Path, tls_context: ssl.SSLContext | None, extra_toml: str = ""
    ) -> None:
        site = make_site(root / "site", extra_toml=extra_toml)
        config = load_config(str(site.config))
        users = UserDB.load(config.users_file)
        router = LocalRouter(local_domains=config.local_domains, hostname=config.hostname)
        self.spool = FileSpool(config.state_dir)
        self.submitted: list[Envelope] = []
        self.deps = SessionDeps(
            config=config,
            policy=RecipientPolicy(
                local_domains=config.local_domains,
                user_exists=users.exists,
                trusted_networks=config.relay.trusted_networks,
            ),
            spool=self.spool,
            submit=self.submitted.append,
            qualify=router.qualify,
            tls_context=tls_context,
        )
        self.server = SmtpServer(self.deps)

    async def listen(self, **kw: Any) -> int:
        bound = await self.server.start([("127.0.0.1", 0)], **kw)
        return bound[0][1]

    def body(self, n: int = 0) -> bytes:
        with self.spool.open_body(self.submitted[n].queue_id) as f:
            data: bytes = f.read()
        return data

    async def idle(self) -> None:
        """Until every connection has ended (the server logs its disconnect)."""
        deadline = time.monotonic() + 10
        while self.server.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        assert not self.server.connections


@asynccontextmanager
async def harness(
    root: Path, tls_context: ssl.SSLContext | None, extra_toml: str = ""
) -> AsyncIterator[Harness]:
    h = Harness(root, tls_context, extra_toml)
    try:
        yield h
    finally:
        await h.server.stop(grace=2)
        h.spool.close()


# -- raw socket helpers (the byte layout matters) -----------------------------------------


def read_line(sock: socket.socket) -> bytes:
    """One line, a byte at a time: nothing after it is consumed."""
    line = b""
    while not line.endswith(b"\r\n"):
        b = sock.recv(1)
        if not b:
            raise ConnectionError(f"closed after {line!r}")
        line += b
    return line


def read_reply(sock: socket.socket) -> list[bytes]:
    lines = [read_line(sock)]
    while lines[-1][3:4] == b"-":
        lines.append(read_line(sock))
    return lines


def tls_reply(f: Any) -> list[bytes]:
    lines = [f.readline()]
    while lines[-1][3:4] == b"-":
        lines.append(f.readline())
    return lines


# -- STARTTLS with smtplib ------------------------------------------------------------


def smtplib_starttls(port: int, ca: trustme.CA) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.example.test", timeout=10) as s:
        s.ehlo()
        out["before"] = s.esmtp_features.copy()
        out["starttls"] = s.starttls(context=client_context(ca))
        out["version"] = s.sock.version()  # type: ignore[union-attr]
        out["mail_before_ehlo"] = s.docmd("MAIL", "FROM:<alice@example.test>")
        s.ehlo()
        out["after"] = s.esmtp_features.copy()
        out["again"] = s.docmd("STARTTLS")
        out["refused"] = s.sendmail("alice@example.test", ["bob@example.test"], MESSAGE)
    return out


async def test_starttls_with_smtplib(
    tmp_path: Path, tls_context: ssl.SSLContext, ca: trustme.CA, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="postoffice.smtp")
    async with harness(tmp_path, tls_context) as h:
        port = await h.listen()
        out = await asyncio.to_thread(smtplib_starttls, port, ca)
        await h.idle()
    assert "starttls" in out["before"]
    assert out["starttls"][0] == 220 and out["starttls"][1] == b"2.0.0 Ready to start TLS"
    assert out["version"] == "TLSv1.3"
    # RFC 3207 §4.2: the session starts over; EHLO is needed again.
    assert out["mail_before_ehlo"][0] == 503
    assert "starttls" not in out["after"]  # not offered twice
    assert "pipelining" in out["after"]
    assert out["again"][0] == 503  # 503 5.5.1 TLS already active (even unadvertised)
    assert out["refused"] == {}
    # RFC 3848: ESMTPS; Postfix-style "(using TLSv1.3 with cipher ...)".
    (envelope,) = h.submitted
    assert envelope.protocol == "ESMTPS"
    head = h.body().split(b"\r\n\r\n", 1)[0].decode()
    received = head.split("\r\nFrom:", 1)[0]
    assert received.startswith("Received: from client.example.test (localhost [127.0.0.1])")
    assert "\r\n\t(using TLSv1.3 with cipher TLS_" in received
    assert " bits))\r\n\tby mail.example.test (postoffice) with ESMTPS" in received
    assert "with ESMTPS id " + envelope.queue_id in received
    assert "Anonymous TLS connection established from localhost[127.0.0.1]: TLSv1.3" in caplog.text
    assert h.server.statistics()["tls_handshakes"] == 1


def smtplib_plain(port: int) -> tuple[dict[str, str], tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo()
        return s.esmtp_features.copy(), s.docmd("STARTTLS")


async def test_no_certificate_no_starttls(tmp_path: Path) -> None:
    async with harness(tmp_path, None) as h:
        port = await h.listen()
        features, reply = await asyncio.to_thread(smtplib_plain, port)
    assert "starttls" not in features
    assert reply[0] == 502  # the engine: not offered


def test_session_answers_starttls(tls_context: ssl.SSLContext, tmp_path: Path) -> None:
    h = Harness(tmp_path, None)
    try:
        without = SmtpSession(h.deps, Peer(ip="127.0.0.1"))
        reply = without.handle(ev.StartTLS())
        assert str(reply).startswith("454 4.7.0") or getattr(reply, "code", 0) == 454
        with_ctx = SmtpSession(
            SessionDeps(**{**_fields(h.deps), "tls_context": tls_context}), Peer(ip="127.0.0.1")
        )
        with_ctx.handle(ev.Hello(verb="EHLO", domain="client.example.test"))
        reply = with_ctx.handle(ev.StartTLS())
        assert getattr(reply, "code", 0) == 220
        assert getattr(reply, "text", "") == "Ready to start TLS"
        assert with_ctx.helo == "" and not with_ctx.esmtp  # RFC 3207 §4.2
    finally:
        h.spool.close()


def _fields(deps: SessionDeps) -> dict[str, Any]:
    return {name: getattr(deps, name) for name in deps.__dataclass_fields__}


# -- the STARTTLS injection (CVE-2011-0411) ----------------------------------------------


def inject(port: int, ca: trustme.CA, injected: bytes) -> dict[str, Any]:
    """EHLO, then "STARTTLS\\r\\n" + `injected` in ONE write; then TLS, EHLO, RCPT, QUIT."""
    out: dict[str, Any] = {}
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        read_reply(sock)
        sock.sendall(b"EHLO client.example.test\r\n")
        read_reply(sock)
        sock.sendall(b"STARTTLS\r\n" + injected)
        out["starttls"] = read_reply(sock)
        # Had the server answered the injected command in plaintext, its reply
        # would sit before the TLS records and the handshake would fail.
        tls = client_context(ca).wrap_socket(sock, server_hostname=HOSTNAME)
        f = tls.makefile("rb")
        tls.sendall(b"EHLO client.example.test\r\n")
        out["ehlo"] = tls_reply(f)
        tls.sendall(b"RCPT TO:<bob@example.test>\r\n")
        out["rcpt"] = tls_reply(f)
        tls.sendall(b"QUIT\r\n")
        out["quit"] = tls_reply(f)
        f.close()
        tls.close()
    finally:
        sock.close()
    return out


@pytest.mark.parametrize(
    "injected",
    [
        b"RSET\r\n",
        b"MAIL FROM:<evil@example.test>\r\n",
        b"EHLO x\r\nMAIL FROM:<e@example.test>\r\n",
    ],
    ids=["rset", "mail", "ehlo-mail"],
)
async def test_plaintext_after_starttls_is_never_interpreted(
    tmp_path: Path,
    tls_context: ssl.SSLContext,
    ca: trustme.CA,
    caplog: pytest.LogCaptureFixture,
    injected: bytes,
) -> None:
    caplog.set_level(logging.INFO, logger="postoffice.smtp")
    async with harness(tmp_path, tls_context) as h:
        port = await h.listen()
        out = await asyncio.to_thread(inject, port, ca, injected)
        await h.idle()
    assert out["starttls"] == [b"220 2.0.0 Ready to start TLS\r\n"]
    # The first reply over TLS answers our EHLO, not the injected command.
    assert out["ehlo"][0] == f"250-{HOSTNAME}\r\n".encode()
    # No MAIL survived the handshake: RCPT is out of sequence.
    assert out["rcpt"][0].startswith(b"503 5.5.1")
    assert out["quit"][0].startswith(b"221")
    # Postfix-style counts: our two EHLOs, STARTTLS, the refused RCPT (unknown=1,
    # an engine refusal) and QUIT; the injected commands never reached the session.
    disconnect = [r.getMessage() for r in caplog.records if "disconnect from" in r.getMessage()]
    assert disconnect == [
        "disconnect from localhost[127.0.0.1] ehlo=2 starttls=1 quit=1 unknown=1 commands=5"
    ]


def inject_separately(port: int, ca: trustme.CA) -> tuple[list[bytes], str]:
    """STARTTLS and RSET in two writes, both before the 220 is read."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        read_reply(sock)
        sock.sendall(b"EHLO client.example.test\r\n")
        read_reply(sock)
        sock.sendall(b"STARTTLS\r\n")
        sock.sendall(b"RSET\r\n")
        ready = read_reply(sock)
        try:
            tls = client_context(ca).wrap_socket(sock, server_hostname=HOSTNAME)
        except (ssl.SSLError, ConnectionError):
            return ready, "refused"  # the RSET reached the TLS layer: not a ClientHello
        f = tls.makefile("rb")
        tls.sendall(b"EHLO client.example.test\r\n")
        first = tls_reply(f)[0].decode()
        f.close()
        tls.close()
        return ready, first
    finally:
        sock.close()


async def test_plaintext_in_a_later_read_is_never_interpreted(
    tmp_path: Path, tls_context: ssl.SSLContext, ca: trustme.CA, caplog: pytest.LogCaptureFixture
) -> None:
    """Whichever read the RSET lands in, the engine or the TLS layer gets it;
    never a command reply."""
    caplog.set_level(logging.INFO, logger="postoffice.smtp")
    async with harness(tmp_path, tls_context) as h:
        port = await h.listen()
        ready, after = await asyncio.to_thread(inject_separately, port, ca)
        await h.idle()
    assert ready == [b"220 2.0.0 Ready to start TLS\r\n"]
    assert after in ("refused", f"250-{HOSTNAME}\r\n")
    assert "rset=" not in caplog.text


def early_data(port: int, ca: trustme.CA) -> list[bytes]:
    """The client's last handshake flight and its first command in one write."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        read_reply(sock)
        sock.sendall(b"EHLO client.example.test\r\nSTARTTLS\r\n")
        read_reply(sock)
        read_reply(sock)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = client_context(ca).wrap_bio(incoming, outgoing, server_hostname=HOSTNAME)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("closed during the handshake") from None
                incoming.write(data)
        # TLS 1.3: our Finished is still in `outgoing`; EHLO goes right behind it.
        tls.write(b"EHLO client.example.test\r\nNOOP\r\n")
        sock.sendall(outgoing.read())
        buf = b""
        while not buf.endswith(b"250 2.0.0 Ok\r\n"):
            try:
                buf += tls.read(65536)
            except ssl.SSLWantReadError:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError(f"closed after {buf!r}") from None
                incoming.write(data)
        return buf.split(b"\r\n")
    finally:
        sock.close()


async def test_commands_in_the_clients_last_handshake_flight_are_answered(
    tmp_path: Path, tls_context: ssl.SSLContext, ca: trustme.CA
) -> None:
    async with harness(tmp_path, tls_context) as h:
        port = await h.listen()
        lines = await asyncio.to_thread(early_data, port, ca)
    assert lines[0] == f"250-{HOSTNAME}".encode()
    assert lines[-2:] == [b"250 2.0.0 Ok", b""]


# -- implicit TLS (RFC 8314 §3.3) ---------------------------------------------------------


async def test_implicit_tls_submissions_port(
    tmp_path: Path, tls_context: ssl.SSLContext, ca: trustme.CA
) -> None:
    async with harness(tmp_path, tls_context) as h:
        port = await h.listen(ssl_context=tls_context, submission=True)
        client = await asyncio.to_thread(
            lambda: smtplib.SMTP_SSL(
                "127.0.0.1",
                port,
                local_hostname="client.example.test",
                context=client_context(ca),
                timeout=10,
            )
        )
        try:
            await asyncio.to_thread(client.ehlo)
            (conn,) = h.server.connections
            assert conn.session is not None and conn.session.peer.submission
            assert conn.session.tls
            assert "starttls" not in client.esmtp_features
            assert (await asyncio.to_thread(client.docmd, "STARTTLS"))[0] == 503
            # RFC 6409 §4.3: a submission port takes no mail before AUTH.
            code, _ = await asyncio.to_thread(client.docmd, "MAIL", "FROM:<alice@example.test>")
            assert code == 530
        finally:
            await asyncio.to_thread(client.quit)
        await h.idle()
    assert h.submitted == []


def plaintext_to_tls_port(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"EHLO client.example.test\r\n")
        got = b""
        while chunk := sock.recv(4096):
            got += chunk
        return got


async def test_failed_handshake_closes_and_logs(
    tmp_path: Path, tls_context: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="postoffice.smtp")
    async with harness(tmp_path, tls_context) as h:
        port = await h.listen(ssl_context=tls_context)
        got = await asyncio.to_thread(plaintext_to_tls_port, port)
        await h.idle()
    assert b"220" not in got  # never a plaintext greeting on a TLS port
    assert "SSL_accept error from localhost[127.0.0.1]: " in caplog.text
    assert h.server.statistics()["tls_failures"] == 1


def silent_client(port: int) -> tuple[bytes, float]:
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"EHLO client.example.test\r\nSTARTTLS\r\n")
        got = b""
        while chunk := sock.recv(4096):
            got += chunk
    return got, time.monotonic() - start


async def test_handshake_timeout(
    tmp_path: Path, tls_context: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    """STARTTLS, then no ClientHello: closed after command_timeout."""
    caplog.set_level(logging.INFO, logger="postoffice.smtp")
    async with harness(tmp_path, tls_context, "[smtp]\ncommand_timeout = 0.2\n") as h:
        port = await h.listen()
        got, took = await asyncio.to_thread(silent_client, port)
        await h.idle()
    assert got.endswith(b"220 2.0.0 Ready to start TLS\r\n")
    assert took < 5
    assert "SSL_accept error from localhost[127.0.0.1]: timeout" in caplog.text


async def test_stop_aborts_connections_in_a_handshake(
    tmp_path: Path, tls_context: ssl.SSLContext
) -> None:
    async with harness(tmp_path, tls_context) as h:
        port = await h.listen(ssl_context=tls_context)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        deadline = time.monotonic() + 10
        while not h.server.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        started = time.monotonic()
        await h.server.stop(grace=5)
        assert time.monotonic() - started < 2  # not the whole grace period
        assert await reader.read() == b""
        writer.close()


# -- uvloop ------------------------------------------------------------------------------


def test_starttls_and_implicit_tls_under_uvloop(
    tmp_path: Path, tls_context: ssl.SSLContext, ca: trustme.CA
) -> None:
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> None:
        async with harness(tmp_path, tls_context) as h:
            plain = await h.listen()
            implicit = await h.listen(ssl_context=tls_context, submission=True)
            out = await asyncio.to_thread(smtplib_starttls, plain, ca)
            assert out["starttls"][0] == 220 and out["refused"] == {}
            injected = await asyncio.to_thread(inject, plain, ca, b"RSET\r\n")
            assert injected["ehlo"][0] == f"250-{HOSTNAME}\r\n".encode()
            lines = await asyncio.to_thread(early_data, plain, ca)
            assert lines[-2] == b"250 2.0.0 Ok"

            def ssl_client() -> int:
                with smtplib.SMTP_SSL(
                    "127.0.0.1", implicit, context=client_context(ca), timeout=10
                ) as s:
                    s.ehlo()
                    return int(s.docmd("MAIL", "FROM:<alice@example.test>")[0])

            # Several connections: uvloop reads a new socket right after
            # connection_made(); the ClientHello must reach the TLS layer.
            # (This harness has no AUTH: the submission port answers 530.)
            for _ in range(12):
                assert await asyncio.to_thread(ssl_client) == 530
            await h.idle()
            assert [e.protocol for e in h.submitted] == ["ESMTPS"]

    run: Callable[[Coroutine[Any, Any, None]], None]
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        run = runner.run
        run(scenario())


# -- postoffice serve: [tls], [submission], SIGHUP ----------------------------------------


def served_serial(port: int, ca: trustme.CA, *, implicit: bool) -> int:
    from cryptography import x509

    if implicit:
        with smtplib.SMTP_SSL("127.0.0.1", port, context=client_context(ca), timeout=10) as s:
            der = s.sock.getpeercert(binary_form=True)  # type: ignore[union-attr]
            s.noop()
    else:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
            s.starttls(context=client_context(ca))
            der = s.sock.getpeercert(binary_form=True)  # type: ignore[union-attr]
            s.ehlo()
            s.login("alice@example.test", PASSWORD)  # submission needs AUTH (RFC 6409)
            s.sendmail("alice@example.test", ["bob@example.test"], MESSAGE)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_live_server_tls_listeners_and_reload(tmp_path: Path, ca: trustme.CA) -> None:
    first = ca.issue_cert(HOSTNAME, "localhost", "127.0.0.1")
    cert, key = write_pair(tmp_path / "tls", first)
    site = make_site(
        tmp_path / "site",
        extra_toml=(
            f'[tls]\ncert = "{cert}"\nkey = "{key}"\n'
            '[submission]\nlisten = ["127.0.0.1:0"]\ntls_listen = ["127.0.0.1:0"]\n'
        ),
    )
    server = LiveServer(site)
    try:
        sub = server.wait_for(r"listening for submission on (\S+):(\d+)")
        subs = server.wait_for(r"listening for submissions on (\S+):(\d+)")
        first_serial = x509_serial(first)
        assert served_serial(server.port, ca, implicit=False) == first_serial
        assert served_serial(int(sub.group(2)), ca, implicit=False) == first_serial
        assert served_serial(int(subs.group(2)), ca, implicit=True) == first_serial
        assert wait_until(lambda: len(site.delivered("bob@example.test")) == 2)
        for path in site.delivered("bob@example.test"):
            assert b" with ESMTPSA id " in path.read_bytes()  # TLS and AUTH (RFC 3848)

        # A broken new certificate: SIGHUP logs it and the old one stays.
        mark = len(server.lines)
        cert.write_text("-----BEGIN CERTIFICATE-----\ntruncated\n")
        server.proc.send_signal(signal.SIGHUP)
        server.wait_for(r"tls.cert: no PEM certificate in the file", start=mark)
        assert served_serial(int(subs.group(2)), ca, implicit=True) == first_serial

        # A good new pair: served after SIGHUP, on every listener.
        second = ca.issue_cert(HOSTNAME, "localhost", "127.0.0.1")
        write_pair(tmp_path / "tls", second)
        mark = len(server.lines)
        server.proc.send_signal(signal.SIGHUP)
        server.wait_for(r"TLS certificate loaded from", start=mark)
        assert served_serial(int(subs.group(2)), ca, implicit=True) == x509_serial(second)
        assert served_serial(server.port, ca, implicit=False) == x509_serial(second)
    finally:
        assert server.stop() == 0


def x509_serial(leaf: trustme.LeafCert) -> int:
    from cryptography import x509

    return x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).serial_number


def test_live_server_broken_certificate_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "cert.pem"
    bad.write_text("garbage\n")
    site = make_site(tmp_path / "site", extra_toml=f'[tls]\ncert = "{bad}"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "postoffice", "-c", str(site.config), "serve",
         "--listen", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr == f"postoffice: {bad}: tls.cert: no PEM certificate in the file\n"


def test_live_server_submissions_needs_a_certificate(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site", extra_toml='[submission]\ntls_listen = ["127.0.0.1:0"]\n')
    proc = subprocess.run(
        [sys.executable, "-m", "postoffice", "-c", str(site.config), "serve",
         "--listen", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr == "postoffice: submission.tls_listen: needs tls.cert and tls.key\n"
