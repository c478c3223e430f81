"""smtp.client_protocol — the ESMTP client engine: replies in, commands out (sans I/O).

Description:
    `ClientProtocol` is the sending side of RFC 5321 as a state machine. It
    does no I/O: the adapter (smtp/client.py) connects, moves bytes and runs
    the clocks; this engine decides what to send and what replies mean.

        engine = ClientProtocol(ClientConfig(helo_name="mail.example.org"))
        events = engine.receive_data(data)     # 220 greeting → EHLO queued
        transport.write(engine.data_to_send())
        # Greeted(extensions) → then one at a time: starttls(),
        # authenticate(), send_transaction(tx), reset(), quit()
        # TransactionDone(results): one RecipientResult per recipient

    Calls that can decide at once (send_transaction, authenticate) return
    the events they produce, e.g. a TransactionDone for a message refused
    before anything was sent. A call in the wrong state (CALLS) raises
    RuntimeError: a bug in the adapter, never a peer's doing. On a broken
    connection or an expired timer the adapter calls connection_lost().

    Replies (RFC 5321 §4.2.1): "NNN-text" lines continue, "NNN text" or
    "NNN" ends a reply; a bare LF is taken as a line end (liberal in what
    we accept); an RFC 3463 enhanced code ("5.1.1 ") is split off each
    line when its class matches the reply's. A line that is not a reply, a
    code outside 200..599, a line over MAX_REPLY_LINE octets or a reply of
    more than MAX_REPLY_LINES lines is a protocol error (451 4.5.0); so is
    a reply nobody asked for, a 3xx where none belongs, or a 2xx to DATA.
    A 421 at any point (RFC 5321 §3.8) ends the session.

    Greeting and hello (RFC 5321 §3.1, §3.2, §4.1.4): a 2xx greeting is
    answered with EHLO; a 5xx to EHLO falls back to HELO (then there are no
    extensions); anything else ends the session (Closed), so that the
    adapter tries the next host.

    A transaction (RFC 5321 §3.3), once smtp/client_content.py's
    prepare_content() accepted it for this peer:
      * MAIL FROM with SIZE= (when offered, RFC 1870 §3), BODY=8BITMIME or
        BINARYMIME, SMTPUTF8, and RET=/ENVID= only when the peer offers DSN
        (RFC 3461 §4.3, §4.4, xtext); RCPT TO with NOTIFY=/ORCPT= only with
        DSN (RFC 3461 §4.1, §4.2).
      * PIPELINING (RFC 2920 §3.1): MAIL, every RCPT and DATA go as one
        group (after an RSET when a failed transaction left one open on the
        server). Without it each command waits for its reply; no RCPT
        follows a refused MAIL and no DATA follows when every RCPT was
        refused.
      * CHUNKING (RFC 3030 §2): once the RCPT replies are in and one was
        accepted, the content goes as one "BDAT n LAST" chunk, without dot
        stuffing. Otherwise DATA; after 354 the content, dot-stuffed and
        ended with CRLF.CRLF (RFC 5321 §4.5.2). A 354 that comes though no
        RCPT was accepted (a pipelined DATA) gets only ".".
      * Results, one per recipient in order: a refused MAIL → its reply
        for all; a refused RCPT → its reply; otherwise the reply to a
        refused DATA or to the end of data, which applies to every
        accepted recipient (RFC 5321 §4.1.1.4). 2xx delivered, 4xx
        deferred, 5xx bounced is the agent's reading. `content_sent` says
        whether the message may have reached the peer: a connection lost
        after that is not retried elsewhere at once (RFC 5321 §6.1 warns of
        duplicates).
      * A session that ends mid-transaction (421, lost connection, timeout,
        protocol error) gives every recipient without a final answer the
        session's reply, with stage "session".

    STARTTLS (RFC 3207 §4.2): 220 → TlsReady; the adapter does the
    handshake and calls tls_started(); the engine forgets the extensions,
    drops anything received before the handshake (no injected plaintext
    reply survives it) and sends EHLO again. AUTH (RFC 4954 §4): PLAIN with
    an initial response when offered, else LOGIN; refused unless TLS is on
    or `allow_plaintext` says so; a 334 the engine cannot answer is
    cancelled with "*".

States:
    greeting → EHLO (→ HELO) → ready; ready → STARTTLS → tls-handshake →
    EHLO; ready → AUTH → ready; ready → transaction → ready; ready → RSET
    → ready; ready → QUIT → closed. TRANSITIONS maps each state awaiting a
    reply to the state each reply class leads to; a class missing there is
    a protocol error. CALLS lists the adapter's calls legal in each state.

Security:
    Server input is untrusted: at most one reply line is buffered, parsing
    uses bytes methods (no per-byte loops), reply text is decoded as UTF-8
    with replacement and control characters become "?". Credentials are
    sent base64-encoded and only over TLS unless the caller explicitly
    allows otherwise; the HELO name loses CR, LF, NUL and spaces.

Config:
    ClientConfig (helo_name); the adapter reads [smtp_client].

See also:
    RFC 5321 §3.3 (transactions), §3.8 (421), §4.1.4 (command order),
    §4.2.1 (replies), §4.5.2 (transparency), §4.5.3.2 (timeouts, in the
    adapter), §5.1 (MX, in delivery/smtp.py); RFC 1870, RFC 2034,
    RFC 2920, RFC 3030, RFC 3207, RFC 3461, RFC 3463, RFC 4954, RFC 6152,
    RFC 6531; smtp/client_content.py, smtp/client.py, delivery/smtp.py,
    smtp/protocol.py (the server engine).
"""

