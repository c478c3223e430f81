"""Tests for postoffice.smtp.client: the ESMTP client adapter against peers on loopback.

Two kinds of peer: `FakeMx`, a small scripted asyncio SMTP server defined
here (precise misbehaviour: stalls, dropped connections, odd replies), and
aiosmtpd's SMTP class running in the test's own event loop on an
ephemeral port (a real, independent implementation). Nothing sleeps: a
"slow" peer waits for the client to hang up, and the client's tiny
timeout is what ends the wait.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
import trustme
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from postoffice.smtp.client import (
    ClientSettings,
    SessionFailure,
    SmtpClientConnection,
    deliver_transactions,
    transient,
)
from postoffice.smtp.client_protocol import Recipient, Transaction
from postoffice.smtp.replies import Reply

MX_NAME = "mx.example.test"
MESSAGE = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nHello.\r\n.dot\r\n"
SETTINGS = ClientSettings(
    helo_name="client.example.org", connect_timeout=5, command_timeout=5, data_timeout=5
)


# --- the scripted peer ------------------------------------------------------------------------


@dataclass
class Received:
    sender: str
    mail_params: list[str]
    recipients: list[str]
    content: bytes
    tls: bool


def _ok_rcpt(address: str) -> bytes:
    return b"250 2.1.5 ok"


@dataclass
class FakeMx:
    """A scripted SMTP peer. `stall` names a command after which it never
    answers (it waits for the client to hang up); `drop` names where it
    closes the connection: "DATA" (after part of the content), "MAIL"."""

    keywords: tuple[str, ...] = ("PIPELINING", "8BITMIME", "SIZE 10000000")
    greeting: bytes = b"220 fake.mx ESMTP"
    ehlo_reply: bytes = b""  # e.g. b"500 no" to force HELO
    mail_reply: Callable[[str], bytes] = lambda sender: b"250 2.1.0 ok"
    rcpt_reply: Callable[[str], bytes] = _ok_rcpt
    data_reply: bytes = b"354 go ahead"
    end_reply: Callable[[Received], bytes] = lambda msg: b"250 2.0.0 queued as FAKE"
    starttls_reply: bytes = b"220 2.0.0 ready"
    tls_context: ssl.SSLContext | None = None
    stall: str = ""
    drop: str = ""
    auth: tuple[str, str] | None = None
    host: str = "127.0.0.1"
    port: int = 0
    connections: int = 0
    active: int = 0
    max_active: int = 0
    lines: list[bytes] = field(default_factory=list)
    messages: list[Received] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    quits: int = 0
    quit_seen: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, self.host, self.port, limit=1 << 24)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._session(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
                await self._dialogue(reader, writer)
        finally:
            self.active -= 1
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()
            self.closed.set()

    async def _dialogue(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def say(line: bytes) -> None:
            writer.write(line + b"\r\n")
            await writer.drain()

        if self.stall == "greeting":
            await reader.read()
            return
        await say(self.greeting)
        if not self.greeting.startswith(b"2"):
            await reader.read()
            return
        tls = False
        msg: Received | None = None
        while True:
            line = await reader.readline()
            if not line:
                return
            self.lines.append(line)
            verb = line.split(b" ", 1)[0].strip().upper().decode("ascii", "replace")
            arg = line[len(verb) + 1 :].rstrip(b"\r\n").decode("utf-8", "replace")
            if verb == self.stall:
                await reader.read()  # the peer waits; the client's timer ends it
                return
            if verb == self.drop and verb != "DATA":
                return
            if verb == "EHLO":
                if self.ehlo_reply:
                    await say(self.ehlo_reply)
                    continue
                words = [w for w in self.keywords if not (tls and w == "STARTTLS")]
                lines = ["fake.mx", *words]
                await say(
                    "\r\n".join(
                        f"250{'-' if i < len(lines) - 1 else ' '}{w}" for i, w in enumerate(lines)
                    ).encode()
                )
            elif verb == "HELO":
                await say(b"250 fake.mx")
            elif verb == "STARTTLS":
                await say(self.starttls_reply)
                if self.starttls_reply.startswith(b"220"):
                    if self.tls_context is None:  # a broken TLS server: garbage, then close
                        await say(b"this is not TLS")
                        return
                    await writer.start_tls(self.tls_context)
                    tls = True
            elif verb == "AUTH":
                mech, _, token = arg.partition(" ")
                expected = self.auth or ("", "")
                good = base64.b64encode(f"\0{expected[0]}\0{expected[1]}".encode()).decode()
                ok = mech.upper() == "PLAIN" and token == good
                await say(b"235 2.7.0 ok" if ok else b"535 5.7.8 bad credentials")
            elif verb == "MAIL":
                path, _, params = arg[5:].partition(" ")
                sender = path.strip("<>")
                msg = Received(sender, params.split(), [], b"", tls)
                await say(self.mail_reply(sender))
            elif verb == "RCPT":
                address = arg[3:].split(" ", 1)[0].strip("<>")
                reply = self.rcpt_reply(address)
                if reply.startswith(b"2") and msg is not None:
                    msg.recipients.append(address)
                await say(reply)
            elif verb == "DATA":
                if msg is None or not msg.recipients:
                    await say(b"554 5.5.1 no valid recipients")
                    continue
                await say(self.data_reply)
                if not self.data_reply.startswith(b"354"):
                    continue
                if self.drop == "DATA":
                    await reader.read(5)
                    return
                lines = []
                while (text := await reader.readline()) not in (b".\r\n", b""):
                    lines.append(text)
                raw = b"".join(lines) + b".\r\n"
                if self.stall == "end":
                    await reader.read()
                    return
                assert msg is not None
                self.raw.append(raw)
                data = raw[:-3]  # RFC 5321 §4.5.2: drop the first "." of each line
                data = data[1:] if data.startswith(b".") else data
                msg.content = data.replace(b"\r\n.", b"\r\n")
                self.messages.append(msg)
                await say(self.end_reply(msg))
            elif verb == "BDAT":
                size = int(arg.split()[0])
                assert msg is not None
                msg.content = await reader.readexactly(size)
                self.messages.append(msg)
                await say(self.end_reply(msg))
            elif verb in ("RSET", "NOOP"):
                await say(b"250 2.0.0 ok")
            elif verb == "QUIT":
                self.quits += 1
                self.quit_seen.set()
                await say(b"221 2.0.0 bye")
                return
            else:
                await say(b"500 5.5.2 what?")


@contextlib.asynccontextmanager
async def running(mx: FakeMx) -> AsyncIterator[FakeMx]:
    await mx.start()
    try:
        yield mx
    finally:
        await mx.stop()


def tx(*rcpts: str, content: bytes = MESSAGE, **kw: Any) -> Transaction:
    return Transaction(
        sender="a@example.org",
        recipients=tuple(Recipient(address=r) for r in rcpts or ("b@example.net",)),
        content=content,
        **kw,
    )


async def send(mx: FakeMx, *txs: Transaction, **settings: Any) -> list[list[tuple[int, str]]]:
    done = await deliver_transactions(
        host=MX_NAME,
        address="127.0.0.1",
        port=mx.port,
        transactions=txs or (tx(),),
        settings=replace(SETTINGS, **settings),
    )
    return [[(r.reply.code, r.stage) for r in d.results] for d in done]


# --- plain delivery ---------------------------------------------------------------------------


async def test_delivery_and_dot_stuffing() -> None:
    async with running(FakeMx()) as mx:
        assert await send(mx) == [[(250, "end of DATA")]]
    (msg,) = mx.messages
    assert msg.content == MESSAGE and msg.sender == "a@example.org"
    assert msg.mail_params == [f"SIZE={len(MESSAGE)}"]
    assert mx.raw == [MESSAGE.replace(b"\r\n.dot", b"\r\n..dot") + b".\r\n"]
    assert mx.quits == 1


async def test_several_messages_over_one_connection_with_mixed_results() -> None:
    mx = FakeMx(
        rcpt_reply=lambda a: b"550 5.1.1 no such user" if a.startswith("bad") else b"250 ok"
    )
    async with running(mx):
        got = await send(mx, tx("a@x", "bad@x"), tx("bad@x"), tx("c@x", "d@x"))
    assert got == [
        [(250, "end of DATA"), (550, "RCPT TO")],
        [(550, "RCPT TO")],
        [(250, "end of DATA"), (250, "end of DATA")],
    ]
    assert mx.connections == 1 and len(mx.messages) == 2
    # the second transaction left a MAIL open on the peer: RSET before the third
    assert b"RSET\r\n" in mx.lines


async def test_helo_fallback_and_no_pipelining() -> None:
    async with running(FakeMx(ehlo_reply=b"502 5.5.1 EHLO not implemented")) as mx:
        assert await send(mx) == [[(250, "end of DATA")]]
    assert mx.lines[0].startswith(b"EHLO") and mx.lines[1].startswith(b"HELO")
    assert mx.messages[0].mail_params == []


async def test_bdat_with_chunking() -> None:
    async with running(FakeMx(keywords=("PIPELINING", "CHUNKING"))) as mx:
        assert await send(mx) == [[(250, "BDAT")]]
    assert mx.messages[0].content == MESSAGE


async def test_peer_without_8bitmime_gets_quoted_printable() -> None:
    content = "Subject: x\r\n\r\nGrüße\r\n".encode()
    async with running(FakeMx(keywords=("PIPELINING",))) as mx:
        assert await send(mx, tx(content=content, body="8BITMIME")) == [[(250, "end of DATA")]]
    got = mx.messages[0].content
    assert got.isascii() and b"Gr=C3=BC=C3=9Fe" in got and b"BODY=" not in b"".join(mx.lines)


async def test_size_refused_before_sending() -> None:
    async with running(FakeMx(keywords=("SIZE 10",))) as mx:
        assert await send(mx) == [[(552, "local")]]
    assert not any(line.startswith(b"MAIL") for line in mx.lines)


# --- failures ---------------------------------------------------------------------------------


async def test_connection_refused() -> None:
    mx = FakeMx()
    async with running(mx):
        port = mx.port
    with pytest.raises(SessionFailure) as info:
        await SmtpClientConnection.open(
            host=MX_NAME, address="127.0.0.1", port=port, settings=SETTINGS
        )
    assert info.value.reply.enhanced == "4.4.1"
    assert info.value.reason == f"connect to {MX_NAME}[127.0.0.1]:{port}: Connection refused"


@pytest.mark.parametrize(
    ("greeting", "code"), [(b"554 5.7.1 go away", 454), (b"421 4.3.2 busy", 421)]
)
async def test_greeting_refused_is_transient(greeting: bytes, code: int) -> None:
    async with running(FakeMx(greeting=greeting)) as mx:
        with pytest.raises(SessionFailure) as info:
            await send(mx)
    assert info.value.reply.code == code and info.value.reply.is_transient
    assert "refused to talk to me" in info.value.reason


async def test_disconnect_mid_data_defers_everyone() -> None:
    async with running(FakeMx(drop="DATA")) as mx:
        done = await deliver_transactions(
            host=MX_NAME, address="127.0.0.1", port=mx.port,
            transactions=[tx("a@x", "b@x"), tx("c@x")], settings=SETTINGS,
        )  # fmt: skip
    first, second = done
    assert first.content_sent
    assert [(r.reply.code, r.reply.enhanced, r.stage) for r in first.results] == [
        (451, "4.4.2", "session"),
        (451, "4.4.2", "session"),
    ]
    assert "Lost connection while sending end of data" in first.results[0].reply.text
    assert second.results[0].reply.text == "Connection no longer usable"


async def test_disconnect_before_data_is_not_content_sent() -> None:
    async with running(FakeMx(drop="MAIL")) as mx:
        conn = await SmtpClientConnection.open(
            host=MX_NAME, address="127.0.0.1", port=mx.port, settings=SETTINGS
        )
        done = await conn.send(tx())
        await conn.quit()
    assert not done.content_sent and done.results[0].stage == "session"


async def test_slow_peer_at_the_greeting() -> None:
    async with running(FakeMx(stall="greeting")) as mx:
        with pytest.raises(SessionFailure) as info:
            await send(mx, command_timeout=0.05)
    assert info.value.reply.enhanced == "4.4.2"
    assert "Conversation timed out while receiving the initial server greeting" in info.value.reason


async def test_slow_peer_after_the_content() -> None:
    async with running(FakeMx(stall="end")) as mx:
        (got,) = await send(mx, data_timeout=0.05)
    assert got == [(451, "session")]


async def test_slow_peer_at_rcpt() -> None:
    async with running(FakeMx(stall="RCPT")) as mx:
        conn = await SmtpClientConnection.open(
            host=MX_NAME, address="127.0.0.1", port=mx.port,
            settings=replace(SETTINGS, command_timeout=0.05),
        )  # fmt: skip
        done = await conn.send(tx())
        assert not conn.usable
        await conn.quit()
    assert done.results[0].reply.text == "Conversation timed out while sending RCPT TO"
    assert not done.content_sent


def test_transient() -> None:
    assert transient(Reply(code=554, enhanced="5.7.1", text="x")) == Reply(
        code=454, enhanced="4.7.1", text="x"
    )
    assert transient(Reply(code=550, text="x")).enhanced == "4.0.0"
    same = Reply(code=451, enhanced="4.3.0", text="x")
    assert transient(same) is same


# --- STARTTLS and AUTH --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*(names or (MX_NAME,))).configure_cert(context)
    return context


def trusting(ca: trustme.CA) -> Callable[[bool], ssl.SSLContext]:
    def factory(verify: bool) -> ssl.SSLContext:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    return factory


@pytest.mark.parametrize("policy", ["may", "encrypt", "verify"])
async def test_starttls(ca: trustme.CA, policy: str) -> None:
    mx = FakeMx(keywords=("PIPELINING", "STARTTLS"), tls_context=server_context(ca))
    async with running(mx):
        got = await send(mx, tls=policy, ssl_context_factory=trusting(ca))
    assert got == [[(250, "end of DATA")]]
    assert mx.messages[0].tls
    ehlos = [line for line in mx.lines if line.startswith(b"EHLO")]
    assert len(ehlos) == 2  # again after the handshake (RFC 3207 §4.2)


async def test_starttls_none_policy(ca: trustme.CA) -> None:
    mx = FakeMx(keywords=("STARTTLS",), tls_context=server_context(ca))
    async with running(mx):
        assert await send(mx, tls="none") == [[(250, "end of DATA")]]
    assert not mx.messages[0].tls


async def test_verify_fails_for_the_wrong_name_or_an_unknown_ca(ca: trustme.CA) -> None:
    mx = FakeMx(keywords=("STARTTLS",), tls_context=server_context(ca, "other.example.test"))
    async with running(mx):
        with pytest.raises(SessionFailure) as info:
            await send(mx, tls="verify", ssl_context_factory=trusting(ca))
        assert info.value.reply.enhanced == "4.7.5" and not info.value.plaintext_retry
        assert "not trusted" in info.value.reason
        # the system's CA store does not know trustme's CA
        with pytest.raises(SessionFailure) as info:
            await send(mx, tls="verify")
        # "may" does not check: the same peer is fine
        assert await send(mx, tls="may") == [[(250, "end of DATA")]]


async def test_tls_required_but_not_offered_or_refused() -> None:
    async with running(FakeMx(keywords=("PIPELINING",))) as mx:
        with pytest.raises(SessionFailure) as info:
            await send(mx, tls="encrypt")
        assert info.value.reply.enhanced == "4.7.4" and mx.quits == 1
        assert await send(mx, tls="may") == [[(250, "end of DATA")]]
    refusing = FakeMx(keywords=("STARTTLS",), starttls_reply=b"454 4.7.0 TLS not available")
    async with running(refusing):
        with pytest.raises(SessionFailure) as info:
            await send(refusing, tls="verify")
        assert info.value.reply.enhanced == "4.7.4"
        assert await send(refusing, tls="may") == [[(250, "end of DATA")]]  # plaintext


async def test_broken_tls_under_may_asks_for_a_plaintext_retry() -> None:
    async with running(FakeMx(keywords=("STARTTLS",))) as mx:  # answers 220, then garbage
        with pytest.raises(SessionFailure) as info:
            await send(mx, tls="may")
        assert info.value.plaintext_retry and info.value.reply.enhanced == "4.7.5"
        with pytest.raises(SessionFailure) as info:
            await send(mx, tls="encrypt")
        assert not info.value.plaintext_retry


async def test_auth_plain(ca: trustme.CA) -> None:
    mx = FakeMx(
        keywords=("STARTTLS", "AUTH PLAIN LOGIN"),
        tls_context=server_context(ca),
        auth=("user", "secret"),
    )
    async with running(mx):
        creds = {"auth_user": "user", "auth_password": "secret"}
        assert await send(mx, **creds) == [[(250, "end of DATA")]]  # over TLS ("may")
        assert any(line.startswith(b"AUTH PLAIN ") for line in mx.lines)
        with pytest.raises(SessionFailure) as info:  # never in plaintext unless allowed
            await send(mx, tls="none", **creds)
        assert info.value.reply.enhanced == "4.7.0"
        assert await send(mx, tls="none", allow_plaintext_auth=True, **creds) == [
            [(250, "end of DATA")]
        ]
        with pytest.raises(SessionFailure) as info:
            await send(mx, auth_user="user", auth_password="wrong")
        assert info.value.reply.code == 435 and info.value.reply.enhanced == "4.7.8"


async def test_unknown_tls_policy() -> None:
    async with running(FakeMx()) as mx:
        with pytest.raises(SessionFailure) as info:
            await send(mx, tls="sometimes")
    assert info.value.reply.enhanced == "4.3.5"


# --- aiosmtpd as the peer -------------------------------------------------------------------------


class Handler:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes, list[str]]] = []

    async def handle_RCPT(
        self, server: SMTP, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address.startswith("bad"):
            return "550 5.1.1 No such user"
        if address.startswith("later"):
            return "450 4.2.1 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        self.messages.append(
            (envelope.mail_from, list(envelope.rcpt_tos), envelope.content, envelope.mail_options)
        )
        return "250 2.0.0 Message accepted"


@contextlib.asynccontextmanager
async def aiosmtpd_peer(handler: Handler, **kwargs: Any) -> AsyncIterator[int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname=MX_NAME, **kwargs), "127.0.0.1", 0
    )
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_aiosmtpd_mixed_results_over_one_connection() -> None:
    handler = Handler()
    async with aiosmtpd_peer(handler) as port:
        done = await deliver_transactions(
            host=MX_NAME, address="127.0.0.1", port=port, settings=SETTINGS,
            transactions=[tx("a@x", "bad@x", "later@x"), tx("bad@x"), tx("c@x")],
        )  # fmt: skip
    got = [[(r.reply.code, r.reply.enhanced, r.stage) for r in d.results] for d in done]
    assert got == [
        [(250, "2.0.0", "end of DATA"), (550, "5.1.1", "RCPT TO"), (450, "4.2.1", "RCPT TO")],
        [(550, "5.1.1", "RCPT TO")],
        [(250, "2.0.0", "end of DATA")],
    ]
    assert [m[1] for m in handler.messages] == [["a@x"], ["c@x"]]
    assert handler.messages[0][2] == MESSAGE
    assert handler.messages[0][3] == [f"SIZE={len(MESSAGE)}"]


async def test_aiosmtpd_8bit_and_a_7bit_peer() -> None:
    content = "Subject: x\r\n\r\nGrüße\r\n".encode()
    handler = Handler()
    async with aiosmtpd_peer(handler) as port:  # offers 8BITMIME
        await deliver_transactions(
            host=MX_NAME, address="127.0.0.1", port=port, settings=SETTINGS,
            transactions=[tx(content=content)],
        )  # fmt: skip
    assert handler.messages[0][2] == content
    assert "BODY=8BITMIME" in handler.messages[0][3]
    seven = Handler()
    async with aiosmtpd_peer(seven, decode_data=True) as port:  # no 8BITMIME
        (d,) = await deliver_transactions(
            host=MX_NAME, address="127.0.0.1", port=port, settings=SETTINGS,
            transactions=[tx(content=content)],
        )  # fmt: skip
    assert d.results[0].reply.code == 250
    assert "Gr=C3=BC=C3=9Fe" in str(seven.messages[0][2])


async def test_aiosmtpd_starttls_and_auth(ca: trustme.CA) -> None:
    seen: list[tuple[str, bytes, bytes]] = []

    def authenticator(
        server: SMTP, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        seen.append((mechanism, data.login, data.password))
        return AuthResult(success=data.password == b"pw")

    handler = Handler()
    kwargs = {
        "tls_context": server_context(ca),
        "require_starttls": True,
        "authenticator": authenticator,
    }
    async with aiosmtpd_peer(handler, **kwargs) as port:
        conn = await SmtpClientConnection.open(
            host=MX_NAME, address="127.0.0.1", port=port,
            settings=replace(SETTINGS, tls="verify", ssl_context_factory=trusting(ca),
                             auth_user="me", auth_password="pw"),
        )  # fmt: skip
        assert conn.tls and conn.relay == f"{MX_NAME}[127.0.0.1]:{port}"
        done = await conn.send(tx())
        assert await conn.reset()
        await conn.quit()
    assert done.results[0].reply.code == 250
    assert seen == [("PLAIN", b"me", b"pw")]
    assert handler.messages[0][2] == MESSAGE
