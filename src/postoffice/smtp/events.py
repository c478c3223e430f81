"""SMTP server engine events: what the sans-I/O engine tells its session.

Description:
    `smtp.protocol.ServerProtocol.receive_data()` turns bytes into these
    events. An event whose `needs_answer` is true pauses the engine: it parses
    nothing further until the session calls `ServerProtocol.answer(reply)`.
    That keeps replies in command order under PIPELINING (RFC 2920 §3.1) and
    lets the engine's state follow the session's decisions (a rejected MAIL
    leaves no transaction open).

    Events that need no answer are notifications: the engine has already
    queued its own reply (RSET, NOOP, HELP, QUIT, syntax errors) or is
    streaming message content.

States:
    See smtp/protocol.py for the transition table.

See also:
    RFC 5321 §4.1 (commands), RFC 1870 (SIZE), RFC 6152 (8BITMIME),
    RFC 3461 (DSN), RFC 6531 (SMTPUTF8), RFC 3030 (CHUNKING/BDAT), RFC 1985 (ETRN).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from postoffice.smtp.replies import Reply


@dataclass(frozen=True, slots=True, kw_only=True)
class MailParams:
    """ESMTP parameters of MAIL FROM, validated by the engine."""

    size: int | None = None  # RFC 1870 SIZE=
    body: str = "7BIT"  # RFC 6152 BODY=7BIT|8BITMIME, RFC 3030 BINARYMIME
    smtputf8: bool = False  # RFC 6531 SMTPUTF8
    ret: str | None = None  # RFC 3461 §4.3 RET=FULL|HDRS
    envid: str | None = None  # RFC 3461 §4.4 ENVID= (xtext decoded)
    auth: str | None = None  # RFC 4954 §5 AUTH= (xtext decoded), later issue


@dataclass(frozen=True, slots=True, kw_only=True)
class RcptParams:
    """ESMTP parameters of RCPT TO, validated by the engine."""

    notify: frozenset[str] | None = None  # RFC 3461 §4.1 NEVER or {SUCCESS,FAILURE,DELAY}
    orcpt: str | None = None  # RFC 3461 §4.2 "addr-type;xtext-decoded-address"


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base class. `needs_answer` events wait for ServerProtocol.answer()."""

    needs_answer: bool = field(default=False, init=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello(Event):
    """HELO/EHLO (or LHLO for LMTP). Answer 250 to accept: the engine adds
    the greeting line and, for EHLO, the extension list."""

    needs_answer: bool = field(default=True, init=False)
    verb: str  # "HELO" | "EHLO" | "LHLO"
    domain: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MailFrom(Event):
    """MAIL FROM:<path> params. `sender` is "" for the null path <>."""

    needs_answer: bool = field(default=True, init=False)
    sender: str
    params: MailParams


@dataclass(frozen=True, slots=True, kw_only=True)
class RcptTo(Event):
    """RCPT TO:<path> params. `recipient` has any source route stripped."""

    needs_answer: bool = field(default=True, init=False)
    recipient: str
    params: RcptParams


@dataclass(frozen=True, slots=True, kw_only=True)
class DataStart(Event):
    """DATA, or the first BDAT of a transaction. Answer 354 (DATA) — or any
    2xx/3xx for BDAT — to go on; a 4xx/5xx refuses the message (for BDAT the
    engine still swallows the announced octets, RFC 3030 §2)."""

    needs_answer: bool = field(default=True, init=False)
    bdat: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class DataChunk(Event):
    """Message content, dot-unstuffed, with CRLF line endings, in order."""

    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class DataEnd(Event):
    """The end of the message (CRLF.CRLF or BDAT LAST). Answer with the
    final reply (250 queued, or 4xx/5xx). `size` counts content octets."""

    needs_answer: bool = field(default=True, init=False)
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DataAborted(Event):
    """The engine refused the message it was receiving (too big, a bare CR
    or LF, an over-long line); it has queued `reply`. Discard what was
    received. The transaction is over."""

    reply: Reply


@dataclass(frozen=True, slots=True, kw_only=True)
class Verify(Event):
    """VRFY argument. Answer 250/251/252/550/551/553 or 502 when disabled."""

    needs_answer: bool = field(default=True, init=False)
    argument: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Expand(Event):
    """EXPN argument. Answer 250 (multi-line) or 502 when disabled."""

    needs_answer: bool = field(default=True, init=False)
    argument: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StartTLS(Event):
    """STARTTLS. Answer 220 to go on: the adapter then does the handshake
    and calls ServerProtocol.tls_started(). Any other reply refuses."""

    needs_answer: bool = field(default=True, init=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reset(Event):
    """RSET (engine replied 250) or an implicit reset (a new EHLO/HELO)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Quit(Event):
    """QUIT (engine replied 221) or a 421 close: the adapter flushes the
    output and closes the connection."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandRejected(Event):
    """The engine answered a command itself with an error (syntax, sequence,
    unknown command, obsolete command). For the log and error counting."""

    command: str
    reply: Reply


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineConfig:
    """What the engine needs to know; given by the session."""

    hostname: str
    max_message_size: int = 35 * 1024 * 1024
    max_recipients: int = 1000
    max_command_line: int = 512  # RFC 5321 §4.5.3.1.4 (+ extension parameters)
    max_text_line: int = 1000  # RFC 5321 §4.5.3.1.6
    max_errors: int = 20
    pipelining: bool = True
    chunking: bool = True
    dsn: bool = True
    smtputf8: bool = True
    eightbitmime: bool = True
    starttls: bool = False  # advertise STARTTLS (set by the adapter when a context exists)
    extra_extensions: tuple[str, ...] = ()  # e.g. "AUTH PLAIN LOGIN" (later issues)
    lmtp: bool = False
    enhancedstatuscodes: bool = True  # RFC 2034: advertise and use X.Y.Z codes after EHLO
    advertise_size: bool = True  # RFC 1870: advertise SIZE and accept SIZE=
    binarymime: bool = False  # RFC 3030 §3 BODY=BINARYMIME (with chunking); off: the queue
    #                           can relay binary bodies only to BINARYMIME-capable hosts
    max_buffered_input: int = 1024 * 1024  # octets buffered while an answer is pending
    etrn: bool = False  # RFC 1985: advertise ETRN and pass it to the session (else 502)
    auth_mechanisms: tuple[str, ...] = ()  # RFC 4954: SASL mechanisms offered; () = no AUTH (502)
    auth_requires_tls: bool = False  # advertise AUTH only under TLS; before it AUTH is 538


# --- RFC 1985 ETRN ----------------------------------------------------------------

# RFC 1035 §2.3.1 / RFC 1123 §2.1: letters, digits, hyphens; 1-63 octets a label.
_LDH = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


def _is_domain(name: str) -> bool:
    if not name or len(name) > 253:
        return False
    for label in name.split("."):
        if not 0 < len(label) <= 63 or label[0] == "-" or label[-1] == "-":
            return False
        if not set(label) <= _LDH:
            return False
    return True


EtrnKind = Literal["domain", "subdomains", "queue"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Etrn(Event):
    """ETRN node (RFC 1985): start delivering the queued mail for a node.

    `kind` says how the client named it: "domain" (`ETRN example.org`),
    "subdomains" (`ETRN @example.org`: the domain and every name under it)
    or "queue" (`ETRN #name`: a queue name, which RFC 1985 leaves to the
    implementation). `node` is lower-cased, without the option character
    and any final dot; `argument` is what the client sent, for replies and
    the log. Answer 250/251/252/253, 458 or 459 (RFC 1985 §5)."""

    needs_answer: bool = field(default=True, init=False)
    node: str
    kind: EtrnKind
    argument: str

    @classmethod
    def from_argument(cls, argument: str) -> Etrn | None:
        """The event for an ETRN argument; None when it is not a node (501)."""
        text = argument.strip()
        if not text or any(c.isspace() for c in text) or not text.isascii():
            return None
        if text[0] == "#":  # a queue name: any printable word
            name = text[1:]
            if not name or not name.isprintable():
                return None
            return cls(node=name, kind="queue", argument=text)
        kind: EtrnKind = "domain"
        name = text.lower()
        if name[0] == "@":
            kind, name = "subdomains", name[1:]
        if name.endswith("."):
            name = name[:-1]
        if not _is_domain(name):
            return None
        return cls(node=name, kind=kind, argument=text)

    def selects(self, domain: str) -> bool:
        """True when mail for `domain` is mail for this node (never for a queue name)."""
        domain = domain.lower().rstrip(".")
        if self.kind == "domain":
            return domain == self.node
        if self.kind == "subdomains":
            return domain == self.node or domain.endswith("." + self.node)
        return False


# --- RFC 4954 AUTH --------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthStart(Event):
    """AUTH mechanism [initial-response] (RFC 4954 §4), checked by the engine:
    the mechanism is one of EngineConfig.auth_mechanisms (upper case), the
    session is greeted with EHLO, not in a transaction, not authenticated.
    `initial` is the decoded initial response: b"" for "=", None when the
    client sent none. Answer with smtp.auth_exchange.challenge(data) (334:
    the engine reads one response line and emits AuthResponse), a 2xx
    (235 2.7.0: authenticated) or a 4xx/5xx (the exchange is over).
    smtp.auth_exchange.reply_for(step) maps a sasl step to that reply."""

    needs_answer: bool = field(default=True, init=False)
    mechanism: str
    initial: bytes | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthResponse(Event):
    """The client's response to a 334 challenge, base64-decoded; None when it
    cancelled with "*" (RFC 4954 §4: answer 501). Answered like AuthStart."""

    needs_answer: bool = field(default=True, init=False)
    data: bytes | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthAborted(Event):
    """The engine ended an AUTH exchange itself and queued `reply`: the
    response line was not base64 (501 5.5.2) or too long (500 5.5.6,
    RFC 4954 §4, §6). Discard the SASL exchange; not authenticated."""

    reply: Reply
