"""Tests for postoffice.smtp.commands: command lines and ESMTP parameters."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postoffice.smtp import commands as c
from postoffice.smtp import replies
from postoffice.smtp.events import MailParams, RcptParams
from postoffice.smtp.replies import Reply


def parse(line: bytes, **kw: object) -> c.Command:
    return c.parse_command(line, **kw)  # type: ignore[arg-type]


def error(line: bytes, **kw: object) -> Reply:
    with pytest.raises(c.CommandError) as info:
        parse(line, **kw)
    return info.value.reply


# --- verbs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"HELO client.example", c.Hello(verb="HELO", domain="client.example")),
        (b"ehlo client.example", c.Hello(verb="EHLO", domain="client.example")),
        (b"EhLo [192.0.2.1]", c.Hello(verb="EHLO", domain="[192.0.2.1]")),
        (b"LHLO client.example", c.Hello(verb="LHLO", domain="client.example")),
        (b"DATA", c.Data(verb="DATA")),
        (b"data", c.Data(verb="DATA")),
        (b"RSET", c.Rset(verb="RSET")),
        (b"QUIT", c.Quit(verb="QUIT")),
        (b"STARTTLS", c.StartTls(verb="STARTTLS")),
        (b"NOOP", c.Noop(verb="NOOP", argument="")),
        (b"NOOP hello there", c.Noop(verb="NOOP", argument="hello there")),
        (b"HELP", c.Help(verb="HELP", argument="")),
        (b"HELP MAIL", c.Help(verb="HELP", argument="MAIL")),
        (b"VRFY bob", c.Vrfy(verb="VRFY", argument="bob")),
        (b"EXPN staff", c.Expn(verb="EXPN", argument="staff")),
        (b"ETRN example.org", c.Etrn(verb="ETRN", argument="example.org")),
        (b"AUTH PLAIN", c.Auth(verb="AUTH", mechanism="PLAIN", initial_response=None)),
        (
            b"AUTH plain AGFAYg==",
            c.Auth(verb="AUTH", mechanism="PLAIN", initial_response="AGFAYg=="),
        ),
        (b"BDAT 0 LAST", c.Bdat(verb="BDAT", size=0, last=True)),
        (b"BDAT 1000", c.Bdat(verb="BDAT", size=1000, last=False)),
        (b"bdat 12 last", c.Bdat(verb="BDAT", size=12, last=True)),
        (b"SEND FROM:<a@b.example>", c.Obsolete(verb="SEND")),
        (b"SOML", c.Obsolete(verb="SOML")),
        (b"SAML", c.Obsolete(verb="SAML")),
        (b"TURN", c.Obsolete(verb="TURN")),
        (b"XYZZY", c.Unknown(verb="XYZZY")),
        (b"", c.Unknown(verb="")),
        (b"   ", c.Unknown(verb="")),
        (b"MAIL:FROM", c.Unknown(verb="MAIL:FROM")),
        (b"\xff\xfe", c.Unknown(verb="\ufffd\ufffd")),
    ],
)
def test_verbs(line: bytes, expected: c.Command) -> None:
    assert parse(line) == expected


@pytest.mark.parametrize(
    "line",
    [b"HELO", b"EHLO", b"EHLO   ", b"DATA x", b"RSET now", b"STARTTLS x", b"VRFY", b"EXPN"],
)
def test_argument_errors(line: bytes) -> None:
    assert error(line) == replies.PARAM_SYNTAX


@pytest.mark.parametrize(
    "line", [b"BDAT", b"BDAT x", b"BDAT -1", b"BDAT 1 MORE", b"BDAT 1 LAST x", b"BDAT " + b"9" * 21]
)
def test_bdat_errors(line: bytes) -> None:
    assert error(line) == replies.PARAM_SYNTAX


def test_auth_errors() -> None:
    assert error(b"AUTH") == replies.PARAM_SYNTAX
    assert error(b"AUTH PLAIN a b") == replies.PARAM_SYNTAX


def test_hello_control_characters_refused() -> None:
    assert error(b"EHLO bad\x01host") == replies.PARAM_SYNTAX
    assert parse(b"EHLO host.example extra words") == c.Hello(verb="EHLO", domain="host.example")


def test_split_verb() -> None:
    assert c.split_verb(b"mail FROM:<>") == ("MAIL", b"FROM:<>")
    assert c.split_verb(b"QUIT") == ("QUIT", b"")
    assert c.split_verb(b"x1 y") == ("", b"y")
    assert c.split_verb(b"") == ("", b"")


# --- MAIL ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "sender"),
    [
        (b"MAIL FROM:<a@b.example>", "a@b.example"),
        (b"mail from:<a@B.Example>", "a@b.example"),
        (b"MAIL FROM: <a@b.example>", "a@b.example"),  # Postfix-style leniency
        (b"MAIL FROM:a@b.example", "a@b.example"),  # no brackets
        (b"MAIL FROM:<>", ""),
        (b"MAIL FROM:<@r.example:a@b.example>", "a@b.example"),
        (b'MAIL FROM:<"x y"@b.example>', '"x y"@b.example'),
        (b"MAIL FROM:<a@b.example>   ", "a@b.example"),
    ],
)
def test_mail_paths(line: bytes, sender: str) -> None:
    cmd = parse(line)
    assert isinstance(cmd, c.Mail)
    assert cmd.sender == sender
    assert cmd.params == MailParams()


def test_mail_params_full() -> None:
    cmd = parse(
        b"MAIL FROM:<a@b.example> size=1000 BODY=8bitmime SMTPUTF8 RET=hdrs "
        b"ENVID=QQ+2B1 AUTH=a+40b.example"
    )
    assert isinstance(cmd, c.Mail)
    assert cmd.params == MailParams(
        size=1000, body="8BITMIME", smtputf8=True, ret="HDRS", envid="QQ+1", auth="a@b.example"
    )


def test_mail_auth_null() -> None:
    cmd = parse(b"MAIL FROM:<a@b.example> AUTH=<>")
    assert isinstance(cmd, c.Mail)
    assert cmd.params.auth == "<>"


def test_mail_utf8_address() -> None:
    line = "MAIL FROM:<jöran@exämple.org> SMTPUTF8".encode()
    cmd = parse(line)
    assert isinstance(cmd, c.Mail)
    assert cmd.sender == "jöran@exämple.org"
    # RFC 6531 §3.5: without SMTPUTF8 → 553 5.6.7
    assert error("MAIL FROM:<jöran@example.org>".encode()) == replies.NON_ASCII_ADDRESS
    assert error(b"MAIL FROM:<j\xffran@example.org>") == replies.NON_ASCII_ADDRESS
    # with SMTPUTF8 but invalid UTF-8: a syntax error
    assert error(b"MAIL FROM:<j\xffran@example.org> SMTPUTF8") == replies.BAD_SENDER_SYNTAX


def test_binarymime_needs_chunking_and_switch() -> None:
    cmd = parse(b"MAIL FROM:<a@b.example> BODY=BINARYMIME")
    assert isinstance(cmd, c.Mail) and cmd.params.body == "BINARYMIME"
    no_chunking = c.Features(chunking=False, binarymime=True)
    assert error(b"MAIL FROM:<> BODY=BINARYMIME", features=no_chunking) == (
        replies.PARAM_UNRECOGNIZED
    )
    assert error(b"MAIL FROM:<> BODY=BINARYMIME", features=c.Features()) == (
        replies.PARAM_UNRECOGNIZED
    )


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"MAIL", replies.PARAM_SYNTAX),
        (b"MAIL TO:<a@b.example>", replies.PARAM_SYNTAX),
        (b"MAIL FROM:", replies.BAD_SENDER_SYNTAX),
        (b"MAIL FROM:<a@b.example", replies.BAD_SENDER_SYNTAX),
        (b"MAIL FROM:<a@b.example>SIZE=1", replies.BAD_SENDER_SYNTAX),
        (b"MAIL FROM:<a b@b.example>", replies.BAD_SENDER_SYNTAX),
        (b"MAIL FROM:<postmaster>", replies.BAD_SENDER_SYNTAX),
        (b"MAIL FROM:<a@b.example> SIZE=", replies.PARAM_SYNTAX),
        (b"MAIL FROM:<a@b.example> SIZE", replies.PARAM_SYNTAX),
        (b"MAIL FROM:<a@b.example> SIZE=12x", replies.PARAM_SYNTAX),
        (b"MAIL FROM:<a@b.example> SIZE=" + b"1" * 21, replies.PARAM_SYNTAX),
        (b"MAIL FROM:<a@b.example> SIZE=1 SIZE=2", replies.PARAM_SYNTAX),
        (b"MAIL FROM:<a@b.example> size=1 SIZE=1", replies.PARAM_SYNTAX),
        (b"MAIL FROM:<a@b.example> BODY=9BIT", replies.PARAM_SYNTAX),
        (b"MAIL FROM:<a@b.example> BODY", replies.PARAM_SYNTAX),
        (b"MAIL FROM:<a@b.example> SMTPUTF8=yes", replies.PARAM_SYNTAX),
        (b"MAIL FROM:<a@b.example> RET=ALL", replies.PARAM_SYNTAX),
        (b"MAIL FROM:<a@b.example> ENVID=", replies.PARAM_SYNTAX),
        (b"MAIL FROM:<a@b.example> ENVID=a+zz", replies.PARAM_SYNTAX),
        (b"MAIL FROM:<a@b.example> ENVID=a+4", replies.PARAM_SYNTAX),
        (b"MAIL FROM:<a@b.example> ENVID=" + b"x" * 101, replies.PARAM_SYNTAX),
        (b"MAIL FROM:<a@b.example> ENVID=a=b", replies.PARAM_SYNTAX),
        (b"MAIL FROM:<a@b.example> AUTH=", replies.PARAM_SYNTAX),
        (b"MAIL FROM:<a@b.example> -X=1", replies.PARAM_SYNTAX),
        (b"MAIL FROM:<a@b.example> X_Y=1", replies.PARAM_SYNTAX),
        (b"MAIL FROM:<a@b.example> =1", replies.PARAM_SYNTAX),
        (b"MAIL FROM:<a@b.example> SIZE=\x01", replies.PARAM_SYNTAX),
        (b"MAIL FROM:<a@b.example> XFOO=1", replies.PARAM_UNRECOGNIZED),
        (b"MAIL FROM:<a@b.example> NOTIFY=NEVER", replies.PARAM_UNRECOGNIZED),
        (b"MAIL FROM:<a@b.example> BODY=8BITMIME", None),
    ],
)
def test_mail_errors(line: bytes, reply: Reply | None) -> None:
    if reply is None:
        parse(line)
    else:
        assert error(line) == reply


@pytest.mark.parametrize(
    ("param", "features"),
    [
        ("SIZE=1", c.Features(size=False)),
        ("BODY=8BITMIME", c.Features(eightbitmime=False)),
        ("SMTPUTF8", c.Features(smtputf8=False)),
        ("RET=FULL", c.Features(dsn=False)),
        ("ENVID=x", c.Features(dsn=False)),
    ],
)
def test_disabled_extensions_are_555(param: str, features: c.Features) -> None:
    line = f"MAIL FROM:<a@b.example> {param}".encode()
    assert error(line, features=features) == replies.PARAM_UNRECOGNIZED
    parse(line)  # fine with everything on


# --- RCPT ---------------------------------------------------------------------------


def test_rcpt() -> None:
    cmd = parse(b"RCPT TO:<x@Y.example>")
    assert cmd == c.Rcpt(verb="RCPT", recipient="x@y.example", params=RcptParams())
    cmd = parse(b"rcpt to: <Postmaster>")
    assert isinstance(cmd, c.Rcpt) and cmd.recipient == "postmaster"
    cmd = parse(b"RCPT TO:<@hop.example:x@y.example>")
    assert isinstance(cmd, c.Rcpt) and cmd.recipient == "x@y.example"


def test_rcpt_dsn_params() -> None:
    cmd = parse(b"RCPT TO:<x@y.example> NOTIFY=success,Failure ORCPT=rfc822;x+2By@y.example")
    assert isinstance(cmd, c.Rcpt)
    assert cmd.params == RcptParams(
        notify=frozenset({"SUCCESS", "FAILURE"}), orcpt="rfc822;x+y@y.example"
    )
    cmd = parse(b"RCPT TO:<x@y.example> NOTIFY=NEVER")
    assert isinstance(cmd, c.Rcpt) and cmd.params.notify == frozenset({"NEVER"})


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"RCPT TO:<>", replies.BAD_RCPT_SYNTAX),
        (b"RCPT TO:", replies.BAD_RCPT_SYNTAX),
        (b"RCPT FROM:<x@y.example>", replies.PARAM_SYNTAX),
        (b"RCPT TO:<x@y.example> NOTIFY=NEVER,SUCCESS", replies.PARAM_SYNTAX),
        (b"RCPT TO:<x@y.example> NOTIFY=SOMETIMES", replies.PARAM_SYNTAX),
        (b"RCPT TO:<x@y.example> NOTIFY=SUCCESS,SUCCESS", replies.PARAM_SYNTAX),
        (b"RCPT TO:<x@y.example> NOTIFY=SUCCESS,", replies.PARAM_SYNTAX),
        (b"RCPT TO:<x@y.example> NOTIFY", replies.PARAM_SYNTAX),
        (b"RCPT TO:<x@y.example> ORCPT=x@y.example", replies.PARAM_SYNTAX),
        (b"RCPT TO:<x@y.example> ORCPT=;x@y.example", replies.PARAM_SYNTAX),
        (b"RCPT TO:<x@y.example> ORCPT=rfc822;", replies.PARAM_SYNTAX),
        (b"RCPT TO:<x@y.example> ORCPT=rfc822;a+0Db", replies.PARAM_SYNTAX),
        (b"RCPT TO:<x@y.example> NOTIFY=NEVER NOTIFY=NEVER", replies.PARAM_SYNTAX),
        (b"RCPT TO:<x@y.example> SIZE=10", replies.PARAM_UNRECOGNIZED),
        (b"RCPT TO:<x@y.example> FOO", replies.PARAM_UNRECOGNIZED),
    ],
)
def test_rcpt_errors(line: bytes, reply: Reply) -> None:
    assert error(line) == reply


def test_rcpt_dsn_disabled() -> None:
    line = b"RCPT TO:<x@y.example> NOTIFY=NEVER"
    assert error(line, features=c.Features(dsn=False)) == replies.PARAM_UNRECOGNIZED


def test_rcpt_utf8_follows_transaction() -> None:
    line = "RCPT TO:<jöran@example.org>".encode()
    assert error(line) == replies.NON_ASCII_ADDRESS
    cmd = parse(line, smtputf8=True)
    assert isinstance(cmd, c.Rcpt) and cmd.recipient == "jöran@example.org"


# --- xtext --------------------------------------------------------------------------


def test_xtext() -> None:
    assert c.xtext_decode("abc") == "abc"
    assert c.xtext_decode("a+2Bb+3Dc") == "a+b=c"
    assert c.xtext_encode("a+b=c d") == "a+2Bb+3Dc+20d"
    for bad in ("a+2b", "a+", "a+G0", "a b", "a=b", "ä"):
        with pytest.raises(ValueError):
            c.xtext_decode(bad)


@given(st.text(max_size=40))
def test_fuzz_xtext_roundtrip(text: str) -> None:
    try:
        encoded = c.xtext_encode(text)
    except UnicodeEncodeError:  # lone surrogates have no UTF-8 form
        return
    assert c.xtext_decode(encoded) == text


@given(st.binary(max_size=120), st.booleans())
def test_fuzz_parse_command_never_crashes(line: bytes, utf8: bool) -> None:
    try:
        cmd = c.parse_command(line, smtputf8=utf8)
    except c.CommandError as exc:
        assert exc.reply.code in (501, 553, 555)
        return
    assert isinstance(cmd, c.Command)


_verbs = st.sampled_from(["MAIL FROM:", "RCPT TO:", "mail from: ", "EHLO ", "BDAT ", "VRFY "])
_tail = st.text(alphabet=st.sampled_from('<>@a.b"\\ =+,:;[]0123456789SIZEBODYNOTIFY'), max_size=40)


@given(_verbs, _tail)
def test_fuzz_structured_commands(verb: str, tail: str) -> None:
    try:
        cmd = c.parse_command((verb + tail).encode())
    except c.CommandError as exc:
        assert exc.reply.code in (501, 553, 555)
        return
    if isinstance(cmd, c.Mail):
        assert "\r" not in cmd.sender and " " not in cmd.sender.replace('" "', "")


def test_features_from_config() -> None:
    from postoffice.smtp.events import EngineConfig

    config = EngineConfig(hostname="h", dsn=False, chunking=False, binarymime=True)
    assert c.Features.from_config(config) == c.Features(dsn=False, chunking=False, binarymime=True)
