"""message.submission — complete the header of a locally submitted message; sendmail -t.

Description:
    For local submissions only (the `sendmail` command and the pickup
    directory): a program that pipes a message into sendmail often writes
    LF line endings, a leading mbox "From " line, and no Date:, Message-ID:
    or From:. Mail arriving over SMTP is never changed here (RFC 5321 §4.4
    lets a relay add only trace fields).

    `normalize_line_endings(message)` turns every bare LF into CRLF (a
    lone CR is kept: it is data).

    `complete_headers(message, sender=, hostname=, now=, queue_id=)`
    normalises line endings, drops a leading "From " line (the Unix
    envelope line some programs write, which Postfix's and sendmail's
    sendmail also discard), and appends at the end of the header block the
    fields a submission server may add (RFC 6409 §8): Date: (RFC 6409
    §8.2, RFC 5322 §3.6.1), Message-ID: <YYYYMMDDhhmmss.QUEUEID@hostname>
    (RFC 6409 §8.3, RFC 5322 §3.6.4) and, when absent, From: set to the
    envelope sender (RFC 5322 §3.6.2 requires From:; sendmail and Postfix
    add it the same way), or MAILER-DAEMON@hostname for the null sender.
    A message without the empty line between header and body gets one.

    `recipients_from_headers(message)` is `sendmail -t`: the addresses of
    To:, Cc: and Bcc: — or, when the message has any Resent-To:,
    Resent-Cc: or Resent-Bcc: field, of those instead (RFC 5322 §3.6.6:
    a resent message goes to the resent recipients). Address lists are
    parsed with the standard library's `email.utils.getaddresses`
    (groups, comments, quoted strings, display names); duplicates are
    dropped, order kept. `remove_bcc(message)` removes the Bcc: and
    Resent-Bcc: fields with their continuation lines (RFC 5322 §3.6.3),
    as sendmail -t does.

Security:
    Pure functions over bytes; nothing here trusts the message. Header
    values are decoded as UTF-8 with replacement before address parsing.

See also:
    RFC 6409 §8 (message modifications by an MSA), RFC 5322 §3.6,
    message/headers.py, cli/sendmail.py.
"""

from __future__ import annotations

import re
import time
from email.utils import getaddresses

from postoffice.message import headers

_BARE_LF = re.compile(rb"(?<!\r)\n")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ADDR_FIELDS = ("to", "cc", "bcc")
_RESENT_FIELDS = ("resent-to", "resent-cc", "resent-bcc")
_BCC_FIELDS = frozenset({"bcc", "resent-bcc"})


def normalize_line_endings(message: bytes) -> bytes:
    """Every bare LF becomes CRLF; CRLF stays; a lone CR is left alone."""
    return _BARE_LF.sub(b"\r\n", message)


def _strip_from_line(message: bytes) -> bytes:
    """Drop a leading Unix "From " envelope line (not a "From:" field)."""
    if message.startswith(b"From "):
        nl = message.find(b"\n")
        return b"" if nl < 0 else message[nl + 1 :]
    return message


def _message_id(*, now: float, queue_id: str, hostname: str) -> str:
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(now))
    qid = re.sub(r"[^A-Za-z0-9]", "", queue_id) or "0"
    host = re.sub(r"[^A-Za-z0-9.-]", "", hostname) or "localhost"
    return f"<{stamp}.{qid}@{host}>"


def complete_headers(
    message: bytes, *, sender: str, hostname: str, now: float, queue_id: str
) -> bytes:
    """The message with CRLF line endings and missing Date:, Message-ID:, From: added."""
    data = normalize_line_endings(_strip_from_line(message))
    end, start = headers.header_end(data)
    block, body = data[:end], data[start:]
    names = {name.lower() for name, _ in headers.iter_fields(block)}
    added: list[str] = []
    if "from" not in names:
        author = _CONTROL.sub("", sender or f"MAILER-DAEMON@{hostname}")
        added.append(f"From: {author}")
    if "date" not in names:
        added.append(f"Date: {headers.format_date(now)}")
    if "message-id" not in names:
        added.append(f"Message-ID: {_message_id(now=now, queue_id=queue_id, hostname=hostname)}")
    if block and not block.endswith(b"\n"):
        block += b"\r\n"  # a header block that ended without a line ending at EOF
    extra = "".join(line + "\r\n" for line in added).encode("utf-8", "replace")
    return block + extra + b"\r\n" + body


def _addresses(values: list[bytes]) -> list[str]:
    decoded = [headers.unfold(v).decode("utf-8", "replace") for v in values]
    out: list[str] = []
    seen: set[str] = set()
    for _name, addr in getaddresses(decoded):
        addr = addr.strip()
        if not addr or addr in seen:
            continue
        seen.add(addr)
        out.append(addr)
    return out


def recipients_from_headers(message: bytes) -> list[str]:
    """The recipients `sendmail -t` takes from the header (see Description)."""
    block, _ = headers.split_message(message)
    fields = [(name.lower(), value) for name, value in headers.iter_fields(block)]
    resent = any(name in _RESENT_FIELDS for name, _ in fields)
    wanted = _RESENT_FIELDS if resent else _ADDR_FIELDS
    return _addresses([value for name, value in fields if name in wanted])


def remove_bcc(message: bytes) -> bytes:
    """The message without its Bcc: and Resent-Bcc: fields (RFC 5322 §3.6.3)."""
    end, _ = headers.header_end(message)
    drop = [
        (start, stop)
        for name, start, _v, stop in headers.iter_spans(message[:end])
        if name.lower() in _BCC_FIELDS
    ]
    if not drop:
        return message
    parts: list[bytes] = []
    pos = 0
    for start, stop in drop:
        parts.append(message[pos:start])
        pos = stop
    parts.append(message[pos:])
    return b"".join(parts)
