"""imap.events — what the IMAP engine (imap/protocol.py) tells its session, and its limits.

Description:
    `ServerProtocol.receive_data()` returns these events in order and stops
    right after the first one whose `needs_answer` is true; the session
    answers it with the method named below, then calls
    `receive_data(b"")` to go on with input already buffered.

      CommandReady(command)    a parsed command allowed in this state.
                               Answer: send() untagged data, then
                               finish(Result). Special cases:
                                 Authenticate → challenge(data) or finish()
                                 Idle         → start_idle() or finish()
                                 StartTls     → finish(OK) starts TLS
      AuthResponse(tag, data)  one client line of AUTHENTICATE, base64
                               decoded (None: "*", the client cancels,
                               RFC 9051 §6.2.2). Answer: challenge() or finish().
      IdleDone(tag)            DONE ended IDLE (RFC 2177). Answer: finish().
      AppendBegin(...)         a message of APPEND (index 0, 1, ... with
                               MULTIAPPEND, RFC 3502) is announced. Answer:
                               accept_append() to receive it, or finish(NO
                               [TRYCREATE] / NO [TOOBIG] ...) to refuse the
                               whole command.
      AppendComplete(tag)      the command ended after its last message.
                               Answer: finish() (APPENDUID, RFC 4315).

    Notifications (no answer; any reply was already queued by the engine):

      AppendData(data)         octets of the current message, in order
      AppendEnd(tag, index)    the current message is complete
      AppendAborted(tag, reason)  the engine refused the rest of APPEND:
                               drop what was received (RFC 3502: nothing
                               is appended)
      AuthAborted(tag, reason) AUTHENTICATE ended by the engine (bad base64,
                               over-long line)
      IdleAborted(tag, reason) IDLE ended by something other than DONE
      CommandRefused(tag, reason)  a BAD/NO the engine answered itself
      Closing(reason)          the engine sent BYE (limits) or the input
                               ended; the connection should be closed

Config:
    Limits — the engine's bounds, all plain values for config [imap].

See also:
    imap/protocol.py, imap/commands.py, imap/response.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from postoffice.imap import commands as c

__all__ = [
    "AppendAborted",
    "AppendBegin",
    "AppendComplete",
    "AppendData",
    "AppendEnd",
    "AuthAborted",
    "AuthResponse",
    "Closing",
    "CommandReady",
    "CommandRefused",
    "Event",
    "IdleAborted",
    "IdleDone",
    "Limits",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Bounds on client input (see imap/protocol.py, Security)."""

    # A command's octets: its lines and inline literals together (APPEND's
    # message literals excepted). Dovecot's imap_max_line_length is 64 KiB.
    max_command: int = 64 * 1024
    # The same before authentication (RFC 9051 §11: keep it small).
    max_unauthenticated: int = 8 * 1024
    # APPEND message size (RFC 7889 APPENDLIMIT); 0: no limit.
    max_append: int = 50 * 1024 * 1024
    # Parenthesis / NOT / OR nesting, and section part depth.
    max_depth: int = 32
    # A refused non-synchronizing literal up to this size is read and
    # dropped; a bigger one ends the connection with BYE (RFC 7888 §4).
    max_discard: int = 64 * 1024 * 1024
    # True: LITERAL+ (any size non-synchronizing literal); False: LITERAL-
    # (non-synchronizing only up to 4096 octets, RFC 7888 §4).
    literal_plus: bool = True
    # One AUTHENTICATE response line or an IDLE line.
    max_auth_line: int = 12 * 1024
    # Engine-detected errors (BAD) in a row before BYE; 0: no limit.
    max_errors: int = 20


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base class; `needs_answer` events pause the engine."""

    needs_answer: bool = field(default=False, init=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandReady(Event):
    command: c.Command
    needs_answer: bool = field(default=True, init=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthResponse(Event):
    tag: str
    data: bytes | None  # None: the client sent "*" (cancel)
    needs_answer: bool = field(default=True, init=False)

    def __repr__(self) -> str:  # the data may hold a password
        return f"AuthResponse(tag={self.tag!r}, cancel={self.data is None})"


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthAborted(Event):
    tag: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class IdleDone(Event):
    tag: str
    needs_answer: bool = field(default=True, init=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class IdleAborted(Event):
    tag: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendBegin(Event):
    tag: str
    mailbox: str
    message: c.AppendMessage
    index: int  # 0 for the first message; MULTIAPPEND counts on
    needs_answer: bool = field(default=True, init=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendData(Event):
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendEnd(Event):
    tag: str
    index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendComplete(Event):
    tag: str
    count: int  # messages received
    needs_answer: bool = field(default=True, init=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendAborted(Event):
    tag: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandRefused(Event):
    tag: str | None
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Closing(Event):
    reason: str