from __future__ import annotations

import base64
import enum
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from postoffice.smtp.client_content import (
    Extensions,
    Prepared,
    Recipient,
    Transaction,
    dot_stuff,
    prepare_content,
)
from postoffice.smtp.commands import xtext_encode
from postoffice.smtp.replies import Reply

__all__ = [
    "CALLS",
    "MAX_REPLY_LINE",
    "MAX_REPLY_LINES",
    "TRANSITIONS",
    "AuthResult",
    "ClientConfig",
    "ClientProtocol",
    "Closed",
    "Event",
    "Extensions",
    "Greeted",
    "Recipient",
    "RecipientResult",
    "ReplyParser",
    "ResetDone",
    "State",
    "TlsReady",
    "TlsRefused",
    "Transaction",
    "TransactionDone",
]

MAX_REPLY_LINE = 4096  # RFC 5321 §4.5.3.1.5 says 512; we accept more, not unbounded
MAX_REPLY_LINES = 1000

# Replies the engine makes up itself (never sent by a peer).
AUTH_NEEDS_TLS = Reply(code=454, enhanced="4.7.0", text="Authentication requires TLS")
AUTH_NO_MECHANISM = Reply(
    code=454, enhanced="4.7.0", text="No authentication mechanism in common with the peer"
)
PROTOCOL_ERROR = Reply(code=451, enhanced="4.5.0", text="Malformed reply from the peer")


# --- values -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientConfig:
    """What the engine needs to know."""

    helo_name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RecipientResult:
    """The final word on one recipient of a transaction.

    stage: "local" (refused before sending), "MAIL FROM", "RCPT TO", "DATA",
    "end of DATA", "BDAT" (the command the reply answered), or "session"
    (421, lost connection, timeout, protocol error)."""

    address: str
    reply: Reply
    stage: str


# --- events -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base class of what the engine tells its adapter."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Greeted(Event):
    """EHLO (or the HELO fallback) was accepted: the session is ready."""

    reply: Reply
    extensions: Extensions


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsReady(Event):
    """220 to STARTTLS: do the handshake, then call tls_started()."""

    reply: Reply


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsRefused(Event):
    """STARTTLS refused; the session goes on in plaintext (ready)."""

    reply: Reply


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthResult(Event):
    """The end of an AUTH exchange; ok when the peer said 235."""

    reply: Reply
    ok: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ResetDone(Event):
    """The reply to an explicit reset()."""

    reply: Reply


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionDone(Event):
    """The transaction is over; one result per recipient, in order."""

    results: tuple[RecipientResult, ...]
    content_sent: bool  # the content (or part of it) went to the peer


@dataclass(frozen=True, slots=True, kw_only=True)
class Closed(Event):
    """The session is over: close the connection.

    stage: what was awaited ("greeting", "EHLO", "HELO", "STARTTLS", "AUTH",
    "QUIT", "RSET", "transaction", "idle")."""

    reply: Reply
    stage: str


