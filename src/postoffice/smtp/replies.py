"""SMTP replies: the Reply value and every reply the server sends, named once.

Description:
    A Reply is a three-digit code, an optional RFC 3463 enhanced status code
    and a human text (lines separated by "\\n" for multi-line replies).
    Formatting onto the wire is the protocol engine's job: it drops the
    enhanced code when the client used HELO (RFC 2034 §3 only promises them
    after EHLO advertised ENHANCEDSTATUSCODES).

See also:
    RFC 5321 §4.2 (reply codes), §4.2.2 (reply codes by function),
    RFC 3463 (enhanced status codes), RFC 2034 (ENHANCEDSTATUSCODES).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """One SMTP reply: code, enhanced status (may be empty) and text."""

    code: int
    enhanced: str = ""
    text: str = ""

    @classmethod
    def of(cls, code: int, enhanced: str, text: str) -> Reply:
        return cls(code=code, enhanced=enhanced, text=text)

    @property
    def is_positive(self) -> bool:
        return 200 <= self.code < 400

    @property
    def is_transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        return self.code >= 500

    def with_text(self, text: str) -> Reply:
        return Reply(code=self.code, enhanced=self.enhanced, text=text)

    def lines(self, *, enhanced: bool = True) -> list[str]:
        """The reply as wire lines without CRLF (RFC 5321 §4.2.1)."""
        texts = self.text.split("\n") if self.text else [""]
        prefix = f"{self.enhanced} " if enhanced and self.enhanced else ""
        out = []
        for i, t in enumerate(texts):
            sep = "-" if i < len(texts) - 1 else " "
            out.append(f"{self.code}{sep}{prefix}{t}".rstrip(" "))
        return out

    def to_bytes(self, *, enhanced: bool = True) -> bytes:
        return "".join(line + "\r\n" for line in self.lines(enhanced=enhanced)).encode(
            "utf-8", "replace"
        )

    def __str__(self) -> str:
        return " ".join(
            p for p in (str(self.code), self.enhanced, self.text.replace("\n", " ")) if p
        )


R = Reply.of

# RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets with CRLF. Addresses
# echoed in replies are cut so that a 2,000-octet local part cannot break it.
MAX_ECHO = 256


def echo(address: str) -> str:
    """`<address>` for a reply text, shortened to MAX_ECHO characters."""
    if len(address) > MAX_ECHO:
        address = address[: MAX_ECHO - 3] + "..."
    return f"<{address}>"


# --- 2xx ----------------------------------------------------------------
# RFC 5321 §4.2.2
SYSTEM_STATUS = R(211, "2.0.0", "System status")
HELP = R(
    214,
    "2.0.0",
    "Commands supported:\nHELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY EXPN\n"
    "See RFC 5321 for details",
)
CLOSING = R(221, "2.0.0", "Bye")
OK = R(250, "2.0.0", "Ok")
SENDER_OK = R(250, "2.1.0", "Sender ok")
RECIPIENT_OK = R(250, "2.1.5", "Recipient ok")
RESET_OK = R(250, "2.0.0", "Reset state")
QUEUED = R(250, "2.0.0", "Ok: queued")
WILL_FORWARD = R(251, "2.1.5", "User not local; will forward")
CANNOT_VRFY = R(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery")

# --- 3xx ----------------------------------------------------------------
START_DATA = R(354, "", "End data with <CR><LF>.<CR><LF>")

# --- 4xx ----------------------------------------------------------------
SHUTTING_DOWN = R(421, "4.3.2", "Service not available, closing transmission channel")
TOO_MANY_CONNECTIONS = R(421, "4.7.0", "Too many connections, try again later")
TIMEOUT = R(421, "4.4.2", "Timeout exceeded, closing connection")
TOO_MANY_ERRORS = R(421, "4.7.0", "Too many errors, closing connection")
MAILBOX_BUSY = R(450, "4.2.1", "Mailbox temporarily unavailable")
LOCAL_ERROR = R(451, "4.3.0", "Local error in processing, try again later")
INSUFFICIENT_STORAGE = R(452, "4.3.1", "Insufficient system storage")
TOO_MANY_RECIPIENTS = R(452, "4.5.3", "Too many recipients")

# --- 5xx ----------------------------------------------------------------
SYNTAX_ERROR = R(500, "5.5.2", "Syntax error, command unrecognized")
LINE_TOO_LONG = R(500, "5.5.6", "Line too long")
BARE_LINEFEED = R(500, "5.5.2", "Bare <LF> or <CR> not allowed, use <CR><LF>")
PARAM_SYNTAX = R(501, "5.5.4", "Syntax error in parameters or arguments")
BAD_SENDER_SYNTAX = R(501, "5.1.7", "Bad sender address syntax")
BAD_RCPT_SYNTAX = R(501, "5.1.3", "Bad recipient address syntax")
NOT_IMPLEMENTED = R(502, "5.5.1", "Command not implemented")
BAD_SEQUENCE = R(503, "5.5.1", "Bad sequence of commands")
PARAM_NOT_IMPLEMENTED = R(504, "5.5.4", "Command parameter not implemented")
USER_UNKNOWN = R(550, "5.1.1", "User unknown")
RELAY_DENIED = R(550, "5.7.1", "Relaying denied")
USER_NOT_LOCAL = R(551, "5.1.6", "User not local")
MESSAGE_TOO_BIG = R(552, "5.3.4", "Message size exceeds fixed maximum message size")
MAILBOX_NAME_INVALID = R(553, "5.1.3", "Mailbox name not allowed")
TRANSACTION_FAILED = R(554, "5.0.0", "Transaction failed")
NO_VALID_RECIPIENTS = R(554, "5.5.1", "No valid recipients")
TOO_MANY_HOPS = R(554, "5.4.6", "Too many hops, mail loop detected")
DATA_LINE_TOO_LONG = R(500, "5.5.6", "Message line too long")

# --- added for smtp/protocol.py and smtp/commands.py ------------------------
# RFC 5321 §4.1.1.11: MAIL/RCPT parameter not recognized or not implemented.
PARAM_UNRECOGNIZED = R(555, "5.5.4", "Parameter not recognized or not implemented")
# RFC 6531 §3.5: a non-ASCII address without SMTPUTF8.
NON_ASCII_ADDRESS = R(553, "5.6.7", "Non-ASCII address requires SMTPUTF8")
# RFC 5321 §2.3.8: CR and LF only as CRLF; RFC 3463 §3.7 X.6.0 (content).
DATA_BARE_LINE_ENDING = R(550, "5.6.0", "Message contains a bare <CR> or <LF>, use <CR><LF>")
# RFC 3030 §2: the reply to a BDAT chunk that is not the last one.
CHUNK_RECEIVED = R(250, "2.0.0", "Chunk received")
# RFC 3207 §4: STARTTLS once TLS is active.
TLS_ALREADY_ACTIVE = R(503, "5.5.1", "TLS already active")
# RFC 3207 §4: the 220 that precedes the TLS handshake.
READY_TO_START_TLS = R(220, "2.0.0", "Ready to start TLS")
# The client pipelined more than the engine buffers while awaiting an answer.
INPUT_OVERFLOW = R(421, "4.7.0", "Too much pipelined input, closing connection")
