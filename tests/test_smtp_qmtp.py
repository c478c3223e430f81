"""QMTP (smtp/qmtp.py): netstrings, responses, the server parser; client and server on loopback."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postoffice.errors import TempFail
from postoffice.smtp import replies
from postoffice.smtp.qmtp import (
    MessageData,
    MessageStart,
    NetstringError,
    NetstringReader,
    PackageEnd,
    QmtpClient,
    QmtpError,
    QmtpPeer,
    QmtpServerProtocol,
    encode_package,
    format_response,
    netstring,
    parse_response,
    start_qmtp_server,
)
from postoffice.smtp.replies import Reply

# --- netstrings (QMTP §6) ---------------------------------------------------------


def test_netstring_examples_from_the_spec() -> None:
    assert netstring(b"hello world!") == b"12:hello world!,"
    assert netstring(b"") == b"0:,"
    assert NetstringReader(100).feed(b"12:hello world!,0:,") == [b"hello world!", b""]


def test_netstring_reader_is_incremental() -> None:
    r = NetstringReader(100)
    got: list[bytes] = []
    for b in b"3:abc,1:x,":
        got += r.feed(bytes([b]))
    assert got == [b"abc", b"x"] and not r.pending


@pytest.mark.parametrize(
    "data", [b"01:a,", b"x:", b"3:abcd", b"-1:", b"1" * 21, b"200:", b"\xd9:", b":a,"]
)
def test_bad_netstrings(data: bytes) -> None:
    with pytest.raises(NetstringError):
        NetstringReader(100).feed(data)


@given(st.lists(st.binary(max_size=40), max_size=6), st.integers(1, 7))
def test_netstrings_round_trip_in_any_pieces(items: list[bytes], step: int) -> None:
    wire = b"".join(netstring(i) for i in items)
    r = NetstringReader(1000)
    got: list[bytes] = []
    for i in range(0, len(wire), step):
        got += r.feed(wire[i : i + step])
    assert got == items


# --- responses (QMTP §5) ------------------------------------------------------------


def test_responses_from_replies() -> None:
    k = format_response(Reply(code=250, enhanced="2.0.0", text="ok 838640135 qp 1390"))
    assert k == netstring(b"Kok 838640135 qp 1390 (#2.0.0)")
    z = format_response(replies.MAILBOX_BUSY)
    assert z == netstring(b"ZMailbox temporarily unavailable (#4.2.1)")
    d = format_response(Reply(code=550, enhanced="5.1.1", text="no #such\r\nuser"))
    assert d == netstring(b"Dno such user (#5.1.1)")  # "#" only in the code, one line
    assert format_response(Reply(code=354, text="")) == b"3:Zok,"  # never K for a non-2xx


def test_parse_response_finds_the_hcmssc_code() -> None:
    assert parse_response(b"Kok 838640135 qp 1390") == Reply(
        code=250, enhanced="2.0.0", text="ok 838640135 qp 1390"
    )
    r = parse_response(b"Zsorry, no mailbox here by that name. (#4.1.1)")
    assert (r.code, r.enhanced, r.text) == (451, "4.1.1", "sorry, no mailbox here by that name.")
    r = parse_response(b"DSorry, I couldn't find any host by that name. (#5.1.2)")
    assert (r.code, r.enhanced) == (554, "5.1.2")
    assert parse_response(b"Dgo away (#4.1.1)").enhanced == "5.0.0"  # class must agree
    for bad in (b"", b"X", b"250 ok"):
        with pytest.raises(ValueError):
            parse_response(bad)


CODES = st.sampled_from([250, 451, 452, 550, 554])
STATUS = st.sampled_from(["", "2.0.0", "4.2.2", "5.1.1"])


@given(st.builds(Reply, code=CODES, enhanced=STATUS, text=st.text()))
def test_response_round_trip_keeps_class_and_code(reply: Reply) -> None:
    item = NetstringReader(1 << 20).feed(format_response(reply))[0]
    back = parse_response(item)
    assert back.code // 100 == reply.code // 100
    if reply.enhanced and reply.enhanced[0] == str(reply.code)[0]:
        assert back.enhanced == reply.enhanced


# --- the server's parser -------------------------------------------------------------

# QMTP §8, the example: the first message in encoding #2, the second in #1.
MSG1 = (
    b"\nReceived: (qmail-queue invoked by uid 0); 29 Jul 1996 09:36:40 -0000\n"
    b"Date: 29 Jul 1996 11:35:35 -0000\n"
    b"Message-ID: <19960729113535.375.qmail@heaven.af.mil>\n"
    b"From: God@heaven.af.mil\n"
    b"To: djb@silverton.berkeley.edu (D. J. Bernstein)\n\nThis is a test.\n"
)
MSG2 = (
    b'\rFrom: MAILER-DAEMON@heaven.af.mil\r\nTo:\r\n   Hate."The Quoting"@SILVERTON.berkeley.edu,'
    b'\r\n   "\\\\Backslashes!"@silverton.BERKELEY.edu\r\n\r\nThe recipient addresses here could'
    b" have been encoded in SMTP as\r\n\r\n   RCPT TO:<Hate.The\\ Quoting@silverton.berkeley.EDU>"
    b"\r\n   RCPT TO:<\\\\Backslashes!@silverton.berkeley.edu>\r\n\r\n"
    b"This ends with a partial last line, right here"
)
EXAMPLE = (
    netstring(MSG1)
    + b"24:God-DSN-37@heaven.af.mil,"
    + b"30:26:djb@silverton.berkeley.edu,,"
    + netstring(MSG2)
    + b"0:,"
    + b"83:39:Hate.The Quoting@silverton.berkeley.edu,36:\\Backslashes!@silverton.berkeley.EDU,,"
)


def feed_all(data: bytes, step: int = 0, **kw: int) -> list[object]:
    p = QmtpServerProtocol(**kw)
    if not step:
        return list(p.receive_data(data))
    out: list[object] = []
    for i in range(0, len(data), step):
        out += p.receive_data(data[i : i + step])
    return out


def packages(events: Sequence[object]) -> list[tuple[bytes, PackageEnd]]:
    out: list[tuple[bytes, PackageEnd]] = []
    content = b""
    for e in events:
        if isinstance(e, MessageStart):
            content = b""
        elif isinstance(e, MessageData):
            content += e.data
        elif isinstance(e, PackageEnd):
            out.append((content, e))
    return out


def test_the_example_of_the_spec() -> None:
    assert len(MSG1) == 246 and len(MSG2) == 356  # the lengths the spec gives
    (c1, p1), (c2, p2) = packages(feed_all(EXAMPLE))
    assert p1.sender == b"God-DSN-37@heaven.af.mil"
    assert p1.recipients == (b"djb@silverton.berkeley.edu",)
    assert c1 == MSG1[1:].replace(b"\n", b"\r\n") and p1.fault is None and p1.size == len(c1)
    assert p2.sender == b"" and p2.recipients == (
        b"Hate.The Quoting@silverton.berkeley.edu",
        b"\\Backslashes!@silverton.berkeley.EDU",
    )
    assert c2 == MSG2[1:] + b"\r\n"  # the partial last line gets its line end


@given(st.integers(1, 50))
def test_any_split_gives_the_same_events_content(step: int) -> None:
    whole = packages(feed_all(EXAMPLE))
    assert packages(feed_all(EXAMPLE, step)) == whole


def test_many_pipelined_packages_in_one_read() -> None:
    one = encode_package(b"x\r\n", "a@b", ["c@d"])
    got = packages(feed_all(one * 20000))
    assert len(got) == 20000 and got[-1][0] == b"x\r\n"


def test_oversized_message_is_read_and_refused() -> None:
    p = encode_package(b"y" * 100 + b"\r\n", "a@b", ["c@d", "e@f"])
    ((content, end),) = packages(feed_all(p, 7, max_message_size=50))
    assert content == b"" and end.fault == replies.MESSAGE_TOO_BIG
    # a limit crossed only after the LF -> CRLF conversion is noticed too
    lf = netstring(b"\n" + b"z\n" * 30) + netstring(b"") + netstring(netstring(b"r"))
    ((_, end),) = packages(feed_all(lf, max_message_size=61))
    assert end.fault == replies.MESSAGE_TOO_BIG
    (_, ok), = packages(feed_all(lf, max_message_size=90))  # fmt: skip
    assert ok.fault is None


@pytest.mark.parametrize("body", [b"\ra\rb\r\n", b"\ra\r", b"\na\rb\n"])
def test_a_lone_cr_is_refused(body: bytes) -> None:
    data = netstring(body) + netstring(b"s") + netstring(netstring(b"r"))
    for step in (0, 1, 2):
        ((_, end),) = packages(feed_all(data, step))
        assert end.fault == replies.DATA_BARE_LINE_ENDING


def test_encodings_and_empty_messages() -> None:
    for body, want in [
        (b"", b""),
        (b"\r", b""),
        (b"\n", b""),
        (b"\na\nb", b"a\r\nb\r\n"),
        (b"\ra\nb\r\n", b"a\r\nb\r\n"),  # a lone LF in #1 (an unsafe message) is a line end
        (b"\n.\r\n\n", b".\r\n\r\n"),  # a CRLF in #2 is one line end, not a CR in the line
    ]:
        data = netstring(body) + netstring(b"") + netstring(netstring(b"r"))
        ((content, end),) = packages(feed_all(data))
        assert (content, end.fault) == (want, None)


@pytest.mark.parametrize(
    "data",
    [
        b"3:xab,",  # neither encoding
        b"03:",  # leading zero
        b"2:\na;",  # no comma after the message
        b"1:\n,1:a;",  # bad sender netstring
        b"1:\n,0:,5:1:a,;,",  # bad recipient list
        b"1:\n,0:,4:3:a,,",  # a truncated recipient inside the list
        b"9999999999999999999999:",  # an absurd length
        b"0:,5000:",  # a sender longer than MAX_SENDER
    ],
)
def test_violations_raise_qmtp_error(data: bytes) -> None:
    with pytest.raises(QmtpError):
        feed_all(data)


@given(st.binary(max_size=200))
def test_parser_only_ever_raises_qmtp_error(data: bytes) -> None:
    try:
        feed_all(data, 3)
    except QmtpError:
        pass


def test_idle_between_packages() -> None:
    p = QmtpServerProtocol()
    assert p.idle
    p.receive_data(b"1")
    assert not p.idle
    p.receive_data(b":\n,0:,4:1:a,,")
    assert p.idle


# --- client and server over loopback -----------------------------------------------------


class Sink:
    """A QmtpSink keeping what it got; `answers` decides each recipient's reply."""

    def __init__(self, store: list[tuple[str, list[str], bytes]], answer: dict[str, Reply]) -> None:
        self.store = store
        self.answer = answer
        self.data = bytearray()
        self.aborted = False

    def write(self, data: bytes) -> None:
        if b"FAIL-WRITE" in data:
            raise TempFail(reply=replies.INSUFFICIENT_STORAGE, reason="disk full (test)")
        self.data += data

    async def finish(self, sender: str, recipients: Sequence[str]) -> Sequence[Reply]:
        self.store.append((sender, list(recipients), bytes(self.data)))
        return [self.answer.get(r, replies.QUEUED.with_text("ok queued")) for r in recipients]

    def abort(self) -> None:
        self.aborted = True


