"""SMTP smuggling and plaintext injection: the engine must never end a
message on anything but CRLF "." CRLF, and must never run commands hidden in
message content or pipelined after STARTTLS.

The end-of-data variants are those of the SEC Consult "SMTP Smuggling"
research (2023; CVE-2023-51764 Postfix, CVE-2023-51765 sendmail,
CVE-2023-51766 Exim) plus NUL and doubled-CR forms. RFC 5321 §4.1.1.4 and
§2.3.8: only <CRLF>.<CRLF> ends data, and a server MUST NOT recognise a
bare LF as a line end.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.smtp import events as ev
from postoffice.smtp import replies
from postoffice.smtp.events import EngineConfig, Event
from postoffice.smtp.protocol import ServerProtocol
from postoffice.smtp.replies import Reply

HOST = "mx.example.org"

SMUGGLED = (
    b"MAIL FROM:<ceo@victim.example>\r\n"
    b"RCPT TO:<target@victim.example>\r\n"
    b"DATA\r\n"
    b"From: CEO <ceo@victim.example>\r\n"
    b"Subject: wire the money\r\n"
    b"\r\n"
    b"Now.\r\n"
)

# Fake end-of-data sequences; none of them may end the message.
VARIANTS = [
    b"\n.\n",  # LF . LF
    b"\n.\r\n",  # LF . CRLF (the Postfix case)
    b"\r.\r",  # CR . CR
    b"\r\n.\r",  # CRLF . CR
    b"\r.\r\n",  # CR . CRLF
    b"\r\n.\n",  # CRLF . LF
    b"\n.\r",  # LF . CR
    b"\r\n\x00.\r\n",  # NUL before the dot
    b"\r\n.\x00\r\n",  # NUL after the dot
    b"\r\n.\r\r\n",  # CRLF . CR CRLF
    b"\r\r\n.\r\r\n",  # CR CRLF . CR CRLF
    b"\r\n.\n\r\n",  # CRLF . LF CRLF
    b"\r\n \r\n. \r\n",  # dot followed by a space
    b"\r\n..\r\n",  # a stuffed dot is content
]

# Variants free of bare CR/LF: the message is accepted, smuggled text included.
CLEAN = {b"\r\n\x00.\r\n", b"\r\n.\x00\r\n", b"\r\n \r\n. \r\n", b"\r\n..\r\n"}


class FakeSession:
    """Drives the engine, answering like a permissive session."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.engine = ServerProtocol(config or EngineConfig(hostname=HOST, starttls=True))
        self.engine.greeting(Reply(code=220, text=HOST))
        self.events: list[Event] = []

    def answer_for(self, event: Event) -> Reply:
        if isinstance(event, ev.Hello):
            return Reply(code=250, text=HOST)
        if isinstance(event, ev.DataStart):
            return replies.OK if event.bdat else replies.START_DATA
        if isinstance(event, ev.DataEnd):
            return replies.QUEUED
        if isinstance(event, ev.StartTLS):
            return replies.READY_TO_START_TLS
        return replies.OK

    def feed(self, data: bytes) -> list[Event]:
        engine, new = self.engine, []
        events = engine.receive_data(data)
        while events:
            new.extend(events)
            last = events[-1]
            if not last.needs_answer or engine.closed:
                break
            reply = self.answer_for(last)
            engine.answer(reply)
            if isinstance(last, ev.StartTLS) and reply.code == 220:
                engine.tls_started()
            events = engine.receive_data(b"")
        self.events.extend(new)
        return new


def open_data(session: FakeSession) -> None:
    session.feed(b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\nDATA\r\n")
    session.engine.data_to_send()
    session.events.clear()


def message_with(variant: bytes) -> bytes:
    return b"From: a@b.example\r\n\r\nHello" + variant + SMUGGLED + b".\r\n"


def assert_not_smuggled(events: list[Event], variant: bytes) -> None:
    assert not any(isinstance(e, ev.MailFrom | ev.RcptTo | ev.DataStart) for e in events)
    ends = [e for e in events if isinstance(e, ev.DataEnd | ev.DataAborted)]
    assert len(ends) == 1, "exactly one end of data"
    if variant in CLEAN:
        assert isinstance(ends[0], ev.DataEnd)
        content = b"".join(e.data for e in events if isinstance(e, ev.DataChunk))
        assert b"MAIL FROM:<ceo@victim.example>" in content
    else:
        assert ends[0] == ev.DataAborted(reply=replies.DATA_BARE_LINE_ENDING)
    assert isinstance(events[-1], ev.DataEnd | ev.DataAborted)


@pytest.mark.parametrize("variant", VARIANTS, ids=repr)
def test_fake_terminator_does_not_end_data(variant: bytes) -> None:
    s = FakeSession()
    open_data(s)
    events = s.feed(message_with(variant))
    assert_not_smuggled(events, variant)
    out = s.engine.data_to_send().decode()
    assert out.count("\r\n") == 1, "one reply for one message, none for smuggled commands"
    assert out.startswith("250 " if variant in CLEAN else "550 5.6.0 ")
    assert s.engine.awaiting == "command"


@pytest.mark.parametrize("variant", VARIANTS, ids=repr)
def test_fake_terminator_at_start_of_data(variant: bytes) -> None:
    s = FakeSession()
    open_data(s)
    events = s.feed(variant.lstrip(b"\r\n") if variant.startswith(b"\r\n") else variant)
    events += s.feed(SMUGGLED + b".\r\n")
    assert not any(isinstance(e, ev.MailFrom | ev.RcptTo | ev.DataStart) for e in events)
    assert sum(isinstance(e, ev.DataEnd | ev.DataAborted) for e in events) == 1


@pytest.mark.parametrize("variant", VARIANTS, ids=repr)
def test_fake_terminator_split_at_every_point(variant: bytes) -> None:
    wire = message_with(variant)
    for cut in range(len(wire) + 1):
        s = FakeSession()
        open_data(s)
        events = s.feed(wire[:cut]) + s.feed(wire[cut:])
        assert_not_smuggled(events, variant)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(VARIANTS), st.lists(st.integers(0, 400), max_size=12))
