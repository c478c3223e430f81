"""Tests for postoffice.smtp.client_protocol and client_content: the sans-I/O ESMTP client."""

from __future__ import annotations

import base64
import email
import email.policy
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.smtp import events as sev
from postoffice.smtp import replies
from postoffice.smtp.client_content import (
    MAX_TEXT_LINE,
    Extensions,
    Recipient,
    Transaction,
    dot_stuff,
    normalise,
    prepare_content,
    to_7bit,
)
from postoffice.smtp.client_protocol import (
    CALLS,
    TRANSITIONS,
    AuthResult,
    ClientConfig,
    ClientProtocol,
    Closed,
    Event,
    Greeted,
    ReplyParser,
    ResetDone,
    State,
    TlsReady,
    TlsRefused,
    TransactionDone,
)
from postoffice.smtp.events import EngineConfig
from postoffice.smtp.protocol import ServerProtocol
from postoffice.smtp.replies import Reply

HELO = "client.example.org"
MESSAGE = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nHello.\r\n"
ALL = ("PIPELINING", "SIZE 1000000", "8BITMIME", "SMTPUTF8", "DSN", "CHUNKING", "STARTTLS")


def ehlo(*keywords: str) -> bytes:
    lines = ["mx.example.net Hello", *keywords]
    return b"".join(
        f"250{'-' if i < len(lines) - 1 else ' '}{line}\r\n".encode()
        for i, line in enumerate(lines)
    )


def greeted(*keywords: str) -> ClientProtocol:
    engine = ClientProtocol(ClientConfig(helo_name=HELO))
    assert engine.receive_data(b"220 mx.example.net ESMTP\r\n") == []
    assert engine.data_to_send() == f"EHLO {HELO}\r\n".encode()
    events = engine.receive_data(ehlo(*keywords))
    assert isinstance(events[0], Greeted)
    assert engine.state is State.READY
    return engine


def tx(*rcpts: str, content: bytes = MESSAGE, **kw: object) -> Transaction:
    recipients = tuple(Recipient(address=r) for r in rcpts or ("b@example.net",))
    return Transaction(sender="a@example.org", recipients=recipients, content=content, **kw)  # type: ignore[arg-type]


def done(events: list[Event]) -> TransactionDone:
    found = [e for e in events if isinstance(e, TransactionDone)]
    assert len(found) == 1, events
    return found[0]


def codes(d: TransactionDone) -> list[tuple[int, str]]:
    return [(r.reply.code, r.stage) for r in d.results]


# --- replies ------------------------------------------------------------------------------


def test_multiline_reply_split_anywhere_and_enhanced_codes() -> None:
    wire = b"250-2.1.0 first\r\n250-2.1.0 second\n250 2.1.0 last\r\n"
    for cut in range(len(wire)):
        parser = ReplyParser()
        got = parser.feed(wire[:cut]) + parser.feed(wire[cut:])
        assert got == [Reply(code=250, enhanced="2.1.0", text="first\nsecond\nlast")]
        assert parser.error is None


def test_enhanced_code_of_another_class_is_text() -> None:
    (reply,) = ReplyParser().feed(b"550 2.0.0 odd\r\n")
    assert reply == Reply(code=550, enhanced="", text="2.0.0 odd")
    (reply,) = ReplyParser().feed(b"250\r\n")
    assert reply == Reply(code=250, text="")


@pytest.mark.parametrize(
    "wire", [b"hello\r\n", b"25\r\n", b"250x\r\n", b"199 no\r\n", b"600 no\r\n", b"2500\r\n"]
)
def test_malformed_replies(wire: bytes) -> None:
    parser = ReplyParser()
    assert parser.feed(wire) == []
    assert parser.error is not None


def test_reply_line_and_count_limits() -> None:
    parser = ReplyParser()
    parser.feed(b"250-" + b"x" * 5000)
    assert parser.error == "reply line too long"
    parser = ReplyParser()
    parser.feed(b"250-x\r\n" * 1001)
    assert parser.error == "too many reply lines"


def test_control_characters_in_reply_text_are_replaced() -> None:
    (reply,) = ReplyParser().feed(b"250 a\x1b[31mb\x00c \xff\r\n")
    assert reply.text == "a?[31mb?c \ufffd"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=6))
def test_fuzz_reply_parser_is_split_invariant(data: bytes, cuts: list[int]) -> None:
    whole = ReplyParser()
    expected = whole.feed(data)
    parser = ReplyParser()
    got: list[Reply] = []
    last = 0
    for cut in [*sorted(c for c in cuts if c <= len(data)), len(data)]:
        got += parser.feed(data[last:cut])
        last = cut
    assert got == expected
    assert (parser.error is None) == (whole.error is None)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=8))
