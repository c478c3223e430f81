"""smtp.protocol — the SMTP server engine: bytes in, events and replies out (sans I/O).

Description:
    `ServerProtocol` turns the bytes a client sends into `smtp.events`
    events and turns the session's answers into reply bytes. It does no I/O:
    the adapter (smtp/server.py) moves bytes, the session (smtp/session.py)
    decides. The loop is:

        engine.greeting(reply)               # 220 banner (or 421/554 refusal)
        events = engine.receive_data(data)   # stops after a needs_answer event
        for each event needing an answer: engine.answer(reply)
                                      # (LMTP DataEnd: engine.answer_each([...]))
        events = engine.receive_data(b"")    # continue with buffered input
        transport.write(engine.data_to_send())

    Because parsing stops at every event that needs an answer, replies leave
    in command order under PIPELINING (RFC 2920 §3.1) and the engine's state
    follows the session's decisions. Output is only queued; the adapter
    flushes it.

    The engine itself answers: RSET (250 + Reset), NOOP (250), HELP (214),
    QUIT (221 + Quit), non-final BDAT chunks (250), and every error it can
    decide alone — each with a `CommandRejected` event:
      500 5.5.2  unknown verb; a bare CR or LF in a command line;
      500 5.5.6  command line too long (the rest of the line is discarded
                 unread, RFC 5321 §4.5.3.1.4);
      501 5.5.4  malformed arguments (ETRN: not a domain, @domain or #queue,
                 RFC 1985 §5); 501 5.1.7/5.1.3 bad address syntax;
      502 5.5.1  SEND SOML SAML TURN (RFC 5321 Appendix F),
                 STARTTLS/BDAT/ETRN/AUTH when switched off;
      503 5.5.1  a command not legal in the current state (smtp/states.py);
      552 5.3.4  MAIL SIZE= above max_message_size (RFC 1870 §6.1);
      553 5.6.7  non-ASCII address without SMTPUTF8 (RFC 6531 §3.5);
      554 5.5.1  DATA/BDAT when every RCPT was refused (RFC 2920 §3.1);
      555 5.5.4  unknown parameter (RFC 5321 §4.1.1.11);
      452 4.5.3  more than max_recipients accepted RCPTs (RFC 5321 §4.5.3.1.8).
    After max_errors such errors the engine sends 421 4.7.0 and emits Quit.

    Enhanced status codes (RFC 3463) are sent once EHLO/LHLO was accepted
    (RFC 2034 §3), never after HELO, never in the greeting, the EHLO reply
    or its extension lines.

Line discipline:
    Only CRLF ends a line (RFC 5321 §2.3.8). A command line holding a bare
    CR or LF is refused whole (500 5.5.2). A command line may hold
    max_command_line octets including CRLF (RFC 5321 §4.5.3.1.4: 512);
    MAIL and RCPT get PARAM_ALLOWANCE more, because RFC 1870 §3 (SIZE),
    RFC 6531 §3.4 (SMTPUTF8), RFC 3461 (RET, ENVID, NOTIFY, ORCPT) and
    RFC 4954 §5 (AUTH=) each raise the limit by their parameters.

    DATA (RFC 5321 §4.1.1.4): only CRLF "." CRLF ends the message; dots are
    unstuffed (§4.5.2). A bare CR or LF anywhere (550 5.6.0), a line longer
    than max_text_line octets including CRLF, not counting a stuffed dot
    (§4.5.3.1.6; 500 5.5.6), or
    more than max_message_size octets (RFC 1870; 552 5.3.4) refuses the
    message, but the engine keeps reading to the real CRLF.CRLF, so
    commands smuggled after a fake terminator (`LF.LF`, `LF.CRLF`, ...) are
    swallowed as data and never run; then it emits DataAborted and queues
    the reply. When a message has several faults the reply names the worst
    (bare CR/LF, then long line, then size), so it never depends on how the
    input was split into reads. Content is passed on as one DataChunk per
    receive_data() call, holding complete lines only.

    BDAT (RFC 3030 §2): exactly n octets follow, binary, no dot handling.
    The first BDAT of a transaction emits DataStart(bdat=True); a 4xx/5xx
    answer refuses the transaction, but its octets and those of any BDAT
    already pipelined are still read and discarded, each answered with that
    reply; LAST then emits DataAborted. Non-final chunks get
    "250 2.0.0 n octets received"; LAST emits DataEnd. A BDAT refused for
    sequence (503/502/554) still has its octets read and discarded, so
    message data never runs as commands.

States:
    fresh, greeted, mail, rcpt, bdat, data, auth, closed: smtp/states.py
    holds the State enum and TRANSITIONS, state → {verb: next state}, which
    every command is checked against (any other verb is 503 5.5.1). The
    engine re-exports State, TRANSITIONS and render_table.

AUTH (RFC 4954):
    Offered when EngineConfig.auth_mechanisms is not empty (and, with
    auth_requires_tls, only under TLS). AUTH emits AuthStart after the
    checks in smtp/auth_exchange.py (503 before EHLO or once authenticated,
    504 unknown mechanism, 538 without TLS, 501 bad base64). A 334 answer
    is sent as `334 SP base64` and the next line, up to 12288 octets, is
    read as the response: AuthResponse (None for "*"), or the engine itself
    answers 501 5.5.2 / 500 5.5.6 and emits AuthAborted. A 2xx answer sets
    `authenticated`; anything else ends the exchange. Lines pipelined after
    AUTH are never run as commands while the exchange is open (see
    smtp/auth_exchange.py, Pipelining).

Security:
    Treats every input byte as hostile. Input is buffered only up to one
    command line, one text line or max_buffered_input while an answer is
    pending (then the connection is closed with 421). Plaintext pipelined
    after STARTTLS is discarded when the 220 is answered (CVE-2011-0411).
    No per-byte Python loops: scanning uses bytes.find/count/replace.

Config:
    smtp.events.EngineConfig; `config` may be replaced between commands.

See also:
    RFC 5321, RFC 1870, RFC 1985, RFC 2034, RFC 2920, RFC 3030, RFC 3207,
    RFC 3461, RFC 3463, RFC 4954, RFC 6152, RFC 6531; smtp/commands.py,
    smtp/events.py, smtp/states.py, smtp/auth_exchange.py, smtp/wire.py
    (reply lines, EHLO keywords), smtp/session.py, smtp/server.py.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from postoffice.smtp import auth_exchange as ax
from postoffice.smtp import commands as cmd
from postoffice.smtp import events as ev
from postoffice.smtp import replies
from postoffice.smtp.events import EngineConfig, Event, MailParams
from postoffice.smtp.replies import Reply
from postoffice.smtp.states import TRANSITIONS, State, render_table
from postoffice.smtp.wire import CONTROLS as _CONTROLS
from postoffice.smtp.wire import ehlo_keywords
from postoffice.smtp.wire import format_reply as _format

__all__ = ["PARAM_ALLOWANCE", "TRANSITIONS", "ServerProtocol", "State", "ehlo_keywords"]
__all__ += ["render_table"]


# RFC 1870 §3 (+26 SIZE), RFC 6531 §3.4 (+10 SMTPUTF8), RFC 3461 (RET, ENVID,
# NOTIFY, ORCPT) and RFC 4954 §5 (AUTH=) raise the MAIL/RCPT limit; 2048
# octets cover their sum with room for UTF-8 addresses (RFC 6531).
PARAM_ALLOWANCE = 2048

_NOT_IMPLEMENTED = cmd.OBSOLETE_VERBS
_TRANSACTION_STATES = frozenset({State.MAIL, State.RCPT, State.BDAT, State.DATA})


# Faults in message content, worst first wins (see ServerProtocol._fail).
_FAULT_RANK = {
    replies.DATA_BARE_LINE_ENDING: 3,
    replies.DATA_LINE_TOO_LONG: 2,
    replies.MESSAGE_TOO_BIG: 1,
}


class _Mode(enum.Enum):
    COMMAND = 1  # reading command lines
    SKIP = 2  # discarding the rest of an over-long line
    DATA = 3  # reading DATA content
    BDAT = 4  # reading BDAT octets
    AUTH = 5  # reading one AUTH response line (RFC 4954 §4)


class ServerProtocol:
    """The SMTP server engine for one connection (sans I/O)."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self._seen_config: EngineConfig | None = None
        self._feat = cmd.Features.from_config(config)
        self._state = State.FRESH
        self._mode = _Mode.COMMAND
        self._skip_to = _Mode.COMMAND
        self._buf = b""
        self._out: list[bytes] = []
        self._pending: Event | None = None
        self._deferred: list[Event] = []
        self._closed = False
        self._overflow = False
        self._esmtp = False
        self._helo: str | None = None
        self._tls = False
        self._tls_upgrading = False
        self._authenticated = False
        self._errors = 0
        # the transaction
        self._mail: MailParams | None = None
        self._accepted = 0
        self._data_size = 0
        self._failed: Reply | None = None  # the message is refused with this reply
        self._failed_by_engine = False
        # the BDAT chunk being read
        self._chunk_size = 0
        self._chunk_left = 0
        self._chunk_last = False
        self._chunk_live = False  # False: the octets of a refused BDAT command
        self._chunk_replied = False

    # -- properties ---------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once QUIT, a 421, a refusing greeting or end of input."""
        return self._closed

    @property
    def awaiting(self) -> str:
        """What the engine waits for: "answer" (an event awaits answer()),
        "data" (message content: RFC 5321 §4.5.3.2.5 timeouts) or "command"
        (§4.5.3.2.7)."""
        if self._pending is not None:
            return "answer"
        mode = self._skip_to if self._mode is _Mode.SKIP else self._mode
        return "data" if mode is _Mode.DATA or mode is _Mode.BDAT else "command"

    @property
    def esmtp(self) -> bool:
        """True once EHLO (or LHLO) was accepted."""
        return self._esmtp

    @property
    def helo_domain(self) -> str | None:
        """The domain of the accepted HELO/EHLO, None before one."""
        return self._helo

    @property
    def tls(self) -> bool:
        """True after tls_started()."""
        return self._tls

    @property
    def authenticated(self) -> bool:
        """True once AUTH succeeded (2xx); STARTTLS forgets it (RFC 3207 §4.2)."""
        return self._authenticated

    @property
    def state(self) -> State:
        """The command state (see TRANSITIONS)."""
        return State.CLOSED if self._closed else self._state

    # -- the adapter's side -------------------------------------------------

    def greeting(self, reply: Reply) -> None:
        """Queue the greeting: 220 opens the session; anything else (421,
        554, RFC 5321 §3.1) refuses it and closes the engine."""
        self._out.append(_format(reply, False))
        if not 200 <= reply.code < 300:
            self._closed = True

    def data_to_send(self) -> bytes:
        """Drain and return the queued output."""
        out = b"".join(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes; return events in order, stopping right after the first
        event that needs an answer. `receive_data(b"")` resumes after one."""
        if self._deferred:
            deferred, self._deferred = self._deferred, []
            return deferred
        if self._closed or self._tls_upgrading:
            return []
        if data:
            if self._pending is not None and (
                len(self._buf) + len(data) > self.config.max_buffered_input
            ):
                self._overflow = True  # answered with 421 once the answer is in
            else:
                self._buf = self._buf + data if self._buf else data
        events: list[Event] = []
        if self._pending is None:
            self._run(events)
        return events

    def eof_received(self) -> list[Event]:
        """The client closed its side: drop any transaction and end."""
        events, self._deferred = self._deferred, []
        if self._closed:
            return events
        if self._state in _TRANSACTION_STATES or self._pending is not None:
            events.append(ev.Reset())
        events.append(ev.Quit())
        self._shut()
        return events

    def close(self, reply: Reply) -> None:
        """Queue `reply` (e.g. 421 4.4.2 timeout) and close the engine."""
        if self._closed:
            return
        self._send(reply)
        self._shut()

    def tls_started(self) -> None:
        """The TLS handshake after STARTTLS succeeded: RFC 3207 §4.2, forget
        everything learnt from the client (HELO/EHLO, transaction)."""
        self._tls_upgrading = False
        self._tls = True
        self._authenticated = False
        self._buf = b""
        self._helo = None
        self._esmtp = False
        self._reset_transaction(State.FRESH)

    # -- the session's side -------------------------------------------------

    def answer(self, reply: Reply) -> None:
        """Answer the pending event; the engine's state follows the reply."""
        if self._closed:
            return  # e.g. the client went away while the session was busy
        event = self._pending
        if event is None:
            raise RuntimeError("answer() without an event awaiting an answer")
        if not 200 <= reply.code <= 599:
            raise ValueError(f"not an SMTP reply code: {reply.code}")
        ax.check_answer(event, reply)
        self._pending = None
        ok = 200 <= reply.code < 300
        if isinstance(event, ev.Hello):
            self._answer_hello(event, reply)
        elif isinstance(event, ev.MailFrom):
            if ok:
                self._state = State.MAIL
                self._mail = event.params
                self._accepted = 0
            self._send(reply)
        elif isinstance(event, ev.RcptTo):
            if ok:
                self._accepted += 1
            self._send(reply)
        elif isinstance(event, ev.DataStart):
            self._answer_data_start(event, reply)
        elif isinstance(event, ev.AuthStart | ev.AuthResponse):
            self._answer_auth(reply)
        elif isinstance(event, ev.DataEnd):
            self._send(reply)  # RFC 5321 §4.1.1.4: the transaction ends
            self._reset_transaction(State.GREETED)
        elif isinstance(event, ev.StartTLS):
            self._send(reply)
            if 200 <= reply.code < 300:
                # RFC 3207 §4.2 / CVE-2011-0411: plaintext after STARTTLS is
                # never interpreted.
                self._buf = b""
                self._tls_upgrading = True
                self._helo = None
                self._esmtp = False
                self._reset_transaction(State.FRESH)
        else:  # Verify, Expand, Etrn
            self._send(reply)
        self._after_answer()

    def answer_each(self, answers: Sequence[Reply]) -> None:
        """LMTP (RFC 2033 §4.2): answer DataEnd with one reply per accepted
        recipient, in the order of their RCPT commands."""
        if self._closed:
            return
        if not isinstance(self._pending, ev.DataEnd) or not self.config.lmtp:
            raise RuntimeError("answer_each() answers DataEnd in LMTP mode only")
        if len(answers) != self._accepted:
            raise ValueError(f"{len(answers)} replies for {self._accepted} recipients")
        for reply in answers:
            if not 200 <= reply.code <= 599:
                raise ValueError(f"not an SMTP reply code: {reply.code}")
        self._pending = None
        for reply in answers:
            self._send(reply)
        self._reset_transaction(State.GREETED)
        self._after_answer()

    def _after_answer(self) -> None:
        if self._overflow:
            self._send(replies.INPUT_OVERFLOW)
            self._deferred.append(ev.Quit())
            self._shut()

    def _answer_hello(self, event: ev.Hello, reply: Reply) -> None:
        if not 200 <= reply.code < 300:
            self._send(reply)
            return
        self._helo = event.domain
        self._esmtp = event.verb != "HELO"
        self._state = State.GREETED
        if not self._esmtp:
            self._out.append(_format(reply, False))
            return
        # RFC 5321 §4.1.1.1: 250-domain greeting, then one keyword per line.
        tls = self._tls
        keywords = (*ehlo_keywords(self.config, tls=tls), *ax.ehlo_keywords(self.config, tls=tls))
        text = "\n".join((reply.text or self.config.hostname, *keywords))
        self._out.append(_format(Reply(code=reply.code, text=text), False))

    def _answer_auth(self, reply: Reply) -> None:
        if reply.code == 334:  # RFC 4954 §4: read one response line next
            self._out.append(ax.format_challenge(reply))
            self._state, self._mode = State.AUTH, _Mode.AUTH
            return
        self._state = State.GREETED
        self._authenticated = 200 <= reply.code < 300
        self._send(reply)

    def _answer_data_start(self, event: ev.DataStart, reply: Reply) -> None:
        if not event.bdat:
            self._send(reply)
            if 300 <= reply.code < 400:  # RFC 5321 §4.1.1.4: 354 → content
                self._state = State.DATA
                self._mode = _Mode.DATA
                self._data_size = 0
                self._failed = None
            return
        # RFC 3030 §2: the first BDAT; its octets are read whatever the answer.
        self._state = State.BDAT
        self._data_size = 0
        self._chunk_live = True
        if 200 <= reply.code < 400:
            self._failed = None
        else:
            self._failed = reply
            self._failed_by_engine = False
            self._send(reply)
            self._chunk_replied = True

    # -- output and errors --------------------------------------------------

    def _send(self, reply: Reply) -> None:
        self._out.append(_format(reply, self._esmtp and self.config.enhancedstatuscodes))

    def _shut(self) -> None:
        self._closed = True
        self._pending = None
        self._buf = b""
        self._mode = _Mode.COMMAND

    def _error(self, events: list[Event]) -> None:
        """Count an engine-generated error; close after max_errors."""
        self._errors += 1
        limit = self.config.max_errors
        if 0 < limit <= self._errors and not self._closed:
            self._send(replies.TOO_MANY_ERRORS)
            events.append(ev.Quit())
            self._shut()

    def _reject(self, events: list[Event], verb: str, reply: Reply) -> None:
        self._send(reply)
        events.append(ev.CommandRejected(command=verb, reply=reply))
        self._error(events)

    def _reset_transaction(self, state: State) -> None:
        self._state = state
        self._mail = None
        self._accepted = 0
        self._data_size = 0
        self._failed = None
        self._failed_by_engine = False
        self._chunk_live = False
        self._chunk_replied = False

    # -- the parse loop -----------------------------------------------------

    def _run(self, events: list[Event]) -> None:
        buf, pos = self._buf, 0
        more = True
        while more and self._pending is None and not self._closed:
            mode = self._mode
            if mode is _Mode.COMMAND:
                pos, more = self._step_command(buf, pos, events)
            elif mode is _Mode.DATA:
                pos, more = self._step_data(buf, pos, events)
            elif mode is _Mode.BDAT:
                pos, more = self._step_bdat(buf, pos, events)
            elif mode is _Mode.AUTH:
                pos, more = self._step_auth(buf, pos, events)
            else:
                pos, more = self._step_skip(buf, pos)
        if self._closed or self._tls_upgrading:
            self._buf = b""
        else:
            self._buf = buf[pos:] if pos else buf

    def _line_limit(self, buf: bytes, pos: int) -> int:
        """Longest command line content (without CRLF) for the line at pos."""
        limit = self.config.max_command_line - 2  # RFC 5321 §4.5.3.1.4
        head = buf[pos : pos + 5].upper()
        if head in (b"MAIL ", b"RCPT "):
            limit += PARAM_ALLOWANCE
        return max(limit, ax.AUTH_LINE_LIMIT) if head == b"AUTH " else limit

    def _step_skip(self, buf: bytes, pos: int) -> tuple[int, bool]:
        end = buf.find(b"\r\n", pos)
        stop = end if end >= 0 else len(buf) - (1 if buf.endswith(b"\r") else 0)
        # Inside a message a bare CR/LF still counts, so the reply does not
        # depend on how the input was split (see _fail).
        if self._skip_to is _Mode.DATA and (
            buf.find(b"\n", pos, stop) >= 0 or buf.find(b"\r", pos, stop) >= 0
        ):
            self._fail(replies.DATA_BARE_LINE_ENDING)
        if end < 0:  # keep a final CR: it may be half of the CRLF
            return stop, False
        self._mode = self._skip_to
        return end + 2, True

    def _skip_line(self, back_to: _Mode) -> None:
        self._mode = _Mode.SKIP
        self._skip_to = back_to

    def _step_command(self, buf: bytes, pos: int, events: list[Event]) -> tuple[int, bool]:
        end = buf.find(b"\r\n", pos)
        if end < 0:
            if len(buf) - pos > self._line_limit(buf, pos) + 1:
                self._reject(events, "", replies.LINE_TOO_LONG)
                self._skip_line(_Mode.COMMAND)
                return pos, True
            return pos, False
        if end - pos > self._line_limit(buf, pos):
            self._reject(events, "", replies.LINE_TOO_LONG)
        else:
            self._command(buf[pos:end], events)
        return end + 2, True

    def _step_auth(self, buf: bytes, pos: int, events: list[Event]) -> tuple[int, bool]:
        end = buf.find(b"\r\n", pos)
        if end < 0 and len(buf) - pos <= ax.AUTH_LINE_LIMIT + 1:
            return pos, False
        self._mode, self._state = _Mode.COMMAND, State.GREETED
        answer: ev.AuthResponse | Reply = ax.AUTH_LINE_TOO_LONG  # RFC 4954 §4, §6
        if 0 <= end <= pos + ax.AUTH_LINE_LIMIT:
            answer = ax.response_event(buf[pos:end])
        if isinstance(answer, ev.AuthResponse):
            self._state = State.AUTH
            self._ask(events, answer)
        else:
            self._send(answer)
            events.append(ev.AuthAborted(reply=answer))
            self._error(events)
            if end < 0:
                self._skip_line(_Mode.COMMAND)
                return pos, True
        return end + 2, True

    # -- commands -----------------------------------------------------------

    def _command(self, line: bytes, events: list[Event]) -> None:
        verb, rest = cmd.split_verb(line)
        if b"\r" in line or b"\n" in line:  # RFC 5321 §2.3.8
            self._reject(events, verb, replies.BARE_LINEFEED)
            return
        config = self.config
        if verb not in cmd.KNOWN_VERBS or (
            (verb == "LHLO") != config.lmtp and verb in ("HELO", "EHLO", "LHLO")
        ):
            word = line[:16].split(b" ", 1)[0].decode("ascii", "replace")
            self._reject(events, word.upper().translate(_CONTROLS), replies.SYNTAX_ERROR)
            return
        if (
            verb in _NOT_IMPLEMENTED
            or (verb == "AUTH" and not config.auth_mechanisms)  # RFC 5321 §4.2.4
            or (verb == "STARTTLS" and not config.starttls)
            or (verb == "BDAT" and not config.chunking)
            or (verb == "ETRN" and not config.etrn)
        ):
            self._reject(events, verb, replies.NOT_IMPLEMENTED)
            self._discard_chunk(verb, rest)
            return
        state = self._state
        if verb not in TRANSITIONS[state]:
            self._reject(events, verb, replies.BAD_SEQUENCE)  # RFC 5321 §4.1.4
            self._discard_chunk(verb, rest)
            return
        if config is not self._seen_config:
            self._seen_config = config
            self._feat = cmd.Features.from_config(config)
        if verb == "RCPT":
            self._state = State.RCPT  # issued, accepted or not (RFC 2920 §3.1)
        mail = self._mail
        try:
            command = cmd.parse_arguments(
                verb, rest, features=self._feat, smtputf8=mail is not None and mail.smtputf8
            )
        except cmd.CommandError as exc:
            self._reject(events, verb, exc.reply)
            return
        if isinstance(command, cmd.Mail):
            size = command.params.size
            limit = config.max_message_size
            if size is not None and limit and size > limit:  # RFC 1870 §6.1
                self._reject(events, verb, replies.MESSAGE_TOO_BIG)
                return
            self._ask(events, ev.MailFrom(sender=command.sender, params=command.params))
        elif isinstance(command, cmd.Rcpt):
            if self._accepted >= config.max_recipients:  # RFC 5321 §4.5.3.1.8
                self._reject(events, verb, replies.TOO_MANY_RECIPIENTS)
                return
            self._ask(events, ev.RcptTo(recipient=command.recipient, params=command.params))
        elif isinstance(command, cmd.Bdat):
            self._bdat(command, events)
        elif isinstance(command, cmd.Data):
            if mail is not None and mail.body == "BINARYMIME":  # RFC 3030 §3
                self._reject(events, verb, replies.BAD_SEQUENCE)
            elif self._accepted == 0:
                self._reject(events, verb, replies.NO_VALID_RECIPIENTS)
            else:
                self._ask(events, ev.DataStart(bdat=False))
        elif isinstance(command, cmd.Hello):
            if state is not State.FRESH:  # RFC 5321 §4.1.4: like RSET
                self._reset_transaction(State.GREETED)
                events.append(ev.Reset())
            self._ask(events, ev.Hello(verb=command.verb, domain=command.domain))
        elif isinstance(command, cmd.Rset):
            self._reset_transaction(TRANSITIONS[state]["RSET"])
            self._send(replies.RESET_OK)
            events.append(ev.Reset())
        elif isinstance(command, cmd.Noop):
            self._send(replies.OK)
        elif isinstance(command, cmd.Help):
            self._send(replies.HELP)
        elif isinstance(command, cmd.Quit):
            self._send(replies.CLOSING)
            events.append(ev.Quit())
            self._shut()
        elif isinstance(command, cmd.Vrfy):
            self._ask(events, ev.Verify(argument=command.argument))
        elif isinstance(command, cmd.Expn):
            self._ask(events, ev.Expand(argument=command.argument))
        elif isinstance(command, cmd.Etrn):
            etrn = ev.Etrn.from_argument(command.argument)
            if etrn is None:  # RFC 1985 §5: 501 Syntax Error in Parameters
                self._reject(events, verb, replies.PARAM_SYNTAX)
            else:
                self._ask(events, etrn)
        elif isinstance(command, cmd.Auth):
            auth = ax.start_event(
                command, config, tls=self._tls, esmtp=self._esmtp, authenticated=self.authenticated
            )
            if isinstance(auth, Reply):
                self._reject(events, verb, auth)
            else:
                self._ask(events, auth)
        elif isinstance(command, cmd.StartTls):
            if self._tls:
                self._reject(events, verb, replies.TLS_ALREADY_ACTIVE)
            else:
                self._ask(events, ev.StartTLS())
        else:  # pragma: no cover - every verb in TRANSITIONS is handled above
            self._reject(events, verb, replies.NOT_IMPLEMENTED)

    def _ask(self, events: list[Event], event: Event) -> None:
        events.append(event)
        self._pending = event

    # -- BDAT ----------------------------------------------------------------

    def _discard_chunk(self, verb: str, rest: bytes) -> None:
        """A refused BDAT still announced its octets: read and drop them so
        they are never taken for commands (RFC 3030 §2)."""
        if verb != "BDAT" or self._closed:
            return
        try:
            command = cmd.parse_arguments(verb, rest)
        except cmd.CommandError:
            return
        if isinstance(command, cmd.Bdat):
            self._start_chunk(command, live=False)

    def _start_chunk(self, command: cmd.Bdat, *, live: bool) -> None:
        self._chunk_size = self._chunk_left = command.size
        self._chunk_last = command.last
        self._chunk_live = live
        self._chunk_replied = False
        self._mode = _Mode.BDAT

    def _bdat(self, command: cmd.Bdat, events: list[Event]) -> None:
        if self._state is State.BDAT:
            self._start_chunk(command, live=True)
            return
        if self._accepted == 0:  # RFC 2920 §3.1 / RFC 3030 §2
            self._reject(events, "BDAT", replies.NO_VALID_RECIPIENTS)
            if not self._closed:
                self._start_chunk(command, live=False)
            return
        self._start_chunk(command, live=False)  # made live by the answer
        self._ask(events, ev.DataStart(bdat=True))

    def _step_bdat(self, buf: bytes, pos: int, events: list[Event]) -> tuple[int, bool]:
        left = self._chunk_left
        if left:
            avail = len(buf) - pos
            if avail <= 0:
                return pos, False
            take = left if left < avail else avail
            if self._chunk_live and self._failed is None:
                self._data_size += take
                limit = self.config.max_message_size
                if limit and self._data_size > limit:  # RFC 1870 §6.3
                    self._failed = replies.MESSAGE_TOO_BIG
                    self._failed_by_engine = True
                else:
                    events.append(ev.DataChunk(data=buf[pos : pos + take]))
            pos += take
            self._chunk_left = left = left - take
            if left:
                return pos, False
        self._mode = _Mode.COMMAND
        if self._chunk_live:
            self._end_chunk(events)
        return pos, True

    def _end_chunk(self, events: list[Event]) -> None:
        failed = self._failed
        if failed is None:
            if self._chunk_last:
                self._ask(events, ev.DataEnd(size=self._data_size))
            else:
                text = f"{self._chunk_size} octets received"
                self._send(replies.CHUNK_RECEIVED.with_text(text))
            return
        if not self._chunk_replied:
            self._send(failed)
        self._chunk_replied = False
        by_engine = self._failed_by_engine
        if self._chunk_last:
            self._reset_transaction(State.GREETED)
            events.append(ev.DataAborted(reply=failed))
        if by_engine:
            self._error(events)

    # -- DATA ---------------------------------------------------------------

    def _step_data(self, buf: bytes, pos: int, events: list[Event]) -> tuple[int, bool]:
        # Invariant: pos is at the start of a line.
        end = buf.rfind(b"\r\n", pos)
        if end < 0:
            # An unfinished line; a final CR may be half of its CRLF, a
            # leading dot may be stuffing (RFC 5321 §4.5.3.1.6).
            stuffed = 1 if buf.startswith(b".", pos) else 0
            if len(buf) - pos > self.config.max_text_line - 1 + stuffed:
                self._fail(replies.DATA_LINE_TOO_LONG)
                self._skip_line(_Mode.DATA)
                return pos, True
            return pos, False
        # RFC 5321 §4.1.1.4: the end is CRLF "." CRLF, where the first CRLF
        # may be the one that ended the previous line (or the DATA command).
        if buf.startswith(b".\r\n", pos):
            stop, after = pos, pos + 3
        else:
            found = buf.find(b"\r\n.\r\n", pos, end + 2)
            stop, after = (found + 2, found + 5) if found >= 0 else (end + 2, -1)
        if stop > pos:
            self._content(buf[pos:stop], events)
        if after < 0:
            return stop, True
        self._mode = _Mode.COMMAND
        failed = self._failed
        if failed is None:
            self._ask(events, ev.DataEnd(size=self._data_size))
        else:
            self._reset_transaction(State.GREETED)
            self._send(failed)
            events.append(ev.DataAborted(reply=failed))
            self._error(events)
        return after, True

    def _fail(self, reply: Reply) -> None:
        """Refuse the message. The worst fault wins whatever came first, so
        the reply does not depend on how the input was split."""
        failed = self._failed
        if failed is None or _FAULT_RANK.get(reply, 0) > _FAULT_RANK.get(failed, 0):
            self._failed = reply
            self._failed_by_engine = True

    def _content(self, data: bytes, events: list[Event]) -> None:
        """Check, unstuff and pass on complete lines of message content."""
        lines = data.count(b"\r\n")
        # RFC 5321 §2.3.8: CR and LF only as CRLF; anything else is refused
        # rather than repaired (SMTP smuggling).
        if data.count(b"\n") != lines or data.count(b"\r") != lines:
            self._fail(replies.DATA_BARE_LINE_ENDING)
            return
        # RFC 5321 §4.5.2: drop the first "." of every line that starts with one.
        if data[0] == 0x2E:
            data = data[1:]
        if b"\r\n." in data:
            data = data.replace(b"\r\n.", b"\r\n")
        # RFC 5321 §4.5.3.1.6: at most 1000 octets with CRLF, "not counting
        # the leading dot duplicated for transparency": measured unstuffed.
        longest = self.config.max_text_line - 2
        if len(data) > longest and max(map(len, data.split(b"\r\n"))) > longest:
            self._fail(replies.DATA_LINE_TOO_LONG)
            return
        if self._failed is not None:
            return  # refused: only worse faults matter now
        self._data_size += len(data)
        limit = self.config.max_message_size
        if limit and self._data_size > limit:  # RFC 1870 §6.3
            self._fail(replies.MESSAGE_TOO_BIG)
            return
        events.append(ev.DataChunk(data=data))
