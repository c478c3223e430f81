"""smtp.client_content — what the SMTP client sends: envelope values, transmittable content.

Description:
    The values the client engine (smtp/client_protocol.py) takes —
    `Transaction`, `Recipient` — and the one it learns from the peer —
    `Extensions`, parsed from the EHLO reply (RFC 5321 §4.1.1.1): SIZE n
    (RFC 1870), PIPELINING (RFC 2920), 8BITMIME (RFC 6152), SMTPUTF8
    (RFC 6531), DSN (RFC 3461), CHUNKING and BINARYMIME (RFC 3030),
    STARTTLS (RFC 3207), AUTH mechanisms (RFC 4954, also the old "AUTH="
    form), ENHANCEDSTATUSCODES (RFC 2034).

    `prepare_content(tx, extensions)` decides, before a byte is sent,
    whether and how a transaction can go to that peer. It returns a
    `Prepared` (addresses, content, BODY= value, SMTPUTF8) or the Reply
    that refuses it:
      553 5.1.3  an address holding CR, LF, NUL, "<" or ">" (nothing the
                 queue holds may inject a command);
      553 5.6.7  SMTPUTF8 required but not offered (RFC 6531 §3.2): a
                 non-ASCII local part, or a non-ASCII header in an
                 SMTPUTF8 message. A non-ASCII domain with an ASCII local
                 part is sent as IDNA A-labels instead;
      554 5.6.3  BODY=BINARYMIME to a peer without BINARYMIME and
                 CHUNKING; 8-bit content to a peer without 8BITMIME that
                 cannot be converted (below);
      552 5.3.4  larger than the peer's SIZE (RFC 1870 §6.1).

    The content is made transmittable: every bare CR or LF becomes CRLF
    and it ends with CRLF (RFC 5321 §2.3.8); lines over 998 octets are
    broken — header lines folded with CRLF SP, body lines with CRLF — as
    Postfix's smtp_line_length_limit does (RFC 5321 §4.5.3.1.6).
    BINARYMIME content is left untouched.

    8-bit content for a peer without 8BITMIME is converted to 7 bit
    (`to_7bit`, RFC 6152 §3 and RFC 2045 §6): text/* leaves (and entities
    without Content-Type) become quoted-printable, other leaves base64,
    multipart/* and message/rfc822 are converted part by part (their own
    Content-Transfer-Encoding becomes 7bit), and MIME-Version: 1.0 is added
    at the top when missing. It gives up (554 5.6.3) when a header holds
    8-bit octets (RFC 2047 encoding is not attempted), a multipart has no
    boundary, an 8-bit octet sits in a preamble or epilogue or in a part
    already declared quoted-printable/base64, or the nesting is deeper than
    MAX_MIME_DEPTH. A peer offering 8BITMIME gets the content unchanged
    with BODY=8BITMIME.

    `dot_stuff(content)` (RFC 5321 §4.5.2) doubles a leading "." on every
    line and appends the CRLF "." CRLF terminator; since the content is
    CRLF-only, no "\\r\\n.\\r\\n" inside it can end the message early.

Security:
    Content and addresses come from the queue, i.e. from remote clients:
    no function raises on arbitrary bytes; scanning uses bytes methods and
    regular expressions, not per-byte Python loops.

See also:
    RFC 5321 §2.3.8, §4.5.2, §4.5.3.1.6; RFC 1870, RFC 2045, RFC 2046,
    RFC 3030, RFC 3461, RFC 6152, RFC 6531; smtp/client_protocol.py,
    message/headers.py.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from postoffice.message.headers import get_first, header_end, iter_spans
from postoffice.smtp.replies import Reply

__all__ = [
    "BAD_ADDRESS",
    "BINARY_UNSUPPORTED",
    "CONVERSION_FAILED",
    "MAX_MIME_DEPTH",
    "MAX_TEXT_LINE",
    "MESSAGE_TOO_BIG",
    "UTF8_REQUIRED",
    "Extensions",
    "Prepared",
    "Recipient",
    "Transaction",
    "dot_stuff",
    "normalise",
    "prepare_content",
    "to_7bit",
]

MAX_TEXT_LINE = 998  # RFC 5321 §4.5.3.1.6: 1000 octets with CRLF
MAX_MIME_DEPTH = 20

# Refusals decided before anything is sent.
MESSAGE_TOO_BIG = Reply(code=552, enhanced="5.3.4", text="Message too big for the peer")
CONVERSION_FAILED = Reply(
    code=554,
    enhanced="5.6.3",
    text="Conversion required but not supported: 8-bit content and the peer lacks 8BITMIME",
)
BINARY_UNSUPPORTED = Reply(
    code=554,
    enhanced="5.6.3",
    text="Conversion required but not supported: the peer lacks BINARYMIME",
)
UTF8_REQUIRED = Reply(
    code=553, enhanced="5.6.7", text="SMTPUTF8 is required, but was not offered by the peer"
)
BAD_ADDRESS = Reply(code=553, enhanced="5.1.3", text="Address unfit for an SMTP command")


@dataclass(frozen=True, slots=True, kw_only=True)
class Recipient:
    """One RCPT TO: the address and its RFC 3461 parameters."""

    address: str
    notify: frozenset[str] | None = None  # NEVER, or some of SUCCESS FAILURE DELAY
    orcpt: str | None = None  # "addr-type;address", not yet xtext-encoded


@dataclass(frozen=True, slots=True, kw_only=True)
class Transaction:
    """One message to send: envelope and content (as queued, CRLF or not)."""

    sender: str  # "" = the null reverse-path
    recipients: tuple[Recipient, ...]
    content: bytes
    body: str = "7BIT"  # as declared by the submitter: 7BIT, 8BITMIME, BINARYMIME
    smtputf8: bool = False
    ret: str | None = None  # FULL | HDRS
    envid: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Extensions:
    """What the peer's EHLO reply offered (RFC 5321 §4.1.1.1)."""

    esmtp: bool = False
    greeting: str = ""  # the first line of the EHLO/HELO reply
    keywords: frozenset[str] = frozenset()
    size: int | None = None  # None: SIZE not offered; 0: offered without a limit
    pipelining: bool = False
    eightbitmime: bool = False
    smtputf8: bool = False
    dsn: bool = False
    chunking: bool = False
    binarymime: bool = False
    starttls: bool = False
    enhancedstatuscodes: bool = False
    auth: frozenset[str] = frozenset()

    @classmethod
    def from_ehlo(cls, reply: Reply) -> Extensions:
        """Parse the lines after the greeting line: `KEYWORD [params]`."""
        lines = reply.text.split("\n")
        words: dict[str, str] = {}
        auth: set[str] = set()
        for line in lines[1:]:
            keyword, _, params = line.strip().partition(" ")
            keyword = keyword.upper()
            if keyword.startswith("AUTH="):  # the pre-RFC 4954 form, still seen
                auth.add(keyword[5:])
                keyword = "AUTH="
            if not keyword:
                continue
            words.setdefault(keyword, params.strip())
            if keyword in ("AUTH", "AUTH="):
                auth.update(p.upper() for p in params.split())
        size: int | None = None
        if "SIZE" in words:
            limit = words["SIZE"].split(" ", 1)[0]
            size = int(limit) if limit.isdigit() and len(limit) <= 20 else 0  # RFC 1870 §4
        return cls(
            esmtp=True,
            greeting=lines[0],
            keywords=frozenset(words),
            size=size,
            pipelining="PIPELINING" in words,
            eightbitmime="8BITMIME" in words,
            smtputf8="SMTPUTF8" in words,
            dsn="DSN" in words,
            chunking="CHUNKING" in words,
            binarymime="BINARYMIME" in words,
            starttls="STARTTLS" in words,
            enhancedstatuscodes="ENHANCEDSTATUSCODES" in words,
            auth=frozenset(auth),
        )


