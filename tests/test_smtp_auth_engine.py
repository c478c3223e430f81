"""SMTP AUTH in the sans-I/O server engine (RFC 4954): the dialogues, the checks the
engine makes alone, pipelining, and the session's side through sasl and
smtp.auth_exchange."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice import sasl
from postoffice.sasl import ScramSecrets, VerifyPassword
from postoffice.sasl.cram_md5 import cram_md5_digest
from postoffice.sasl.scram import client_proof, secrets_from_password
from postoffice.smtp import auth_exchange as ax
from postoffice.smtp import events as ev
from postoffice.smtp import replies
from postoffice.smtp.events import EngineConfig, Event
from postoffice.smtp.protocol import TRANSITIONS, ServerProtocol, State
from postoffice.smtp.replies import Reply

HOST = "mx.example.org"
MECHS = ("PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256")
CONFIG = EngineConfig(hostname=HOST, auth_mechanisms=MECHS, starttls=True)
USERS = {"bob": "secret", "tim": "tanstaaftanstaaf"}


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


class Users:
    def plaintext(self, user: str) -> str | None:
        return USERS.get(user)

    def scram_secrets(self, user: str) -> ScramSecrets | None:
        pw = USERS.get(user)
        return None if pw is None else secrets_from_password(pw, b"saltsalt", 4096)


def check(user: str, password: str) -> bool | None:
    return USERS.get(user) == password


class Session:
    """Answers the engine's events like a real session would, with sasl for AUTH."""

    def __init__(
        self, config: EngineConfig = CONFIG, *, verify: Callable[[str, str], bool | None] = check
    ) -> None:
        self.engine = ServerProtocol(config)
        self.engine.greeting(Reply(code=220, text=f"{HOST} ESMTP"))
        self.engine.data_to_send()
        self.exchange: sasl.Exchange | None = None
        self.events: list[Event] = []
        self.auth_at_mail: list[bool] = []
        self.verify = verify
        self.results: list[sasl.Step] = []

    def resolve(self, step: sasl.Step) -> Reply:
        assert self.exchange is not None
        while isinstance(step, VerifyPassword):
            step = self.exchange.verified(self.verify(step.authcid, step.password))
        if self.exchange.done:
            self.exchange = None
            self.results.append(step)
        return ax.reply_for(step)

    def answer_for(self, event: Event) -> Reply:
        if isinstance(event, ev.Hello):
            return Reply(code=250, text=HOST)
        if isinstance(event, ev.MailFrom):
            self.auth_at_mail.append(self.engine.authenticated)
            return replies.SENDER_OK
        if isinstance(event, ev.RcptTo):
            return replies.RECIPIENT_OK
        if isinstance(event, ev.DataStart):
            return replies.START_DATA
        if isinstance(event, ev.DataEnd):
            return replies.QUEUED
        if isinstance(event, ev.StartTLS):
            return replies.READY_TO_START_TLS
        if isinstance(event, ev.AuthStart):
            assert self.exchange is None
            self.exchange = sasl.start(
                event.mechanism,
                event.initial,
                credentials=Users(),
                hostname=HOST,
                token=lambda: "1896.697170952",
            )
            return self.resolve(self.exchange.step)
        if isinstance(event, ev.AuthResponse):
            assert self.exchange is not None
            return self.resolve(self.exchange.respond(event.data))
        return replies.NOT_IMPLEMENTED

    def feed(self, data: bytes) -> list[Event]:
        engine, new = self.engine, []
        events = engine.receive_data(data)
        while events:
            new.extend(events)
            for event in events:
                if isinstance(event, ev.AuthAborted | ev.Quit):
                    self.exchange = None
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

    def lines(self) -> list[str]:
        out = self.engine.data_to_send()
        if out:
            assert out.endswith(b"\r\n")
            for line in out[:-2].split(b"\r\n"):
                assert re.fullmatch(rb"[2-5]\d\d([ -].*)?", line, re.S), line
        return out.decode().split("\r\n")[:-1]

    def codes(self) -> list[int]:
        return [int(line[:3]) for line in self.lines() if line[3:4] != "-"]


