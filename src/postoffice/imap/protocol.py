"""imap.protocol — the IMAP server engine: bytes in, events and responses out (sans I/O).

Description:
    `ServerProtocol` frames what a client sends into commands (lines and
    literals), checks each against the state table (imap/states.py) and the
    limits, parses it (imap/parse/) and hands the session one event at a
    time (imap/events.py). It does no I/O: the adapter (imap/server.py)
    moves bytes, the session (imap/session.py) decides. The loop is:

        engine.greeting(Result(status="OK", text="ready"))
        events = engine.receive_data(data)   # stops after a needs_answer event
        ... engine.send(untagged bytes); engine.finish(Result(...))
        events = engine.receive_data(b"")    # continue with buffered input
        transport.write(engine.data_to_send())

    Answers: finish(result) ends the pending command with its tagged
    response; challenge(data) continues AUTHENTICATE; start_idle() enters
    IDLE; accept_append() lets an APPEND message in. send(data) queues
    untagged data at any time (also while idling). The engine itself
    answers only what it can decide alone, each with a CommandRefused (or
    *Aborted) event: a missing tag (`* BAD`), an unknown command, a command
    not allowed in this state, a syntax error (BAD, or NO [BADCHARSET]),
    and the limits below.

Literals (RFC 9051 §4.3, RFC 7888):
    A line ending in `{n}` asks for a continuation: the engine sends `+ OK`
    itself when it accepts the literal, reads n octets and goes on with
    the same command. `{n+}` (LITERAL+) gets no continuation; with
    `Limits.literal_plus` false (LITERAL-) one above 4096 octets is
    refused. A refused synchronizing literal is never read — the client
    waits for `+` and takes the tagged BAD/NO as the end of the command. A
    refused non-synchronizing literal is already on its way: up to
    `max_discard` octets are read and dropped (then the rest of the
    command, which may announce more literals), beyond that the engine
    sends `* BYE` and closes (RFC 7888 §4). So literal octets never run as
    commands, whatever was refused.

APPEND (RFC 9051 §6.3.12, RFC 3502 MULTIAPPEND, RFC 3516 literal8):
    The message literal is streamed, never buffered: AppendBegin (needs an
    answer: accept_append() sends `+` for a synchronizing literal),
    AppendData chunks, AppendEnd; then either another message (MULTIAPPEND:
    AppendBegin with the next index) or AppendComplete (needs finish()).
    A message over `max_append` is refused NO [TOOBIG] (RFC 7889 §4)
    before it is read. A NUL octet in a non-literal8 message makes the
    command BAD once the literal has been read (RFC 9051 §4.3 CHAR8).

IDLE (RFC 2177, RFC 9051 §6.3.13): after start_idle() only a DONE line is
    read (IdleDone); anything else ends IDLE with a tagged BAD.
AUTHENTICATE (RFC 9051 §6.2.2): after challenge() one line is read as the
    client's base64 response (AuthResponse; "*" cancels: data None).
STARTTLS (RFC 9051 §6.2.1): a tagged OK discards all buffered input
    (CVE-2011-0411 and its IMAP kin) and input is ignored until
    tls_started().

States:
    imap/states.py: State and RULES (allowed states, the state after a
    tagged OK or NO). finish() moves the state; a PREAUTH greeting starts
    authenticated; LOGOUT, BYE and the end of input close.

Security:
    Treats every input byte as hostile. Bounds (events.Limits): a command's
    octets (max_command; max_unauthenticated before login), APPEND size
    (max_append), nesting depth (max_depth), AUTHENTICATE and IDLE lines
    (max_auth_line), input buffered while an answer is pending (four times
    max_command plus 64 KiB, then BYE), and max_errors BADs in a row
    (then BYE). Scanning uses bytes.find, never a Python loop per octet.
    The adapter should stop reading while `awaiting == "answer"` (the
    bound above is for adapters that read one more chunk).

See also:
    RFC 9051 §2.2, §4.3, §5.4, §6, §7; RFC 3501; RFC 7888; RFC 3502;
    RFC 7889; RFC 2177; RFC 4959; imap/events.py, imap/states.py,
    imap/parse/, imap/response.py.
"""

from __future__ import annotations

import base64
import binascii
import enum