def test_fake_terminator_random_reads(variant: bytes, cuts: list[int]) -> None:
    wire = message_with(variant)
    points = sorted({min(c, len(wire)) for c in cuts})
    s = FakeSession()
    open_data(s)
    events: list[Event] = []
    for a, b in zip([0, *points], [*points, len(wire)], strict=True):
        events += s.feed(wire[a:b])
    assert_not_smuggled(events, variant)


def test_real_terminator_ends_data_then_commands_run() -> None:
    s = FakeSession()
    open_data(s)
    events = s.feed(b"Hello\r\n.\r\nMAIL FROM:<c@d.example>\r\n")
    assert [type(e).__name__ for e in events] == ["DataChunk", "DataEnd", "MailFrom"]


def test_dot_line_first_is_an_empty_message() -> None:
    # RFC 5321 §4.1.1.4: the CRLF that ended DATA is the first CRLF of the
    # terminator, so "." as the very first line ends an empty message.
    s = FakeSession()
    open_data(s)
    assert s.feed(b".\r\n") == [ev.DataEnd(size=0)]


def test_dot_after_bare_lf_in_previous_read_is_not_an_end() -> None:
    # The line-start state must come from a real CRLF, also across reads.
    for before in (b"text\n", b"text\r", b"text"):
        s = FakeSession()
        open_data(s)
        events = s.feed(before)
        events += s.feed(b".\r\n" + SMUGGLED)
        assert not any(isinstance(e, ev.DataEnd | ev.DataAborted | ev.MailFrom) for e in events)
        events = s.feed(b".\r\n")
        assert len(events) == 1 and isinstance(events[0], ev.DataEnd | ev.DataAborted)


def test_smuggled_commands_in_bdat_are_data() -> None:
    s = FakeSession()
    s.feed(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\n")
    body = b"Hi\r\n.\r\n" + SMUGGLED
    events = s.feed(b"BDAT %d LAST\r\n" % len(body) + body)
    assert [type(e).__name__ for e in events] == ["DataStart", "DataChunk", "DataEnd"]
    assert b"".join(e.data for e in events if isinstance(e, ev.DataChunk)) == body


def test_bdat_chunk_size_lies_cannot_smuggle() -> None:
    # A refused BDAT (before MAIL) still has its octets swallowed.
    s = FakeSession()
    s.feed(b"EHLO c\r\n")
    events = s.feed(b"BDAT %d LAST\r\n" % len(SMUGGLED) + SMUGGLED + b"NOOP\r\n")
    assert [type(e).__name__ for e in events] == ["CommandRejected"]


def test_bare_lf_commands_are_never_split() -> None:
    # "RSET\nMAIL FROM:..." is one (refused) line, not two commands.
    s = FakeSession()
    s.feed(b"EHLO c\r\n")
    events = s.feed(b"RSET\nMAIL FROM:<ceo@victim.example>\r\n")
    assert [type(e).__name__ for e in events] == ["CommandRejected"]


# --- STARTTLS plaintext injection (CVE-2011-0411) ----------------------------------


def test_starttls_pipelined_commands_are_discarded() -> None:
    s = FakeSession()
    s.feed(b"EHLO c\r\n")
    s.engine.data_to_send()
    events = s.feed(b"STARTTLS\r\nRSET\r\nMAIL FROM:<ceo@victim.example>\r\n")
    assert [type(e).__name__ for e in events] == ["StartTLS"]
    assert s.engine.data_to_send() == b"220 2.0.0 Ready to start TLS\r\n"
    assert s.engine.tls
    # After the handshake the client starts over; nothing injected survives.
    events = s.feed(b"MAIL FROM:<a@b.example>\r\n")
    assert [type(e).__name__ for e in events] == ["CommandRejected"]


def test_starttls_injection_in_later_read_before_handshake() -> None:
    engine = ServerProtocol(EngineConfig(hostname=HOST, starttls=True))
    engine.greeting(Reply(code=220, text=HOST))
    engine.receive_data(b"EHLO c\r\n")
    engine.answer(Reply(code=250, text=HOST))
    engine.receive_data(b"")
    engine.receive_data(b"STARTTLS\r\nMAIL FROM:<x@y.example>\r\n")
    engine.receive_data(b"RCPT TO:<z@y.example>\r\n")  # arrives while answer pending
    engine.answer(replies.READY_TO_START_TLS)
    assert engine.receive_data(b"") == []
    assert engine.receive_data(b"DATA\r\n") == []  # plaintext before the handshake
    engine.tls_started()
    assert engine.receive_data(b"") == []
    assert engine.state.value == "fresh"
