"""The LMTP client (smtp/lmtp_client.py) against postoffice's own engine in LMTP mode.

The fake mail store is smtp/protocol.py's ServerProtocol with EngineConfig(lmtp=True),
pumped over loopback sockets (TCP or a unix socket); it answers RCPT and the
per-recipient replies after the final dot from small tables.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postoffice.errors import TempFail
from postoffice.queue.envelope import Envelope, EnvelopeRecipient
from postoffice.smtp import events as ev
from postoffice.smtp import replies
from postoffice.smtp.events import EngineConfig
from postoffice.smtp.lmtp_client import (
    DotStuffer,
    LmtpClient,
    ReplyError,
    ReplyReader,
    mail_command,
    rcpt_command,
    xtext,
)
from postoffice.smtp.protocol import ServerProtocol
from postoffice.smtp.replies import Reply

# --- sans I/O -------------------------------------------------------------------------


def test_reply_reader_joins_lines_and_splits_the_enhanced_code() -> None:
    r = ReplyReader()
    got = r.feed(b"220 store ready\r\n250-store.test\r\n250-PIPELINING\r\n250 ENHANCEDSTA")
    assert got[0] == Reply(code=220, text="store ready")
    assert r.feed(b"TUSCODES\r\n550 5.1.1 <x@y> User unknown\r\n") == [
        Reply(code=250, text="store.test\nPIPELINING\nENHANCEDSTATUSCODES"),
        Reply(code=550, enhanced="5.1.1", text="<x@y> User unknown"),
    ]
    assert r.feed(b"452-4.2.2 Mailbox\r\n452 4.2.2 is full\r\n") == [
        Reply(code=452, enhanced="4.2.2", text="Mailbox\nis full")
    ]
    assert r.feed(b"250 2.1.0\n") == [Reply(code=250, enhanced="2.1.0", text="")]  # bare LF too
    assert r.feed(b"250 5.1.1 odd\r\n") == [Reply(code=250, text="5.1.1 odd")]  # class differs


@pytest.mark.parametrize(
    "data", [b"hello\r\n", b"25\r\n", b"999 no\r\n", b"250-a\r\n251 b\r\n", b"2" * 9000]
)
def test_reply_reader_refuses_what_is_not_a_reply(data: bytes) -> None:
    with pytest.raises(ReplyError):
        ReplyReader().feed(data)


def stuff_all(chunks: list[bytes]) -> bytes:
    d = DotStuffer()
    return b"".join(d.feed(c) for c in chunks) + d.end()


def test_dot_stuffing() -> None:
    assert stuff_all([b".a\r\n..b\r\nc.\r\n.\r\n"]) == b"..a\r\n...b\r\nc.\r\n..\r\n.\r\n"
    assert stuff_all([b"x\r", b"\n.y\r\n"]) == b"x\r\n..y\r\n.\r\n"  # CRLF split
    assert stuff_all([b"x\r\n", b".", b"y"]) == b"x\r\n..y\r\n.\r\n"  # no final CRLF: added
    assert stuff_all([]) == b".\r\n"


@given(st.lists(st.sampled_from([b"", b".", b"..x", b"a.b", b"x"]), max_size=8), st.data())
def test_dot_stuffing_is_reversible_and_split_independent(
    lines: list[bytes], data: st.DataObject
) -> None:
    body = b"".join(line + b"\r\n" for line in lines)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=5)))
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    wire = stuff_all(pieces)
    assert wire == stuff_all([body])
    assert wire.endswith(b"\r\n.\r\n") or wire == b".\r\n"
    unstuffed = wire[:-3].replace(b"\r\n.", b"\r\n")
    if unstuffed.startswith(b"."):
        unstuffed = unstuffed[1:]
    assert unstuffed == body


def test_xtext_and_dsn_parameters() -> None:
    assert xtext("a+b=c d\u00e9") == "a+2Bb+3Dc+20d+C3+A9"
    env = Envelope(
        queue_id="Q", sender="s@x.test", recipients=(), arrival_time=0.0, size=1234,
        body_type="8BITMIME", smtputf8=True, ret="hdrs", envid="id 1",
    )  # fmt: skip
    everything = {"SIZE": "", "8BITMIME": "", "SMTPUTF8": "", "DSN": ""}
    assert mail_command(env, everything) == (
        b"MAIL FROM:<s@x.test> SIZE=1234 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=id+201\r\n"
    )
    assert mail_command(env, {}) == b"MAIL FROM:<s@x.test>\r\n"
    rcpt = EnvelopeRecipient(
        address="b@y.test", notify=frozenset({"FAILURE", "DELAY"}), orcpt="rfc822;B+1@y.test"
    )
    assert rcpt_command(rcpt, everything) == (
        b"RCPT TO:<b@y.test> NOTIFY=DELAY,FAILURE ORCPT=rfc822;B+2B1@y.test\r\n"
    )
    assert rcpt_command(rcpt, {}) == b"RCPT TO:<b@y.test>\r\n"


# --- a fake mail store: our own engine in LMTP mode --------------------------------------


READY = Reply(code=220, text="store.test LMTP ready")


@dataclass
class Store:
    """What the fake store received and how it answers."""

    rcpt: dict[str, Reply] = field(default_factory=dict)  # RCPT replies (default 250)
    final: dict[str, Reply] = field(default_factory=dict)  # after the dot (default 250)
    mail: Reply = replies.SENDER_OK
    data: Reply = replies.START_DATA
    pipelining: bool = True
    greeting: Reply = READY
    drop_after_final: int = -1  # close after this many final replies (-1: never)
    messages: list[tuple[str, list[str], bytes, str]] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)


async def serve_store(
    store: Store, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    engine = ServerProtocol(
        EngineConfig(hostname="store.test", lmtp=True, pipelining=store.pipelining, dsn=False)
    )
    engine.greeting(store.greeting)
    writer.write(engine.data_to_send())
    sender, helo, rcpts, content = "", "", [], bytearray()

    def answer(event: ev.Event) -> Reply | list[Reply] | None:
        nonlocal sender, helo, rcpts, content
        store.commands.append(type(event).__name__)
        if isinstance(event, ev.Hello):
            helo = event.domain
            return Reply(code=250, text="store.test")
        if isinstance(event, ev.MailFrom):
            sender, rcpts, content = event.sender, [], bytearray()
            return store.mail
        if isinstance(event, ev.RcptTo):
            reply = store.rcpt.get(event.recipient, replies.RECIPIENT_OK)
            if reply.is_positive:
                rcpts.append(event.recipient)
            return reply
        if isinstance(event, ev.DataStart):
            return store.data
        if isinstance(event, ev.DataChunk):
            content += event.data
        if isinstance(event, ev.DataEnd):
            store.messages.append((sender, list(rcpts), bytes(content), helo))
            return [
                store.final.get(r, Reply(code=250, enhanced="2.0.0", text=f"<{r}> Saved"))
                for r in rcpts
            ]
        return None

    try:
        while not engine.closed:
            data = await reader.read(65536)
            events = engine.receive_data(data) if data else engine.eof_received()
            while events:
                answered = False
                for event in events:
                    got = answer(event)
                    if not event.needs_answer:
                        continue
                    if isinstance(got, list):
                        if 0 <= store.drop_after_final < len(got):
                            engine.answer_each(got)
                            out = engine.data_to_send()
                            lines = out.split(b"\r\n")
                            writer.write(
                                b"".join(x + b"\r\n" for x in lines[: store.drop_after_final])
                            )
                            await writer.drain()
                            return
                        engine.answer_each(got)
                    else:
                        assert got is not None
                        engine.answer(got)
                    answered = True
                events = engine.receive_data(b"") if answered else []
            writer.write(engine.data_to_send())
            await writer.drain()
            if not data:
                break
    finally:
        writer.close()


async def start_store(store: Store, path: str = "") -> tuple[asyncio.Server, dict[str, object]]:
    def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> asyncio.Future[None]:
        return asyncio.ensure_future(serve_store(store, r, w))

    if path:
        srv = await asyncio.start_unix_server(handler, path)
        return srv, {"path": path}
    srv = await asyncio.start_server(handler, "127.0.0.1", 0)
    return srv, {"host": "127.0.0.1", "port": srv.sockets[0].getsockname()[1]}


def envelope(*rcpts: str, sender: str = "alice@a.test", **kw: Any) -> Envelope:
    return Envelope(
        queue_id="01TESTQUEUEID0000000000000",
        sender=sender,
        recipients=tuple(EnvelopeRecipient(address=r) for r in rcpts),
        arrival_time=0.0,
        **({"size": 100} | kw),
    )


async def with_client(store: Store, run: Callable[[LmtpClient], object], path: str = "") -> object:
    srv, where = await start_store(store, path)
    try:
        client = await LmtpClient.connect(lhlo="mail.example.test", timeout=10, **where)  # type: ignore[arg-type]
        try:
            result = run(client)
            if asyncio.iscoroutine(result):
                result = await result
            return result
        finally:
            await client.quit()
    finally:
        srv.close()
        await srv.wait_closed()


BODY = b"Subject: test\r\n\r\n.leading dot\r\nbody\r\n"


@pytest.mark.parametrize("pipelining", [True, False])
async def test_per_recipient_replies_after_the_dot(pipelining: bool) -> None:
    store = Store(
        pipelining=pipelining,
        rcpt={"nobody@b.test": replies.USER_UNKNOWN},
        final={"full@b.test": Reply(code=452, enhanced="4.2.2", text="Mailbox is full")},
    )
    env = envelope("bob@b.test", "nobody@b.test", "full@b.test", "carol@b.test")

    async def run(client: LmtpClient) -> object:
        assert ("PIPELINING" in client.extensions) == pipelining
        return await client.send(env, env.recipients, io.BytesIO(BODY))

    results = await with_client(store, run)
    assert isinstance(results, list)
    assert [(r.recipient.address, r.reply.code, r.stage) for r in results] == [
        ("bob@b.test", 250, "end of DATA"),
        ("nobody@b.test", 550, "RCPT TO"),
        ("full@b.test", 452, "end of DATA"),
        ("carol@b.test", 250, "end of DATA"),
    ]
    assert results[0].reply.text == "<bob@b.test> Saved"
    assert store.messages == [
        ("alice@a.test", ["bob@b.test", "full@b.test", "carol@b.test"], BODY, "mail.example.test")
    ]


async def test_refused_mail_and_data_and_several_transactions(tmp_path: Path) -> None:
    store = Store(mail=Reply(code=451, enhanced="4.3.0", text="try later"))
    env = envelope("bob@b.test", "carol@b.test")

    async def run(client: LmtpClient) -> object:
        first = await client.send(env, env.recipients, BODY)
        store.mail = replies.SENDER_OK
        store.data = Reply(code=554, enhanced="5.6.0", text="no thanks")
        second = await client.send(env, env.recipients, BODY)
        store.data = replies.START_DATA
        third = await client.send(env, env.recipients[:1], BODY)
        return first, second, third

    got = await with_client(store, run, path=str(tmp_path / "lmtp"))
    first, second, third = got  # type: ignore[misc]
    assert [(r.reply.code, r.stage) for r in first] == [(451, "MAIL FROM")] * 2
    assert [(r.reply.code, r.stage) for r in second] == [(554, "DATA")] * 2
    assert [(r.reply.code, r.stage) for r in third] == [(250, "end of DATA")]
    assert "Reset" in store.commands  # the refused transaction was ended with RSET


async def test_all_recipients_refused_sends_no_content() -> None:
    store = Store(rcpt={"x@b.test": replies.USER_UNKNOWN})
    env = envelope("x@b.test")

    async def run(client: LmtpClient) -> object:
        got = await client.send(env, env.recipients, BODY)
        again = await client.send(envelope("ok@b.test"), envelope("ok@b.test").recipients, BODY)
        return got, again

    got, again = await with_client(store, run)  # type: ignore[misc]
    assert [(r.reply.code, r.stage) for r in got] == [(550, "RCPT TO")]
    assert [r.reply.code for r in again] == [250]
    assert [m[1] for m in store.messages] == [["ok@b.test"]]


async def test_lost_connection_keeps_the_replies_received() -> None:
    store = Store(drop_after_final=1)
    env = envelope("bob@b.test", "carol@b.test")

    async def run(client: LmtpClient) -> object:
        return await client.send(env, env.recipients, BODY)

    results = await with_client(store, run)
    assert [(r.reply.code, r.reply.enhanced) for r in results] == [(250, "2.0.0"), (451, "4.4.2")]  # type: ignore[attr-defined]


async def test_refusals_before_sending() -> None:
    store = Store()
    big = envelope("bob@b.test", size=10**9)
    utf8 = envelope("j\u00f6rg@b.test")
    binary = envelope("bob@b.test", body_type="BINARYMIME")

    async def run(client: LmtpClient) -> object:
        client.extensions["SIZE"] = "1000"
        del client.extensions["SMTPUTF8"]
        return [
            (await client.send(e, e.recipients, BODY))[0].reply.enhanced
            for e in (big, utf8, binary)
        ]

    assert await with_client(store, run) == ["5.3.4", "5.6.7", "5.6.1"]
    assert store.messages == []


async def test_connect_failures_are_temporary(tmp_path: Path) -> None:
    with pytest.raises(TempFail) as e:
        await LmtpClient.connect(path=str(tmp_path / "missing"), lhlo="h", timeout=5)
    assert e.value.reply.enhanced == "4.4.1" and "missing" in e.value.reason
    store = Store(greeting=Reply(code=554, text="no service"))
    srv, where = await start_store(store)
    try:
        with pytest.raises(TempFail) as e:
            await LmtpClient.connect(lhlo="h", timeout=5, **where)  # type: ignore[arg-type]
        assert e.value.reply.code == 451 and "554 no service" in e.value.reason
        assert "initial greeting" in e.value.reason
    finally:
        srv.close()
        await srv.wait_closed()