from postoffice.imap import commands as c
from postoffice.imap import events as ev
from postoffice.imap.events import Event, Limits
from postoffice.imap.parse import (
    ParseError,
    parse_append_head,
    parse_append_next,
    parse_command,
    split_head,
)
from postoffice.imap.response import Code, Result, continuation, continuation_data, tagged
from postoffice.imap.response import untagged as render_untagged
from postoffice.imap.states import RULES, State, render_table

__all__ = ["RULES", "ServerProtocol", "State", "render_table"]

LITERAL_MINUS_MAX = 4096  # RFC 7888 §4: LITERAL- non-synchronizing literals
_HUGE = 1 << 64  # an announced size too long to read as a number
_TOOBIG = Code(name="TOOBIG")


class _Mode(enum.Enum):
    COMMAND = 1  # reading a command line
    LITERAL = 2  # reading an argument literal into the command
    SKIP_LINE = 3  # dropping the rest of a refused command's line
    SKIP_LITERAL = 4  # dropping a refused non-synchronizing literal
    APPEND_DATA = 5  # streaming an APPEND message
    APPEND_TAIL = 6  # the rest of the line after a message literal
    AUTH = 7  # one AUTHENTICATE response line
    IDLE = 8  # waiting for DONE


def _announcement(line: bytes) -> tuple[int, bool, bool] | None:
    """(size, synchronizing, literal8) when `line` ends with a literal's
    announcement `{n}`, `{n+}`, `~{n}` (RFC 7888 §3: checked on every line)."""
    if not line.endswith(b"}"):
        return None
    brace = line.rfind(b"{")
    if brace < 0:
        return None
    inner = line[brace + 1 : -1]
    sync = not inner.endswith(b"+")
    if not sync:
        inner = inner[:-1]
    if not inner.isdigit():
        return None
    size = int(inner) if len(inner) <= 20 else _HUGE
    return size, sync, brace > 0 and line[brace - 1] == 0x7E


