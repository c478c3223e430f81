"""message.headers — the header block of a message, on bytes: split, iterate, count, trace.

Description:
    Everything here works on the raw octets of a message as received
    (RFC 5322 §2.1: header fields, an empty line, the body) and never
    decodes more than a field name. Line endings may be CRLF or a bare LF;
    both are accepted everywhere.

    `header_end(data)` finds where the header block stops: at the first
    empty line (RFC 5322 §2.1), or at the first line that is neither a
    header field (`name:`, RFC 5322 §2.2; obsolete `name WSP :` accepted,
    §4.5) nor a folded continuation (starts with WSP, §2.2.3) — such a line
    is the first line of the body, as in Postfix's cleanup(8). A message
    with no empty line and only fields is all header; a message whose first
    line is not a field has an empty header block.

    `split_message(data)` returns (header block, body) without the empty
    separator line. `iter_fields(block)` yields (name, raw value) pairs, the
    value keeping its folding and losing only the final line ending;
    `unfold(value)` removes the folding. `count_received(data)` counts the
    Received: fields of the header block, for the hop limit of RFC 5321
    §6.3; it scans the header block only, with one regular expression, and
    is cheap enough to run on every message.

    `build_received`, `build_return_path` and `build_delivered_to` make the
    trace fields, each a complete field ending in CRLF:

        Received: from helo.example (rdns.example [192.0.2.1])
        \\tby mx.example (postoffice) with ESMTP id 01JD7Q4W2N
        \\tfor <rcpt@example>; Sun, 21 Nov 2026 17:27:16 +0000

    (RFC 5321 §4.4, RFC 5322 §3.6.7). `protocol` is the RFC 3848 keyword
    (SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA, UTF8SMTP, UTF8SMTPS, LMTP...);
    anything else is replaced by "SMTP". The date is in UTC in the
    RFC 5322 §3.3 form with "+0000".

Security:
    Input is untrusted. No function raises on arbitrary bytes. The HELO
    argument, reverse-DNS name, TLS description and queue id that go into
    Received: are sanitised: every octet outside printable US-ASCII, and
    the characters that would end a comment or the field's token list
    (`( ) \\ ; < > "` and whitespace), become "?", so a client cannot start
    a new field (CR/LF) or forge the "from"/"by" structure; lengths are
    capped. Addresses in Return-Path/Delivered-To/for lose CR, LF, NUL and
    angle brackets.

See also:
    RFC 5322 §2.2 (fields), §2.2.3 (folding), §3.3 (date), §3.6.7 (trace);
    RFC 5321 §4.4 (trace information), §6.3 (loop detection);
    RFC 3848 (with-protocol keywords); message/submission.py.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Iterator

# A header block: fields (name, optional WSP, colon) each followed by any
# continuation lines (starting with WSP). RFC 5322 §2.2 field-name is
# printable US-ASCII except ":" (33..57, 59..126); §4.5 allows WSP before
# the colon. Alternatives start with disjoint characters, so matching is
# linear. The last line may lack its line ending.
_HEADER_BLOCK = re.compile(
    rb"(?:[!-9;-~]+[ \t]*:[^\n]*(?:\n|\Z)(?:[ \t][^\n]*(?:\n|\Z))*)*",
)
_RECEIVED = re.compile(rb"^received[ \t]*:", re.IGNORECASE | re.MULTILINE)
_FIELD = re.compile(rb"([!-9;-~]+)[ \t]*:")
_FOLD = re.compile(rb"\r?\n(?=[ \t])")
_LINE_END = re.compile(rb"\r?\n\Z")


def header_end(data: bytes) -> tuple[int, int]:
    """(end of the header block, start of the body) as offsets into `data`.

    The header block is data[:end] (its last line keeps its line ending);
    the body is data[start:]. start - end is 2 or 1 when an empty line
    (CRLF or LF) separates them, 0 when there is no separator."""
    m = _HEADER_BLOCK.match(data)
    end = m.end() if m else 0
    if data.startswith(b"\r\n", end):
        return end, end + 2
    if data.startswith(b"\n", end):
        return end, end + 1
    return end, end


def split_message(data: bytes) -> tuple[bytes, bytes]:
    """(header block, body); the empty separator line belongs to neither."""
    end, start = header_end(data)
    return data[:end], data[start:]


def iter_spans(block: bytes) -> Iterator[tuple[str, int, int, int]]:
    """Each header field of `block` as (name, start, value start, end).

    block[start:end] is the whole field with its final line ending;
    block[value_start:end] is the value after the colon. Lines after the
    header block are not visited."""
    end, _ = header_end(block)
    pos = 0
    while pos < end:
        m = _FIELD.match(block, pos)
        if m is None:  # cannot happen inside the header block
            return
        # The field runs to the first line ending not followed by WSP (RFC 5322 §2.2.3).
        stop = pos
        while True:
            nl = block.find(b"\n", stop, end)
            if nl < 0:
                stop = end
                break
            stop = nl + 1
            if stop >= end or block[stop] not in (0x20, 0x09):
                break
        yield m.group(1).decode("ascii"), pos, m.end(), stop
        pos = stop


def iter_fields(block: bytes) -> Iterator[tuple[str, bytes]]:
    """Each header field of `block` as (name, raw value).

    The name is as written (ASCII; compare with `.lower()`); the value is
    everything after the colon, folding line breaks kept, the final line
    ending removed (RFC 5322 §2.2.3). Lines after the header block are not
    visited."""
    for name, _start, vstart, stop in iter_spans(block):
        value = block[vstart:stop]
        lm = _LINE_END.search(value)
        yield name, value if lm is None else value[: lm.start()]


def unfold(value: bytes) -> bytes:
    """Remove the folding (CRLF or LF before WSP) from a field value (RFC 5322 §2.2.3)."""
    return _FOLD.sub(b"", value)


def get_all(block: bytes, name: str) -> list[bytes]:
    """The raw values of every field called `name` (case-insensitive), in order."""
    want = name.lower()
    return [v for n, v in iter_fields(block) if n.lower() == want]


def get_first(block: bytes, name: str) -> bytes | None:
    """The raw value of the first field called `name`, or None."""
    want = name.lower()
    for n, v in iter_fields(block):
        if n.lower() == want:
            return v
    return None


def has_header(block: bytes, name: str) -> bool:
    """Whether the header block of `block` has a field called `name` (case-insensitive)."""
    return get_first(block, name) is not None


def count_received(data: bytes) -> int:
    """How many Received: fields the header block of `data` has (RFC 5321 §6.3).

    `data` may be the whole message or any prefix of it that contains the
    whole header block; only the header block is scanned."""
    end, _ = header_end(data)
    return len(_RECEIVED.findall(data, 0, end))


# --- building trace fields ---------------------------------------------------------

# RFC 3848 §2 and the registry of WITH protocol types (plus LMTP, RFC 2033 §7
# and the UTF8 keywords, RFC 6531 §3.7.3).
_PROTOCOLS = frozenset(
    {
        "SMTP", "ESMTP", "ESMTPA", "ESMTPS", "ESMTPSA", "LMTP", "LMTPA", "LMTPS", "LMTPSA",
        "UTF8SMTP", "UTF8SMTPA", "UTF8SMTPS", "UTF8SMTPSA", "UTF8LMTP", "UTF8LMTPA",
        "UTF8LMTPS", "UTF8LMTPSA", "QMTP", "HTTP", "local",
    }
)  # fmt: skip
_UNSAFE = re.compile(r"[^!#-\'*-:=?-\[\]-~]")  # printable ASCII minus ( ) \ ; < > " and space
_ADDR_UNSAFE = re.compile(r"[\x00-\x1f\x7f<>]")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MAX_TEXT = 255


def _safe(text: str, default: str = "unknown") -> str:
    """`text` made harmless inside a Received: field (see Security)."""
    cleaned = _UNSAFE.sub("?", text[:_MAX_TEXT])
    return cleaned or default


def _safe_addr(addr: str) -> str:
    return _ADDR_UNSAFE.sub("", addr[:1000])


def _address_literal(ip: str) -> str:
    """`[192.0.2.1]` or `[IPv6:2001:db8::1]` (RFC 5321 §4.1.3)."""
    try:
        parsed = ipaddress.ip_address(ip.strip("[]").removeprefix("IPv6:"))
    except ValueError:
        return f"[{_safe(ip)}]"
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return f"[{parsed.ipv4_mapped}]"
        return f"[IPv6:{parsed.compressed}]"
    return f"[{parsed}]"


def format_date(when: float) -> str:
    """`Sun, 21 Nov 2026 17:27:16 +0000`: RFC 5322 §3.3 date-time, in UTC.

    Day and month names are English whatever the locale."""
    t = time.gmtime(when)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    )


def build_received(
    *,
    helo: str,
    client_name: str,
    client_ip: str,
    hostname: str,
    protocol: str,
    queue_id: str,
    recipient: str | None,
    when: float,
    tls: str | None = None,
    forged: bool = False,
) -> bytes:
    """A folded Received: field ending in CRLF (RFC 5321 §4.4, RFC 5322 §3.6.7).

    `forged`: the client's reverse-DNS name did not resolve back to its
    address; sendmail then writes "(name [ip] (may be forged))".

    `from` is omitted when helo, client_name and client_ip are all empty (a
    local submission); `for <recipient>` only when `recipient` is given (one
    recipient: naming several would disclose Bcc recipients). `tls`, e.g.
    "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)", becomes a
    "(using ...)" comment line as Postfix writes it."""
    lines: list[str] = []
    if helo or client_name or client_ip:
        rdns = _safe(client_name) if client_name else "unknown"
        tcp_info = f"{rdns} {_address_literal(client_ip)}" if client_ip else rdns
        if forged and client_name:
            tcp_info += " (may be forged)"
        lines.append(f"Received: from {_safe(helo or client_name)} ({tcp_info})")
        if tls:
            # Parentheses inside the TLS comment are balanced by construction below.
            lines.append(f"\t(using {_safe_comment(tls)})")
        lines.append("\tby ")
    else:
        lines.append("Received: by ")
    proto = protocol if protocol in _PROTOCOLS else "SMTP"
    lines[-1] += f"{_safe(hostname, 'localhost')} (postoffice) with {proto} id {_safe(queue_id)}"
    date = format_date(when)
    if recipient is not None:
        lines.append(f"\tfor <{_safe_addr(recipient)}>; {date}")
    else:
        lines[-1] += f"; {date}"
    return ("\r\n".join(lines) + "\r\n").encode("utf-8", "replace")


_COMMENT_UNSAFE = re.compile(r"[^ !-\[\]-~]")  # printable ASCII and space, minus backslash


def _safe_comment(text: str) -> str:
    """Text for inside a comment: printable ASCII, balanced parentheses, no ';'."""
    cleaned = _COMMENT_UNSAFE.sub("?", text[:_MAX_TEXT]).replace(";", "?")
    depth = 0
    out = []
    for ch in cleaned:
        if ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                ch = "?"
            else:
                depth -= 1
        out.append(ch)
    return "".join(out) + ")" * depth


def build_return_path(sender: str) -> bytes:
    """`Return-Path: <sender>` + CRLF; `<>` for the null sender (RFC 5321 §4.4, RFC 5322 §3.6.7)."""
    return f"Return-Path: <{_safe_addr(sender)}>\r\n".encode("utf-8", "replace")


def build_delivered_to(address: str) -> bytes:
    """`Delivered-To: address` + CRLF, as Postfix local(8) and Dovecot write it (no brackets).

    Not standardised; it marks the mailbox a message was delivered to so a
    forwarding loop can be recognised (Postfix local(8), qmail)."""
    return f"Delivered-To: {_safe_addr(address)}\r\n".encode("utf-8", "replace")