# --- the state machine as data ------------------------------------------------------------


class State(enum.Enum):
    GREETING = "greeting"
    EHLO = "EHLO"
    HELO = "HELO"
    READY = "ready"
    STARTTLS = "STARTTLS"
    TLS_HANDSHAKE = "tls-handshake"
    AUTH = "AUTH"
    TRANSACTION = "transaction"
    RSET = "RSET"
    QUIT = "QUIT"
    CLOSED = "closed"


def _row(**moves: State) -> Mapping[str, State]:
    return MappingProxyType({k[1:]: v for k, v in moves.items()})


_C, _R = State.CLOSED, State.READY
# state awaiting a reply → reply class ("2".."5") → next state. TRANSACTION
# follows its queue of pipelined commands and returns to READY when the last
# reply is in. 421 closes from every state (RFC 5321 §3.8).
TRANSITIONS: Mapping[State, Mapping[str, State]] = MappingProxyType(
    {
        State.GREETING: _row(_2=State.EHLO, _4=_C, _5=_C),  # RFC 5321 §3.1
        State.EHLO: _row(_2=_R, _4=_C, _5=State.HELO),  # §4.1.4: HELO after a 5xx
        State.HELO: _row(_2=_R, _4=_C, _5=_C),
        State.STARTTLS: _row(_2=State.TLS_HANDSHAKE, _4=_R, _5=_R),  # RFC 3207 §4
        State.AUTH: _row(_2=_R, _3=State.AUTH, _4=_R, _5=_R),  # RFC 4954 §4
        State.TRANSACTION: _row(  # per command: see ClientProtocol._transaction_reply
            _2=State.TRANSACTION, _3=State.TRANSACTION, _4=State.TRANSACTION, _5=State.TRANSACTION
        ),
        State.RSET: _row(_2=_R, _4=_R, _5=_R),
        State.QUIT: _row(_2=_C, _4=_C, _5=_C),
    }
)

CALLS: Mapping[State, frozenset[str]] = MappingProxyType(
    {
        State.READY: frozenset({"send_transaction", "starttls", "authenticate", "reset", "quit"}),
        State.TLS_HANDSHAKE: frozenset({"tls_started"}),
    }
)


# --- reply parsing ------------------------------------------------------------------------

_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?: +|\Z)")
_CONTROLS = str.maketrans({i: "?" for i in (*range(32), 127)})


class ReplyParser:
    """Server output → Replies. After a malformed line `error` is set and
    nothing more is parsed."""

    __slots__ = ("_buf", "_code", "_lines", "error")

    def __init__(self) -> None:
        self._buf = b""
        self._code = 0
        self._lines: list[str] = []
        self.error: str | None = None

    def reset(self) -> None:
        """Forget everything buffered (after STARTTLS)."""
        self._buf = b""
        self._code = 0
        self._lines = []

    def feed(self, data: bytes) -> list[Reply]:
        if self.error is not None:
            return []
        buf = self._buf + data if self._buf else data
        out: list[Reply] = []
        pos = 0
        while True:
            nl = buf.find(b"\n", pos)
            if nl < 0:
                break
            end = nl - 1 if nl > pos and buf[nl - 1] == 0x0D else nl
            reply = self._line(buf[pos:end])
            pos = nl + 1
            if self.error is not None:
                self._buf = b""
                return out
            if reply is not None:
                out.append(reply)
        self._buf = buf[pos:]
        if len(self._buf) > MAX_REPLY_LINE:
            self.error = "reply line too long"
            self._buf = b""
        return out

    def _line(self, line: bytes) -> Reply | None:
        if len(line) > MAX_REPLY_LINE:
            self.error = "reply line too long"
            return None
        head, sep = line[:3], line[3:4]
        if len(head) < 3 or not head.isdigit() or sep not in (b"", b" ", b"-"):
            self.error = "malformed reply line"
            return None
        code = int(head)
        if not 200 <= code <= 599:
            self.error = f"reply code {code} out of range"
            return None
        if not self._lines:
            self._code = code
        elif len(self._lines) >= MAX_REPLY_LINES:
            self.error = "too many reply lines"
            return None
        self._lines.append(line[4:].decode("utf-8", "replace").translate(_CONTROLS))
        if sep == b"-":
            return None
        lines, self._lines = self._lines, []
        return _make_reply(self._code, lines)