class Handler:
    def __init__(self, answer: dict[str, Reply] | None = None) -> None:
        self.store: list[tuple[str, list[str], bytes]] = []
        self.sinks: list[Sink] = []
        self.peers: list[QmtpPeer] = []
        self.answer = answer or {}

    def __call__(self, peer: QmtpPeer) -> Sink:
        self.peers.append(peer)
        sink = Sink(self.store, self.answer)
        self.sinks.append(sink)
        return sink


async def test_client_and_server_deliver_with_per_recipient_answers() -> None:
    handler = Handler({"full@x.test": replies.MAILBOX_BUSY, "gone@x.test": replies.USER_UNKNOWN})
    server = await start_qmtp_server(handler, "127.0.0.1", 0, max_recipients=10)
    host, port = server.addresses[0]
    client = await QmtpClient.connect(host, port, timeout=10)
    try:
        body = b"Subject: hi\r\n\r\n.dot line\r\n8-bit \xc3\xa9\r\n"
        got = await client.send("alice@a.test", ["bob@x.test", "full@x.test", "gone@x.test"], body)
        assert [(r.code, r.enhanced) for r in got] == [
            (250, "2.0.0"),
            (451, "4.2.1"),
            (554, "5.1.1"),
        ]
        assert got[0].text == "ok queued"
        # a second package on the same connection, from a file object
        got2 = await client.send("", ["bob@x.test"], io.BytesIO(b"second\r\n"))
        assert [r.code for r in got2] == [250]
    finally:
        await client.close()
        await server.stop()
    assert handler.store[0] == ("alice@a.test", ["bob@x.test", "full@x.test", "gone@x.test"], body)
    assert handler.store[1] == ("", ["bob@x.test"], b"second\r\n")
    assert handler.peers[0].ip == "127.0.0.1" and server.packages == 2
    assert client.peer.startswith("127.0.0.1[127.0.0.1]:")