# --- content ----------------------------------------------------------------------------

_BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")
_BAD_PATH_CHARS = re.compile(r"[\x00-\x1f\x7f<>]")


def _has_8bit(data: bytes) -> bool:
    return not data.isascii()


def dot_stuff(content: bytes) -> bytes:
    """RFC 5321 §4.5.2: a line starting with "." gets another one. `content`
    is CRLF-only and ends with CRLF; the result ends with the terminator."""
    if content.startswith(b"."):
        content = b"." + content
    return content.replace(b"\r\n.", b"\r\n..") + b".\r\n"


def _break_lines(part: bytes, joiner: bytes) -> bytes:
    lines = part.split(b"\r\n")
    step = MAX_TEXT_LINE - len(joiner) + 2  # the continuation's own prefix counts
    for i, line in enumerate(lines):
        if len(line) > MAX_TEXT_LINE:
            first, rest = line[:MAX_TEXT_LINE], line[MAX_TEXT_LINE:]
            pieces = [first] + [rest[j : j + step] for j in range(0, len(rest), step)]
            lines[i] = joiner.join(pieces)
    return b"\r\n".join(lines)


def normalise(content: bytes) -> bytes:
    """CRLF only, a final CRLF, no line over MAX_TEXT_LINE octets."""
    crlf = content.count(b"\r\n")
    if content.count(b"\r") != crlf or content.count(b"\n") != crlf:
        content = _BARE.sub(b"\r\n", content)
    if content and not content.endswith(b"\r\n"):
        content += b"\r\n"
    if len(content) > MAX_TEXT_LINE and any(
        len(line) > MAX_TEXT_LINE for line in content.split(b"\r\n")
    ):
        end, _ = header_end(content)
        content = _break_lines(content[:end], b"\r\n ") + _break_lines(content[end:], b"\r\n")
    return content