class ServerProtocol:
    """The IMAP server engine for one connection (sans I/O)."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.utf8 = False  # mailbox names in UTF-8 (IMAP4rev2 / UTF8=ACCEPT)
        self._state = State.NOT_AUTHENTICATED
        self._mode = _Mode.COMMAND
        self._buf = b""
        self._out: list[bytes] = []
        self._pending: Event | None = None
        self._pending_name = ""
        self._pending_tag = ""
        self._closed = False
        self._tls = False
        self._tls_upgrading = False
        self._errors = 0
        # the command being assembled
        self._parts: list[bytes] = []
        self._size = 0
        self._tag: str | None = None
        self._name = ""
        self._left = 0  # octets of the literal being read or dropped
        self._skip_tail = b""
        self._skip_literals = True
        # APPEND
        self._append_mailbox = ""
        self._append_message: c.AppendMessage | None = None
        self._append_index = 0
        self._append_open = False  # AppendBegin was emitted: the session holds data
        self._append_fault = ""
        # AUTHENTICATE / IDLE
        self._mode_tag = ""
        self._deferred: list[Event] = []  # events raised inside an answer
        self._steps = {
            _Mode.COMMAND: self._step_command,
            _Mode.LITERAL: self._step_literal,
            _Mode.SKIP_LINE: self._step_skip_line,
            _Mode.SKIP_LITERAL: self._step_skip_literal,
            _Mode.APPEND_DATA: self._step_append_data,
            _Mode.APPEND_TAIL: self._step_append_tail,
            _Mode.AUTH: self._step_line_mode,
            _Mode.IDLE: self._step_line_mode,
        }

    # -- properties -----------------------------------------------------------

    @property
    def state(self) -> State:
        return State.LOGOUT if self._closed else self._state

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def tls(self) -> bool:
        return self._tls

    @property
    def awaiting(self) -> str:
        """ "answer" (an event awaits its answer), "idle", "append" (message
        octets), "tls" (the handshake) or "command"."""
        if self._pending is not None:
            return "answer"
        if self._tls_upgrading:
            return "tls"
        if self._mode is _Mode.IDLE:
            return "idle"
        if self._mode is _Mode.APPEND_DATA:
            return "append"
        return "command"

    # -- the adapter's side -----------------------------------------------------

    def greeting(self, result: Result) -> None:
        """Queue the greeting (RFC 9051 §7.1): OK, PREAUTH (authenticated
        already) or BYE (refused; the engine closes)."""
        self._out.append(render_untagged(result))
        if result.status == "PREAUTH":
            self._state = State.AUTHENTICATED
        elif result.status == "BYE":
            self._shut()

    def data_to_send(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes; events in order, stopping after the first that needs
        an answer. `receive_data(b"")` resumes with buffered input."""
        events, self._deferred = self._deferred, []
        if self._closed or self._tls_upgrading:
            return events
        if data:
            self._buf = self._buf + data if self._buf else data
        if self._pending is not None:
            if len(self._buf) > 4 * self.limits.max_command + 65536:
                self._bye(events, "too much input while a command runs")
            return events
        self._run(events)
        return events

    def eof_received(self) -> list[Event]:
        """The client closed its side."""
        events, self._deferred = self._deferred, []
        if self._closed:
            return events
        if self._append_open:
            events.append(ev.AppendAborted(tag=self._tag or "", reason="connection closed"))
        events.append(ev.Closing(reason="end of input"))
        self._shut()
        return events

    def close(self, text: str, code: Code | None = None) -> None:
        """Queue `* BYE text` (shutdown, idle timeout) and close."""
        if not self._closed:
            self._out.append(render_untagged(Result(status="BYE", text=text, code=code)))
            self._shut()

    def tls_started(self) -> None:
        """The TLS handshake after STARTTLS succeeded."""
        self._tls_upgrading = False
        self._tls = True
        self._buf = b""

    # -- the session's side -------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Queue untagged data (rendered by imap/response.py)."""
        if not self._closed:
            self._out.append(data)

    def finish(self, result: Result) -> None:
        """The tagged response to the pending event's command."""
        event = self._take_pending()
        if self._closed:
            return
        self._out.append(tagged(self._pending_tag, result))
        name = self._pending_name
        rule = RULES.get(name)
        if rule is not None:
            if result.status == "OK" and rule.on_ok is not None:
                self._state = rule.on_ok
            elif result.status == "NO" and rule.on_no is not None:
                self._state = rule.on_no
        if isinstance(event, ev.AppendBegin):
            self._append_open = False
            message = event.message
            self._drop_literal(message.size, message.synchronizing, self._deferred)
            return
        if isinstance(event, ev.AppendComplete):
            self._append_open = False
            return
        if result.status != "OK":
            return
        if name == "STARTTLS":  # RFC 9051 §6.2.1: nothing sent before counts
            self._buf = b""
            self._tls_upgrading = True
        elif name == "LOGOUT":
            self._shut()

    def challenge(self, data: bytes) -> None:
        """Continue AUTHENTICATE: `+ base64(data)`, then read one line."""
        event = self._take_pending()
        if event is None:
            return
        authenticate = isinstance(event, ev.CommandReady) and isinstance(
            event.command, c.Authenticate
        )
        if not authenticate and not isinstance(event, ev.AuthResponse):
            raise RuntimeError("challenge() answers AUTHENTICATE only")
        self._out.append(continuation_data(data))
        self._mode = _Mode.AUTH
        self._mode_tag = self._pending_tag

    def start_idle(self, text: str = "idling") -> None:
        """Enter IDLE (RFC 2177 §3): `+ idling`, then wait for DONE."""
        event = self._take_pending()
        if event is None:
            return
        if not (isinstance(event, ev.CommandReady) and isinstance(event.command, c.Idle)):
            raise RuntimeError("start_idle() answers IDLE only")
        self._out.append(continuation(text))
        self._mode = _Mode.IDLE
        self._mode_tag = self._pending_tag

    def accept_append(self) -> None:
        """Receive the announced APPEND message (AppendData ... AppendEnd)."""
        event = self._take_pending()
        if event is None:
            return
        if not isinstance(event, ev.AppendBegin):
            raise RuntimeError("accept_append() answers AppendBegin only")
        message = event.message
        if message.synchronizing:
            self._out.append(continuation("Ready for literal data"))
        self._mode = _Mode.APPEND_DATA
        self._left = message.size
        self._append_fault = ""

    def _take_pending(self) -> Event | None:
        """The pending event, cleared; None only once the engine is closed
        (the client left while the session worked)."""
        event = self._pending
        if event is None and not self._closed:
            raise RuntimeError("no event awaits an answer")
        self._pending = None
        return event

    # -- the loop ------------------------------------------------------------------

    def _run(self, events: list[Event]) -> None:
        buf, pos = self._buf, 0
        more = True
        steps = self._steps
        while more and self._pending is None and not self._closed and not self._tls_upgrading:
            pos, more = steps[self._mode](buf, pos, events)
        if self._closed or self._tls_upgrading:
            self._buf = b""
        else:
            self._buf = buf[pos:] if pos else buf

    def _budget(self) -> int:
        if self._state is State.NOT_AUTHENTICATED:
            return self.limits.max_unauthenticated
        return self.limits.max_command

    def _step_command(self, buf: bytes, pos: int, events: list[Event]) -> tuple[int, bool]:
        room = self._budget() - self._size
        end = buf.find(b"\r\n", pos)
        if end < 0:
            if len(buf) - pos > room + 1:
                self._too_long(buf[pos : pos + 64], events)
                return pos, True
            return pos, False
        line = buf[pos:end]
        after = end + 2
        if len(line) > room:
            self._too_long(line, events)
            self._skip_tail = line[-64:]
            self._end_skip(events)
            return after, True
        if not self._parts:
            head = split_head(line)
            if head.tag is None:
                self._refuse_line(line, events, None, "missing or invalid tag")
                return after, True
            self._tag = head.tag
            if head.name is None:
                self._refuse_line(line, events, head.tag, "unknown command")
                return after, True
            rule = RULES[head.name]
            if self._state not in rule.states:
                reason = f"{head.name} is not allowed in the {self._state.value} state"
                self._refuse_line(line, events, head.tag, reason)
                return after, True
            self._name = head.name
        announced = _announcement(line)
        if announced is None:
            data = b"".join((*self._parts, line)) if self._parts else line
            self._reset_command()
            self._dispatch(data, events)
            return after, True
        size, sync, _binary = announced
        if self._name == "APPEND":
            so_far = b"".join((*self._parts, line)) if self._parts else line
            append = parse_append_head(so_far, utf8=self.utf8, max_depth=self.limits.max_depth)
            if isinstance(append, ParseError):
                self._refuse_line(line, events, self._tag, append.reason)
                return after, True
            if append is not None:
                self._reset_command()
                self._tag = append.tag
                self._begin_append(append.mailbox, append.message, 0, events)
                return after, True
        if not sync and not self.limits.literal_plus and size > LITERAL_MINUS_MAX:
            self._refuse_line(line, events, self._tag, "non-synchronizing literal too big", _TOOBIG)
            return after, True
        if size > room - len(line) - 2:
            self._refuse_line(line, events, self._tag, "literal too big", _TOOBIG)
            return after, True
        self._parts.append(line + b"\r\n")
        self._size += len(line) + 2 + size
        if sync:
            self._out.append(continuation("OK"))
        self._mode = _Mode.LITERAL
        self._left = size
        return after, True

    def _step_literal(self, buf: bytes, pos: int, events: list[Event]) -> tuple[int, bool]:
        take = min(self._left, len(buf) - pos)
        if take <= 0 and self._left:
            return pos, False
        if take:
            self._parts.append(buf[pos : pos + take])
            self._left -= take
        if self._left:
            return pos + take, False
        self._mode = _Mode.COMMAND
        return pos + take, True

    def _reset_command(self) -> None:
        self._parts = []
        self._size = 0

    def _dispatch(self, data: bytes, events: list[Event]) -> None:
        result = parse_command(data, utf8=self.utf8, max_depth=self.limits.max_depth)
        if isinstance(result, ParseError):
            self._refuse(events, result.tag, result.reason, result.status, result.code)
            return
        self._errors = 0
        self._pending_name = c.command_name(result)
        self._pending_tag = result.tag
        self._ask(events, ev.CommandReady(command=result))

    def _ask(self, events: list[Event], event: Event) -> None:
        events.append(event)
        self._pending = event

    # -- refusing -----------------------------------------------------------------

    def _refuse(
        self,
        events: list[Event],
        tag: str | None,
        reason: str,
        status: str = "BAD",
        code: Code | str | None = None,
    ) -> None:
        """Queue `tag BAD reason` (or `* BAD` without a tag) and count it."""
        if isinstance(code, str):
            name, _, data = code.partition(" ")
            code = Code(name=name, data=data.encode("ascii"))
        result = Result(status="NO" if status == "NO" else "BAD", text=reason, code=code)
        self._out.append(tagged(tag, result) if tag is not None else render_untagged(result))
        events.append(ev.CommandRefused(tag=tag, reason=reason))
        if status == "BAD":
            self._errors += 1
            limit = self.limits.max_errors
            if 0 < limit <= self._errors:
                self._bye(events, "too many invalid commands")

    def _refuse_line(
        self,
        line: bytes,
        events: list[Event],
        tag: str | None,
        reason: str,
        code: Code | None = None,
    ) -> None:
        """Refuse the command whose (complete) line this is, and deal with
        a literal it announces: see the module manual, Literals."""
        self._refuse(events, tag, reason, code=code)
        self._reset_command()
        if self._append_open:
            self._append_open = False
            events.append(ev.AppendAborted(tag=tag or "", reason=reason))
        announced = _announcement(line)
        if announced is None or self._closed:
            self._mode = _Mode.COMMAND
            return
        size, sync, _binary = announced
        self._drop_literal(size, sync, events)

    def _drop_literal(self, size: int, sync: bool, events: list[Event]) -> None:
        """After a refusal: a synchronizing literal is never sent; a
        non-synchronizing one is dropped, then the rest of the command."""
        self._reset_command()
        if sync:
            self._mode = _Mode.COMMAND
            return
        if size > self.limits.max_discard:
            self._bye(events, "literal too big", _TOOBIG)
            return
        self._left = size
        self._mode = _Mode.SKIP_LITERAL

    def _too_long(self, start: bytes, events: list[Event]) -> None:
        """A line over the limit: BAD now, the rest of the command dropped."""
        tag = self._tag if self._parts or self._append_open else split_head(start).tag
        self._refuse(events, tag, "command line too long")
        self._reset_command()
        if self._append_open:
            self._append_open = False
            events.append(ev.AppendAborted(tag=tag or "", reason="command line too long"))
        self._mode = _Mode.SKIP_LINE
        self._skip_tail = b""
        self._skip_literals = True

    def _step_skip_line(self, buf: bytes, pos: int, events: list[Event]) -> tuple[int, bool]:
        end = buf.find(b"\r\n", pos)
        if end < 0:
            stop = len(buf) - (1 if buf.endswith(b"\r") else 0)
            self._skip_tail = (self._skip_tail + buf[max(pos, stop - 64) : stop])[-64:]
            return stop, False
        self._skip_tail = (self._skip_tail + buf[max(pos, end - 64) : end])[-64:]
        self._end_skip(events)
        return end + 2, True

    def _end_skip(self, events: list[Event]) -> None:
        announced = _announcement(self._skip_tail) if self._skip_literals else None
        self._skip_tail = b""
        if announced is None or announced[1]:
            self._mode = _Mode.COMMAND
            return
        self._drop_literal(announced[0], False, events)

    def _step_skip_literal(self, buf: bytes, pos: int, events: list[Event]) -> tuple[int, bool]:
        take = min(self._left, len(buf) - pos)
        self._left -= take
        if self._left:
            return pos + take, False
        self._mode = _Mode.SKIP_LINE
        self._skip_tail = b""
        self._skip_literals = True
        return pos + take, True

    def _bye(self, events: list[Event], reason: str, code: Code | None = None) -> None:
        if self._closed:
            return
        if self._append_open:
            self._append_open = False
            events.append(ev.AppendAborted(tag=self._tag or "", reason=reason))
        self._out.append(render_untagged(Result(status="BYE", text=reason, code=code)))
        events.append(ev.Closing(reason=reason))
        self._shut()

    def _shut(self) -> None:
        self._closed = True
        self._pending = None
        self._buf = b""
        self._mode = _Mode.COMMAND

    # -- APPEND ------------------------------------------------------------------------

    def _begin_append(
        self, mailbox: str, message: c.AppendMessage, index: int, events: list[Event]
    ) -> None:
        tag = self._tag or ""
        limit = self.limits.max_append
        refusal = ""
        status = "NO"
        if limit and message.size > limit:  # RFC 7889 §4
            refusal = "message too big"
        elif (
            not message.synchronizing
            and not self.limits.literal_plus
            and message.size > LITERAL_MINUS_MAX  # RFC 7888 §4
        ):
            refusal, status = "non-synchronizing literal too big", "BAD"
        if refusal:
            self._refuse(events, tag, refusal, status, _TOOBIG)
            if self._append_open:
                self._append_open = False
                events.append(ev.AppendAborted(tag=tag, reason=refusal))
            if not self._closed:
                self._drop_literal(message.size, message.synchronizing, events)
            return
        self._append_mailbox = mailbox
        self._append_message = message
        self._append_index = index
        self._append_open = True
        self._pending_name = "APPEND"
        self._pending_tag = tag
        self._mode = _Mode.COMMAND
        self._ask(events, ev.AppendBegin(tag=tag, mailbox=mailbox, message=message, index=index))

    def _step_append_data(self, buf: bytes, pos: int, events: list[Event]) -> tuple[int, bool]:
        message = self._append_message
        assert message is not None
        take = min(self._left, len(buf) - pos)
        if take <= 0 and self._left:
            return pos, False
        if take:
            chunk = buf[pos : pos + take]
            if not message.binary and b"\x00" in chunk:  # RFC 9051 §4.3 CHAR8
                self._append_fault = "NUL octet in the message; use literal8 (BINARY)"
            if not self._append_fault:
                events.append(ev.AppendData(data=chunk))
            self._left -= take
        if self._left:
            return pos + take, False
        tag = self._tag or ""
        if self._append_fault:
            self._append_open = False
            events.append(ev.AppendAborted(tag=tag, reason=self._append_fault))
            self._refuse(events, tag, self._append_fault)
            self._mode = _Mode.SKIP_LINE
            self._skip_tail = b""
            self._skip_literals = True
            return pos + take, True
        events.append(ev.AppendEnd(tag=tag, index=self._append_index))
        self._mode = _Mode.APPEND_TAIL
        return pos + take, True

    def _step_append_tail(self, buf: bytes, pos: int, events: list[Event]) -> tuple[int, bool]:
        end = buf.find(b"\r\n", pos)
        room = self.limits.max_command
        if end < 0:
            if len(buf) - pos > room + 1:
                self._too_long(b"", events)
                return pos, True
            return pos, False
        line = buf[pos:end]
        tag = self._tag or ""
        if len(line) > room:
            self._too_long(b"", events)
            self._skip_tail = line[-64:]
            self._end_skip(events)
            return end + 2, True
        if not line:
            self._mode = _Mode.COMMAND
            self._pending_name = "APPEND"
            self._pending_tag = tag
            self._ask(events, ev.AppendComplete(tag=tag, count=self._append_index + 1))
            return end + 2, True
        if _announcement(line) is None:
            self._refuse_line(line, events, tag, "unexpected characters after the message")
            return end + 2, True
        message = parse_append_next(line, tag)
        if isinstance(message, ParseError):
            self._refuse_line(line, events, tag, message.reason)
            return end + 2, True
        self._begin_append(self._append_mailbox, message, self._append_index + 1, events)
        return end + 2, True

    # -- AUTHENTICATE and IDLE lines ---------------------------------------------------

    def _step_line_mode(self, buf: bytes, pos: int, events: list[Event]) -> tuple[int, bool]:
        end = buf.find(b"\r\n", pos)
        limit = self.limits.max_auth_line
        tag = self._mode_tag
        idle = self._mode is _Mode.IDLE
        if end < 0 and len(buf) - pos <= limit + 1:
            return pos, False
        if end < 0 or end - pos > limit:
            self._mode = _Mode.SKIP_LINE
            self._skip_tail = b""
            self._skip_literals = False
            if idle:
                events.append(ev.IdleAborted(tag=tag, reason="line too long"))
            else:
                events.append(ev.AuthAborted(tag=tag, reason="line too long"))
            self._refuse(events, tag, "line too long")
            return pos, True
        line = buf[pos:end]
        self._mode = _Mode.COMMAND
        if idle:
            if line.upper() == b"DONE":
                self._pending_name = "IDLE"
                self._pending_tag = tag
                self._ask(events, ev.IdleDone(tag=tag))
            else:  # RFC 2177 §3: only DONE ends IDLE
                events.append(ev.IdleAborted(tag=tag, reason="expected DONE"))
                self._refuse(events, tag, "expected DONE")
            return end + 2, True
        data: bytes | None = None
        if line != b"*":
            try:
                data = base64.b64decode(line, validate=True)
            except (binascii.Error, ValueError):
                events.append(ev.AuthAborted(tag=tag, reason="invalid base64"))
                self._refuse(events, tag, "invalid base64 in the response")
                return end + 2, True
        self._pending_name = "AUTHENTICATE"
        self._pending_tag = tag
        self._ask(events, ev.AuthResponse(tag=tag, data=data))
        return end + 2, True