async def test_server_answers_bad_addresses_and_limits_itself() -> None:
    handler = Handler()
    server = await start_qmtp_server(
        handler, "127.0.0.1", 0, max_recipients=2, max_message_size=100
    )
    host, port = server.addresses[0]
    reader, writer = await asyncio.open_connection(host, port)
    try:
        rcpts = netstring(b"a@x") + netstring(b"\xff@x") + netstring(b"b@x") + netstring(b"c@x")
        writer.write(netstring(b"\rhi\r\n") + netstring(b"s@x") + netstring(rcpts))
        # a message too big, a sender that is not UTF-8, a write failure
        writer.write(
            netstring(b"\r" + b"x" * 200) + netstring(b"s@x") + netstring(netstring(b"a@x"))
        )
        writer.write(netstring(b"\rhi") + netstring(b"\xfe") + netstring(netstring(b"a@x")))
        writer.write(netstring(b"\rFAIL-WRITE") + netstring(b"s") + netstring(netstring(b"a@x")))
        await writer.drain()
        r = NetstringReader(1000)
        got: list[bytes] = []
        while len(got) < 7:
            data = await asyncio.wait_for(reader.read(1000), 10)
            assert data
            got += r.feed(data)
    finally:
        writer.close()
        await server.stop()
    kinds = [g[:1] for g in got]
    assert kinds == [b"K", b"D", b"K", b"Z", b"D", b"D", b"Z"]
    assert b"#5.1.3" in got[1] and b"#4.5.3" in got[3] and b"#5.3.4" in got[4]
    assert b"#5.1.7" in got[5] and b"#4.3.1" in got[6]
    assert handler.store == [("s@x", ["a@x", "b@x"], b"hi\r\n")]
    assert all(s.aborted for s in handler.sinks[1:])


