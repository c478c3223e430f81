"""Tests for postoffice.smtp.protocol: the sans-I/O SMTP server engine."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.smtp import events as ev
from postoffice.smtp import replies
from postoffice.smtp.events import EngineConfig, Event
from postoffice.smtp.protocol import (
    TRANSITIONS,
    ServerProtocol,
    State,
    ehlo_keywords,
    render_table,
)
from postoffice.smtp.replies import Reply

HOST = "mx.example.org"
Answer = Reply | Callable[[Event], Reply]


class FakeSession:
    """Drives the engine and answers every event like a permissive session.

    Recipients whose local part starts with "bad" are refused (550). Pass
    keyword arguments named after event classes to override an answer.
    """

    def __init__(self, config: EngineConfig | None = None, **answers: Answer) -> None:
        self.engine = ServerProtocol(config or EngineConfig(hostname=HOST))
        self.answers = answers
        self.events: list[Event] = []
        self.engine.greeting(Reply(code=220, text=f"{HOST} ESMTP"))
        self.greeting = self.engine.data_to_send()

    def answer_for(self, event: Event) -> Reply:
        override = self.answers.get(type(event).__name__)
        if override is not None:
            return override(event) if callable(override) else override
        if isinstance(event, ev.Hello):
            return Reply(code=250, text=HOST)
        if isinstance(event, ev.MailFrom):
            return replies.SENDER_OK
        if isinstance(event, ev.RcptTo):
            return (
                replies.USER_UNKNOWN
                if event.recipient.startswith("bad")
                else (replies.RECIPIENT_OK)
            )
        if isinstance(event, ev.DataStart):
            return replies.OK if event.bdat else replies.START_DATA
        if isinstance(event, ev.DataEnd):
            return replies.QUEUED
        if isinstance(event, ev.Verify):
            return replies.CANNOT_VRFY
        if isinstance(event, ev.StartTLS):
            return replies.READY_TO_START_TLS
        return replies.NOT_IMPLEMENTED

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
                engine.tls_started()  # as the adapter does after the handshake
            events = engine.receive_data(b"")
        self.events.extend(new)
        return new

    def lines(self) -> list[str]:
        out = self.engine.data_to_send()
        check_wellformed(out)
        return out.decode().split("\r\n")[:-1]

    def finals(self) -> list[str]:
        """The last line of each reply (multi-line replies collapsed)."""
        return [line for line in self.lines() if line[3:4] != "-"]

    def codes(self) -> list[int]:
        return [int(line[:3]) for line in self.finals()]


def check_wellformed(out: bytes) -> None:
    """Every reply line is `ddd[ -]text` CRLF, no stray CR/LF."""
    if not out:
        return
    assert out.endswith(b"\r\n")
    for line in out[:-2].split(b"\r\n"):
        assert b"\r" not in line and b"\n" not in line
        assert re.fullmatch(rb"[2-5]\d\d([ -].*)?", line, re.S), line


def ehlo() -> FakeSession:
    s = FakeSession()
    s.feed(b"EHLO client.example\r\n")
    s.lines()
    return s


def kinds(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


# --- greeting and EHLO ----------------------------------------------------------------


def test_greeting_has_no_enhanced_code() -> None:
    assert FakeSession().greeting == b"220 mx.example.org ESMTP\r\n"


@pytest.mark.parametrize("reply", [replies.TOO_MANY_CONNECTIONS, replies.SHUTTING_DOWN])
def test_refusing_greeting_closes(reply: Reply) -> None:
    engine = ServerProtocol(EngineConfig(hostname=HOST))
    engine.greeting(reply)
    assert engine.closed
    assert engine.data_to_send().startswith(b"421 ")
    assert engine.receive_data(b"EHLO x\r\n") == []


def test_ehlo_reply_lists_extensions() -> None:
    s = FakeSession()
    assert kinds(s.feed(b"EHLO client.example\r\n")) == ["Hello"]
    assert s.lines() == [
        "250-mx.example.org",
        "250-PIPELINING",
        "250-SIZE 36700160",
        "250-8BITMIME",
        "250-ENHANCEDSTATUSCODES",
        "250-SMTPUTF8",
        "250-DSN",
        "250 CHUNKING",
    ]
    assert s.engine.esmtp and s.engine.helo_domain == "client.example"


def test_ehlo_switches() -> None:
    off = EngineConfig(
        hostname=HOST,
        pipelining=False,
        chunking=False,
        dsn=False,
        smtputf8=False,
        eightbitmime=False,
        enhancedstatuscodes=False,
        advertise_size=False,
        starttls=True,
        extra_extensions=("AUTH PLAIN LOGIN",),
    )
    assert ehlo_keywords(off) == ("STARTTLS", "AUTH PLAIN LOGIN")
    assert ehlo_keywords(off, tls=True) == ("AUTH PLAIN LOGIN",)
    unlimited = EngineConfig(hostname=HOST, max_message_size=0, binarymime=True)
    assert "SIZE" in ehlo_keywords(unlimited)
    assert "BINARYMIME" in ehlo_keywords(unlimited)
    s = FakeSession(off)
    s.feed(b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\n")
    assert s.lines()[-1] == "250 Sender ok"  # no codes when switched off


def test_helo_reply_is_plain_and_no_enhanced_codes() -> None:
    s = FakeSession()
    s.feed(b"HELO client.example\r\nMAIL FROM:<a@b.example>\r\nFOO\r\n")
    assert s.lines() == [
        "250 mx.example.org",
        "250 Sender ok",
        "500 Syntax error, command unrecognized",
    ]
    assert not s.engine.esmtp


def test_enhanced_codes_after_ehlo() -> None:
    s = ehlo()
    s.feed(b"MAIL FROM:<a@b.example>\r\nFOO\r\nNOOP\r\n")
    assert s.lines() == [
        "250 2.1.0 Sender ok",
        "500 5.5.2 Syntax error, command unrecognized",
        "250 2.0.0 Ok",
    ]


def test_ehlo_rejected_keeps_no_esmtp() -> None:
    s = FakeSession(Hello=Reply(code=550, enhanced="5.7.1", text="Go away"))
    s.feed(b"EHLO spam.example\r\n")
    assert s.lines() == ["550 Go away"]
    assert not s.engine.esmtp and s.engine.state is State.FRESH


def test_hello_without_argument_is_501() -> None:
    s = FakeSession()
    events = s.feed(b"EHLO\r\nHELO \r\n")
    assert s.codes() == [501, 501]
    assert kinds(events) == ["CommandRejected", "CommandRejected"]


def test_commands_are_case_insensitive() -> None:
    s = FakeSession()
    events = s.feed(
        b"ehlo c.example\r\nmail from:<a@b.example>\r\nrCpT tO:<x@y.example>\r\ndata\r\n"
    )
    assert kinds(events) == ["Hello", "MailFrom", "RcptTo", "DataStart"]


def test_lmtp_mode() -> None:
    s = FakeSession(EngineConfig(hostname=HOST, lmtp=True))
    s.feed(b"EHLO c.example\r\nHELO c.example\r\nLHLO c.example\r\n")
    finals = s.finals()
    assert [f[:3] for f in finals] == ["500", "500", "250"]
    assert s.engine.esmtp
    s = FakeSession()
    s.feed(b"LHLO c.example\r\n")
    assert s.codes() == [500]


def test_lmtp_one_reply_per_recipient() -> None:
    # RFC 2033 §4.2
    engine = ServerProtocol(EngineConfig(hostname=HOST, lmtp=True))
    engine.greeting(Reply(code=220, text=HOST))
    dialogue = [
        (b"LHLO c\r\n", Reply(code=250, text=HOST)),
        (b"MAIL FROM:<a@b.example>\r\n", replies.SENDER_OK),
        (b"RCPT TO:<x@y.example>\r\n", replies.RECIPIENT_OK),
        (b"RCPT TO:<bad@y.example>\r\n", replies.USER_UNKNOWN),
        (b"RCPT TO:<z@y.example>\r\n", replies.RECIPIENT_OK),
        (b"DATA\r\n", replies.START_DATA),
    ]
    for line, reply in dialogue:
        engine.receive_data(line)
        engine.answer(reply)
    assert kinds(engine.receive_data(b"hi\r\n.\r\n")) == ["DataChunk", "DataEnd"]
    with pytest.raises(ValueError):
        engine.answer_each([replies.QUEUED])
    engine.data_to_send()
    engine.answer_each([replies.QUEUED, replies.MAILBOX_BUSY])
    assert (
        engine.data_to_send()
        == b"250 2.0.0 Ok: queued\r\n450 4.2.1 Mailbox temporarily unavailable\r\n"
    )
    assert engine.state is State.GREETED
    with pytest.raises(RuntimeError):
        engine.answer_each([])


# --- sequence rules -------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [b"MAIL FROM:<a@b.example>", b"RCPT TO:<x@y.example>", b"DATA", b"BDAT 0 LAST", b"STARTTLS"],
)
def test_before_helo_is_503(line: bytes) -> None:
    s = FakeSession(EngineConfig(hostname=HOST, starttls=True))
    events = s.feed(line + b"\r\n")
    assert s.lines() == ["503 Bad sequence of commands"]
    assert events == [
        ev.CommandRejected(command=line.split()[0].decode(), reply=replies.BAD_SEQUENCE)
    ]


def test_rcpt_before_mail_and_nested_mail() -> None:
    s = ehlo()
    s.feed(b"RCPT TO:<x@y.example>\r\nMAIL FROM:<a@b.example>\r\nMAIL FROM:<c@d.example>\r\n")
    assert s.codes() == [503, 250, 503]


def test_data_without_rcpt_is_503() -> None:
    s = ehlo()
    s.feed(b"MAIL FROM:<a@b.example>\r\nDATA\r\n")
    assert s.finals()[-1] == "503 5.5.1 Bad sequence of commands"


def test_data_after_all_rcpts_refused_is_554() -> None:
    s = ehlo()
    events = s.feed(
        b"MAIL FROM:<a@b.example>\r\nRCPT TO:<bad1@y.example>\r\nRCPT TO:<bad2@y.example>\r\n"
        b"DATA\r\n"
    )
    assert s.finals()[-1] == "554 5.5.1 No valid recipients"  # RFC 2920 §3.1
    assert kinds(events)[-1] == "CommandRejected"
    assert not any(isinstance(e, ev.DataStart) for e in events)


def test_rcpt_syntax_error_counts_as_issued() -> None:
    s = ehlo()
    s.feed(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<x y>\r\nDATA\r\n")
    assert s.codes() == [250, 501, 554]


def test_max_recipients() -> None:
    s = FakeSession(EngineConfig(hostname=HOST, max_recipients=2))
    s.feed(b"EHLO c\r\nMAIL FROM:<>\r\n")
    s.lines()
    s.feed(
        b"RCPT TO:<bad@y.example>\r\nRCPT TO:<a@y.example>\r\nRCPT TO:<b@y.example>\r\n"
        b"RCPT TO:<c@y.example>\r\n"
    )
    assert s.finals() == [
        "550 5.1.1 User unknown",
        "250 2.1.5 Recipient ok",
        "250 2.1.5 Recipient ok",
        "452 4.5.3 Too many recipients",
    ]


def test_size_above_limit_is_552() -> None:
    s = FakeSession(EngineConfig(hostname=HOST, max_message_size=1000))
    s.feed(b"EHLO c\r\n")
    s.lines()
    events = s.feed(b"MAIL FROM:<a@b.example> SIZE=1001\r\nMAIL FROM:<a@b.example> SIZE=1000\r\n")
    assert s.finals() == [
        "552 5.3.4 Message size exceeds fixed maximum message size",
        "250 2.1.0 Sender ok",
    ]
    assert kinds(events) == ["CommandRejected", "MailFrom"]


def test_utf8_addresses() -> None:
    s = ehlo()
    s.feed("MAIL FROM:<jö@b.example>\r\n".encode())
    assert s.finals() == ["553 5.6.7 Non-ASCII address requires SMTPUTF8"]
    s.feed("MAIL FROM:<a@b.example>\r\nRCPT TO:<jö@b.example>\r\n".encode())
    assert s.codes() == [250, 553]
    s.feed(b"RSET\r\n")
    events = s.feed("MAIL FROM:<jö@b.example> SMTPUTF8\r\nRCPT TO:<ü@b.example>\r\n".encode())
    assert [e.recipient for e in events if isinstance(e, ev.RcptTo)] == ["ü@b.example"]


def test_unknown_param_is_555_and_bad_value_501() -> None:
    s = ehlo()
    s.feed(b"MAIL FROM:<a@b.example> FOO=BAR\r\nMAIL FROM:<a@b.example> SIZE=x\r\n")
    assert s.codes() == [555, 501]


def test_new_ehlo_resets_transaction() -> None:
    s = ehlo()
    s.feed(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\n")
    events = s.feed(b"EHLO again.example\r\n")
    assert kinds(events) == ["Reset", "Hello"]
    s.lines()
    s.feed(b"RCPT TO:<x@y.example>\r\n")
    assert s.codes() == [503]
    assert s.engine.helo_domain == "again.example"


def test_rset() -> None:
    s = ehlo()
    s.feed(b"MAIL FROM:<a@b.example>\r\n")
    events = s.feed(b"RSET\r\nRCPT TO:<x@y.example>\r\n")
    assert kinds(events) == ["Reset", "CommandRejected"]
    assert s.finals()[-2:] == ["250 2.0.0 Reset state", "503 5.5.1 Bad sequence of commands"]
    fresh = FakeSession()
    fresh.feed(b"RSET\r\nMAIL FROM:<a@b.example>\r\n")
    assert fresh.codes() == [250, 503]  # RSET does not stand in for HELO


def test_noop_help_vrfy_expn() -> None:
    s = FakeSession()
    events = s.feed(b"NOOP\r\nHELP\r\nVRFY bob\r\nEXPN staff\r\n")
    assert kinds(events) == ["Verify", "Expand"]
    assert events[0] == ev.Verify(argument="bob")
    lines = s.lines()
    assert lines[0] == "250 Ok"
    assert lines[1].startswith("214-") and lines[3].startswith("214 ")
    assert lines[-2:] == [
        "252 Cannot VRFY user, but will accept message and attempt delivery",
        "502 Command not implemented",
    ]


def test_quit_ignores_everything_after() -> None:
    s = ehlo()
    events = s.feed(b"QUIT\r\nMAIL FROM:<a@b.example>\r\n")
    assert kinds(events) == ["Quit"]
    assert s.lines() == ["221 2.0.0 Bye"]
    assert s.engine.closed and s.engine.state is State.CLOSED
    assert s.feed(b"NOOP\r\n") == []
    assert s.engine.data_to_send() == b""
    assert s.engine.eof_received() == []


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"SEND FROM:<a@b.example>", 502),
        (b"SOML FROM:<a@b.example>", 502),
        (b"SAML FROM:<a@b.example>", 502),
        (b"TURN", 502),
        (b"AUTH PLAIN AGFAYg==", 502),
        (b"ETRN example.org", 502),
        (b"XYZZY", 500),
        (b"", 500),
        (b"MAIL:FROM:<a@b.example>", 500),
    ],
)
def test_unimplemented_and_unknown(line: bytes, code: int) -> None:
    s = ehlo()
    events = s.feed(line + b"\r\n")
    assert s.codes() == [code]
    assert kinds(events) == ["CommandRejected"]
    enhanced = "5.5.1" if code == 502 else "5.5.2"
    assert s.engine.data_to_send() == b""
    assert isinstance(events[0], ev.CommandRejected) and events[0].reply.enhanced == enhanced


def test_max_errors_closes_with_421() -> None:
    s = FakeSession(EngineConfig(hostname=HOST, max_errors=3))
    events = s.feed(b"FOO\r\nBAR\r\nBAZ\r\nNOOP\r\n")
    assert kinds(events) == ["CommandRejected"] * 3 + ["Quit"]
    assert s.codes() == [500, 500, 500, 421]
    assert s.engine.closed


def test_answer_without_event_is_a_bug() -> None:
    s = FakeSession()
    with pytest.raises(RuntimeError):
        s.engine.answer(replies.OK)


def test_answer_with_bogus_code_is_a_bug() -> None:
    s = FakeSession()
    s.engine.receive_data(b"EHLO c\r\n")
    with pytest.raises(ValueError):
        s.engine.answer(Reply(code=99, text="x"))


def test_reply_text_cannot_break_framing() -> None:
    s = FakeSession(Verify=Reply(code=252, enhanced="2.5.0", text="a\r\nMAIL\x00 b"))
    s.feed(b"VRFY x\r\n")
    assert s.lines() == ["252-a?", "252 MAIL? b"]  # "\n" splits lines, controls → "?"


def test_config_is_replaceable_between_commands() -> None:
    s = ehlo()
    s.feed(b"MAIL FROM:<a@b.example> SMTPUTF8\r\n")
    s.engine.config = replace(s.engine.config, smtputf8=False, max_recipients=0)
    s.feed(b"RSET\r\nMAIL FROM:<a@b.example> SMTPUTF8\r\nMAIL FROM:<a@b.example>\r\n")
    s.feed(b"RCPT TO:<x@y.example>\r\n")
    assert s.codes() == [250, 250, 555, 250, 452]


# --- line discipline -------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"NOOP\nMAIL FROM:<a@b.example>\r\n",
        b"NOOP\rMAIL FROM:<a@b.example>\r\n",
        b"MAIL FROM:<a@b.example>\n\r\n",
        b"MAIL FROM:<a@b.example>\r\r\n",
    ],
)
def test_bare_cr_or_lf_in_command(data: bytes) -> None:
    s = ehlo()
    events = s.feed(data)
    assert s.finals() == ["500 5.5.2 Bare <LF> or <CR> not allowed, use <CR><LF>"]
    assert kinds(events) == ["CommandRejected"]


def test_lf_alone_does_not_end_a_command() -> None:
    s = ehlo()
    assert s.feed(b"NOOP\n") == []
    assert s.lines() == []


def test_long_command_line_is_discarded() -> None:
    s = ehlo()
    long = b"NOOP " + b"x" * 600 + b" MAIL FROM:<a@b.example>\r\nNOOP\r\n"
    events = s.feed(long)
    assert kinds(events) == ["CommandRejected"]
    assert s.finals() == ["500 5.5.6 Line too long", "250 2.0.0 Ok"]


def test_long_command_line_in_pieces_keeps_buffer_small() -> None:
    s = ehlo()
    s.feed(b"NOOP " + b"y" * 400)
    assert s.lines() == []
    for _ in range(100):
        s.feed(b"z" * 1000)
        assert len(s.engine._buf) <= 1
    s.feed(b"\r")
    s.feed(b"\nRCPT TO:<x@y.example>\r\n")
    assert s.codes() == [500, 503]  # the tail was not executed; RCPT was


def test_command_line_limits() -> None:
    s = ehlo()
    s.feed(b"NOOP " + b"x" * 505 + b"\r\n")  # 512 octets with CRLF: fine
    s.feed(b"NOOP " + b"x" * 506 + b"\r\n")  # 513: too long
    assert s.codes() == [250, 500]
    # MAIL and RCPT may be longer (RFC 1870 §3, RFC 3461, RFC 4954 §5).
    s.feed(b"MAIL FROM:<a@b.example> ENVID=" + b"e" * 100 + b" AUTH=" + b"a" * 500 + b"\r\n")
    assert s.codes() == [250]


def test_line_split_across_reads() -> None:
    s = ehlo()
    for byte in b"MAIL FROM:<a@b.example>\r\n":
        s.feed(bytes([byte]))
    assert kinds(s.events)[-1] == "MailFrom"


# --- DATA ------------------------------------------------------------------------------


def transaction(s: FakeSession) -> None:
    s.feed(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\nDATA\r\n")
    s.lines()


def chunks(events: list[Event]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, ev.DataChunk))


def test_data_dot_unstuffing_and_end() -> None:
    s = ehlo()
    transaction(s)
    assert s.engine.awaiting == "data"
    events = s.feed(b"..leading\r\nmid..dle\r\n.\r\n")
    assert kinds(events) == ["DataChunk", "DataEnd"]
    assert chunks(events) == b".leading\r\nmid..dle\r\n"
    assert events[-1] == ev.DataEnd(size=len(b".leading\r\nmid..dle\r\n"))
    assert s.finals() == ["250 2.0.0 Ok: queued"]
    assert s.engine.state is State.GREETED
    s.feed(b"RCPT TO:<x@y.example>\r\nMAIL FROM:<a@b.example>\r\n")
    assert s.codes() == [503, 250]  # the transaction is over, HELO kept


def test_empty_message() -> None:
    s = ehlo()
    transaction(s)
    assert s.feed(b".\r\n") == [ev.DataEnd(size=0)]


def test_data_one_chunk_per_read() -> None:
    s = ehlo()
    transaction(s)
    events = s.feed(b"line\r\n" * 1000)
    assert kinds(events) == ["DataChunk"]
    events = s.feed(b"partial line")
    assert events == []
    events = s.feed(b" ends\r\n.\r\nNOOP\r\n")
    assert chunks(events) == b"partial line ends\r\n"
    assert s.codes() == [250, 250]


def test_data_split_at_every_point() -> None:
    message = b"Subject: x\r\n\r\n..a\r\n.b\r\n\r\n.\r.\n\r\nlast\r\n"
    wire = message.replace(b"\r\n.", b"\r\n..") + b".\r\n"
    for cut in range(len(wire) + 1):
        s = ehlo()
        transaction(s)
        events = s.feed(wire[:cut]) + s.feed(wire[cut:])
        assert kinds(events)[-1] == "DataAborted"  # message has a bare CR/LF
    message = b"Subject: x\r\n\r\n.a\r\n.\r\n..\r\nlast\r\n"
    wire = b"..".join(message.split(b".")) + b".\r\n"
    wire = b"Subject: x\r\n\r\n..a\r\n..\r\n...\r\nlast\r\n.\r\n"
    expected = b"Subject: x\r\n\r\n.a\r\n.\r\n..\r\nlast\r\n"
    for cut in range(len(wire) + 1):
        for cut2 in range(cut, len(wire) + 1, 7):
            s = ehlo()
            transaction(s)
            events = s.feed(wire[:cut]) + s.feed(wire[cut:cut2]) + s.feed(wire[cut2:])
            assert chunks(events) == expected
            assert events[-1] == ev.DataEnd(size=len(expected))


@pytest.mark.parametrize("bad", [b"a\nb\r\n", b"a\rb\r\n", b"ab\r\r\n", b"\n\r\n"])
def test_data_bare_cr_lf_refused(bad: bytes) -> None:
    s = ehlo()
    transaction(s)
    events = s.feed(b"ok\r\n")
    events += s.feed(bad + b"more\r\n.\r\nNOOP\r\n")
    assert kinds(events) == ["DataChunk", "DataAborted"]
    assert events[-1] == ev.DataAborted(reply=replies.DATA_BARE_LINE_ENDING)
    assert s.finals() == [
        "550 5.6.0 Message contains a bare <CR> or <LF>, use <CR><LF>",
        "250 2.0.0 Ok",
    ]
    assert s.engine.state is State.GREETED


def test_data_long_line_refused() -> None:
    s = ehlo()
    transaction(s)
    events = s.feed(b"x" * 998 + b"\r\n")  # exactly 1000 with CRLF: fine
    assert kinds(events) == ["DataChunk"]
    events = s.feed(b"y" * 999 + b"\r\n.\r\n")
    assert kinds(events) == ["DataAborted"]
    assert s.finals() == ["500 5.5.6 Message line too long"]


def test_data_line_limit_does_not_count_stuffed_dot() -> None:
    # RFC 5321 §4.5.3.1.6: "not counting the leading dot duplicated for
    # transparency": "." + 997 x's travels as 1001 octets with CRLF.
    line = b"." + b"x" * 997
    for pieces in ([b"." + line + b"\r\n.\r\n"], [b"." + line, b"\r\n.\r\n"]):
        s = ehlo()
        transaction(s)
        events = [e for piece in pieces for e in s.feed(piece)]
        assert chunks(events) == line + b"\r\n"
        assert s.finals() == ["250 2.0.0 Ok: queued"]
    s = ehlo()
    transaction(s)
    events = s.feed(b".." + line + b"\r\n.\r\n")
    assert events == [ev.DataAborted(reply=replies.DATA_LINE_TOO_LONG)]
    s = ehlo()
    transaction(s)
    events = s.feed(b"." + b"y" * 999)  # an unfinished unstuffed line: too long
    events += s.feed(b"\r\n.\r\n")
    assert events == [ev.DataAborted(reply=replies.DATA_LINE_TOO_LONG)]


def test_data_long_partial_line_is_not_buffered() -> None:
    s = ehlo()
    transaction(s)
    for _ in range(50):
        assert s.feed(b"z" * 4096) == []
        assert len(s.engine._buf) <= 1
    events = s.feed(b"\r\n.\r\n")
    assert events == [ev.DataAborted(reply=replies.DATA_LINE_TOO_LONG)]


def test_data_too_big() -> None:
    s = FakeSession(EngineConfig(hostname=HOST, max_message_size=100))
    s.feed(b"EHLO c\r\n")
    transaction(s)
    events = s.feed(b"a" * 60 + b"\r\n")
    events += s.feed(b"b" * 60 + b"\r\nMAIL FROM:<evil@x.example>\r\n.\r\n")
    assert kinds(events) == ["DataChunk", "DataAborted"]
    assert s.finals() == ["552 5.3.4 Message size exceeds fixed maximum message size"]


def test_data_refused_by_session_keeps_transaction() -> None:
    s = FakeSession(DataStart=Reply(code=451, enhanced="4.3.0", text="Later"))
    s.feed(b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<x@y.example>\r\nDATA\r\nRSET\r\n")
    assert s.codes() == [250, 250, 250, 451, 250]
    assert s.engine.awaiting == "command"


def test_data_end_refused_by_session_ends_transaction() -> None:
    s = FakeSession(DataEnd=Reply(code=554, enhanced="5.7.1", text="Spam"))
    s.feed(b"EHLO c\r\n")
    transaction(s)
    s.feed(b"x\r\n.\r\nRCPT TO:<x@y.example>\r\n")
    assert s.codes() == [554, 503]


# --- BDAT ------------------------------------------------------------------------------


def bdat_ready(config: EngineConfig | None = None, **answers: Answer) -> FakeSession:
    s = FakeSession(config, **answers)
    s.feed(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\n")
    s.lines()
    return s


def test_bdat_single_last() -> None:
    s = bdat_ready()
    events = s.feed(b"BDAT 5 LAST\r\nab\r\nc")
    assert kinds(events) == ["DataStart", "DataChunk", "DataEnd"]
    assert events[0] == ev.DataStart(bdat=True)
    assert chunks(events) == b"ab\r\nc"
    assert events[-1] == ev.DataEnd(size=5)
    assert s.finals() == ["250 2.0.0 Ok: queued"]
    assert s.engine.state is State.GREETED


def test_bdat_chunks_binary_no_dot_handling() -> None:
    s = bdat_ready()
    events = s.feed(b"BDAT 7\r\n.\r\n\n\r\x00.")
    events += s.feed(b"BDAT 3\r\nMAI")
    events += s.feed(b"BDAT 0 LAST\r\n")
    assert chunks(events) == b".\r\n\n\r\x00.MAI"
    assert events[-1] == ev.DataEnd(size=10)
    assert s.finals() == [
        "250 2.0.0 7 octets received",
        "250 2.0.0 3 octets received",
        "250 2.0.0 Ok: queued",
    ]


def test_bdat_zero_last() -> None:
    s = bdat_ready()
    events = s.feed(b"BDAT 0 LAST\r\n")
    assert events == [ev.DataStart(bdat=True), ev.DataEnd(size=0)]


def test_bdat_octets_split_across_reads() -> None:
    s = bdat_ready()
    events = s.feed(b"BDAT 10 LAST\r\n0123")
    assert s.engine.awaiting == "data"
    events += s.feed(b"456")
    events += s.feed(b"789NOOP\r\n")
    assert chunks(events) == b"0123456789"
    assert s.finals() == ["250 2.0.0 Ok: queued", "250 2.0.0 Ok"]


def test_data_after_bdat_is_503() -> None:
    s = bdat_ready()
    s.feed(b"BDAT 3\r\nabcDATA\r\n")
    assert s.codes() == [250, 503]


def test_bdat_size_limit() -> None:
    s = bdat_ready(EngineConfig(hostname=HOST, max_message_size=10))
    events = s.feed(b"BDAT 6\r\nabcdef")
    events += s.feed(b"BDAT 6\r\nghijkl")
    events += s.feed(b"BDAT 3 LAST\r\nmno")
    assert chunks(events) == b"abcdef"
    assert kinds(events)[-1] == "DataAborted"
    big = "552 5.3.4 Message size exceeds fixed maximum message size"
    assert s.finals() == ["250 2.0.0 6 octets received", big, big]
    assert s.engine.state is State.GREETED


def test_bdat_refused_by_session_still_consumes() -> None:
    s = bdat_ready(DataStart=Reply(code=452, enhanced="4.3.1", text="Full"))
    smuggled = b"MAIL FROM:<e@x.y>\r\n"
    events = s.feed(b"BDAT %d\r\n%sBDAT 4 LAST\r\nRCPTNOOP\r\n" % (len(smuggled), smuggled))
    assert kinds(events) == ["DataStart", "DataAborted"]
    assert s.codes() == [452, 452, 250]
    assert not any(isinstance(e, ev.MailFrom | ev.DataChunk) for e in events)


@pytest.mark.parametrize("prefix", [b"", b"MAIL FROM:<a@b.example>\r\n"])
def test_bdat_out_of_sequence_consumes_octets(prefix: bytes) -> None:
    s = ehlo()
    smuggled = b"MAIL FROM:<evil@x.example>\r\n"
    events = s.feed(prefix + b"BDAT %d\r\n%sNOOP\r\n" % (len(smuggled), smuggled))
    assert not any(isinstance(e, ev.MailFrom) for e in events[len(prefix) and 1 :])
    assert s.codes()[-2:] == [503, 250]


def test_bdat_all_refused_is_554_and_consumes() -> None:
    s = ehlo()
    s.feed(b"MAIL FROM:<>\r\nRCPT TO:<bad@y.example>\r\nBDAT 6 LAST\r\nQUIT\r\nNOOP\r\n")
    assert s.codes() == [250, 550, 554, 250]


def test_bdat_disabled_is_502_and_consumes() -> None:
    s = bdat_ready(EngineConfig(hostname=HOST, chunking=False))
    events = s.feed(b"BDAT 6\r\nQUIT\r\nNOOP\r\n")
    assert kinds(events) == ["CommandRejected"]
    assert s.codes() == [502, 250]


def test_binarymime_requires_bdat() -> None:
    s = FakeSession(EngineConfig(hostname=HOST, binarymime=True))
    s.feed(b"EHLO c\r\nMAIL FROM:<> BODY=BINARYMIME\r\nRCPT TO:<x@y.example>\r\nDATA\r\n")
    assert s.codes() == [250, 250, 250, 503]
    events = s.feed(b"BDAT 1 LAST\r\n\xff")
    assert chunks(events) == b"\xff"


# --- PIPELINING --------------------------------------------------------------------------


def test_pipelined_batch_replies_in_order() -> None:
    s = ehlo()
    events = s.feed(
        b"MAIL FROM:<a@b.example>\r\nRCPT TO:<one@y.example>\r\nRCPT TO:<bad@y.example>\r\n"
        b"RCPT TO:<x y>\r\nRCPT TO:<two@y.example>\r\nDATA\r\nHello\r\n"
    )
    assert kinds(events) == [
        "MailFrom",
        "RcptTo",
        "RcptTo",
        "CommandRejected",
        "RcptTo",
        "DataStart",
        "DataChunk",
    ]
    assert s.codes() == [250, 250, 550, 501, 250, 354]
    events = s.feed(b".\r\nMAIL FROM:<c@d.example>\r\nRCPT TO:<z@y.example>\r\nDATA\r\n.\r\n")
    assert kinds(events) == ["DataEnd", "MailFrom", "RcptTo", "DataStart", "DataEnd"]
    assert s.codes() == [250, 250, 250, 354, 250]


def test_engine_stops_at_each_question() -> None:
    engine = ServerProtocol(EngineConfig(hostname=HOST))
    engine.greeting(Reply(code=220, text=HOST))
    events = engine.receive_data(b"EHLO c\r\nMAIL FROM:<>\r\nNOOP\r\n")
    assert kinds(events) == ["Hello"] and engine.awaiting == "answer"
    assert engine.receive_data(b"RSET\r\n") == []  # only buffers
    engine.answer(Reply(code=250, text=HOST))
    assert kinds(engine.receive_data(b"")) == ["MailFrom"]
    engine.answer(replies.SENDER_OK)
    assert kinds(engine.receive_data(b"")) == ["Reset"]
    assert engine.data_to_send().decode().split("\r\n")[-4:] == [
        "250 2.1.0 Sender ok",
        "250 2.0.0 Ok",
        "250 2.0.0 Reset state",
        "",
    ]


def test_pipelined_input_is_capped() -> None:
    engine = ServerProtocol(EngineConfig(hostname=HOST, max_buffered_input=1000))
    engine.greeting(Reply(code=220, text=HOST))
    assert kinds(engine.receive_data(b"EHLO c\r\n")) == ["Hello"]
    engine.receive_data(b"NOOP\r\n" * 100)
    engine.receive_data(b"NOOP\r\n" * 100)
    assert len(engine._buf) <= 1000
    engine.answer(Reply(code=250, text=HOST))
    assert kinds(engine.receive_data(b"")) == ["Quit"]
    assert engine.closed
    assert engine.data_to_send().endswith(
        b"421 4.7.0 Too much pipelined input, closing connection\r\n"
    )


# --- STARTTLS, close, EOF ----------------------------------------------------------------


def test_starttls_not_offered_is_502() -> None:
    s = ehlo()
    s.feed(b"STARTTLS\r\n")
    assert s.codes() == [502]


def test_starttls_discards_pipelined_plaintext() -> None:
    s = FakeSession(EngineConfig(hostname=HOST, starttls=True))
    s.feed(b"EHLO c\r\n")
    assert "STARTTLS" in [line[4:] for line in s.lines()]
    events = s.feed(b"STARTTLS\r\nMAIL FROM:<evil@x.example>\r\nRCPT TO:<v@y.example>\r\n")
    assert kinds(events) == ["StartTLS"]
    assert s.lines() == ["220 2.0.0 Ready to start TLS"]
    assert s.engine.tls and not s.engine.esmtp and s.engine.helo_domain is None
    assert s.engine.state is State.FRESH
    s.feed(b"MAIL FROM:<a@b.example>\r\nEHLO c\r\n")
    lines = s.lines()
    assert lines[0] == "503 Bad sequence of commands"
    assert "250-STARTTLS" not in lines and "250 STARTTLS" not in lines
    s.feed(b"STARTTLS\r\n")
    assert s.finals() == ["503 5.5.1 TLS already active"]


def test_starttls_bytes_before_handshake_ignored() -> None:
    engine = ServerProtocol(EngineConfig(hostname=HOST, starttls=True))
    engine.greeting(Reply(code=220, text=HOST))
    engine.receive_data(b"EHLO c\r\n")
    engine.answer(Reply(code=250, text=HOST))
    assert kinds(engine.receive_data(b"")) == []
    assert kinds(engine.receive_data(b"STARTTLS\r\n")) == ["StartTLS"]
    engine.answer(replies.READY_TO_START_TLS)
    assert engine.receive_data(b"MAIL FROM:<evil@x.example>\r\n") == []
    engine.tls_started()
    assert engine.receive_data(b"") == []
    assert kinds(engine.receive_data(b"EHLO c\r\n")) == ["Hello"]


def test_starttls_refused_keeps_plaintext_session() -> None:
    s = FakeSession(
        EngineConfig(hostname=HOST, starttls=True),
        StartTLS=Reply(code=454, enhanced="4.7.0", text="TLS not available"),
    )
    s.feed(b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<a@b.example>\r\n")
    assert s.finals()[-2:] == ["454 4.7.0 TLS not available", "250 2.1.0 Sender ok"]
    assert not s.engine.tls


def test_close_queues_reply() -> None:
    s = ehlo()
    s.engine.close(replies.TIMEOUT)
    assert s.lines() == ["421 4.4.2 Timeout exceeded, closing connection"]
    assert s.engine.closed
    assert s.feed(b"NOOP\r\n") == []
    s.engine.close(replies.TIMEOUT)
    assert s.lines() == []


def test_eof() -> None:
    s = ehlo()
    assert s.engine.eof_received() == [ev.Quit()]
    s = ehlo()
    transaction(s)
    s.feed(b"partial\r\n")
    assert s.engine.eof_received() == [ev.Reset(), ev.Quit()]
    assert s.engine.closed


def test_answer_after_close_is_ignored() -> None:
    engine = ServerProtocol(EngineConfig(hostname=HOST))
    engine.greeting(Reply(code=220, text=HOST))
    engine.receive_data(b"EHLO c\r\n")
    assert engine.eof_received() == [ev.Reset(), ev.Quit()]
    engine.answer(Reply(code=250, text=HOST))
    assert engine.data_to_send().startswith(b"220")


def test_awaiting() -> None:
    s = ehlo()
    assert s.engine.awaiting == "command"
    s.engine.receive_data(b"MAIL FROM:<>\r\n")
    assert s.engine.awaiting == "answer"
    s.engine.answer(replies.SENDER_OK)
    transaction(s)
    assert s.engine.awaiting == "data"
    s.feed(b"x" * 2000)  # skipping an over-long line is still data
    assert s.engine.awaiting == "data"


# --- the state table ---------------------------------------------------------------------

SAMPLES = {
    "HELO": b"HELO c.example\r\n",
    "EHLO": b"EHLO c.example\r\n",
    "MAIL": b"MAIL FROM:<a@b.example>\r\n",
    "RCPT": b"RCPT TO:<x@y.example>\r\n",
    "DATA": b"DATA\r\n",
    "BDAT": b"BDAT 1\r\nx",
    "RSET": b"RSET\r\n",
    "NOOP": b"NOOP\r\n",
    "HELP": b"HELP\r\n",
    "VRFY": b"VRFY x\r\n",
    "EXPN": b"EXPN x\r\n",
    "QUIT": b"QUIT\r\n",
    "STARTTLS": b"STARTTLS\r\n",
}
REACH = {
    State.FRESH: b"",
    State.GREETED: b"EHLO c\r\n",
    State.MAIL: b"EHLO c\r\nMAIL FROM:<>\r\n",
    State.RCPT: b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<x@y.example>\r\n",
    State.BDAT: b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<x@y.example>\r\nBDAT 2\r\nab",
}


@pytest.mark.parametrize("state", list(REACH))
@pytest.mark.parametrize("verb", list(SAMPLES))
def test_walk_the_table(state: State, verb: str) -> None:
    s = FakeSession(EngineConfig(hostname=HOST, starttls=True))
    s.feed(REACH[state])
    assert s.engine.state is state
    s.lines()
    s.feed(SAMPLES[verb])
    code = s.codes()[0]
    legal = TRANSITIONS[state]
    if verb not in legal:
        assert code == 503
        return
    assert code != 503
    assert s.engine.state is legal[verb]


def test_table_covers_every_state() -> None:
    assert set(TRANSITIONS) == set(State)
    assert TRANSITIONS[State.DATA] == {} and TRANSITIONS[State.CLOSED] == {}
    for state in (State.FRESH, State.GREETED, State.MAIL, State.RCPT, State.BDAT):
        assert {"RSET", "NOOP", "HELP", "VRFY", "EXPN", "QUIT"} <= set(TRANSITIONS[state])


def test_render_table() -> None:
    table = render_table().splitlines()
    assert table[0].startswith("| state | AUTH | BDAT | DATA | EHLO |")
    assert len(table) == 2 + len(State)
    assert table[2].startswith("| fresh | 503 | 503 | 503 | greeted |")
    assert table[-1].startswith("| closed | - | - |")


def test_commands_inside_data_are_data() -> None:
    s = ehlo()
    transaction(s)
    events = s.feed(b"MAIL FROM:<e@x.example>\r\nQUIT\r\n.\r\n")
    assert kinds(events) == ["DataChunk", "DataEnd"]


# --- fuzzing -----------------------------------------------------------------------------

_tokens = st.sampled_from(
    [
        b"EHLO c\r\n",
        b"HELO c\r\n",
        b"MAIL FROM:<a@b.example>\r\n",
        b"MAIL FROM:<> SIZE=10 BODY=8BITMIME\r\n",
        b"RCPT TO:<x@y.example>\r\n",
        b"RCPT TO:<bad@y.example>\r\n",
        b"DATA\r\n",
        b"BDAT 3\r\n",
        b"BDAT 2 LAST\r\n",
        b"RSET\r\n",
        b"NOOP\r\n",
        b"STARTTLS\r\n",
        b"VRFY x\r\n",
        b"QUIT\r\n",
        b".\r\n",
        b"\r\n.\r\n",
        b"text\r\n",
        b"..dot\r\n",
        b"\n.\n",
        b"\r",
        b"\n",
        b"x" * 600,
        b"\x00\xff",
    ]
)


def _drive(data: bytes, cuts: list[int], config: EngineConfig) -> tuple[list[Event], bytes]:
    s = FakeSession(config)
    points = sorted({min(c, len(data)) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    quit_seen = False
    for piece in pieces:
        for event in s.feed(piece):
            assert not quit_seen, "event after Quit"
            quit_seen = quit_seen or isinstance(event, ev.Quit)
    s.events.extend(s.engine.eof_received())
    out = s.engine.data_to_send()
    check_wellformed(out)
    return s.events, out


def _merged(events: list[Event]) -> list[Event]:
    """Join adjacent DataChunks: chunking may differ, content may not. The
    content of an aborted message (DataAborted, or Reset at EOF) is dropped:
    how much of it was passed on before the fault showed up depends on the
    reads."""
    out: list[Event] = []
    for e in events:
        if isinstance(e, ev.DataAborted | ev.Reset) and out and isinstance(out[-1], ev.DataChunk):
            out.pop()
        if isinstance(e, ev.DataChunk) and out and isinstance(out[-1], ev.DataChunk):
            out[-1] = ev.DataChunk(data=out[-1].data + e.data)
        else:
            out.append(e)
    return out


_small = EngineConfig(
    hostname=HOST, starttls=True, max_message_size=200, max_errors=8, max_command_line=80,
    max_text_line=60,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=8))
def test_fuzz_random_bytes(data: bytes, cuts: list[int]) -> None:
    _drive(data, cuts, _small)


@settings(max_examples=300, deadline=None)
@given(st.lists(_tokens, max_size=30), st.lists(st.integers(0, 2000), max_size=10))
def test_fuzz_token_streams_same_events_any_split(tokens: list[bytes], cuts: list[int]) -> None:
    # STARTTLS is left out: the plaintext it discards depends on the split
    # by design (CVE-2011-0411); test_smtp_smuggling.py covers it.
    data = b"".join(t for t in tokens if t != b"STARTTLS\r\n")
    whole, out_whole = _drive(data, [], _small)
    split, out_split = _drive(data, cuts, _small)
    assert _merged(split) == _merged(whole)
    assert out_split == out_whole
