"""The POP3 engine (pop3/protocol.py), its replies and its state table, without sockets.

Covers the table walk (every verb in every state), line discipline, the
ordering of pipelined replies, STLS dropping pipelined plaintext, plaintext
logins refused before TLS, SASL continuations, error limits, byte-stuffing,
TOP's cut, and hypothesis fuzzing of the parser (any input, any split).
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.pop3 import docs as pop3_docs
from postoffice.pop3 import events as ev
from postoffice.pop3 import replies
from postoffice.pop3.events import EngineConfig
from postoffice.pop3.protocol import Pop3Protocol, decode_base64
from postoffice.pop3.replies import Challenge, Reply, render, stuff
from postoffice.pop3.session import top_of
from postoffice.pop3.states import TRANSITIONS, VERBS, State

MECHS = ("PLAIN", "LOGIN", "SCRAM-SHA-256", "CRAM-MD5")
OK = Reply(ok=True)
NO = Reply(ok=False, text="no")
DOCS = Path(__file__).resolve().parent.parent / "docs"


def engine(**kw: object) -> Pop3Protocol:
    config = EngineConfig(sasl_mechanisms=MECHS, **kw)  # type: ignore[arg-type]
    e = Pop3Protocol(config)
    e.greeting(Reply(ok=True, text="ready"))
    assert e.data_to_send() == b"+OK ready\r\n"
    return e


def logged_in(**kw: object) -> Pop3Protocol:
    e = engine(**kw)
    assert e.receive_data(b"USER a\r\nPASS b\r\n") == [ev.User(name="a")]
    e.answer(OK)
    assert e.receive_data(b"") == [ev.Pass(password="b")]
    e.answer(OK)
    assert e.state is State.TRANSACTION
    e.data_to_send()
    return e


def rejected(events: list[ev.Event]) -> list[Reply]:
    return [e.reply for e in events if isinstance(e, ev.CommandRejected)]


# -- the state table ----------------------------------------------------------------

ARGS = {"USER": " a", "PASS": " b", "APOP": " a " + "0" * 32, "AUTH": " PLAIN AGEAYg==",
        "LIST": "", "RETR": " 1", "DELE": " 1", "TOP": " 1 2", "UIDL": ""}  # fmt: skip


def in_state(state: State) -> Pop3Protocol:
    if state is State.TRANSACTION:
        return logged_in()
    e = engine()
    if state is State.USER:
        e.receive_data(b"USER a\r\n")
        e.answer(OK)
        e.data_to_send()
    assert e.state is state
    return e


@pytest.mark.parametrize("state", [State.AUTHORIZATION, State.USER, State.TRANSACTION])
@pytest.mark.parametrize("verb", sorted(VERBS))
def test_every_verb_in_every_command_state(state: State, verb: str) -> None:
    e = in_state(state)
    events = e.receive_data(f"{verb}{ARGS.get(verb, '')}\r\n".encode())
    out = e.data_to_send()
    if verb not in TRANSITIONS[state]:
        assert rejected(events) == [replies.BAD_COMMAND_STATE]
        assert out == b"-ERR Command not valid in this state.\r\n"
        return
    if verb in ("CAPA", "NOOP"):  # answered by the engine
        assert events == [] and out.startswith(b"+OK")
        return
    if verb == "STLS":  # not offered without a certificate
        assert rejected(events) == [replies.STLS_UNAVAILABLE]
        return
    assert len(events) == 1 and events[0].needs_answer and out == b""
    e.answer(OK)
    assert e.data_to_send() == b"+OK\r\n"
    expected = TRANSITIONS[state][verb]
    if verb == "QUIT":
        assert e.closed and e.finished
    else:
        assert e.state is expected, (state, verb)


def test_a_failed_login_returns_to_authorization() -> None:
    for line, event in ((b"PASS b\r\n", ev.Pass), (b"APOP a " + b"a" * 32 + b"\r\n", ev.Apop)):
        e = in_state(State.USER)
        events = e.receive_data(line)
        assert isinstance(events[0], event)
        e.answer(replies.AUTH_FAILED)
        assert e.state is State.AUTHORIZATION
        assert e.data_to_send() == b"-ERR [AUTH] Authentication failed.\r\n"


def test_any_command_but_pass_forgets_the_user() -> None:
    e = in_state(State.USER)
    e.receive_data(b"CAPA\r\n")
    assert e.state is State.AUTHORIZATION
    assert rejected(e.receive_data(b"PASS b\r\n")) == [replies.BAD_COMMAND_STATE]


def test_docs_are_current() -> None:
    assert (DOCS / "pop3.md").read_text() == pop3_docs.render_markdown(), (
        "docs/pop3.md is stale: run `python -m postoffice.pop3.docs > docs/pop3.md`"
    )


# -- lines ---------------------------------------------------------------------------


def test_keywords_are_case_insensitive_and_lf_alone_ends_a_line() -> None:
    e = engine()
    assert e.receive_data(b"uSeR alice\n") == [ev.User(name="alice")]


def test_pass_keeps_spaces() -> None:
    e = in_state(State.USER)
    assert e.receive_data(b"PASS  two words \r\n") == [ev.Pass(password=" two words ")]


def test_a_line_split_across_reads() -> None:
    e = logged_in()
    assert e.receive_data(b"RE") == []
    assert e.receive_data(b"TR 1") == []
    assert e.receive_data(b"2\r") == []
    assert e.receive_data(b"\n") == [ev.Retr(msg=12)]


def test_an_over_long_line_is_refused_and_its_rest_discarded() -> None:
    e = logged_in(max_command_line=64)
    assert rejected(e.receive_data(b"NOOP " + b"x" * 100)) == [replies.LINE_TOO_LONG]
    assert e.receive_data(b"x" * 500) == []
    assert e.receive_data(b"xx\r\nSTAT\r\n") == [ev.Stat()]
    assert e.data_to_send() == b"-ERR Command line too long.\r\n"


def test_auth_lines_may_be_longer() -> None:
    e = engine(max_command_line=64)
    blob = base64.b64encode(b"\0a\0" + b"p" * 300)
    events = e.receive_data(b"AUTH PLAIN " + blob + b"\r\n")
    assert events == [ev.AuthStart(mechanism="PLAIN", initial=b"\0a\0" + b"p" * 300)]


def test_non_utf8_arguments_and_non_ascii_verbs() -> None:
    e = engine()
    assert rejected(e.receive_data(b"USER \xff\r\n")) == [replies.SYNTAX_ERROR]
    assert rejected(e.receive_data("ÜSER a\r\n".encode())) == [replies.UNKNOWN_COMMAND]


def test_too_many_errors_close_the_connection() -> None:
    e = engine(max_errors=3)
    e.receive_data(b"A\r\nB\r\nC\r\nUSER a\r\n")
    assert e.closed and e.close_reason == "errors"
    assert e.data_to_send().endswith(b"-ERR Too many bad commands.\r\n")


# -- pipelining -------------------------------------------------------------------------


def test_authorization_stops_at_each_event_awaiting_an_answer() -> None:
    e = engine()
    assert e.receive_data(b"USER a\r\nPASS b\r\nSTAT\r\n") == [ev.User(name="a")]
    assert e.receive_data(b"") == []  # still waiting
    e.answer(OK)
    assert e.receive_data(b"") == [ev.Pass(password="b")]


def test_transaction_parses_ahead_and_keeps_reply_order() -> None:
    e = logged_in()
    events = e.receive_data(b"STAT\r\nNOOP\r\nBOGUS\r\nRETR 1\r\nCAPA\r\nQUIT\r\nSTAT\r\n")
    asks = [x for x in events if x.needs_answer]
    assert asks == [ev.Stat(), ev.Retr(msg=1), ev.Quit()]
    assert e.state is State.UPDATE
    assert e.data_to_send() == b""  # STAT's answer comes first
    e.answer(Reply(ok=True, text="1 5"))
    assert e.data_to_send() == b"+OK 1 5\r\n+OK\r\n-ERR Unknown command.\r\n"
    e.answer(Reply(ok=True, text="5 octets", body=b"a\r\n.b\r\n"))
    out = e.data_to_send()
    assert out.startswith(b"+OK 5 octets\r\na\r\n..b\r\n.\r\n+OK Capability list follows\r\n")
    e.answer(Reply(ok=True, text="bye"))
    assert e.data_to_send() == b"+OK bye\r\n"
    assert e.finished and e.receive_data(b"STAT\r\n") == []


def test_parse_ahead_is_bounded() -> None:
    e = logged_in(max_pipeline=3)
    events = e.receive_data(b"STAT\r\n" * 5)
    assert len(events) == 3
    for _ in range(3):
        e.answer(OK)
    assert len(e.receive_data(b"")) == 2


def test_input_piling_up_behind_unanswered_commands_closes() -> None:
    e = logged_in(max_pipeline=1, max_buffered_input=100)
    e.receive_data(b"RETR 1\r\n" + b"STAT\r\n" * 10)
    e.receive_data(b"STAT\r\n" * 50)
    e.answer(OK)
    assert e.closed and e.close_reason == "overflow"
    assert e.data_to_send().endswith(b"-ERR [SYS/PERM] Too much pipelined input.\r\n")


def test_answer_without_an_event_is_a_bug() -> None:
    with pytest.raises(RuntimeError):
        engine().answer(OK)


# -- STLS and plaintext logins ----------------------------------------------------------


def test_stls_drops_pipelined_plaintext() -> None:
    e = engine(stls=True)
    events = e.receive_data(b"STLS\r\nUSER evil\r\nPASS injected\r\n")
    assert events == [ev.Stls()]
    e.answer(replies.TLS_GO_AHEAD)
    assert e.upgrading
    assert e.data_to_send() == b"+OK Begin TLS negotiation now.\r\n"
    assert e.receive_data(b"USER more\r\n") == []  # nothing is read before the handshake
    e.tls_started()
    assert e.tls and e.state is State.AUTHORIZATION
    assert e.receive_data(b"CAPA\r\n") == []
    assert b"STLS" not in e.data_to_send()
    assert rejected(e.receive_data(b"STLS\r\n")) == [replies.NOT_AFTER_TLS]


def test_plaintext_logins_wait_for_tls() -> None:
    e = engine(stls=True, plaintext_requires_tls=True)
    e.receive_data(b"CAPA\r\n")
    capa = e.data_to_send().decode()
    assert "\r\nUSER\r\n" not in capa and "SASL SCRAM-SHA-256 CRAM-MD5\r\n" in capa
    assert "STLS" in capa
    assert rejected(e.receive_data(b"USER a\r\n")) == [replies.PLAINTEXT_DISALLOWED]
    assert rejected(e.receive_data(b"AUTH PLAIN AGEAYg==\r\n")) == [replies.PLAINTEXT_DISALLOWED]
    cram = ev.AuthStart(mechanism="CRAM-MD5", initial=None)
    assert e.receive_data(b"AUTH CRAM-MD5\r\n") == [cram]
    e.answer(NO)
    e.receive_data(b"STLS\r\n")
    e.answer(replies.TLS_GO_AHEAD)
    e.tls_started()
    assert e.receive_data(b"USER a\r\n") == [ev.User(name="a")]


# -- SASL -----------------------------------------------------------------------------------


def test_sasl_exchange() -> None:
    e = engine()
    assert e.receive_data(b"AUTH login\r\n") == [ev.AuthStart(mechanism="LOGIN", initial=None)]
    e.answer(Challenge(data=b"Username:"))
    assert e.state is State.SASL
    assert e.data_to_send() == b"+ VXNlcm5hbWU6\r\n"
    assert e.receive_data(b"YQ==\r\n") == [ev.AuthResponse(data=b"a")]
    e.answer(Challenge(data=b""))
    assert e.data_to_send() == b"+ \r\n"
    assert e.receive_data(b"*\r\n") == [ev.AuthResponse(data=None)]
    with pytest.raises(ValueError):
        e.answer(OK)  # a cancelled exchange must be refused
    e.answer(replies.AUTH_CANCELLED)
    assert e.state is State.AUTHORIZATION
    assert e.receive_data(b"AUTH PLAIN =\r\n") == [ev.AuthStart(mechanism="PLAIN", initial=b"")]
    e.answer(Challenge(data=b""))
    assert rejected(e.receive_data(b"@@@\r\n")) == [replies.BAD_BASE64]
    assert e.state is State.AUTHORIZATION


def test_a_challenge_answers_auth_only() -> None:
    e = engine()
    e.receive_data(b"USER a\r\n")
    with pytest.raises(ValueError):
        e.answer(Challenge(data=b"x"))


def test_decode_base64() -> None:
    assert decode_base64(b"=") == b""
    assert decode_base64(b"YQ==") == b"a"
    assert decode_base64(b"YQ") is None
    assert decode_base64(b"Y Q==") is None


# -- replies ------------------------------------------------------------------------------


def test_render() -> None:
    assert render(Reply(ok=False, code="IN-USE", text="locked")) == b"-ERR [IN-USE] locked\r\n"
    assert render(Reply(ok=True, text="a\r\nb")) == b"+OK a  b\r\n"
    assert render(Reply(ok=True, lines=())) == b"+OK\r\n.\r\n"
    assert render(Reply(ok=True, lines=("1 2",))) == b"+OK\r\n1 2\r\n.\r\n"
    assert render(Reply(ok=True, body=b"")) == b"+OK\r\n.\r\n"
    assert render(Reply(ok=True, body=b"no newline")) == b"+OK\r\nno newline\r\n.\r\n"


def unstuff(wire: bytes) -> bytes:
    """What a client does (RFC 1939 §3): drop the terminator, undo the stuffing."""
    assert wire.endswith(b".\r\n")
    lines = wire[:-3].split(b"\r\n")
    assert lines[-1] == b""
    for line in lines[:-1]:
        assert line != b".", "a lone dot inside the body would end it early"
    return b"\r\n".join(x[1:] if x.startswith(b".") else x for x in lines)


LINES = st.lists(st.sampled_from([b"", b".", b"..", b".x", b"x.", b"x", b" .", b"\t"]), max_size=12)


@given(LINES)
@settings(max_examples=200)
def test_stuffing_round_trips(lines: list[bytes]) -> None:
    body = b"".join(line + b"\r\n" for line in lines)
    assert unstuff(stuff(body)) == body


def test_top_of() -> None:
    m = b"A: 1\r\nB: 2\r\n\r\none\r\ntwo\r\nthree\r\n"
    assert top_of(m, 0) == b"A: 1\r\nB: 2\r\n\r\n"
    assert top_of(m, 2) == b"A: 1\r\nB: 2\r\n\r\none\r\ntwo\r\n"
    assert top_of(m, 3) == m
    assert top_of(m, 99) == m
    assert top_of(b"A: 1\r\n", 5) == b"A: 1\r\n"
    assert top_of(b"\r\nbody\r\nmore\r\n", 1) == b"\r\nbody\r\n"


# -- fuzzing -----------------------------------------------------------------------------

COMMANDS = st.sampled_from(
    [b"USER a", b"PASS b", b"APOP a " + b"f" * 32, b"AUTH PLAIN", b"AUTH", b"*", b"YQ==",
     b"STAT", b"LIST", b"LIST 1", b"RETR 1", b"DELE 2", b"TOP 1 0", b"UIDL", b"NOOP",
     b"RSET", b"CAPA", b"STLS", b"QUIT", b"RETR x", b"\xff\xfe", b"", b"A" * 300]
)  # fmt: skip


def drive(chunks: list[bytes], ok: bool) -> tuple[list[str], bytes]:
    """Feed chunks, answer every event the same way; the event names and the output."""
    e = Pop3Protocol(EngineConfig(sasl_mechanisms=MECHS, stls=True, max_command_line=128))
    e.greeting(Reply(ok=True))
    seen: list[str] = []
    out = e.data_to_send()
    for chunk in [*chunks, b""]:
        events = e.receive_data(chunk)
        while events:
            for event in events:
                seen.append(type(event).__name__)
                if not event.needs_answer:
                    continue
                cancelled = isinstance(event, ev.AuthResponse) and event.data is None
                e.answer(Reply(ok=ok and not cancelled, text="x"))
            if e.upgrading:
                e.tls_started()
            events = e.receive_data(b"")
        out += e.data_to_send()
    return seen, out


@given(st.lists(COMMANDS, max_size=25), st.booleans(), st.data())
@settings(max_examples=200)
def test_fuzz_any_split_gives_the_same_dialogue(
    commands: list[bytes], ok: bool, data: st.DataObject
) -> None:
    stream = b"".join(c + b"\r\n" for c in commands)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    whole = drive([stream], ok)
    if b"STLS" not in stream:  # STLS drops the rest of the read it came in
        assert drive(chunks, ok) == whole
    _, out = drive(chunks, ok)
    assert out == b"" or out.endswith(b"\r\n")


@given(st.binary(max_size=600), st.booleans())
@settings(max_examples=200)
def test_fuzz_random_bytes_never_raise(blob: bytes, ok: bool) -> None:
    _, out = drive([blob[:300], blob[300:]], ok)
    for line in out.split(b"\r\n")[:-1]:
        assert len(line) < 400
