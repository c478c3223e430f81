"""pop3.replies — POP3 replies as values and their wire form (pure).

Description:
    Reply(ok, text, code, lines, body)
        One status line, `+OK text` or `-ERR [CODE] text` (RFC 1939 §3,
        RFC 2449 §8: an extended response code in brackets right after the
        status indicator), optionally followed by a multi-line body:
        `lines` (a listing: LIST, UIDL, CAPA — one str a line) or `body`
        (message content: RETR, TOP — bytes with CRLF line endings).
        Either makes the reply multi-line: the lines follow, byte-stuffed,
        then the terminating "." line (RFC 1939 §3).
    Challenge(data)
        A SASL server challenge, `+ base64` (RFC 5034 §4): the only reply
        that is neither +OK nor -ERR.

    render(answer) -> bytes
        The wire form. Byte-stuffing (RFC 1939 §3): every line of a
        multi-line body that starts with "." gets one more "."; done with
        one bytes.replace over the whole body, never a loop over lines, so
        a large message costs one pass. The replace stuffs a dot after any
        LF, so a stored message with a bare LF (which the store should never
        hand out) can still not end the response early. A body that does
        not end with CRLF gets one before the terminator.

    The named replies below are the texts this server uses; sessions build
    the ones that carry numbers themselves.

See also:
    RFC 1939 §3 (responses, multi-line, byte-stuffing), RFC 2449 §8 (codes),
    RFC 3206 (SYS/TEMP, SYS/PERM, AUTH), RFC 5034 §4 (continuations),
    pop3/protocol.py.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

__all__ = [
    "AUTH_CANCELLED",
    "AUTH_FAILED",
    "BAD_BASE64",
    "BAD_COMMAND_STATE",
    "CAPA_HEADER",
    "IN_USE",
    "LINE_TOO_LONG",
    "NOT_AFTER_TLS",
    "NO_SUCH_MESSAGE",
    "PLAINTEXT_DISALLOWED",
    "STLS_UNAVAILABLE",
    "SYNTAX_ERROR",
    "TEMP_FAILURE",
    "TLS_GO_AHEAD",
    "TOO_MANY_CONNECTIONS",
    "TOO_MANY_ERRORS",
    "UNKNOWN_COMMAND",
    "UNKNOWN_MECHANISM",
    "Answer",
    "Challenge",
    "Reply",
    "render",
    "stuff",
]

_CRLF = b"\r\n"


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """A POP3 reply (see the module docstring)."""

    ok: bool
    text: str = ""
    code: str = ""  # RFC 2449 §8 extended response code, without brackets
    lines: tuple[str, ...] | None = None  # a multi-line listing
    body: bytes | None = None  # multi-line message content (CRLF line endings)

    @classmethod
    def err(cls, text: str, code: str = "") -> Reply:
        return cls(ok=False, text=text, code=code)

    @property
    def multiline(self) -> bool:
        return self.lines is not None or self.body is not None

    def status_line(self) -> bytes:
        """`+OK text` / `-ERR [CODE] text`, CRLF included. Control characters
        in the text become spaces: a reply is one line whatever it quotes."""
        head = "+OK" if self.ok else "-ERR"
        if self.code:
            head += f" [{self.code}]"
        text = self.text.translate(_CONTROLS)
        line = f"{head} {text}" if text else head
        return line.encode("utf-8", "replace") + _CRLF


@dataclass(frozen=True, slots=True, kw_only=True)
class Challenge:
    """A SASL challenge: `+ base64` (RFC 5034 §4). `data` is sent base64-encoded."""

    data: bytes


Answer = Reply | Challenge

_CONTROLS = {c: " " for c in range(32)} | {127: " "}


def _stuffed(body: bytes) -> list[bytes]:
    """The pieces of stuffed, terminated content (joined once by the caller)."""
    parts = []
    if body.startswith(b"."):
        parts.append(b".")
    if b"\n." in body:  # covers "\r\n." (and a stray bare LF)
        body = body.replace(b"\n.", b"\n..")
    parts.append(body)
    if body and not body.endswith(_CRLF):
        parts.append(_CRLF)
    parts.append(b".\r\n")
    return parts


def stuff(body: bytes) -> bytes:
    """Byte-stuff message content and terminate it (RFC 1939 §3):
    `body` with every line-initial "." doubled, a final CRLF ensured,
    then ".\\r\\n"."""
    return b"".join(_stuffed(body))


def render(answer: Answer) -> bytes:
    """The wire form of a reply or a challenge."""
    if isinstance(answer, Challenge):
        return b"+ " + base64.b64encode(answer.data) + _CRLF
    head = answer.status_line()
    if answer.body is not None:  # one copy of the message, not one per step
        return b"".join([head, *_stuffed(answer.body)])
    if answer.lines is not None:
        text = "".join(line.translate(_CONTROLS) + "\r\n" for line in answer.lines)
        return head + stuff(text.encode("utf-8", "replace"))
    return head


R = Reply.err

# RFC 1939 §3: "-ERR" texts are free; these are ours (Dovecot's wording where
# clients are known to look at it).
UNKNOWN_COMMAND = R("Unknown command.")
BAD_COMMAND_STATE = R("Command not valid in this state.")
SYNTAX_ERROR = R("Syntax error in arguments.")
LINE_TOO_LONG = R("Command line too long.")
TOO_MANY_ERRORS = R("Too many bad commands.")
NO_SUCH_MESSAGE = R("No such message.")
# RFC 3206 §4: AUTH — the failure is about the credentials.
AUTH_FAILED = R("Authentication failed.", "AUTH")
AUTH_CANCELLED = R("Authentication cancelled.")
BAD_BASE64 = R("Invalid base64 data.")
UNKNOWN_MECHANISM = R("Unsupported authentication mechanism.")
# RFC 2595 §2.1 / Dovecot's text: plaintext logins wait for TLS.
PLAINTEXT_DISALLOWED = R(
    "Plaintext authentication disallowed on non-secure (SSL/TLS) connections.", "AUTH"
)
# RFC 2449 §8.1.1: IN-USE — another session holds the maildrop.
IN_USE = R("maildrop already locked", "IN-USE")
# RFC 3206 §4: SYS/TEMP — a problem on our side that may go away.
TEMP_FAILURE = R("Temporary server failure, try again later.", "SYS/TEMP")
TOO_MANY_CONNECTIONS = R("Too many connections, try again later.", "SYS/TEMP")
STLS_UNAVAILABLE = R("STLS not available.")
NOT_AFTER_TLS = R("TLS is already active.")
TLS_GO_AHEAD = Reply(ok=True, text="Begin TLS negotiation now.")
CAPA_HEADER = "Capability list follows"