def _make_reply(code: int, lines: list[str]) -> Reply:
    m = _ENHANCED.match(lines[0])
    enhanced = ""
    if m and m.group(1) == str(code)[0]:  # RFC 3463 §2: the classes agree
        enhanced = f"{m.group(1)}.{int(m.group(2))}.{int(m.group(3))}"
        lines = [_ENHANCED.sub("", line, count=1) for line in lines]
    return Reply(code=code, enhanced=enhanced, text="\n".join(lines))


# --- the engine ---------------------------------------------------------------------------


class _Kind(enum.Enum):
    RSET = "RSET"  # before MAIL, to clear a transaction a failure left open
    MAIL = "MAIL FROM"
    RCPT = "RCPT TO"
    DATA = "DATA"
    CONTENT = "end of DATA"
    BDAT = "BDAT"
    DISCARD = "."  # ending an unwanted DATA


class _Tx:
    """The transaction under way (mutable, internal)."""

    __slots__ = (
        "content_sent",
        "data",
        "data_queued",
        "final",
        "final_stage",
        "mail",
        "prepared",
        "rcpt",
        "recipients",
    )

    def __init__(self, recipients: tuple[str, ...], prepared: Prepared) -> None:
        self.recipients = recipients
        self.prepared = prepared
        self.mail: Reply | None = None
        self.rcpt: list[Reply | None] = [None] * len(recipients)
        self.data: Reply | None = None
        self.final: Reply | None = None
        self.final_stage = ""
        self.data_queued = False
        self.content_sent = False

    @property
    def accepted(self) -> int:
        if self.mail is None or not 200 <= self.mail.code < 300:
            return 0
        return sum(1 for r in self.rcpt if r is not None and 200 <= r.code < 300)

    def results(self, session: Reply | None) -> tuple[RecipientResult, ...]:
        out = []
        mail = self.mail
        for address, rcpt in zip(self.recipients, self.rcpt, strict=True):
            reply, stage = session, "session"
            if mail is not None and not 200 <= mail.code < 300:
                reply, stage = mail, _Kind.MAIL.value
            elif rcpt is not None and not 200 <= rcpt.code < 300:
                reply, stage = rcpt, _Kind.RCPT.value
            elif self.final is not None:
                reply, stage = self.final, self.final_stage
            elif self.data is not None and not 300 <= self.data.code < 400:
                reply, stage = self.data, _Kind.DATA.value
            if reply is None:  # cannot happen: a transaction ends with every answer in
                reply = PROTOCOL_ERROR
            out.append(RecipientResult(address=address, reply=reply, stage=stage))
        return tuple(out)


def _lost(phase: str, timed_out: bool) -> Reply:
    what = "Conversation timed out" if timed_out else "Lost connection"
    return Reply(code=451, enhanced="4.4.2", text=f"{what} while {phase}")


