"""smtp.auth_exchange — SMTP AUTH on the wire (RFC 4954): the engine's checks and replies (pure).

Description:
    The SMTP engine (smtp/protocol.py) uses this module for the AUTH
    command and its exchange; the session uses `reply_for` and `challenge`
    to answer. The SASL mechanisms themselves live in sasl/.

    The dialogue (RFC 4954 §4):
        C: AUTH mechanism [initial-response]
        S: 334 base64-challenge       (any number of rounds)
        C: base64-response | "*"
        S: 235 2.7.0 | 535 5.7.8 | 454 4.7.0 | 501 ...

    start_event(command, config, ...) -> AuthStart | Reply
        Checks an AUTH command: refused with 503 5.5.1 before EHLO (AUTH is
        an extension, RFC 5321 §4.1.1.1 / RFC 4954 §3) and once
        authenticated (RFC 4954 §4: "a server MUST reject any further AUTH
        commands with a 503 reply"); 504 5.5.4 for a mechanism not offered
        (§4); 538 5.7.11 when AUTH is offered only under TLS and the
        session is not encrypted (§6); 501 5.5.2 when the initial response
        is not base64 (§4). "=" is a zero-length initial response (§4).
        Otherwise the AuthStart event, with the decoded initial response.
        When EngineConfig.auth_mechanisms is empty AUTH is not offered and
        the engine answers 502 5.5.1 (RFC 5321 §4.2.4: not implemented),
        as for STARTTLS, BDAT or ETRN when they are off.

    response_event(line) -> AuthResponse | Reply
        One response line after a 334: "*" cancels (AuthResponse(data=None);
        the session must answer 501, §4), otherwise base64 (an empty line
        or "=" is an empty response); anything else is 501 5.5.2.
        Lines may be AUTH_LINE_LIMIT octets long without CRLF (§4: 12288);
        a longer one is 500 5.5.6 (§6) and the rest of it is discarded
        unread. The same limit applies to the AUTH command line, whose
        initial response RFC 4954 §4 would keep within 512 octets; clients
        such as Python's smtplib send long ones anyway.

    check_answer(event, reply) / format_challenge(reply)
        The session answers AuthStart/AuthResponse with `challenge(data)`
        (334 + base64, sent as `334 SP base64`, with no enhanced status
        code: §4's continue-req), a 2xx (success: the engine is then
        authenticated), or a 4xx/5xx (the exchange is over). A 3xx other
        than 334, or a 334 whose text is not base64, is a session bug
        (ValueError), as is any 2xx/3xx after the client cancelled.

    reply_for(step) maps a sasl Step to its reply: Challenge → 334,
    Success → 235 2.7.0, Failure by kind: credentials/authorization/
    malformed → 535 5.7.8, cancelled → 501 5.0.0, temporary → 454 4.7.0.

Pipelining:
    RFC 2920 §3.1 names the commands that may only come last in a group
    because their outcome changes state (EHLO, DATA, VRFY, EXPN, TURN,
    QUIT, NOOP) and leaves later extensions to add theirs; AUTH's outcome
    changes what the following commands may do, and a 334 turns the next
    line into data. The engine is safe whatever the client sends: while
    AuthStart or AuthResponse awaits the session's answer nothing further
    is parsed; after a 334 exactly one line is read as the response, so a
    command pipelined behind AUTH is taken as a (bad) response and never
    runs as a command; after 235 the commands that follow run with
    `authenticated` true, as the client intended, and after a failure
    they run unauthenticated.

See also:
    RFC 4954 (SMTP AUTH), RFC 4422 (SASL), RFC 2920 §3.1, RFC 3207 §4.2
    (STARTTLS forgets authentication), sasl/, smtp/protocol.py,
    smtp/events.py (AuthStart, AuthResponse, AuthAborted).
"""

from __future__ import annotations

import base64
import binascii

from postoffice.sasl.interfaces import Challenge, Failure, Step, Success
from postoffice.smtp import commands as cmd
from postoffice.smtp import events as ev
from postoffice.smtp.events import EngineConfig
from postoffice.smtp.replies import Reply

__all__ = [
    "AUTH_ALREADY",
    "AUTH_BAD_BASE64",
    "AUTH_CANCELLED",
    "AUTH_EHLO_FIRST",
    "AUTH_INVALID",
    "AUTH_LINE_LIMIT",
    "AUTH_LINE_TOO_LONG",
    "AUTH_NEEDS_TLS",
    "AUTH_REQUIRED",
    "AUTH_SUCCEEDED",
    "AUTH_TEMPORARY",
    "AUTH_TOO_WEAK",
    "AUTH_UNKNOWN_MECHANISM",
    "challenge",
    "check_answer",
    "decode",
    "ehlo_keywords",
    "format_challenge",
    "reply_for",
    "response_event",
    "start_event",
]

AUTH_LINE_LIMIT = 12288  # RFC 4954 §4: octets in a response line, CRLF not counted

R = Reply.of