async def test_a_package_cut_short_is_thrown_away() -> None:
    handler = Handler()
    server = await start_qmtp_server(handler, "127.0.0.1", 0)
    host, port = server.addresses[0]
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"100:\rpart of a message")
    await writer.drain()
    writer.close()
    assert await asyncio.wait_for(reader.read(), 10) == b""  # the server closed too
    await server.stop()
    assert handler.store == [] and handler.sinks[0].aborted


async def test_protocol_violation_closes_the_connection() -> None:
    server = await start_qmtp_server(Handler(), "127.0.0.1", 0)
    host, port = server.addresses[0]
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"HELO there\r\n")
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()
    await server.stop()


async def test_client_reports_lost_connection_per_recipient() -> None:
    async def one_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        p = QmtpServerProtocol()
        while not any(isinstance(e, PackageEnd) for e in p.receive_data(await reader.read(100))):
            pass
        writer.write(format_response(replies.QUEUED))  # one of two, then gone
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(one_answer, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    client = await QmtpClient.connect("127.0.0.1", port, timeout=10)
    got = await client.send("a@b", ["c@d", "e@f"], b"x\r\n")
    assert [(r.code, r.enhanced) for r in got] == [(250, "2.0.0"), (451, "4.4.2")]
    assert not client.usable
    assert [r.code for r in await client.send("a@b", ["c@d"], b"x\r\n")] == [451]
    await client.close()
    srv.close()
    await srv.wait_closed()


async def test_client_reports_malformed_responses() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"5:Xnope,")
        await writer.drain()
        await reader.read()  # until the client gives up
        writer.close()

    srv = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    client = await QmtpClient.connect("127.0.0.1", port, timeout=10)
    got = await client.send("a@b", ["c@d"], b"x\r\n")
    assert [(r.code, r.enhanced) for r in got] == [(451, "4.5.0")]
    await client.close()
    srv.close()
    await srv.wait_closed()


async def test_over_a_unix_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "qmtp.sock")
    handler = Handler()
    server = await start_qmtp_server(handler, path=path)
    client = await QmtpClient.connect("", path=path, timeout=10)
    got = await client.send("a@b", ["c@d"], b"hello\r\n")
    await client.close()
    await server.stop()
    assert [r.code for r in got] == [250] and handler.store == [("a@b", ["c@d"], b"hello\r\n")]