class ClientProtocol:
    """The ESMTP client engine for one connection (sans I/O)."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self._state = State.GREETING
        self._parser = ReplyParser()
        self._out: list[bytes] = []
        self._ext = Extensions()
        self._tls = False
        self._queue: deque[tuple[_Kind, int, bytes]] = deque()  # not yet sent
        self._expect: deque[tuple[_Kind, int]] = deque()  # sent, reply awaited
        self._tx: _Tx | None = None
        self._dirty = False  # a MAIL was accepted and its transaction not ended
        self._auth_steps: list[bytes] = []
        self._auth_cancelled = False

    # -- properties -----------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def closed(self) -> bool:
        return self._state is State.CLOSED

    @property
    def extensions(self) -> Extensions:
        return self._ext

    @property
    def tls(self) -> bool:
        return self._tls

    @property
    def awaiting(self) -> str:
        """ "nothing" (no reply outstanding), "final" (the reply to the end
        of the content: RFC 5321 §4.5.3.2.6, 10 minutes) or "reply"."""
        if self._state in (State.READY, State.CLOSED, State.TLS_HANDSHAKE):
            return "nothing"
        if self._expect and self._expect[0][0] in (_Kind.CONTENT, _Kind.BDAT, _Kind.DISCARD):
            return "final"
        return "reply"

    # -- the adapter's side ---------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Drain and return the queued output."""
        out = b"".join(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed server output; return the events it completes."""
        if self._paused():
            return []
        events: list[Event] = []
        for reply in self._parser.feed(data):
            self._reply(reply, events)
            if self._paused():
                return events
        if self._parser.error is not None:
            self._close(PROTOCOL_ERROR, events)
        return events

    def connection_lost(self, *, timed_out: bool = False) -> list[Event]:
        """The connection broke (or the adapter's timer ran out): end the
        session; a transaction under way ends with 451 4.4.2."""
        events: list[Event] = []
        if self._state is State.CLOSED:
            return events
        if self._state is State.QUIT:
            self._state = State.CLOSED
            events.append(Closed(reply=_lost("sending QUIT", timed_out), stage="QUIT"))
            return events
        self._close(_lost(self._phase(), timed_out), events)
        return events

    # -- commands -------------------------------------------------------------------------

    def starttls(self) -> None:
        """Send STARTTLS (RFC 3207 §4); legal when ready and offered."""
        self._require("starttls")
        if self._tls or not self._ext.starttls:
            raise RuntimeError("STARTTLS is not offered or TLS is already on")
        self._command(State.STARTTLS, b"STARTTLS\r\n")

    def tls_started(self) -> None:
        """The TLS handshake succeeded: forget the plaintext session, EHLO again."""
        self._require("tls_started")
        self._tls = True
        self._ext = Extensions()
        self._parser.reset()
        self._command(State.EHLO, self._hello(b"EHLO"))

    def authenticate(
        self, username: str, password: str, *, allow_plaintext: bool = False
    ) -> list[Event]:
        """AUTH PLAIN (or LOGIN) with these credentials (RFC 4954 §4)."""
        self._require("authenticate")
        if not self._tls and not allow_plaintext:
            return [AuthResult(reply=AUTH_NEEDS_TLS, ok=False)]
        user, secret = username.encode("utf-8"), password.encode("utf-8")
        self._auth_cancelled = False
        if "PLAIN" in self._ext.auth:  # RFC 4616 §2: [authzid] NUL authcid NUL passwd
            token = base64.b64encode(b"\0" + user + b"\0" + secret)
            self._auth_steps = [token]
            self._command(State.AUTH, b"AUTH PLAIN " + token + b"\r\n")
        elif "LOGIN" in self._ext.auth:
            self._auth_steps = [base64.b64encode(user), base64.b64encode(secret)]
            self._command(State.AUTH, b"AUTH LOGIN\r\n")
        else:
            return [AuthResult(reply=AUTH_NO_MECHANISM, ok=False)]
        return []

    def reset(self) -> None:
        """Send RSET (also a cheap check that an idle connection still works)."""
        self._require("reset")
        self._command(State.RSET, b"RSET\r\n")

    def quit(self) -> None:
        """Send QUIT (RFC 5321 §4.1.1.10); Closed follows its reply."""
        self._require("quit")
        self._command(State.QUIT, b"QUIT\r\n")

    def send_transaction(self, tx: Transaction) -> list[Event]:
        """Start sending `tx`; a refusal decided locally is returned at once."""
        self._require("send_transaction")
        if not tx.recipients:
            raise ValueError("a transaction needs recipients")
        addresses = tuple(r.address for r in tx.recipients)
        prepared = prepare_content(tx, self._ext)
        if isinstance(prepared, Reply):
            results = tuple(
                RecipientResult(address=a, reply=prepared, stage="local") for a in addresses
            )
            return [TransactionDone(results=results, content_sent=False)]
        ext = self._ext
        self._tx = _Tx(addresses, prepared)
        if self._dirty:
            self._enqueue(_Kind.RSET, 0, b"RSET")
        params = []
        if ext.size is not None:  # RFC 1870 §3
            params.append(f"SIZE={len(prepared.content)}")
        if prepared.body is not None:
            params.append(f"BODY={prepared.body}")
        if prepared.smtputf8:
            params.append("SMTPUTF8")
        if ext.dsn and tx.ret:  # RFC 3461 §4.3, §4.4
            params.append(f"RET={tx.ret}")
        if ext.dsn and tx.envid:
            params.append(f"ENVID={xtext_encode(tx.envid)}")
        self._enqueue(_Kind.MAIL, 0, _path("MAIL FROM:", prepared.sender, params))
        for i, (rcpt, address) in enumerate(zip(tx.recipients, prepared.recipients, strict=True)):
            params = []
            if ext.dsn and rcpt.notify:  # RFC 3461 §4.1, §4.2
                order = ("NEVER", "SUCCESS", "FAILURE", "DELAY")
                params.append("NOTIFY=" + ",".join(n for n in order if n in rcpt.notify))
            if ext.dsn and rcpt.orcpt:
                kind, _, original = rcpt.orcpt.partition(";")
                if kind and original:
                    params.append(f"ORCPT={kind};{xtext_encode(original)}")
            self._enqueue(_Kind.RCPT, i, _path("RCPT TO:", address, params))
        if ext.pipelining and not prepared.bdat:  # RFC 2920 §3.1: DATA ends the group
            self._enqueue(_Kind.DATA, 0, b"DATA")
            self._tx.data_queued = True
        self._state = State.TRANSACTION
        self._send_queued()
        return []

    # -- internals ------------------------------------------------------------------------

    def _paused(self) -> bool:
        """No replies are read: closed, or the TLS handshake is the adapter's."""
        return self._state is State.CLOSED or self._state is State.TLS_HANDSHAKE

    def _require(self, call: str) -> None:
        if call not in CALLS.get(self._state, frozenset()) or self._expect:
            raise RuntimeError(f"{call}() is not legal in state {self._state.value}")

    def _command(self, state: State, line: bytes) -> None:
        self._state = state
        self._out.append(line)

    def _hello(self, verb: bytes) -> bytes:
        name = self.config.helo_name.encode("ascii", "replace").translate(None, b"\r\n\0 ")
        return verb + b" " + (name or b"localhost") + b"\r\n"

    def _enqueue(self, kind: _Kind, index: int, line: bytes) -> None:
        self._queue.append((kind, index, line + b"\r\n"))

    def _send_queued(self) -> None:
        pipelining = self._ext.pipelining
        while self._queue and (pipelining or not self._expect):
            kind, index, line = self._queue.popleft()
            self._out.append(line)
            self._expect.append((kind, index))

    def _phase(self) -> str:
        state = self._state
        if state is State.GREETING:
            return "receiving the initial server greeting"
        if state is State.TRANSACTION and self._expect:
            kind = self._expect[0][0]
            if kind in (_Kind.CONTENT, _Kind.BDAT, _Kind.DISCARD):
                return "sending end of data -- message may be sent more than once"
            return f"sending {kind.value}"
        if state in (State.READY, State.TLS_HANDSHAKE):
            return "idle" if state is State.READY else "starting TLS"
        return f"sending {state.value}"

    def _close(self, reply: Reply, events: list[Event]) -> None:
        """End the session: finish a transaction under way with `reply`."""
        stage = self._state.value if self._state is not State.READY else "idle"
        tx = self._tx
        if tx is not None:
            events.append(TransactionDone(results=tx.results(reply), content_sent=tx.content_sent))
            self._tx = None
        self._queue.clear()
        self._expect.clear()
        self._state = State.CLOSED
        events.append(Closed(reply=reply, stage=stage))

    def _reply(self, reply: Reply, events: list[Event]) -> None:
        state = self._state
        if reply.code == 421 or state in (State.READY, State.CLOSED):
            # RFC 5321 §3.8: 421 closes from anywhere; an unsolicited reply is an error.
            self._close(reply if reply.code == 421 else PROTOCOL_ERROR, events)
            return
        nxt = TRANSITIONS[state].get(str(reply.code)[0])
        if nxt is None:
            self._close(PROTOCOL_ERROR, events)
        elif state is State.TRANSACTION:
            self._transaction_reply(reply, events)
        elif state is State.QUIT:
            self._state = State.CLOSED
            events.append(Closed(reply=reply, stage="QUIT"))
        elif nxt is State.CLOSED:
            self._close(reply, events)
        elif state is State.GREETING:
            self._command(nxt, self._hello(b"EHLO"))
        elif state is State.EHLO and nxt is State.HELO:
            self._command(nxt, self._hello(b"HELO"))  # RFC 5321 §4.1.4, §3.2
        elif state is State.EHLO or state is State.HELO:
            if state is State.EHLO:
                self._ext = Extensions.from_ehlo(reply)
            else:
                self._ext = Extensions(greeting=reply.text.split("\n", 1)[0])
            self._state = nxt
            events.append(Greeted(reply=reply, extensions=self._ext))
        elif state is State.STARTTLS:
            self._state = nxt
            if nxt is State.TLS_HANDSHAKE:
                self._parser.reset()  # nothing sent before the handshake is believed
                events.append(TlsReady(reply=reply))
            else:
                events.append(TlsRefused(reply=reply))
        elif state is State.AUTH:
            self._state = nxt
            self._auth_reply(reply, nxt, events)
        else:  # RSET
            self._state = nxt
            if 200 <= reply.code < 300:
                self._dirty = False
            events.append(ResetDone(reply=reply))

    def _auth_reply(self, reply: Reply, nxt: State, events: list[Event]) -> None:
        if nxt is State.AUTH:  # 334: the next response, or "*" to cancel
            if self._auth_steps and not self._auth_cancelled:
                self._out.append(self._auth_steps.pop(0) + b"\r\n")
            else:
                self._auth_cancelled = True
                self._out.append(b"*\r\n")
            return
        self._auth_steps = []
        ok = reply.code == 235 and not self._auth_cancelled
        events.append(AuthResult(reply=reply, ok=ok))

    def _transaction_reply(self, reply: Reply, events: list[Event]) -> None:
        tx = self._tx
        if not self._expect or tx is None:
            self._close(PROTOCOL_ERROR, events)
            return
        kind, index = self._expect.popleft()
        ok = 200 <= reply.code < 300
        intermediate = 300 <= reply.code < 400
        if (kind is _Kind.DATA and ok) or (intermediate and kind is not _Kind.DATA):
            # 3xx only to DATA; and content cannot be "accepted" before it is sent
            self._close(PROTOCOL_ERROR, events)
            return
        if kind is _Kind.RSET:
            self._dirty = not ok and self._dirty
        elif kind is _Kind.MAIL:
            tx.mail = reply
            self._dirty = ok
            if not ok and not self._ext.pipelining:
                self._queue.clear()  # no RCPT after a refused MAIL
        elif kind is _Kind.RCPT:
            tx.rcpt[index] = reply
            if index == len(tx.rcpt) - 1 and not tx.data_queued and tx.accepted:
                self._start_content(tx)
        elif kind is _Kind.DATA:
            tx.data = reply
            if 300 <= reply.code < 400:  # 354
                if tx.accepted:
                    self._out.append(dot_stuff(tx.prepared.content))
                    self._expect.append((_Kind.CONTENT, 0))
                    tx.content_sent = True
                else:  # RFC 2920 §3.1: DATA accepted though no RCPT was
                    self._out.append(b".\r\n")
                    self._expect.append((_Kind.DISCARD, 0))
        elif kind is _Kind.CONTENT or kind is _Kind.BDAT:
            tx.final, tx.final_stage = reply, kind.value
            self._dirty = False  # RFC 5321 §4.1.1.4: the transaction is over either way
        else:  # DISCARD
            self._dirty = False
        self._send_queued()
        if not self._expect and not self._queue:
            self._tx = None
            self._state = State.READY
            events.append(TransactionDone(results=tx.results(None), content_sent=tx.content_sent))

    def _start_content(self, tx: _Tx) -> None:
        """Every RCPT answered, one accepted: DATA, or the content as BDAT."""
        if tx.prepared.bdat:  # RFC 3030 §2: one chunk, LAST
            content = tx.prepared.content
            self._out.append(b"BDAT %d LAST\r\n" % len(content) + content)
            self._expect.append((_Kind.BDAT, 0))
            tx.content_sent = True
        else:
            self._enqueue(_Kind.DATA, 0, b"DATA")
            tx.data_queued = True


def _path(prefix: str, address: str, params: list[str]) -> bytes:
    return (" ".join([f"{prefix}<{address}>", *params])).encode("utf-8")