def kinds(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


def greeted(config: EngineConfig = CONFIG) -> Session:
    s = Session(config)
    s.feed(b"EHLO client.example\r\n")
    s.lines()
    return s


# --- EHLO ------------------------------------------------------------------------------------


def test_ehlo_advertises_the_mechanisms() -> None:
    s = Session()
    s.feed(b"EHLO c\r\n")
    lines = s.lines()
    assert lines[-1] == "250 AUTH PLAIN LOGIN CRAM-MD5 SCRAM-SHA-256"
    assert "250-STARTTLS" in lines


def ehlo_lines(config: EngineConfig, *, tls: bool = False) -> list[str]:
    s = Session(config)
    if tls:
        s.feed(b"EHLO c\r\nSTARTTLS\r\n")
        s.lines()
    s.feed(b"EHLO c\r\n")
    return [line[4:] for line in s.lines()]


def test_ehlo_auth_keyword() -> None:
    assert "AUTH PLAIN LOGIN CRAM-MD5 SCRAM-SHA-256" in ehlo_lines(CONFIG)
    assert not any(w.startswith("AUTH") for w in ehlo_lines(EngineConfig(hostname=HOST)))
    lower = replace(CONFIG, auth_mechanisms=("plain",))
    assert "AUTH PLAIN" in ehlo_lines(lower)


def test_auth_requires_tls_hides_auth_until_starttls() -> None:
    config = replace(CONFIG, auth_requires_tls=True)
    assert not any(w.startswith("AUTH") for w in ehlo_lines(config))
    assert "AUTH PLAIN LOGIN CRAM-MD5 SCRAM-SHA-256" in ehlo_lines(config, tls=True)
    s = greeted(config)
    events = s.feed(b"AUTH PLAIN " + b64(b"\0bob\0secret") + b"\r\n")
    assert kinds(events) == ["CommandRejected"]
    assert s.lines() == ["538 5.7.11 Encryption required for requested authentication mechanism"]
    s.feed(b"STARTTLS\r\n")
    s.feed(b"EHLO c\r\n")
    s.lines()
    s.feed(b"AUTH PLAIN " + b64(b"\0bob\0secret") + b"\r\n")
    assert s.lines() == ["235 2.7.0 Authentication successful"]


def test_auth_not_offered_is_502() -> None:
    s = greeted(EngineConfig(hostname=HOST))
    events = s.feed(b"AUTH PLAIN AGJvYgBzZWNyZXQ=\r\n")
    assert kinds(events) == ["CommandRejected"]
    assert s.lines() == ["502 5.5.1 Command not implemented"]


# --- the dialogues ------------------------------------------------------------------------------


def test_plain_with_initial_response() -> None:
    s = greeted()
    assert not s.engine.authenticated
    events = s.feed(b"AUTH PLAIN " + b64(b"\0bob\0secret") + b"\r\n")
    assert events == [ev.AuthStart(mechanism="PLAIN", initial=b"\0bob\0secret")]
    assert s.lines() == ["235 2.7.0 Authentication successful"]
    assert s.engine.authenticated and s.engine.state is State.GREETED
    assert s.results == [sasl.Success(authcid="bob", authzid="bob")]


def test_plain_with_a_334_round() -> None:
    s = greeted()
    s.feed(b"auth plain\r\n")
    assert s.engine.data_to_send() == b"334 \r\n"  # RFC 4954 §4: "334" SP [base64]
    assert s.engine.state is State.AUTH and s.engine.awaiting == "command"
    events = s.feed(b64(b"\0bob\0secret") + b"\r\n")
    assert events == [ev.AuthResponse(data=b"\0bob\0secret")]
    assert s.codes() == [235]
    assert s.engine.authenticated


def test_login_dialogue() -> None:
    s = greeted()
    s.feed(b"AUTH LOGIN\r\n")
    assert s.lines() == ["334 VXNlcm5hbWU6"]
    s.feed(b64(b"bob") + b"\r\n")
    assert s.lines() == ["334 UGFzc3dvcmQ6"]
    s.feed(b64(b"secret") + b"\r\n")
    assert s.codes() == [235]


def test_login_with_initial_user_name() -> None:
    s = greeted()
    s.feed(b"AUTH LOGIN " + b64(b"bob") + b"\r\n")
    assert s.lines() == ["334 UGFzc3dvcmQ6"]
    s.feed(b64(b"secret") + b"\r\n")
    assert s.codes() == [235]


def test_cram_md5_dialogue() -> None:
    s = greeted()
    s.feed(b"AUTH CRAM-MD5\r\n")
    line = s.lines()[0]
    assert line.startswith("334 ")
    challenge = base64.b64decode(line[4:])
    assert challenge == b"<1896.697170952@mx.example.org>"
    s.feed(b64(b"tim " + cram_md5_digest("tanstaaftanstaaf", challenge)) + b"\r\n")
    assert s.codes() == [235]


def test_scram_dialogue_ends_with_an_empty_response() -> None:
    s = greeted()
    s.feed(b"AUTH SCRAM-SHA-256 " + b64(b"n,,n=bob,r=cnonce") + b"\r\n")
    server_first = base64.b64decode(s.lines()[0][4:]).decode()
    assert server_first.startswith("r=cnonce1896.697170952,s=")
    without = "c=biws,r=cnonce1896.697170952"
    auth = f"n=bob,r=cnonce,{server_first},{without}".encode()
    proof = client_proof("secret", b"saltsalt", 4096, auth)
    s.feed(b64(f"{without},p={base64.b64encode(proof).decode()}".encode()) + b"\r\n")
    final = s.lines()
    assert final[0].startswith("334 ") and base64.b64decode(final[0][4:]).startswith(b"v=")
    assert not s.engine.authenticated
    s.feed(b"\r\n")  # the empty response
    assert s.codes() == [235]
    assert s.engine.authenticated


def test_wrong_password_is_535_and_may_retry() -> None:
    s = greeted()
    s.feed(b"AUTH PLAIN " + b64(b"\0bob\0wrong") + b"\r\n")
    assert s.lines() == ["535 5.7.8 Authentication credentials invalid"]
    assert not s.engine.authenticated and s.engine.state is State.GREETED
    s.feed(b"AUTH PLAIN " + b64(b"\0bob\0secret") + b"\r\n")
    assert s.codes() == [235]


def test_temporary_failure_is_454() -> None:
    s = Session(verify=lambda user, password: None)  # the user database is unavailable
    s.feed(b"EHLO c\r\n")
    s.lines()
    s.feed(b"AUTH PLAIN " + b64(b"\0bob\0secret") + b"\r\n")
    assert s.lines() == ["454 4.7.0 Temporary authentication failure"]


def test_empty_initial_response() -> None:
    s = greeted()
    events = s.feed(b"AUTH PLAIN =\r\n")
    assert events[0] == ev.AuthStart(mechanism="PLAIN", initial=b"")
    assert s.codes() == [535]  # an empty PLAIN message is malformed


def test_cancel_with_star() -> None:
    s = greeted()
    s.feed(b"AUTH LOGIN\r\n")
    s.lines()
    events = s.feed(b"*\r\n")
    assert events == [ev.AuthResponse(data=None)]
    assert s.lines() == ["501 5.0.0 Authentication cancelled"]
    assert s.engine.state is State.GREETED and not s.engine.authenticated
    s.feed(b"NOOP\r\n")
    assert s.codes() == [250]


def test_bad_base64_initial_response_is_refused_by_the_engine() -> None:
    s = greeted()
    events = s.feed(b"AUTH PLAIN not-base64!\r\n")
    assert kinds(events) == ["CommandRejected"]
    assert s.lines() == ["501 5.5.2 Cannot decode the base64 data"]


@pytest.mark.parametrize("line", [b"not base64", b"AGJvYg", b"A===", b"\xff\xfe"])
def test_bad_base64_response_aborts_the_exchange(line: bytes) -> None:
    s = greeted()
    s.feed(b"AUTH PLAIN\r\n")
    s.lines()
    events = s.feed(line + b"\r\n")
    assert events == [ev.AuthAborted(reply=ax.AUTH_BAD_BASE64)]
    assert s.lines() == ["501 5.5.2 Cannot decode the base64 data"]
    assert s.engine.state is State.GREETED and s.exchange is None
    s.feed(b"AUTH PLAIN " + b64(b"\0bob\0secret") + b"\r\n")
    assert s.codes() == [235]


def test_equals_and_spaces_in_a_response() -> None:
    s = greeted()
    s.feed(b"AUTH LOGIN\r\n")
    s.lines()
    s.feed(b"  " + b64(b"bob") + b" \r\n")
    assert s.lines() == ["334 UGFzc3dvcmQ6"]
    events = s.feed(b"=\r\n")
    assert events == [ev.AuthResponse(data=b"")]


def test_response_line_limit() -> None:
    s = greeted()
    s.feed(b"AUTH LOGIN\r\n")
    s.lines()
    longest = b64(b"u" * (ax.AUTH_LINE_LIMIT // 4 * 3))
    assert len(longest) == ax.AUTH_LINE_LIMIT
    events = s.feed(longest + b"\r\n")
    assert kinds(events) == ["AuthResponse"]  # 12288 octets are fine (RFC 4954 §4)


@pytest.mark.parametrize("pieces", [1, 3, 50])
def test_too_long_response_line_is_500_and_discarded(pieces: int) -> None:
    s = greeted()
    s.feed(b"AUTH LOGIN\r\n")
    s.lines()
    data = b"QUFB" * (ax.AUTH_LINE_LIMIT // 4 + 10) + b"\r\nNOOP\r\n"
    step = len(data) // pieces + 1
    events: list[Event] = []
    for i in range(0, len(data), step):
        events += s.feed(data[i : i + step])
    assert kinds(events) == ["AuthAborted"]
    assert s.lines() == ["500 5.5.6 Authentication exchange line is too long", "250 2.0.0 Ok"]
    assert s.engine.state is State.GREETED


def test_long_auth_command_line_is_accepted() -> None:
    s = greeted()
    password = b"p" * 1000
    s.feed(b"AUTH PLAIN " + b64(b"\0bob\0" + password) + b"\r\n")
    assert s.codes() == [535]  # parsed and checked (wrong password), not "line too long"


def test_unknown_mechanism_is_504() -> None:
    s = greeted(replace(CONFIG, auth_mechanisms=("PLAIN",)))
    s.feed(b"AUTH LOGIN\r\nAUTH GSSAPI\r\n")
    assert s.lines() == ["504 5.5.4 Unrecognized authentication type"] * 2


def test_auth_without_mechanism_is_501() -> None:
    s = greeted()
    s.feed(b"AUTH\r\nAUTH PLAIN a b\r\n")
    assert s.codes() == [501, 501]


# --- sequence ---------------------------------------------------------------------------------


def test_auth_before_ehlo_is_503() -> None:
    s = Session()
    s.feed(b"AUTH PLAIN\r\n")
    assert s.codes() == [503]


def test_auth_after_helo_is_503() -> None:
    s = Session()
    s.feed(b"HELO c\r\n")
    s.lines()
    s.feed(b"AUTH PLAIN\r\n")
    assert s.lines() == ["503 Send EHLO first"]  # no enhanced codes after HELO


@pytest.mark.parametrize(
    "setup",
    [
        b"MAIL FROM:<a@b.example>\r\n",
        b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n",
    ],
)
def test_auth_during_a_transaction_is_503(setup: bytes) -> None:
    s = greeted()
    s.feed(setup)
    s.lines()
    events = s.feed(b"AUTH PLAIN " + b64(b"\0bob\0secret") + b"\r\n")
    assert kinds(events) == ["CommandRejected"]
    assert s.lines() == ["503 5.5.1 Bad sequence of commands"]
    assert not s.engine.authenticated


def test_auth_after_success_is_503() -> None:
    s = greeted()
    s.feed(b"AUTH PLAIN " + b64(b"\0bob\0secret") + b"\r\n")
    s.lines()
    s.feed(b"AUTH PLAIN " + b64(b"\0tim\0tanstaaftanstaaf") + b"\r\n")
    assert s.lines() == ["503 5.5.1 Already authenticated"]
    assert s.results == [sasl.Success(authcid="bob", authzid="bob")]


def test_authentication_survives_rset_and_ehlo_but_not_starttls() -> None:
    s = greeted()
    s.feed(b"AUTH PLAIN " + b64(b"\0bob\0secret") + b"\r\n")
    s.feed(b"RSET\r\nEHLO again\r\n")
    assert s.engine.authenticated
    s.feed(b"STARTTLS\r\n")
    assert not s.engine.authenticated  # RFC 3207 §4.2
    s.feed(b"EHLO c\r\n")
    s.feed(b"AUTH PLAIN " + b64(b"\0bob\0secret") + b"\r\n")
    assert s.codes()[-1] == 235


def test_table_has_auth_state() -> None:
    assert TRANSITIONS[State.AUTH] == {}
    assert "AUTH" in TRANSITIONS[State.GREETED]
    for state in (State.FRESH, State.MAIL, State.RCPT, State.BDAT):
        assert "AUTH" not in TRANSITIONS[state]


def test_mail_auth_parameter_is_kept() -> None:
    s = greeted()
    events = s.feed(b"MAIL FROM:<a@b.example> AUTH=<>\r\n")
    assert isinstance(events[0], ev.MailFrom) and events[0].params.auth == "<>"
    s.feed(b"RSET\r\n")
    events = s.feed(b"MAIL FROM:<a@b.example> AUTH=bob+40b.example\r\n")
    assert isinstance(events[0], ev.MailFrom) and events[0].params.auth == "bob@b.example"


def test_eof_during_the_exchange() -> None:
    s = greeted()
    s.feed(b"AUTH LOGIN\r\n")
    assert kinds(s.engine.eof_received()) == ["Quit"]
    assert s.engine.closed


def test_aborted_exchanges_count_as_errors() -> None:
    s = greeted(replace(CONFIG, max_errors=2))
    events = s.feed(b"AUTH LOGIN\r\n!\r\nAUTH LOGIN\r\n!\r\nNOOP\r\n")
    assert kinds(events)[-2:] == ["AuthAborted", "Quit"]
    assert s.codes() == [334, 501, 334, 501, 421]


# --- pipelining (RFC 2920 §3.1, RFC 4954 §4) ---------------------------------------------------


def test_commands_pipelined_after_an_initial_response_run_authenticated() -> None:
    s = greeted()
    events = s.feed(b"AUTH PLAIN " + b64(b"\0bob\0secret") + b"\r\nMAIL FROM:<bob@example.org>\r\n")
    assert kinds(events) == ["AuthStart", "MailFrom"]
    assert s.auth_at_mail == [True]
    assert s.codes() == [235, 250]


def test_commands_pipelined_after_a_failed_auth_run_unauthenticated() -> None:
    s = greeted()
    s.feed(b"AUTH PLAIN " + b64(b"\0bob\0wrong") + b"\r\nMAIL FROM:<bob@example.org>\r\n")
    assert s.auth_at_mail == [False]
    assert s.codes() == [535, 250]


def test_a_command_after_a_334_is_a_response_never_a_command() -> None:
    s = greeted()
    events = s.feed(
        b"AUTH PLAIN\r\nMAIL FROM:<bob@example.org>\r\nRCPT TO:<x@example.org>\r\nQUIT\r\n"
    )
    # MAIL is consumed as a (bad) response; RCPT then has no MAIL; QUIT ends.
    assert kinds(events) == ["AuthStart", "AuthAborted", "CommandRejected", "Quit"]
    assert s.auth_at_mail == []
    assert s.codes() == [334, 501, 503, 221]


def test_login_pipelined_in_one_read() -> None:
    s = greeted()
    s.feed(b"AUTH LOGIN\r\n" + b64(b"bob") + b"\r\n" + b64(b"secret") + b"\r\nNOOP\r\n")
    assert s.codes() == [334, 334, 235, 250]


def test_nothing_is_parsed_while_auth_awaits_its_answer() -> None:
    engine = ServerProtocol(CONFIG)
    engine.greeting(Reply(code=220, text="x"))
    engine.receive_data(b"EHLO c\r\n")
    engine.answer(Reply(code=250, text=HOST))
    events = engine.receive_data(b"AUTH PLAIN\r\n*\r\nNOOP\r\n")
    assert kinds(events) == ["AuthStart"]
    assert engine.awaiting == "answer"
    assert engine.receive_data(b"") == []


# --- the session's answers are checked ----------------------------------------------------------


def pending_auth(line: bytes = b"AUTH LOGIN\r\n") -> ServerProtocol:
    engine = ServerProtocol(CONFIG)
    engine.greeting(Reply(code=220, text="x"))
    engine.receive_data(b"EHLO c\r\n")
    engine.answer(Reply(code=250, text=HOST))
    engine.receive_data(line)
    return engine


@pytest.mark.parametrize(
    "reply",
    [
        Reply(code=334, text="Username:"),
        Reply(code=334, enhanced="3.0.0", text="AAAA"),
        Reply(code=354, text="go"),
    ],
)
def test_bad_answers_raise(reply: Reply) -> None:
    engine = pending_auth()
    with pytest.raises(ValueError):
        engine.answer(reply)
    engine.answer(ax.challenge(b"Username:"))  # still pending: a good answer works
    assert engine.data_to_send().endswith(b"334 VXNlcm5hbWU6\r\n")


def test_a_cancelled_exchange_must_be_refused() -> None:
    engine = pending_auth()
    engine.answer(ax.challenge(b""))
    assert engine.receive_data(b"*\r\n") == [ev.AuthResponse(data=None)]
    for bad in (ax.AUTH_SUCCEEDED, ax.challenge(b"x")):
        with pytest.raises(ValueError):
            engine.answer(bad)
    engine.answer(ax.AUTH_CANCELLED)
    assert not engine.authenticated


def test_reply_for_every_step() -> None:
    assert ax.reply_for(sasl.Challenge(data=b"hi")) == Reply(code=334, text="aGk=")
    assert ax.reply_for(sasl.Success(authcid="a", authzid="a")).code == 235
    for kind, code in (
        ("credentials", 535),
        ("authorization", 535),
        ("malformed", 535),
        ("cancelled", 501),
        ("temporary", 454),
    ):
        failure = sasl.Failure(kind=kind, reason="r")  # type: ignore[arg-type]
        assert ax.reply_for(failure).code == code
    with pytest.raises(ValueError):
        ax.reply_for(VerifyPassword(authcid="a", authzid="a", password="p"))


# --- any split, any bytes --------------------------------------------------------------------


DIALOGUE = (
    b"EHLO c\r\nAUTH LOGIN\r\n"
    + b64(b"bob")
    + b"\r\n"
    + b64(b"wrong")
    + b"\r\nAUTH PLAIN\r\n*\r\nAUTH PLAIN\r\nbad!\r\nAUTH PLAIN "
    + b64(b"\0bob\0secret")
    + b"\r\nMAIL FROM:<bob@example.org>\r\nAUTH LOGIN\r\nQUIT\r\n"
)


def run(data: bytes, cuts: list[int]) -> tuple[list[Event], list[str]]:
    s = Session()
    points = sorted({min(c, len(data)) for c in cuts})
    for a, b in zip([0, *points], [*points, len(data)], strict=True):
        s.feed(data[a:b])
    return s.events, s.lines()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, len(DIALOGUE)), max_size=8))
def test_same_dialogue_whatever_the_split(cuts: list[int]) -> None:
    whole = run(DIALOGUE, [])
    assert run(DIALOGUE, cuts) == whole
    assert [line[:3] for line in whole[1] if line[3:4] != "-"] == [
        "250", "334", "334", "535", "334", "501", "334", "501", "235", "250", "503", "221",
    ]  # fmt: skip


_tokens = st.sampled_from(
    [
        b"EHLO c\r\n",
        b"AUTH PLAIN\r\n",
        b"AUTH LOGIN\r\n",
        b"AUTH CRAM-MD5\r\n",
        b"AUTH SCRAM-SHA-256\r\n",
        b"AUTH PLAIN " + b64(b"\0bob\0secret") + b"\r\n",
        b"AUTH PLAIN =\r\n",
        b"*\r\n",
        b"=\r\n",
        b"\r\n",
        b64(b"bob") + b"\r\n",
        b64(b"secret") + b"\r\n",
        b64(b"n,,n=bob,r=x") + b"\r\n",
        b"MAIL FROM:<a@b.example>\r\n",
        b"RSET\r\n",
        b"STARTTLS\r\n",
        b"x" * 300,
        b"\r",
        b"\n",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_tokens, max_size=25))
def test_fuzz_auth_token_streams(tokens: list[bytes]) -> None:
    s = Session(replace(CONFIG, max_errors=10))
    s.feed(b"".join(tokens))
    s.events.extend(s.engine.eof_received())
    s.lines()
    assert s.engine.closed


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_inside_an_exchange(data: bytes) -> None:
    s = greeted()
    s.feed(b"AUTH SCRAM-SHA-256\r\n")
    s.feed(data)
    s.lines()