# RFC 4954 §6 and §4. Named here rather than in smtp/replies.py because only
# AUTH uses them (AUTH_REQUIRED: the session's answer to MAIL on a listener
# that requires AUTH, RFC 4954 §6 / RFC 6409 §4.3).
AUTH_SUCCEEDED = R(235, "2.7.0", "Authentication successful")
AUTH_INVALID = R(535, "5.7.8", "Authentication credentials invalid")
AUTH_TEMPORARY = R(454, "4.7.0", "Temporary authentication failure")
AUTH_NEEDS_TLS = R(538, "5.7.11", "Encryption required for requested authentication mechanism")
AUTH_REQUIRED = R(530, "5.7.0", "Authentication required")
AUTH_TOO_WEAK = R(534, "5.7.9", "Authentication mechanism is too weak")
AUTH_CANCELLED = R(501, "5.0.0", "Authentication cancelled")
AUTH_BAD_BASE64 = R(501, "5.5.2", "Cannot decode the base64 data")
AUTH_LINE_TOO_LONG = R(500, "5.5.6", "Authentication exchange line is too long")
AUTH_UNKNOWN_MECHANISM = R(504, "5.5.4", "Unrecognized authentication type")
AUTH_ALREADY = R(503, "5.5.1", "Already authenticated")
AUTH_EHLO_FIRST = R(503, "5.5.1", "Send EHLO first")

_B64 = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")

_FAILURES = {
    "credentials": AUTH_INVALID,
    "authorization": AUTH_INVALID,
    "malformed": AUTH_INVALID,
    "cancelled": AUTH_CANCELLED,
    "temporary": AUTH_TEMPORARY,
}


def ehlo_keywords(config: EngineConfig, *, tls: bool) -> tuple[str, ...]:
    """("AUTH PLAIN LOGIN",) when AUTH is offered now, else ()."""
    if not config.auth_mechanisms or (config.auth_requires_tls and not tls):
        return ()
    return ("AUTH " + " ".join(m.upper() for m in config.auth_mechanisms),)  # RFC 4954 §3


def decode(text: bytes) -> bytes | None:
    """Strict base64 ("=" is empty, RFC 4954 §4); None when it is not base64."""
    if text == b"=":
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def start_event(
    command: cmd.Auth, config: EngineConfig, *, tls: bool, esmtp: bool, authenticated: bool
) -> ev.AuthStart | Reply:
    """The AuthStart event for an AUTH command, or the reply refusing it."""
    if not esmtp:
        return AUTH_EHLO_FIRST
    if authenticated:
        return AUTH_ALREADY
    mechanism = command.mechanism.upper()
    if mechanism not in (m.upper() for m in config.auth_mechanisms):
        return AUTH_UNKNOWN_MECHANISM
    if config.auth_requires_tls and not tls:
        return AUTH_NEEDS_TLS
    initial = None
    if command.initial_response is not None:
        initial = decode(command.initial_response.encode("utf-8", "surrogateescape"))
        if initial is None:
            return AUTH_BAD_BASE64
    return ev.AuthStart(mechanism=mechanism, initial=initial)


def response_event(line: bytes) -> ev.AuthResponse | Reply:
    """The AuthResponse for one response line, or the reply ending the exchange."""
    text = line.strip(b" \t")
    if text == b"*":  # RFC 4954 §4: the client cancels
        return ev.AuthResponse(data=None)
    data = decode(text)
    if data is None:
        return AUTH_BAD_BASE64
    return ev.AuthResponse(data=data)


def challenge(data: bytes) -> Reply:
    """The 334 reply carrying a server challenge (RFC 4954 §4)."""
    return Reply(code=334, text=base64.b64encode(data).decode("ascii"))


def check_answer(event: ev.Event, reply: Reply) -> None:
    """Raise ValueError when `reply` cannot answer an AUTH event (see the docstring)."""
    if not isinstance(event, ev.AuthStart | ev.AuthResponse):
        return
    if reply.code == 334:
        if reply.enhanced or not set(reply.text) <= _B64:
            raise ValueError("a 334 AUTH challenge carries base64 text only")
    elif 300 <= reply.code < 400:
        raise ValueError(f"{reply.code} cannot answer AUTH; use 334 for a challenge")
    if isinstance(event, ev.AuthResponse) and event.data is None and reply.code < 400:
        raise ValueError("a cancelled AUTH exchange must be refused (RFC 4954 §4: 501)")


def format_challenge(reply: Reply) -> bytes:
    """`334 SP base64 CRLF`: the space stays even when the challenge is empty."""
    return b"334 " + reply.text.encode("ascii") + b"\r\n"


def reply_for(step: Step) -> Reply:
    """The SMTP reply for a sasl step; VerifyPassword must be resolved first."""
    if isinstance(step, Challenge):
        return challenge(step.data)
    if isinstance(step, Success):
        return AUTH_SUCCEEDED
    if isinstance(step, Failure):
        return _FAILURES[step.kind]
    raise ValueError("VerifyPassword has no reply: verify, then call exchange.verified()")