def _param(value: bytes, name: bytes) -> bytes | None:
    m = re.search(rb"(?:^|;)\s*" + name + rb'\s*=\s*(?:"([^"]*)"|([^;\s]+))', value, re.I)
    if m is None:
        return None
    return m.group(1) if m.group(1) is not None else m.group(2)


def _set_field(block: bytes, name: str, value: bytes) -> bytes:
    """`block` without any `name` field, then `name: value` appended."""
    out, pos = [], 0
    for field_name, start, _vstart, stop in iter_spans(block):
        if field_name.lower() == name.lower():
            out.append(block[pos:start])
            pos = stop
    out.append(block[pos:])
    kept = b"".join(out)
    if kept and not kept.endswith(b"\n"):
        kept += b"\r\n"
    return kept + name.encode("ascii") + b": " + value + b"\r\n"


def _split_multipart(body: bytes, boundary: bytes) -> list[bytes] | None:
    """[head, delimiter line, part, delimiter line, part, ..., tail] of a
    multipart body, with a CRLF put in front (removed by the caller)."""
    data = b"\r\n" + body
    delim = b"\r\n--" + boundary
    pieces: list[bytes] = []
    pos = last = 0
    while True:
        i = data.find(delim, pos)
        if i < 0:
            break
        after = i + len(delim)
        eol = data.find(b"\r\n", after)
        eol = len(data) if eol < 0 else eol
        rest = data[after:eol]
        close = rest.startswith(b"--")
        pos = after
        if rest[2 if close else 0 :].strip(b" \t"):
            continue  # a longer boundary that starts with ours
        pieces.append(data[last:i])
        pieces.append(data[i:eol])
        last = eol
        if close:
            break
    if not pieces:
        return None
    pieces.append(data[last:])
    return pieces


