"""pop3.events — what the POP3 engine tells its session, and the engine's configuration (pure).

Description:
    `pop3.protocol.Pop3Protocol.receive_data()` turns bytes into these
    events. An event whose `needs_answer` is true gets exactly one answer
    from the session, through `Pop3Protocol.answer()`, in event order; the
    engine writes the replies in command order whatever the order of the
    work behind them.

    In the authorization states the engine parses nothing past an event
    awaiting its answer (the answer decides the next state). In the
    transaction state it parses ahead, up to EngineConfig.max_pipeline
    unanswered commands (RFC 2449 §6.6 PIPELINING), so a session can do
    the file reads of many pipelined RETRs in one worker-thread call.

    Message numbers are as the client sent them (1-based); whether such a
    message exists, or is marked deleted, is the session's business (it
    holds the snapshot).

    CommandRejected is the one notification: the engine already queued its
    own -ERR. How a connection ended is `Pop3Protocol.close_reason`.

See also:
    pop3/protocol.py, pop3/states.py, pop3/replies.py, RFC 1939, RFC 5034.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from postoffice.pop3.replies import Reply


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base class. `needs_answer` events wait for Pop3Protocol.answer()."""

    needs_answer: bool = field(default=True, init=False)


# -- authorization (RFC 1939 §4, §7; RFC 5034; RFC 2595) ----------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class User(Event):
    """USER name. Answer +OK to let PASS follow."""

    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Pass(Event):
    """PASS string (the rest of the line: spaces belong to the password, RFC 1939 §7)."""

    password: str

    def __repr__(self) -> str:  # never log a password by accident
        return "Pass(password=...)"


@dataclass(frozen=True, slots=True, kw_only=True)
class Apop(Event):
    """APOP name digest; `digest` is 32 lower-case hex digits (RFC 1939 §7)."""

    name: str
    digest: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthStart(Event):
    """AUTH mechanism [initial-response] (RFC 5034 §4), checked by the engine:
    the mechanism is offered now (upper case). `initial` is the decoded
    initial response, b"" for "=", None when absent. Answer with a
    Challenge (the engine reads one response line next), +OK (logged in)
    or -ERR (the exchange is over)."""

    mechanism: str
    initial: bytes | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthResponse(Event):
    """The client's response to a challenge, base64-decoded; None when it
    cancelled with "*" (RFC 5034 §4: answer -ERR)."""

    data: bytes | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Stls(Event):
    """STLS (RFC 2595 §4). Answer +OK to go on: the engine drops any input
    that followed, the adapter does the handshake and calls tls_started()."""


# -- transaction (RFC 1939 §5, §7) ---------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Stat(Event):
    """STAT: answer `+OK nn mm`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class List(Event):
    """LIST [msg]: a scan listing of one message, or of all (multi-line)."""

    msg: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Retr(Event):
    """RETR msg: the whole message (multi-line)."""

    msg: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Dele(Event):
    """DELE msg: mark the message deleted."""

    msg: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Noop(Event):
    """NOOP: answer +OK."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Rset(Event):
    """RSET: unmark every message marked deleted."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Top(Event):
    """TOP msg n: the header, the blank line, then `lines` lines of the body."""

    msg: int
    lines: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Uidl(Event):
    """UIDL [msg]: unique-id listing of one message, or of all (multi-line)."""

    msg: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Quit(Event):
    """QUIT in the transaction state: the session enters UPDATE (delete the
    marked messages, release the maildrop) and answers; then the engine
    closes (RFC 1939 §6)."""


# -- notifications -----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandRejected(Event):
    """The engine answered a command itself with -ERR (unknown, out of
    sequence, bad syntax, plaintext login without TLS). For the log."""

    needs_answer: bool = field(default=False, init=False)
    command: str
    reply: Reply


# -- configuration ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineConfig:
    """What the engine needs to know; given by the adapter."""

    stls: bool = False  # RFC 2595: offer STLS (a TLS context exists)
    # USER/PASS and plaintext SASL mechanisms (PLAIN, LOGIN) only under TLS
    # (RFC 2595 §2.1; [pop3] require_tls, off on loopback).
    plaintext_requires_tls: bool = False
    sasl_mechanisms: tuple[str, ...] = ()  # RFC 5034: offered mechanisms, upper case
    implementation: str = "postoffice"  # RFC 2449 §6.9
    max_command_line: int = 1024  # octets with CRLF (RFC 2449 §4 asks clients for 255)
    max_auth_line: int = 12288  # AUTH command and SASL responses (cf. RFC 4954 §4)
    max_errors: int = 20  # bad commands before the engine hangs up
    max_pipeline: int = 256  # unanswered transaction commands parsed ahead
    max_buffered_input: int = 1024 * 1024  # octets held while answers are pending
