"""pop3.protocol — the POP3 server engine: bytes in, events and replies out (sans I/O).

Description:
    `Pop3Protocol` turns what a client sends into `pop3.events` events and
    the session's answers into reply bytes. It does no I/O: the adapter
    (pop3/server.py) moves bytes, the session (pop3/session.py) decides.

        engine.greeting(reply)               # +OK banner (or -ERR and close)
        events = engine.receive_data(data)
        for each event needing an answer, in order: engine.answer(reply)
        events = engine.receive_data(b"")    # go on with buffered input
        transport.write(engine.data_to_send())

    Replies leave in command order: every command takes a place in the
    output queue when it is parsed; the engine fills the places of the
    commands it answers itself at once and the session fills the others
    through answer(), oldest first. data_to_send() returns the filled
    prefix. In the authorization states the engine stops parsing at an
    event awaiting its answer (the answer decides the next state); in the
    transaction state it parses ahead up to `max_pipeline` unanswered
    commands (RFC 2449 §6.6 PIPELINING) and stops after QUIT (RFC 1939
    §6: nothing follows the update).

    The engine itself answers CAPA (RFC 2449 §5), NOOP, a bare AUTH (the
    mechanism list, as RFC 1734 clients expect), and every error it can
    decide alone, each with a CommandRejected event:
      unknown command; a command not legal in the state (pop3/states.py);
      bad arguments (message numbers are decimal, RFC 1939 §3; APOP's
      digest is 32 hex digits, §7); a line over max_command_line octets
      (the rest of it is discarded unread); USER/PASS or AUTH PLAIN/LOGIN
      on a connection that must use TLS first (RFC 2595 §2.1, -ERR [AUTH]);
      an unknown SASL mechanism or bad base64 (RFC 5034 §4); STLS when not
      offered or under TLS already (RFC 2595 §4).
    After max_errors of them the engine sends "-ERR Too many bad commands."
    and closes.

Line discipline:
    RFC 1939 §3 ends commands with CRLF; a bare LF is accepted too (a
    trailing CR is stripped), as telnet users and Dovecot expect. Keywords
    are case-insensitive (§3). A command line may hold max_command_line
    octets with its CRLF; AUTH lines and SASL responses max_auth_line.
    PASS takes the rest of the line as the password, spaces included
    (§7); USER likewise takes the rest of the line as the name.

STLS (RFC 2595 §4):
    Answered +OK, the engine discards everything buffered after the STLS
    line and reads nothing until tls_started() (pipelined plaintext is
    never interpreted: the CVE-2011-0411 class of injection); then the
    client starts again in the authorization state.

AUTH (RFC 5034 §4):
    `AUTH mech [initial-response]` ("=": an empty one) emits AuthStart. A
    Challenge answer is sent as `+ base64` and the next line is read as
    the response: AuthResponse, with data None for "*" (the session must
    answer -ERR); a line that is not base64 ends the exchange with -ERR.

States:
    pop3/states.py: State, TRANSITIONS (state → {verb: state after +OK}),
    ON_FAILURE; re-exported here with render_table.

Security:
    Every input byte is hostile. Input is buffered up to one command line,
    or max_buffered_input while answers are pending (then -ERR and close).
    No per-byte or per-line loops over message bodies: replies are
    byte-stuffed with one replace (pop3/replies.py).

See also:
    RFC 1939, RFC 2449, RFC 2595, RFC 3206, RFC 5034; pop3/events.py,
    pop3/replies.py, pop3/states.py, pop3/session.py, pop3/server.py.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import deque

from postoffice.pop3 import events as ev
from postoffice.pop3 import replies
from postoffice.pop3.events import EngineConfig, Event
from postoffice.pop3.replies import Answer, Challenge, Reply, render
from postoffice.pop3.states import TRANSITIONS, VERBS, State, render_table
from postoffice.sasl.mechanisms import MECHANISMS

__all__ = ["TRANSITIONS", "Pop3Protocol", "State", "decode_base64", "render_table"]

_MAX_NUMBER_DIGITS = 9  # message numbers and TOP counts: far beyond any maildrop
_HEX = frozenset("0123456789abcdef")
_NO_ARGUMENTS = frozenset({"STAT", "NOOP", "RSET", "QUIT", "CAPA", "STLS"})
# The commands a mail client pipelines by the thousand, parsed without the
# general path (same result: a verb, one decimal argument, RFC 1939 §5).
_FAST = re.compile(rb"(?i:(RETR|DELE|LIST|UIDL)) ([0-9]{1,9})\Z")
_FAST_EVENTS: dict[bytes, type[ev.Retr | ev.Dele | ev.List | ev.Uidl]] = {
    b"RETR": ev.Retr, b"DELE": ev.Dele, b"LIST": ev.List, b"UIDL": ev.Uidl,
}  # fmt: skip
_OVERFLOW = Reply(ok=False, code="SYS/PERM", text="Too much pipelined input.")


def decode_base64(text: bytes) -> bytes | None:
    """Strict base64; "=" is the empty response (RFC 5034 §4); None when invalid."""
    if text == b"=":
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _number(text: str) -> int | None:
    """A decimal number as RFC 1939 §3 writes them (digits only), or None."""
    if not text or len(text) > _MAX_NUMBER_DIGITS or not (text.isascii() and text.isdigit()):
        return None
    return int(text)


class _Slot:
    """A place in the output queue that the session's answer fills."""

    __slots__ = ("data", "event")

    def __init__(self, event: Event) -> None:
        self.event = event
        self.data: bytes | None = None