def test_fuzz_engine_never_raises_on_server_output(chunks: list[bytes]) -> None:
    engine = ClientProtocol(ClientConfig(helo_name=HELO))
    for chunk in [b"220 ok\r\n", *chunks]:
        engine.receive_data(chunk)
        engine.data_to_send()
        if engine.state is State.READY:
            engine.send_transaction(tx("x@y.example", "z@y.example"))
    engine.connection_lost()
    assert engine.closed


_reply_line = st.builds(
    lambda code, sep, text: f"{code}{sep}{text}\r\n".encode(),
    st.sampled_from([220, 250, 251, 354, 421, 450, 452, 500, 550, 554]),
    st.sampled_from(["-", " "]),
    st.text(alphabet="abc 2.0.1", max_size=12),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_reply_line, max_size=20))
def test_fuzz_transactions_always_end_with_one_result_per_recipient(lines: list[bytes]) -> None:
    engine = greeted("PIPELINING")
    events = engine.send_transaction(tx("a@x.example", "b@x.example", "c@x.example"))
    for line in lines:
        events += engine.receive_data(line)
    events += engine.connection_lost()
    d = done(events)
    assert len(d.results) == 3
    assert all(200 <= r.reply.code < 600 and r.reply.code // 100 != 3 for r in d.results)


# --- greeting, EHLO, HELO -------------------------------------------------------------------


def test_ehlo_extensions() -> None:
    engine = ClientProtocol(ClientConfig(helo_name=HELO))
    engine.receive_data(b"220-mx.example.net\r\n220 ESMTP\r\n")
    assert engine.data_to_send() == b"EHLO client.example.org\r\n"
    keywords = (*ALL, "AUTH PLAIN login", "AUTH=CRAM-MD5", "ENHANCEDSTATUSCODES", "X-FOO bar")
    (event,) = engine.receive_data(ehlo(*keywords))
    assert isinstance(event, Greeted)
    ext = event.extensions
    assert ext.esmtp and ext.size == 1000000 and ext.greeting == "mx.example.net Hello"
    assert ext.pipelining and ext.eightbitmime and ext.smtputf8 and ext.dsn
    assert ext.chunking and ext.starttls and ext.enhancedstatuscodes and not ext.binarymime
    assert ext.auth == {"PLAIN", "LOGIN", "CRAM-MD5"}
    assert "X-FOO" in ext.keywords


def test_size_without_limit() -> None:
    assert greeted("SIZE").extensions.size == 0
    assert greeted().extensions.size is None


@pytest.mark.parametrize("code", [500, 502, 504, 550])
def test_helo_fallback_after_5xx_to_ehlo(code: int) -> None:
    engine = ClientProtocol(ClientConfig(helo_name=HELO))
    engine.receive_data(b"220 old.example SMTP\r\n")
    engine.data_to_send()
    assert engine.receive_data(f"{code} what?\r\n".encode()) == []
    assert engine.data_to_send() == b"HELO client.example.org\r\n"
    (event,) = engine.receive_data(b"250 old.example\r\n")
    assert isinstance(event, Greeted) and not event.extensions.esmtp
    # no extensions: no SIZE=, no pipelining, DATA not BDAT
    assert engine.send_transaction(tx()) == []
    assert engine.data_to_send() == b"MAIL FROM:<a@example.org>\r\n"


@pytest.mark.parametrize(
    ("script", "stage"),
    [
        ([b"554 no service\r\n"], "greeting"),
        ([b"421 busy\r\n"], "greeting"),
        ([b"220 ok\r\n", b"421 bye\r\n"], "EHLO"),
        ([b"220 ok\r\n", b"451 later\r\n"], "EHLO"),
        ([b"220 ok\r\n", b"500 no\r\n", b"550 no\r\n"], "HELO"),
        ([b"354 what\r\n"], "greeting"),
    ],
)
def test_sessions_that_never_become_ready(script: list[bytes], stage: str) -> None:
    engine = ClientProtocol(ClientConfig(helo_name=HELO))
    events: list[Event] = []
    for chunk in script:
        events += engine.receive_data(chunk)
    (closed,) = events
    assert isinstance(closed, Closed) and closed.stage == stage
    assert engine.closed
    assert engine.receive_data(b"250 more\r\n") == []


def test_helo_name_cannot_inject() -> None:
    engine = ClientProtocol(ClientConfig(helo_name="evil\r\nRCPT TO:<x@y> host"))
    engine.receive_data(b"220 ok\r\n")
    assert engine.data_to_send() == b"EHLO evilRCPTTO:<x@y>host\r\n"


def test_calls_follow_the_table() -> None:
    engine = ClientProtocol(ClientConfig(helo_name=HELO))
    with pytest.raises(RuntimeError):
        engine.send_transaction(tx())
    with pytest.raises(RuntimeError):
        engine.quit()
    engine = greeted()
    with pytest.raises(RuntimeError):
        engine.starttls()  # not offered
    with pytest.raises(RuntimeError):
        engine.tls_started()
    engine.send_transaction(tx())
    with pytest.raises(RuntimeError):
        engine.send_transaction(tx())
    assert set(CALLS) == {State.READY, State.TLS_HANDSHAKE}
    for state, row in TRANSITIONS.items():
        assert set(row) <= {"2", "3", "4", "5"}, state


def test_unsolicited_reply_is_a_protocol_error() -> None:
    engine = greeted()
    (closed,) = engine.receive_data(b"250 surprise\r\n")
    assert isinstance(closed, Closed) and closed.reply.enhanced == "4.5.0"


# --- transactions ---------------------------------------------------------------------------


def test_transaction_without_pipelining_step_by_step() -> None:
    engine = greeted("SIZE 0")
    assert engine.send_transaction(tx("b@example.net", "c@example.net")) == []
    assert engine.data_to_send() == f"MAIL FROM:<a@example.org> SIZE={len(MESSAGE)}\r\n".encode()
    assert engine.awaiting == "reply"
    assert engine.receive_data(b"250 2.1.0 ok\r\n") == []
    assert engine.data_to_send() == b"RCPT TO:<b@example.net>\r\n"
    engine.receive_data(b"250 ok\r\n")
    assert engine.data_to_send() == b"RCPT TO:<c@example.net>\r\n"
    engine.receive_data(b"250 ok\r\n")
    assert engine.data_to_send() == b"DATA\r\n"
    engine.receive_data(b"354 go\r\n")
    assert engine.data_to_send() == MESSAGE + b".\r\n"
    assert engine.awaiting == "final"
    d = done(engine.receive_data(b"250 2.0.0 queued as X\r\n"))
    assert codes(d) == [(250, "end of DATA"), (250, "end of DATA")]
    assert d.results[0].reply.text == "queued as X" and d.content_sent
    assert engine.state is State.READY and engine.awaiting == "nothing"


def test_pipelining_sends_one_group() -> None:
    engine = greeted("PIPELINING", "DSN")
    engine.send_transaction(tx("b@example.net", "c@example.net"))
    assert engine.data_to_send() == (
        b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"
        b"RCPT TO:<c@example.net>\r\nDATA\r\n"
    )
    assert engine.receive_data(b"250 ok\r\n250 ok\r\n550 5.1.1 no such user\r\n354 go\r\n") == []
    assert engine.data_to_send() == MESSAGE + b".\r\n"
    d = done(engine.receive_data(b"250 2.0.0 ok\r\n"))
    assert codes(d) == [(250, "end of DATA"), (550, "RCPT TO")]
    assert d.results[1].reply.enhanced == "5.1.1"


def test_mixed_results_and_the_data_reply_for_all_accepted() -> None:
    engine = greeted("PIPELINING")
    engine.send_transaction(tx("a@x", "b@x", "c@x", "d@x"))
    engine.data_to_send()
    events = engine.receive_data(b"250 ok\r\n250 ok\r\n450 4.2.1 busy\r\n550 no\r\n250 ok\r\n")
    events += engine.receive_data(b"354 go\r\n")
    engine.data_to_send()
    d = done(events + engine.receive_data(b"452 4.3.1 disk full\r\n"))
    assert codes(d) == [
        (452, "end of DATA"),
        (450, "RCPT TO"),
        (550, "RCPT TO"),
        (452, "end of DATA"),
    ]


def test_data_refused() -> None:
    engine = greeted()
    engine.send_transaction(tx())
    for reply in (b"250 ok\r\n", b"250 ok\r\n"):
        engine.receive_data(reply)
    assert engine.data_to_send().endswith(b"DATA\r\n")
    d = done(engine.receive_data(b"554 5.7.1 go away\r\n"))
    assert codes(d) == [(554, "DATA")] and not d.content_sent
    # the server still holds the MAIL: the next transaction starts with RSET
    engine.send_transaction(tx())
    assert engine.data_to_send() == b"RSET\r\n"
    engine.receive_data(b"250 reset\r\n")
    assert engine.data_to_send().startswith(b"MAIL FROM:")


def test_all_recipients_refused_with_pipelining() -> None:
    engine = greeted("PIPELINING")
    engine.send_transaction(tx("a@x", "b@x"))
    engine.data_to_send()
    d = done(engine.receive_data(b"250 ok\r\n550 no\r\n551 no\r\n554 5.5.1 no valid rcpt\r\n"))
    assert codes(d) == [(550, "RCPT TO"), (551, "RCPT TO")]
    engine.send_transaction(tx())
    assert engine.data_to_send().startswith(b"RSET\r\nMAIL FROM:")  # pipelined too


def test_354_without_accepted_recipients_sends_only_the_dot() -> None:
    engine = greeted("PIPELINING")
    engine.send_transaction(tx())
    engine.data_to_send()
    assert engine.receive_data(b"250 ok\r\n550 no\r\n354 go ahead anyway\r\n") == []
    assert engine.data_to_send() == b".\r\n"
    d = done(engine.receive_data(b"554 no recipients\r\n"))
    assert codes(d) == [(550, "RCPT TO")] and not d.content_sent
    engine.send_transaction(tx())
    assert engine.data_to_send().startswith(b"MAIL FROM:")  # no RSET needed


def test_mail_refused_without_pipelining_sends_no_rcpt() -> None:
    engine = greeted()
    engine.send_transaction(tx("a@x", "b@x"))
    engine.data_to_send()
    d = done(engine.receive_data(b"553 5.1.8 bad sender\r\n"))
    assert codes(d) == [(553, "MAIL FROM"), (553, "MAIL FROM")]
    assert engine.data_to_send() == b""
    engine.send_transaction(tx())
    assert engine.data_to_send().startswith(b"MAIL FROM:")


def test_mail_refused_with_pipelining_ignores_the_rest() -> None:
    engine = greeted("PIPELINING")
    engine.send_transaction(tx("a@x"))
    engine.data_to_send()
    d = done(engine.receive_data(b"451 4.3.0 try later\r\n503 no mail\r\n503 no rcpt\r\n"))
    assert codes(d) == [(451, "MAIL FROM")]


def test_a_2xx_to_data_is_not_a_delivery() -> None:
    engine = greeted()
    engine.send_transaction(tx())
    engine.receive_data(b"250 ok\r\n")
    engine.receive_data(b"250 ok\r\n")
    events = engine.receive_data(b"250 sure\r\n")
    d = done(events)
    assert codes(d) == [(451, "session")] and engine.closed


def test_421_mid_transaction() -> None:
    engine = greeted("PIPELINING")
    engine.send_transaction(tx("a@x", "b@x", "c@x"))
    events = engine.receive_data(b"250 ok\r\n250 ok\r\n550 no\r\n421 4.3.2 shutting down\r\n")
    d = done(events)
    assert codes(d) == [(421, "session"), (550, "RCPT TO"), (421, "session")]
    assert isinstance(events[-1], Closed) and engine.closed


def test_connection_lost_mid_data() -> None:
    engine = greeted("PIPELINING")
    engine.send_transaction(tx("a@x", "b@x"))
    engine.receive_data(b"250 ok\r\n250 ok\r\n550 no\r\n354 go\r\n")
    events = engine.connection_lost()
    d = done(events)
    assert codes(d) == [(451, "session"), (550, "RCPT TO")] and d.content_sent
    assert d.results[0].reply.enhanced == "4.4.2"
    assert "message may be sent more than once" in d.results[0].reply.text
    assert isinstance(events[-1], Closed)
    timed = greeted()
    timed.send_transaction(tx())
    (d2, _closed) = timed.connection_lost(timed_out=True)
    assert isinstance(d2, TransactionDone)
    assert d2.results[0].reply.text == "Conversation timed out while sending MAIL FROM"


def test_protocol_error_mid_transaction() -> None:
    engine = greeted("PIPELINING")
    engine.send_transaction(tx())
    events = engine.receive_data(b"250 ok\r\ngarbage\r\n")
    assert codes(done(events)) == [(451, "session")]
    assert isinstance(events[-1], Closed) and events[-1].reply.enhanced == "4.5.0"


def test_bdat_when_chunking_is_offered() -> None:
    engine = greeted("PIPELINING", "CHUNKING")
    content = b"Subject: x\r\n\r\n.leading dot\r\n"
    engine.send_transaction(tx("a@x", "b@x", content=content))
    assert (
        engine.data_to_send() == b"MAIL FROM:<a@example.org>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\n"
    )
    engine.receive_data(b"250 ok\r\n250 ok\r\n")
    assert engine.data_to_send() == b""
    engine.receive_data(b"550 no\r\n")
    assert engine.data_to_send() == b"BDAT %d LAST\r\n" % len(content) + content
    assert engine.awaiting == "final"
    d = done(engine.receive_data(b"250 2.0.0 ok\r\n"))
    assert codes(d) == [(250, "BDAT"), (550, "RCPT TO")]


def test_bdat_not_sent_when_every_rcpt_is_refused() -> None:
    engine = greeted("CHUNKING")
    engine.send_transaction(tx())
    engine.receive_data(b"250 ok\r\n")
    engine.data_to_send()
    d = done(engine.receive_data(b"550 no\r\n"))
    assert engine.data_to_send() == b"" and codes(d) == [(550, "RCPT TO")]


def test_dsn_parameters_only_when_offered() -> None:
    t = Transaction(
        sender="a@example.org",
        recipients=(
            Recipient(
                address="b@example.net",
                notify=frozenset({"FAILURE", "SUCCESS"}),
                orcpt="rfc822;b+x=y@example.net",
            ),
            Recipient(address="c@example.net", notify=frozenset({"NEVER"})),
        ),
        content=MESSAGE,
        ret="HDRS",
        envid="id+1 2",
    )
    engine = greeted("PIPELINING", "DSN")
    engine.send_transaction(t)
    assert engine.data_to_send().split(b"\r\n")[:3] == [
        b"MAIL FROM:<a@example.org> RET=HDRS ENVID=id+2B1+202",
        b"RCPT TO:<b@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b+2Bx+3Dy@example.net",
        b"RCPT TO:<c@example.net> NOTIFY=NEVER",
    ]
    engine = greeted("PIPELINING")
    engine.send_transaction(t)
    assert engine.data_to_send().split(b"\r\n")[:3] == [
        b"MAIL FROM:<a@example.org>",
        b"RCPT TO:<b@example.net>",
        b"RCPT TO:<c@example.net>",
    ]


def test_null_sender() -> None:
    engine = greeted()
    engine.send_transaction(
        Transaction(sender="", recipients=(Recipient(address="b@x"),), content=MESSAGE)
    )
    assert engine.data_to_send() == b"MAIL FROM:<>\r\n"


def test_size_refusal_before_sending() -> None:
    engine = greeted("SIZE 20", "PIPELINING")
    (event,) = engine.send_transaction(tx("a@x", "b@x"))
    assert isinstance(event, TransactionDone) and not event.content_sent
    assert codes(event) == [(552, "local"), (552, "local")]
    assert event.results[0].reply.enhanced == "5.3.4"
    assert engine.data_to_send() == b"" and engine.state is State.READY


def test_dot_stuffing_and_line_endings() -> None:
    assert dot_stuff(b".a\r\nb\r\n..c\r\n") == b"..a\r\nb\r\n...c\r\n.\r\n"
    assert normalise(b"a\nb\rc\r\n") == b"a\r\nb\r\nc\r\n"
    assert normalise(b"no final newline") == b"no final newline\r\n"
    # smuggling attempts become harmless content
    engine = greeted()
    engine.send_transaction(tx(content=b"Subject: x\n\nx\n.\nMAIL FROM:<evil>\r\n.\rRCPT\n"))
    engine.receive_data(b"250 ok\r\n")
    engine.receive_data(b"250 ok\r\n")
    engine.data_to_send()
    engine.receive_data(b"354 go\r\n")
    sent = engine.data_to_send()
    assert sent == (b"Subject: x\r\n\r\nx\r\n..\r\nMAIL FROM:<evil>\r\n..\r\nRCPT\r\n.\r\n")


def test_long_lines_are_broken() -> None:
    long_header = b"X-Long: " + b"h" * 2500 + b"\r\n"
    content = long_header + b"\r\n" + b"b" * 2100 + b"\r\nshort\r\n"
    out = normalise(content)
    lines = out.split(b"\r\n")
    assert max(map(len, lines)) <= MAX_TEXT_LINE
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.replace(b"\r\n ", b"") == long_header[:-2]
    assert body.replace(b"\r\n", b"", 2) == b"b" * 2100 + b"\r\nshort\r\n"


def test_bad_addresses_are_refused_locally() -> None:
    engine = greeted()
    (event,) = engine.send_transaction(tx("b@x>\r\nDATA"))
    assert isinstance(event, TransactionDone) and codes(event) == [(553, "local")]
    assert engine.data_to_send() == b""


# --- 8BITMIME, SMTPUTF8, BINARYMIME ---------------------------------------------------------

EIGHT_BIT = "Subject: grüße\r\n\r\nGrüße aus Köln.\r\n=not qp\r\n".encode()
EIGHT_BIT_BODY = (
    b"From: a@example.org\r\nSubject: x\r\n\r\n" + "Grüße aus Köln.\r\n=not qp \r\n".encode()
)


def test_8bit_to_an_8bitmime_peer_is_sent_unchanged() -> None:
    engine = greeted("8BITMIME")
    engine.send_transaction(tx(content=EIGHT_BIT_BODY, body="8BITMIME"))
    assert engine.data_to_send() == b"MAIL FROM:<a@example.org> BODY=8BITMIME\r\n"
    # a declared 8BITMIME with 7-bit content still says BODY=8BITMIME
    assert prepare_content(tx(body="8BITMIME"), Extensions(eightbitmime=True)).body == "8BITMIME"  # type: ignore[union-attr]
    assert prepare_content(tx(body="8BITMIME"), Extensions()).body is None  # type: ignore[union-attr]


def test_8bit_to_a_7bit_peer_is_converted_to_quoted_printable() -> None:
    prepared = prepare_content(tx(content=EIGHT_BIT_BODY, body="8BITMIME"), Extensions())
    assert not isinstance(prepared, Reply)
    assert prepared.body is None and prepared.content.isascii()
    assert b"MIME-Version: 1.0\r\n" in prepared.content
    assert b"Content-Transfer-Encoding: quoted-printable\r\n" in prepared.content
    msg = email.message_from_bytes(prepared.content, policy=email.policy.default)
    assert msg.get_payload(decode=True) == "Grüße aus Köln.\r\n=not qp \r\n".encode()


def test_8bit_multipart_is_converted_part_by_part() -> None:
    msg = EmailMessage()
    msg["Subject"] = "parts"
    msg.set_content("Text mit Umlauten: äöü\n", cte="8bit")
    msg.add_attachment(bytes(range(256)), maintype="application", subtype="octet-stream")
    inner = EmailMessage()
    inner["Subject"] = "inner"
    inner.set_content("innen: ß\n", cte="8bit")
    msg.add_attachment(inner)
    raw = msg.as_bytes(policy=email.policy.SMTP)
    # the attachment was base64 already; make the inner message raw 8-bit too
    assert not raw.isascii()
    converted = to_7bit(raw)
    assert converted is not None and converted.isascii()
    back = email.message_from_bytes(converted, policy=email.policy.default)
    assert isinstance(back, EmailMessage)
    parts = list(back.iter_parts())
    assert parts[0].get_content() == "Text mit Umlauten: äöü\r\n"  # type: ignore[attr-defined]
    assert parts[1].get_content() == bytes(range(256))  # type: ignore[attr-defined]
    nested = parts[2].get_content()  # type: ignore[attr-defined]
    assert nested.get_content() == "innen: ß\r\n"


def test_non_text_8bit_leaf_becomes_base64() -> None:
    entity = b"Content-Type: application/x-thing\r\n\r\n\x00\xff\xfe\r\n"
    converted = to_7bit(entity)
    assert converted is not None
    head, _, body = converted.partition(b"\r\n\r\n")
    assert b"Content-Transfer-Encoding: base64" in head
    assert base64.b64decode(body) == b"\x00\xff\xfe\r\n"


@pytest.mark.parametrize(
    "entity",
    [
        "Subject: grüße\r\n\r\nbody ü\r\n".encode(),  # 8-bit header
        b"Content-Type: multipart/mixed\r\n\r\n\xff\r\n",  # no boundary
        b"Content-Transfer-Encoding: base64\r\n\r\n\xff\r\n",  # lies about its encoding
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\npre \xff\r\n--b\r\n\r\nx\r\n--b--\r\n',
        b"Content-Type: message/partial\r\n\r\n\xff\r\n",
    ],
)
def test_unconvertible_8bit(entity: bytes) -> None:
    assert to_7bit(entity) is None
    engine = greeted("PIPELINING")
    (event,) = engine.send_transaction(tx(content=entity))
    assert isinstance(event, TransactionDone)
    assert [(r.reply.code, r.reply.enhanced) for r in event.results] == [(554, "5.6.3")]


def test_deep_nesting_gives_up() -> None:
    entity = b"\xff\r\n"
    for _ in range(30):
        entity = b"Content-Type: message/rfc822\r\n\r\n" + entity
    assert to_7bit(entity) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_to_7bit(entity: bytes) -> None:
    out = to_7bit(normalise(entity))
    assert out is None or out.isascii() or out == normalise(entity)


def test_smtputf8_required_and_absent() -> None:
    engine = greeted("8BITMIME")
    (event,) = engine.send_transaction(tx("jösé@exämple.org"))
    assert isinstance(event, TransactionDone)
    assert [(r.reply.code, r.reply.enhanced) for r in event.results] == [(553, "5.6.7")]
    # a UTF-8 header in an SMTPUTF8 message needs it too
    (event,) = engine.send_transaction(tx(content=EIGHT_BIT, smtputf8=True))
    assert isinstance(event, TransactionDone) and event.results[0].reply.enhanced == "5.6.7"


def test_smtputf8_offered() -> None:
    engine = greeted("8BITMIME", "SMTPUTF8")
    engine.send_transaction(tx("jösé@exämple.org", content=EIGHT_BIT, smtputf8=True))
    assert engine.data_to_send() == b"MAIL FROM:<a@example.org> BODY=8BITMIME SMTPUTF8\r\n"
    engine.receive_data(b"250 ok\r\n")
    assert engine.data_to_send() == "RCPT TO:<jösé@exämple.org>\r\n".encode()


def test_utf8_domain_alone_goes_as_a_labels() -> None:
    engine = greeted()
    engine.send_transaction(tx("bob@exämple.org"))
    engine.data_to_send()
    engine.receive_data(b"250 ok\r\n")
    assert engine.data_to_send() == b"RCPT TO:<bob@xn--exmple-cua.org>\r\n"


def test_binarymime() -> None:
    binary = b"Content-Type: application/octet-stream\r\n\r\n\x00\r\r\n\n"
    t = tx(content=binary, body="BINARYMIME")
    refused = prepare_content(t, Extensions(chunking=True, eightbitmime=True))
    assert isinstance(refused, Reply) and refused.enhanced == "5.6.3"
    engine = greeted("CHUNKING", "BINARYMIME")
    engine.send_transaction(t)
    assert engine.data_to_send() == b"MAIL FROM:<a@example.org> BODY=BINARYMIME\r\n"
    engine.receive_data(b"250 ok\r\n")
    engine.data_to_send()
    engine.receive_data(b"250 ok\r\n")
    assert engine.data_to_send() == b"BDAT %d LAST\r\n" % len(binary) + binary


# --- STARTTLS, AUTH, RSET, QUIT -------------------------------------------------------------


def test_starttls_then_ehlo_again() -> None:
    engine = greeted("STARTTLS", "PIPELINING")
    engine.starttls()
    assert engine.data_to_send() == b"STARTTLS\r\n"
    # a reply injected after the 220 (before the handshake) is never believed
    (event,) = engine.receive_data(b"220 2.0.0 go ahead\r\n250 injected\r\n")
    assert isinstance(event, TlsReady) and engine.state is State.TLS_HANDSHAKE
    assert engine.receive_data(b"250 more injection\r\n") == []
    engine.tls_started()
    assert engine.tls and engine.extensions == Extensions()
    assert engine.data_to_send() == f"EHLO {HELO}\r\n".encode()
    (event,) = engine.receive_data(ehlo("PIPELINING", "AUTH PLAIN"))
    assert isinstance(event, Greeted) and event.extensions.auth == {"PLAIN"}
    assert not event.extensions.starttls


def test_starttls_refused() -> None:
    engine = greeted("STARTTLS")
    engine.starttls()
    (event,) = engine.receive_data(b"454 4.7.0 TLS not available\r\n")
    assert isinstance(event, TlsRefused) and engine.state is State.READY and not engine.tls


def test_auth_plain_with_initial_response() -> None:
    engine = greeted("AUTH LOGIN PLAIN")
    assert engine.authenticate("user", "pässword", allow_plaintext=True) == []
    token = base64.b64encode("\0user\0pässword".encode())
    assert engine.data_to_send() == b"AUTH PLAIN " + token + b"\r\n"
    (event,) = engine.receive_data(b"235 2.7.0 Authentication successful\r\n")
    assert isinstance(event, AuthResult) and event.ok and engine.state is State.READY


def test_auth_login_steps() -> None:
    engine = greeted("AUTH LOGIN")
    engine.authenticate("user", "pw", allow_plaintext=True)
    assert engine.data_to_send() == b"AUTH LOGIN\r\n"
    engine.receive_data(b"334 VXNlcm5hbWU6\r\n")
    assert engine.data_to_send() == b"dXNlcg==\r\n"
    engine.receive_data(b"334 UGFzc3dvcmQ6\r\n")
    assert engine.data_to_send() == b"cHc=\r\n"
    engine.receive_data(b"334 more?\r\n")
    assert engine.data_to_send() == b"*\r\n"  # RFC 4954 §4: cancel
    (event,) = engine.receive_data(b"501 5.7.0 cancelled\r\n")
    assert isinstance(event, AuthResult) and not event.ok


def test_auth_refusals() -> None:
    engine = greeted("AUTH PLAIN")
    (event,) = engine.authenticate("u", "p")
    assert isinstance(event, AuthResult) and not event.ok and event.reply.enhanced == "4.7.0"
    assert engine.data_to_send() == b""
    (event,) = greeted("AUTH CRAM-MD5").authenticate("u", "p", allow_plaintext=True)
    assert isinstance(event, AuthResult) and not event.ok
    engine.authenticate("u", "p", allow_plaintext=True)
    engine.data_to_send()
    (event,) = engine.receive_data(b"535 5.7.8 bad credentials\r\n")
    assert isinstance(event, AuthResult) and not event.ok and event.reply.code == 535


def test_reset_and_quit() -> None:
    engine = greeted()
    engine.reset()
    assert engine.data_to_send() == b"RSET\r\n"
    (event,) = engine.receive_data(b"250 ok\r\n")
    assert isinstance(event, ResetDone)
    engine.quit()
    assert engine.data_to_send() == b"QUIT\r\n"
    (event,) = engine.receive_data(b"221 bye\r\n")
    assert isinstance(event, Closed) and event.stage == "QUIT" and engine.closed
    quiet = greeted()
    quiet.quit()
    (event,) = quiet.connection_lost()
    assert isinstance(event, Closed) and event.stage == "QUIT"
    idle = greeted()
    (event,) = idle.connection_lost()
    assert isinstance(event, Closed) and event.stage == "idle"


# --- against the server engine ----------------------------------------------------------------


class _Server:
    """smtp.protocol.ServerProtocol with a permissive session, in memory."""

    def __init__(self, config: EngineConfig) -> None:
        self.engine = ServerProtocol(config)
        self.engine.greeting(Reply(code=220, text="mx.example.net ESMTP"))
        self.messages: list[tuple[str, list[str], bytes]] = []
        self._rcpts: list[str] = []
        self._data: list[bytes] = []
        self._sender = ""

    def feed(self, data: bytes) -> bytes:
        events = self.engine.receive_data(data)
        while events:
            for event in events:
                reply = self._answer(event)
                if reply is not None:
                    self.engine.answer(reply)
            events = self.engine.receive_data(b"")
        return self.engine.data_to_send()

    def _answer(self, event: sev.Event) -> Reply | None:
        if isinstance(event, sev.Hello):
            return Reply(code=250, text="mx.example.net")
        if isinstance(event, sev.MailFrom):
            self._sender, self._rcpts, self._data = event.sender, [], []
            return replies.SENDER_OK
        if isinstance(event, sev.RcptTo):
            if event.recipient.startswith("bad"):
                return replies.USER_UNKNOWN
            self._rcpts.append(event.recipient)
            return replies.RECIPIENT_OK
        if isinstance(event, sev.DataStart):
            return replies.OK if event.bdat else replies.START_DATA
        if isinstance(event, sev.DataChunk):
            self._data.append(event.data)
        if isinstance(event, sev.DataEnd):
            self.messages.append((self._sender, self._rcpts, b"".join(self._data)))
            return replies.QUEUED
        return None


def _converse(client: ClientProtocol, server: _Server, events: list[Event]) -> list[Event]:
    for _ in range(50):
        out = client.data_to_send()
        if not out:
            return events
        events += client.receive_data(server.feed(out))
    raise AssertionError("no end")


@pytest.mark.parametrize("chunking", [True, False])
@pytest.mark.parametrize("pipelining", [True, False])
def test_against_our_server_engine(chunking: bool, pipelining: bool) -> None:
    config = EngineConfig(
        hostname="mx", chunking=chunking, pipelining=pipelining, max_message_size=10**6
    )
    server = _Server(config)
    client = ClientProtocol(ClientConfig(helo_name=HELO))
    events = _converse(client, server, client.receive_data(server.feed(b"")))
    assert isinstance(events[-1], Greeted)
    ext = events[-1].extensions
    assert ext.chunking == chunking and ext.pipelining == pipelining and ext.size == 10**6
    contents = [
        b"Subject: one\r\n\r\n.dot\r\n..two dots\r\nend\r\n",
        "Subject: zwei\r\n\r\nÜmlaut\r\n".encode(),
        b"Subject: three\r\n\r\n" + b"x" * 3000 + b"\r\n",
    ]
    rcpts = [("a@x", "bad@x", "b@x"), ("bad@x",), ("c@x",)]
    for content, rs in zip(contents, rcpts, strict=True):
        events = client.send_transaction(tx(*rs, content=content))
        d = done(_converse(client, server, events))
        assert [r.reply.code for r in d.results] == [
            550 if r.startswith("bad") else 250 for r in rs
        ]
    assert [m[1] for m in server.messages] == [["a@x", "b@x"], ["c@x"]]
    assert server.messages[0][2] == contents[0]
    assert server.messages[1][2] == normalise(contents[2])
    client.quit()
    events = _converse(client, server, [])
    assert isinstance(events[-1], Closed) and events[-1].reply.code == 221