def to_7bit(entity: bytes, *, depth: int = 0) -> bytes | None:
    """A CRLF MIME entity with 8-bit octets converted to 7 bit (RFC 6152 §3,
    RFC 2045 §6): text/* to quoted-printable, other leaves to base64,
    multipart/* and message/rfc822 part by part. None when it cannot be
    converted (see the module documentation)."""
    if depth > MAX_MIME_DEPTH:
        return None
    end, start = header_end(entity)
    block, sep, body = entity[:end], entity[end:start], entity[start:]
    if _has_8bit(block):
        return None  # RFC 2047 encoding of arbitrary headers is not attempted
    if not _has_8bit(body):
        return entity
    ctype = b" ".join((get_first(block, "Content-Type") or b"text/plain").split())
    mtype = ctype.split(b";", 1)[0].strip().lower()
    cte = b" ".join((get_first(block, "Content-Transfer-Encoding") or b"").split()).lower()
    if cte in (b"quoted-printable", b"base64"):
        return None  # 8-bit octets where only 7 bit may be: broken beyond repair
    if mtype.startswith(b"multipart/"):
        boundary = _param(ctype, b"boundary")
        pieces = _split_multipart(body, boundary) if boundary else None
        if pieces is None or _has_8bit(pieces[0]) or _has_8bit(pieces[-1]):
            return None
        for i in range(2, len(pieces) - 1, 2):
            part = pieces[i]
            crlf = part.startswith(b"\r\n")
            converted = to_7bit(part[2:] if crlf else part, depth=depth + 1)
            if converted is None:
                return None
            pieces[i] = (b"\r\n" if crlf else b"") + converted
        new_body = b"".join(pieces)[2:]
    elif mtype in (b"message/rfc822", b"message/news"):
        inner = to_7bit(body, depth=depth + 1)
        if inner is None:
            return None
        new_body = inner
    elif mtype.startswith(b"message/"):
        return None  # RFC 2046 §5.2: partial and external-body are 7bit only anyway
    elif mtype.startswith(b"text/") or not mtype:
        block = _set_field(block, "Content-Transfer-Encoding", b"quoted-printable")
        return block + (sep or b"\r\n") + binascii.b2a_qp(body, istext=True)
    else:
        block = _set_field(block, "Content-Transfer-Encoding", b"base64")
        encoded = base64.encodebytes(body).replace(b"\n", b"\r\n")
        return block + (sep or b"\r\n") + encoded
    if cte:
        block = _set_field(block, "Content-Transfer-Encoding", b"7bit")
    return block + (sep or b"\r\n") + new_body


def _ascii_address(addr: str) -> str | None:
    """`addr` for a peer without SMTPUTF8: itself when ASCII, the domain as
    IDNA A-labels when only the domain is not, else None (RFC 6531 §3.2)."""
    if addr.isascii():
        return addr
    local, at, domain = addr.rpartition("@")
    if not at or not local.isascii():
        return None
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError:
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Prepared:
    """How a Transaction goes to one peer (see prepare_content)."""

    sender: str
    recipients: tuple[str, ...]
    content: bytes
    body: str | None  # BODY= value to send, or None
    smtputf8: bool
    bdat: bool


def prepare_content(tx: Transaction, ext: Extensions) -> Prepared | Reply:
    """Decide how `tx` goes to a peer offering `ext`, or the Reply refusing it
    before anything is sent (see the module documentation)."""
    addresses = (tx.sender, *(r.address for r in tx.recipients))
    if any(_BAD_PATH_CHARS.search(a) for a in addresses):
        return BAD_ADDRESS
    binary = tx.body.upper() == "BINARYMIME"
    content = tx.content if binary else normalise(tx.content)
    end, _ = header_end(content)
    utf8_headers = tx.smtputf8 and _has_8bit(content[:end])
    smtputf8 = ext.smtputf8 and (tx.smtputf8 or not all(a.isascii() for a in addresses))
    sender, recipients = tx.sender, tuple(r.address for r in tx.recipients)
    if not smtputf8:
        if utf8_headers:
            return UTF8_REQUIRED
        converted = [_ascii_address(a) if a else a for a in addresses]
        if any(c is None for c in converted):
            return UTF8_REQUIRED
        sender = converted[0] or ""
        recipients = tuple(c or "" for c in converted[1:])
    body: str | None = None
    if binary:
        if not (ext.binarymime and ext.chunking):
            return BINARY_UNSUPPORTED
        body = "BINARYMIME"
    elif _has_8bit(content) or tx.body.upper() == "8BITMIME":
        if ext.eightbitmime:
            body = "8BITMIME"
        elif _has_8bit(content):
            converted_content = to_7bit(content)
            if converted_content is None:
                return CONVERSION_FAILED
            content = converted_content
            end, _ = header_end(content)
            if get_first(content[:end], "MIME-Version") is None:
                content = b"MIME-Version: 1.0\r\n" + content
            content = normalise(content)
    if ext.size and len(content) > ext.size:  # RFC 1870 §6.1
        text = f"Message size {len(content)} exceeds the peer's limit of {ext.size}"
        return MESSAGE_TOO_BIG.with_text(text)
    return Prepared(
        sender=sender,
        recipients=recipients,
        content=content,
        body=body,
        smtputf8=smtputf8,
        bdat=ext.chunking,
    )