class Pop3Protocol:
    """The POP3 server engine for one connection (sans I/O)."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self._state = State.AUTHORIZATION
        self._tls = False
        self._upgrading = False  # STLS answered +OK, handshake not done
        self._quitting = False  # QUIT parsed, its answer pending
        self._closed = False
        self._skip = False  # discarding the rest of an over-long line
        self._buf = b""
        self._out: deque[bytes | _Slot] = deque()
        self._waiting: deque[_Slot] = deque()
        self._errors = 0
        self._overflow = False
        self.close_reason = ""  # "quit", "errors", "overflow", "eof", "timeout", "refused"

    # -- properties -----------------------------------------------------------

    @property
    def state(self) -> State:
        return State.CLOSED if self._closed else self._state

    @property
    def tls(self) -> bool:
        """True after tls_started()."""
        return self._tls

    @property
    def closed(self) -> bool:
        """True once nothing more is read (QUIT, errors, end of input, autologout)."""
        return self._closed

    @property
    def finished(self) -> bool:
        """Closed and every answer given: flush, then drop the connection."""
        return self._closed and not self._waiting

    @property
    def upgrading(self) -> bool:
        """STLS was answered +OK: hand the socket to TLS, then call tls_started()."""
        return self._upgrading

    @property
    def pending(self) -> int:
        """Events still awaiting their answer."""
        return len(self._waiting)

    @property
    def awaiting(self) -> str:
        """ "answer" while an event waits for the session, else "command"."""
        return "answer" if self._waiting else "command"

    @property
    def plaintext_allowed(self) -> bool:
        """USER/PASS and plaintext SASL mechanisms may be used now (RFC 2595 §2.1)."""
        return self._tls or not self.config.plaintext_requires_tls

    def mechanisms(self) -> tuple[str, ...]:
        """The SASL mechanisms offered now: PLAIN and LOGIN wait for TLS when required."""
        allowed = self.plaintext_allowed
        return tuple(
            m
            for m in self.config.sasl_mechanisms
            if allowed or not (m in MECHANISMS and MECHANISMS[m].plaintext)
        )

    def capabilities(self) -> tuple[str, ...]:
        """The CAPA list (RFC 2449 §6) for the current state and TLS."""
        caps = ["TOP", "UIDL", "RESP-CODES", "PIPELINING", "AUTH-RESP-CODE"]
        if self.plaintext_allowed:
            caps.append("USER")  # RFC 2449 §6.8
        mechanisms = self.mechanisms()
        if mechanisms:
            caps.append("SASL " + " ".join(mechanisms))  # RFC 2449 §6.3, RFC 5034 §3
        if self.config.stls and not self._tls and self._state in (State.AUTHORIZATION, State.USER):
            caps.append("STLS")  # RFC 2595 §4
        caps += ["EXPIRE NEVER", "LOGIN-DELAY 0", f"IMPLEMENTATION {self.config.implementation}"]
        return tuple(caps)

    # -- the adapter's side ---------------------------------------------------

    def greeting(self, reply: Reply) -> None:
        """Queue the banner: +OK opens the session, -ERR refuses and closes it."""
        self._out.append(render(reply))
        if not reply.ok:
            self._shut("refused")

    def data_to_send(self) -> bytes:
        """Drain the output that is ready, in command order."""
        out = self._out
        parts: list[bytes] = []
        while out:
            head = out[0]
            if isinstance(head, _Slot):
                if head.data is None:
                    break
                parts.append(head.data)
            else:
                parts.append(head)
            out.popleft()
        return b"".join(parts)

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes; the events parsed. `receive_data(b"")` goes on after answers."""
        if self._closed or self._upgrading:
            return []
        if data:
            if self._waiting and len(self._buf) + len(data) > self.config.max_buffered_input:
                self._overflow = True  # answered once the pending answers are in
            else:
                self._buf = self._buf + data if self._buf else data
        events: list[Event] = []
        self._run(events)
        return events

    def eof_received(self) -> None:
        """The client closed its side: nothing more is read, no update happens."""
        self._shut(self.close_reason or "eof")

    def close(self, reply: Reply | None = None, *, reason: str = "timeout") -> None:
        """Stop reading; queue `reply` first if given. Autologout passes none:
        RFC 1939 §3, the server closes "without sending any response"."""
        if self._closed:
            return
        if reply is not None:
            self._out.append(render(reply))
        self._shut(reason)

    def tls_started(self) -> None:
        """The handshake after STLS succeeded: start afresh (RFC 2595 §4)."""
        self._upgrading = False
        self._tls = True
        self._buf = b""
        self._skip = False
        self._state = State.AUTHORIZATION

    # -- the session's side ---------------------------------------------------

    def answer(self, answer: Answer) -> None:
        """Answer the oldest event awaiting one; the state follows the reply."""
        if not self._waiting:
            raise RuntimeError("answer() without an event awaiting an answer")
        slot = self._waiting[0]
        event = slot.event
        if isinstance(answer, Challenge) and not isinstance(event, ev.AuthStart | ev.AuthResponse):
            raise ValueError("a SASL challenge answers AUTH only")
        if isinstance(event, ev.AuthResponse) and event.data is None and _positive(answer):
            raise ValueError("a cancelled AUTH exchange must be refused (RFC 5034 §4)")
        self._waiting.popleft()
        slot.data = render(answer)
        if self._closed:
            return
        if self._state is State.TRANSACTION and not isinstance(event, ev.Quit):
            if self._overflow and not self._waiting:
                self._out.append(render(_OVERFLOW))
                self._shut("overflow")
            return  # nothing in transaction changes the state but QUIT
        ok = _positive(answer)
        if isinstance(event, ev.User):
            self._state = State.USER if ok else State.AUTHORIZATION
        elif isinstance(event, ev.Pass | ev.Apop):
            self._state = State.TRANSACTION if ok else State.AUTHORIZATION
        elif isinstance(event, ev.AuthStart | ev.AuthResponse):
            if isinstance(answer, Challenge):
                self._state = State.SASL
            else:
                self._state = State.TRANSACTION if ok else State.AUTHORIZATION
        elif isinstance(event, ev.Stls):
            self._state = State.AUTHORIZATION
            if ok:  # RFC 2595 §4: nothing sent before the handshake is interpreted
                self._buf = b""
                self._skip = False
                self._upgrading = True
        elif isinstance(event, ev.Quit):
            self._shut("quit")
        if self._overflow and not self._waiting and not self._closed:
            self._out.append(render(_OVERFLOW))
            self._shut("overflow")

    # -- the parse loop -------------------------------------------------------

    def _run(self, events: list[Event]) -> None:
        buf, pos = self._buf, 0
        config = self.config
        while not (self._closed or self._upgrading or self._quitting):
            if self._waiting and (
                self._state is not State.TRANSACTION or len(self._waiting) >= config.max_pipeline
            ):
                break
            end = buf.find(b"\n", pos)
            if self._skip:
                if end < 0:
                    pos = len(buf)
                    break
                self._skip = False
                pos = end + 1
                continue
            sasl = self._state is State.SASL
            limit = config.max_command_line
            if sasl or buf[pos : pos + 4].upper() == b"AUTH":
                limit = config.max_auth_line
            if end < 0:
                if len(buf) - pos >= limit:
                    self._too_long(events, sasl)
                    self._skip = True
                    pos = len(buf)
                break
            line = buf[pos:end]
            pos = end + 1
            if len(line) + 1 > limit:
                self._too_long(events, sasl)
                continue
            if line.endswith(b"\r"):
                line = line[:-1]
            if sasl:
                self._sasl_response(line, events)
                continue
            if self._state is State.TRANSACTION:
                fast = _FAST.match(line)
                if fast is not None:
                    self._ask(events, _FAST_EVENTS[fast[1].upper()](msg=int(fast[2])))
                    continue
            self._command(line, events)
        self._buf = b"" if self._closed or self._upgrading else buf[pos:]

    def _too_long(self, events: list[Event], sasl: bool) -> None:
        if sasl:  # the exchange is over
            self._state = State.AUTHORIZATION
        self._reject(events, "AUTH" if sasl else "", replies.LINE_TOO_LONG)

    def _sasl_response(self, line: bytes, events: list[Event]) -> None:
        text = line.strip(b" \t")
        if text == b"*":  # RFC 5034 §4: the client cancels
            self._ask(events, ev.AuthResponse(data=None))
            return
        data = decode_base64(text)
        if data is None:
            self._state = State.AUTHORIZATION
            self._reject(events, "AUTH", replies.BAD_BASE64)
            return
        self._ask(events, ev.AuthResponse(data=data))

    def _command(self, line: bytes, events: list[Event]) -> None:
        word, _, rest = line.partition(b" ")
        verb = word.decode("ascii", "replace").upper() if word.isascii() else "?"
        if verb not in VERBS:
            self._reject(events, verb[:16].translate(_PRINTABLE), replies.UNKNOWN_COMMAND)
            return
        state = self._state
        row = TRANSITIONS[state]
        if verb not in row:
            self._reject(events, verb, replies.BAD_COMMAND_STATE)
            return
        try:
            arg = rest.decode("utf-8")
        except UnicodeDecodeError:
            self._reject(events, verb, replies.SYNTAX_ERROR)
            return
        if verb in _NO_ARGUMENTS and arg.strip():
            self._reject(events, verb, replies.SYNTAX_ERROR)
            return
        if state is State.USER and verb != "PASS":
            self._state = State.AUTHORIZATION  # RFC 1939 §7: PASS must come next
        event = self._parse(verb, arg.strip(" \t") if verb != "PASS" else arg, events)
        if event is not None:
            self._ask(events, event)

    def _parse(self, verb: str, arg: str, events: list[Event]) -> Event | None:
        """The event for a legal verb, or None when it was answered here."""
        if verb in ("USER", "PASS", "APOP", "AUTH"):
            return self._parse_login(verb, arg, events)
        if verb == "CAPA":  # RFC 2449 §5
            caps = self.capabilities()
            self._send(Reply(ok=True, text=replies.CAPA_HEADER, lines=caps))
            return None
        if verb == "NOOP":  # RFC 1939 §5
            self._send(Reply(ok=True))
            return None
        if verb == "STLS":
            if not self.config.stls:
                return self._refuse(events, verb, replies.STLS_UNAVAILABLE)
            if self._tls:  # RFC 2595 §4: once only
                return self._refuse(events, verb, replies.NOT_AFTER_TLS)
            return ev.Stls()
        if verb == "QUIT":
            self._quitting = True  # RFC 1939 §6: nothing after QUIT is read
            self._state = TRANSITIONS[self._state]["QUIT"]
            if self._state is State.CLOSED:  # from authorization: no update
                self._state = State.AUTHORIZATION
            return ev.Quit()
        if verb == "STAT":
            return ev.Stat()
        if verb == "RSET":
            return ev.Rset()
        return self._parse_transaction(verb, arg, events)

    def _parse_login(self, verb: str, arg: str, events: list[Event]) -> Event | None:
        if verb in ("USER", "PASS") and not self.plaintext_allowed:
            return self._refuse(events, verb, replies.PLAINTEXT_DISALLOWED)
        if verb == "USER":
            return ev.User(name=arg) if arg else self._refuse(events, verb, replies.SYNTAX_ERROR)
        if verb == "PASS":
            return (
                ev.Pass(password=arg) if arg else self._refuse(events, verb, replies.SYNTAX_ERROR)
            )
        if verb == "APOP":  # RFC 1939 §7: APOP name digest
            parts = arg.split()
            if len(parts) != 2 or len(parts[1]) != 32 or not set(parts[1].lower()) <= _HEX:
                return self._refuse(events, verb, replies.SYNTAX_ERROR)
            return ev.Apop(name=parts[0], digest=parts[1].lower())
        # AUTH (RFC 5034 §4)
        parts = arg.split()
        if not parts:  # RFC 1734 clients ask for the list with a bare AUTH
            if self._state is State.USER:
                self._state = State.AUTHORIZATION
            self._send(Reply(ok=True, lines=self.mechanisms()))
            return None
        if len(parts) > 2:
            return self._refuse(events, verb, replies.SYNTAX_ERROR)
        mechanism = parts[0].upper()
        if mechanism not in self.config.sasl_mechanisms:
            return self._refuse(events, verb, replies.UNKNOWN_MECHANISM)
        if mechanism not in self.mechanisms():
            return self._refuse(events, verb, replies.PLAINTEXT_DISALLOWED)
        initial = None
        if len(parts) == 2:
            initial = decode_base64(parts[1].encode("ascii", "replace"))
            if initial is None:
                return self._refuse(events, verb, replies.BAD_BASE64)
        return ev.AuthStart(mechanism=mechanism, initial=initial)

    def _parse_transaction(self, verb: str, arg: str, events: list[Event]) -> Event | None:
        args = arg.split()
        if verb in ("LIST", "UIDL") and not args:
            return ev.List(msg=None) if verb == "LIST" else ev.Uidl(msg=None)
        want = 2 if verb == "TOP" else 1
        numbers = [_number(a) for a in args]
        if len(numbers) != want or any(n is None for n in numbers):
            return self._refuse(events, verb, replies.SYNTAX_ERROR)
        msg = numbers[0]
        assert msg is not None
        if verb == "LIST":
            return ev.List(msg=msg)
        if verb == "UIDL":
            return ev.Uidl(msg=msg)
        if verb == "RETR":
            return ev.Retr(msg=msg)
        if verb == "DELE":
            return ev.Dele(msg=msg)
        lines = numbers[1]
        assert lines is not None
        return ev.Top(msg=msg, lines=lines)

    # -- output and errors ----------------------------------------------------

    def _ask(self, events: list[Event], event: Event) -> None:
        slot = _Slot(event)
        self._out.append(slot)
        self._waiting.append(slot)
        events.append(event)

    def _send(self, reply: Reply) -> None:
        self._out.append(render(reply))

    def _refuse(self, events: list[Event], verb: str, reply: Reply) -> Event | None:
        """Reject; None, so that a parser can `return self._refuse(...)`."""
        self._reject(events, verb, reply)
        return None

    def _reject(self, events: list[Event], verb: str, reply: Reply) -> None:
        self._send(reply)
        events.append(ev.CommandRejected(command=verb, reply=reply))
        self._errors += 1
        limit = self.config.max_errors
        if 0 < limit <= self._errors and not self._closed:
            self._send(replies.TOO_MANY_ERRORS)
            self._shut("errors")

    def _shut(self, reason: str) -> None:
        if not self._closed:
            self._closed = True
            self.close_reason = reason
        self._buf = b""


def _positive(answer: Answer) -> bool:
    return isinstance(answer, Reply) and answer.ok


_PRINTABLE = {c: "?" for c in range(32)} | {127: "?"}
