"""message.dsn — delivery status notifications: build them (RFC 3464) and read them back.

Description:
    `build_dsn(kind=, envelope=, recipients=, reporting_mta=, original=,
    now=, queue_id_new=)` makes the bytes (CRLF line endings) of one
    notification about some recipients of a queued message:

        kind       Action:    Subject:
        failure    failed     Undelivered Mail Returned to Sender
        delay      delayed    Delayed Mail (still being retried)
        success    delivered  Successful Mail Delivery Report
        relayed    relayed    Successful Mail Delivery Report

    It is a multipart/report; report-type=delivery-status message (RFC 6522
    §3, RFC 3464 §2) of three parts:

      1. text/plain for people, in sendmail's words ("The original message
         was received at ... from ...", "----- The following addresses had
         permanent fatal errors -----", each address with its reason);
      2. message/delivery-status: the per-message fields (Original-Envelope-
         Id when the sender gave ENVID, Reporting-MTA: dns; host,
         Received-From-MTA, Arrival-Date, X-Postoffice-Queue-ID), then one
         group per recipient (Original-Recipient from ORCPT — or the
         address before alias expansion, as Postfix does —, Final-Recipient,
         Action, Status, Remote-MTA when an SMTP relay answered,
         Diagnostic-Code: smtp; 550 ... when the reason is an SMTP reply,
         Last-Attempt-Date, Will-Retry-Until for delays);
      3. the returned content: message/rfc822 (the whole message) or
         text/rfc822-headers (its header only), RFC 6522 §4 — or, when the
         returned header is internationalised (RFC 6532), message/global
         and message/global-headers (RFC 6533 §6.3). Left out when
         `original` is empty (RFC 3464 §2: the third part is optional).

    The header: Date, From: Mail Delivery Subsystem <MAILER-DAEMON@host>,
    To: the sender (or `to=`, the postmaster for a copy), Subject,
    Message-ID, Auto-Submitted: auto-replied (RFC 3834 §5), MIME-Version.

    What is returned (RFC 3461 §4.3, `returns_full`):
      * failure, RET=FULL: the whole message, whatever its size;
      * failure, RET=HDRS: the header only;
      * failure, no RET: the whole message up to BOUNCE_SIZE_LIMIT (50 000
        bytes, Postfix's bounce_size_limit), the header only beyond — the
        RFC leaves it to the MTA, and Postfix (since 2.4) returns headers
        rather than a truncated message;
      * delay, success, relayed: the header only ("If a DSN contains no
        indications of delivery failure, only the headers of the message
        SHOULD be returned", RFC 3461 §4.3);
      * a postmaster copy (`to=` someone other than the sender, the double
        bounce): the header only — the postmaster needs the trace, not
        the text of someone else's notification.
    The caller passes the whole message when `returns_full(...)` is true and
    may pass just the header otherwise; build_dsn cuts a whole message down
    to its header itself when the rules say so.

    Which recipients a DSN may mention (RFC 3461 §4.1, `wants_dsn`):
    NOTIFY=NEVER: none; NOTIFY=list: the kinds listed (relayed counts as
    SUCCESS); no NOTIFY: FAILURE and DELAY — the RFC allows "either
    NOTIFY=FAILURE or NOTIFY=FAILURE,DELAY"; we take the latter, as sendmail
    and Postfix do, since queue.warn_after (4 h) delay warnings are the
    sendmail default the seed describes.

    Status: the X.Y.Z at the start of the recipient's reason ("550 5.1.1
    User unknown" -> 5.1.1; "4.4.7 Message expired ..." -> 4.4.7, which
    stays a 4.X.X with Action: failed, as Postfix reports expired mail),
    else from the reply code's class, else 5.0.0 / 4.0.0 / 2.0.0 by kind;
    a status whose class disagrees with the kind is replaced by the kind's
    default (RFC 3464 §2.3.4). Diagnostic-Code is the reason as "smtp; ..."
    when it starts with a reply code (or ends in "(last: 451 ...)", the
    manager's expiry text), else "x-postoffice; ..." (RFC 3464 §2.3.6).

    8-bit and UTF-8: an original with 8-bit octets is returned with
    Content-Transfer-Encoding: 8bit, which the enclosing multipart declares
    too (RFC 2045 §6.4, RFC 2046 §5.2.1); the notification then needs
    BODY=8BITMIME (`needs_8bitmime`). Addresses outside ASCII are written
    as `utf-8; ` plus the utf-8-addr-xtext form, `\\x{HEX}` per non-ASCII
    character (RFC 6533 §3), so message/delivery-status stays 7-bit; the
    human part is then UTF-8 (8bit), and a To: outside ASCII needs
    SMTPUTF8 (`needs_smtputf8`). Octets the stored text cannot carry (NUL
    in a body, lines over 998 octets) are not re-encoded: such a message
    was accepted as it is and is returned as it is.

    `parse_dsn(data)` reads a notification back (ours or anyone's): the
    multipart/report is found at the top or nested in multipart parts, the
    delivery-status part (message/delivery-status or
    message/global-delivery-status, base64 or quoted-printable decoded when
    so labelled) is split into field groups, and a DeliveryReport carries
    the per-message fields and one RecipientStatus per recipient group
    (addresses decoded: `rfc822; a@b` -> "a@b", utf-8 \\x{..} escapes
    undone), plus the returned part's type and content. It raises DsnError
    (a ValueError) and nothing else when the input is not a DSN.

Security:
    Pure functions; no I/O. Everything taken from the envelope (addresses,
    reasons from remote servers, ENVID, client names) is untrusted: control
    characters become "?", delivery-status values are made ASCII and cut
    to 900 characters so no field line reaches 998 octets, and nothing can
    start a header field or a MIME boundary of its own (the boundary is
    checked against the returned content). parse_dsn never raises on
    arbitrary bytes except DsnError.

See also:
    RFC 3464 (the delivery-status format), RFC 6522 (multipart/report,
    text/rfc822-headers), RFC 3461 §4.1-§4.4 (NOTIFY, ORCPT, RET, ENVID),
    RFC 3834 §5 (Auto-Submitted), RFC 5321 §6.1 and §4.5.5 (notifications
    come from the null sender and never go to it), RFC 6533 (UTF-8 in
    DSNs), RFC 3463 (status codes); queue/bounce.py (sends them),
    message/headers.py.
"""

from __future__ import annotations

import base64
import binascii
import quopri
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from postoffice.message import headers
from postoffice.message.submission import normalize_line_endings
from postoffice.queue.envelope import Envelope, EnvelopeRecipient

DsnKind = Literal["failure", "delay", "success", "relayed"]
KINDS: tuple[DsnKind, ...] = ("failure", "delay", "success", "relayed")

BOUNCE_SIZE_LIMIT = 50_000  # octets of original returned without RET=FULL (Postfix's default)
DEFAULT_NOTIFY = frozenset({"FAILURE", "DELAY"})  # RFC 3461 §4.1, see the manual

ACTIONS: dict[DsnKind, str] = {
    "failure": "failed",
    "delay": "delayed",
    "success": "delivered",
    "relayed": "relayed",
}
SUBJECTS: dict[DsnKind, str] = {
    "failure": "Undelivered Mail Returned to Sender",
    "delay": "Delayed Mail (still being retried)",
    "success": "Successful Mail Delivery Report",
    "relayed": "Successful Mail Delivery Report",
}
POSTMASTER_SUBJECT = "Postmaster Copy: Undelivered Mail"
_NOTIFY_KEYWORD: dict[DsnKind, str] = {
    "failure": "FAILURE",
    "delay": "DELAY",
    "success": "SUCCESS",
    "relayed": "SUCCESS",
}
_DEFAULT_STATUS: dict[DsnKind, str] = {
    "failure": "5.0.0",
    "delay": "4.0.0",
    "success": "2.0.0",
    "relayed": "2.0.0",
}
_HEADINGS: dict[DsnKind, str] = {
    "failure": "permanent fatal errors",
    "delay": "transient non-fatal errors",
    "success": "successful delivery notifications",
    "relayed": "successful delivery notifications",
}
_RETURNED_DESCRIPTION: dict[DsnKind, str] = {
    "failure": "Undelivered Message",
    "delay": "Delayed Message",
    "success": "Delivered Message",
    "relayed": "Relayed Message",
}

_MAX_VALUE = 900  # characters of one field value: the line stays under 998 octets
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_REASON = re.compile(r"^\s*(?P<code>[245]\d\d)?(?:[ -]+|$)?(?P<status>[245]\.\d{1,3}\.\d{1,3})?")
_LAST = re.compile(r"\(last: (?P<reply>[245]\d\d[ -].*)\)\s*$")
_RELAY = re.compile(r"^(?P<name>[A-Za-z0-9._-]*)\[(?P<addr>[0-9A-Fa-f:.]+|IPv6:[0-9A-Fa-f:.]+)\]")
_HOSTNAME = re.compile(r"[^A-Za-z0-9.-]")


class DsnError(ValueError):
    """The input is not a delivery status notification."""


# --- the rules --------------------------------------------------------------------------


def wants_dsn(notify: frozenset[str] | None, kind: DsnKind) -> bool:
    """Whether a recipient with this NOTIFY may be mentioned in a `kind` DSN (RFC 3461 §4.1)."""
    effective = DEFAULT_NOTIFY if notify is None else notify
    return _NOTIFY_KEYWORD[kind] in effective


def returns_full(
    kind: DsnKind,
    ret: str | None,
    size: int,
    *,
    size_limit: int = BOUNCE_SIZE_LIMIT,
    postmaster_copy: bool = False,
) -> bool:
    """Whether a `kind` DSN returns the whole message (True) or only its header (RFC 3461 §4.3)."""
    if kind != "failure" or postmaster_copy:
        return False
    ret = (ret or "").upper()
    if ret == "HDRS":
        return False
    if ret == "FULL":
        return True
    return size <= size_limit


def status_of(kind: DsnKind, reason: str) -> str:
    """The Status: for a recipient of a `kind` DSN with this reason (see the manual)."""
    m = _REASON.match(reason)
    status = ""
    if m is not None:
        if m.group("status"):
            status = m.group("status")
        elif m.group("code"):
            status = f"{m.group('code')[0]}.0.0"
    want = {"failure": "45", "delay": "4", "success": "2", "relayed": "2"}[kind]
    if not status or status[0] not in want:
        return _DEFAULT_STATUS[kind]
    return status


def diagnostic_of(reason: str) -> str | None:
    """`smtp; 550 5.1.1 User unknown` (RFC 3464 §2.3.6), or None without a reason."""
    text = _ascii(reason)
    if not text:
        return None
    if re.match(r"[245]\d\d(?:[ -]|$)", text):
        return f"smtp; {text}"
    last = _LAST.search(text)
    if last is not None:
        return f"smtp; {last.group('reply')}"
    return f"x-postoffice; {text}"


def remote_mta(relay: str) -> str | None:
    """`mx.example` from an agent's relay `mx.example[192.0.2.1]:25`; None for local agents."""
    m = _RELAY.match(relay)
    if m is None:
        return None
    name = m.group("name")
    if name and name != "unknown":
        return name
    return f"[{m.group('addr')}]"


def typed_address(address: str, addr_type: str = "rfc822") -> str:
    """`rfc822; a@b`, or `utf-8; ` + utf-8-addr-xtext when not ASCII (RFC 6533 §3)."""
    clean = _CONTROL.sub("", address)[:_MAX_VALUE].strip()
    if clean.isascii():
        return f"{addr_type}; {clean}"
    out = []
    for ch in clean:
        if "!" <= ch <= "~" and ch not in "\\+=":
            out.append(ch)
        else:
            out.append(f"\\x{{{ord(ch):X}}}")
    return "utf-8; " + "".join(out)[:_MAX_VALUE]


def needs_8bitmime(dsn: bytes) -> bool:
    """Whether the notification must travel with BODY=8BITMIME (RFC 6152)."""
    return not dsn.isascii()


def needs_smtputf8(dsn: bytes) -> bool:
    """Whether its own header has UTF-8 (a To: outside ASCII): SMTPUTF8 (RFC 6531)."""
    block, _ = headers.split_message(dsn)
    return not block.isascii()


# --- building ----------------------------------------------------------------------------


def _ascii(text: str) -> str:
    """One line of printable ASCII: white space collapses, other controls and non-ASCII
    become "?"."""
    spaced = " ".join(text.split())
    return "".join(ch if " " <= ch <= "~" else "?" for ch in spaced)[:_MAX_VALUE]


def _text(text: str) -> str:
    """One line for the human part: white space collapses, controls become "?", UTF-8 kept."""
    return _CONTROL.sub("?", " ".join(text.split()))[:_MAX_VALUE]


def _field(name: str, value: str) -> str:
    """`Name: value`, folded at spaces before 78 columns (RFC 5322 §2.2.3), CRLF-free."""
    words = value.split()
    if not words:
        return f"{name}:"
    lines: list[str] = []
    line = f"{name}: {words[0]}"
    for word in words[1:]:
        if len(line) + 1 + len(word) > 78:
            lines.append(line)
            line = " " + word
        else:
            line += " " + word
    lines.append(line)
    return "\r\n".join(lines)


def _duration(seconds: float) -> str:
    """`4 hours`, `5 days`, `1 day, 2 hours`, `30 minutes` (sendmail's delay wording)."""
    minutes = max(0, round(seconds / 60))
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    parts = [
        f"{n} {unit}{'' if n == 1 else 's'}"
        for n, unit in ((days, "day"), (hours, "hour"), (mins, "minute"))
        if n
    ]
    return ", ".join(parts) or "0 minutes"


def _origin(env: Envelope) -> str:
    if env.client_address:
        name = env.client_name or "unknown"
        return _text(f"{name} [{env.client_address}]")
    who = f"<{env.sender}>" if env.sender else "<>"
    return _text(f"{who} (local submission)" if env.local_submission else who)


def _human_text(
    *,
    kind: DsnKind,
    env: Envelope,
    rcpts: Sequence[EnvelopeRecipient],
    host: str,
    now: float,
    will_retry_until: float | None,
    postmaster_copy: bool,
) -> str:
    lines: list[str] = []
    if kind == "delay":
        lines += [
            "    **********************************************",
            "    **      THIS IS A WARNING MESSAGE ONLY      **",
            "    **  YOU DO NOT NEED TO RESEND YOUR MESSAGE  **",
            "    **********************************************",
            "",
        ]
    lines.append(f"This is the mail system at host {host}.")
    lines.append("")
    if postmaster_copy:
        lines += [
            "This is a copy for the postmaster: the message below came from the",
            "null sender <> (it is itself a notification), and no notification is",
            "ever returned to <> (RFC 5321 section 4.5.5).",
            "",
        ]
    lines.append(f"The original message was received at {headers.format_date(env.arrival_time)}")
    lines.append(f"from {_origin(env)}")
    lines.append("")
    lines.append(f"   ----- The following addresses had {_HEADINGS[kind]} -----")
    for r in rcpts:
        lines.append(_text(f"<{r.address}>"))
        if r.orig and r.orig != r.address:
            lines.append("    " + _text(f"(expanded from: <{r.orig}>)"))
        if kind == "success":
            lines.append("    (successfully delivered)")
        elif kind == "relayed":
            lines.append("    (relayed to non-DSN-aware mailer)")
        else:
            lines.append("    " + _text(f"(reason: {r.reason or 'unknown'})"))
    if kind == "delay":
        lines.append("")
        lines.append(
            f"Warning: message still undelivered after {_duration(now - env.arrival_time)}"
        )
        if will_retry_until is not None:
            until = _duration(will_retry_until - env.arrival_time)
            lines.append(f"Will keep trying until message is {until} old")
    return "\r\n".join(lines) + "\r\n"


def _status_part(
    *,
    kind: DsnKind,
    env: Envelope,
    rcpts: Sequence[EnvelopeRecipient],
    host: str,
    now: float,
    will_retry_until: float | None,
) -> str:
    """The message/delivery-status body (RFC 3464 §2.1): message fields, then recipients."""
    # RFC 3464 §2.2: the per-message fields, in the order of its grammar.
    msg: list[str] = []
    if env.envid is not None:
        msg.append(_field("Original-Envelope-Id", _ascii(env.envid)))  # §2.2.1
    msg.append(_field("Reporting-MTA", f"dns; {host}"))  # §2.2.2
    if env.client_address:  # §2.2.4
        name = env.client_name if env.client_name not in ("", "unknown") else ""
        mta = _ascii(name) if name else _ascii(f"[{env.client_address}]")
        msg.append(_field("Received-From-MTA", f"dns; {mta}"))
    msg.append(_field("Arrival-Date", headers.format_date(env.arrival_time)))  # §2.2.5
    msg.append(_field("X-Postoffice-Queue-ID", _ascii(env.queue_id)))  # extension (§2.4)
    groups = ["\r\n".join(msg)]
    action = ACTIONS[kind]
    for r in rcpts:
        f: list[str] = []
        # §2.3.1: ORCPT as given (already xtext-decoded in the envelope); without it, the
        # address before aliases and forwarding, as Postfix reports it.
        if r.orcpt:
            addr_type, _, addr = r.orcpt.partition(";")
            orig_type = _ascii(addr_type).replace(" ", "") or "rfc822"
            f.append(_field("Original-Recipient", typed_address(addr.strip(), orig_type)))
        elif r.orig and r.orig != r.address:
            f.append(_field("Original-Recipient", typed_address(r.orig)))
        f.append(_field("Final-Recipient", typed_address(r.address)))  # §2.3.2
        f.append(_field("Action", action))  # §2.3.3
        f.append(_field("Status", status_of(kind, r.reason)))  # §2.3.4
        remote = remote_mta(r.relay)
        if remote is not None:
            f.append(_field("Remote-MTA", f"dns; {remote}"))  # §2.3.5
        if kind in ("failure", "delay"):
            diagnostic = diagnostic_of(r.reason)
            if diagnostic is not None:
                f.append(_field("Diagnostic-Code", diagnostic))  # §2.3.6
        f.append(_field("Last-Attempt-Date", headers.format_date(now)))  # §2.3.7
        if kind == "delay" and will_retry_until is not None:
            f.append(_field("Will-Retry-Until", headers.format_date(will_retry_until)))  # §2.3.9
        groups.append("\r\n".join(f))
    return "\r\n\r\n".join(groups) + "\r\n"


def _boundary(queue_id_new: str, now: float, host: str, parts: Sequence[bytes]) -> str:
    """A boundary (RFC 2046 §5.1.1: at most 70 characters) that no part contains."""
    qid = re.sub(r"[^A-Za-z0-9]", "", queue_id_new)[:26] or "0"
    base = f"{qid}.{int(now)}/{host[:24]}"
    boundary, n = base, 0
    while any(b"--" + boundary.encode() in part for part in parts):
        n += 1
        boundary = f"{base}.{n}"
    return boundary


def build_dsn(
    *,
    kind: DsnKind,
    envelope: Envelope,
    recipients: Sequence[EnvelopeRecipient],
    reporting_mta: str,
    original: bytes,
    now: float,
    queue_id_new: str,
    to: str | None = None,
    will_retry_until: float | None = None,
    size_limit: int = BOUNCE_SIZE_LIMIT,
) -> bytes:
    """The notification's bytes (see the manual). `to` defaults to the envelope sender.

    Raises ValueError for a notification to the null sender (RFC 5321 §4.5.5)
    or without recipients."""
    if kind not in KINDS:
        raise ValueError(f"unknown DSN kind {kind!r}")
    rcpt_to = envelope.sender if to is None else to
    if not rcpt_to:
        raise ValueError("no notification is ever sent to the null sender <>")
    if not recipients:
        raise ValueError("a notification needs at least one recipient")
    postmaster_copy = rcpt_to != envelope.sender
    host = _HOSTNAME.sub("", reporting_mta)[:255] or "localhost"

    text = _human_text(
        kind=kind, env=envelope, rcpts=recipients, host=host, now=now,
        will_retry_until=will_retry_until, postmaster_copy=postmaster_copy,
    ).encode("utf-8")  # fmt: skip
    status = _status_part(
        kind=kind, env=envelope, rcpts=recipients, host=host, now=now,
        will_retry_until=will_retry_until,
    ).encode("ascii")  # fmt: skip

    content = normalize_line_endings(original)
    size = envelope.size or len(content)
    full = returns_full(
        kind, envelope.ret, size, size_limit=size_limit, postmaster_copy=postmaster_copy
    )
    if content and not full:
        content, _ = headers.split_message(content)
    if content and not content.endswith(b"\r\n"):
        content += b"\r\n"
    block, _ = headers.split_message(content)
    international = not block.isascii()
    if full:
        returned_type = "message/global" if international else "message/rfc822"
        description = _RETURNED_DESCRIPTION[kind]
    else:
        returned_type = "message/global-headers" if international else "text/rfc822-headers"
        description = f"{_RETURNED_DESCRIPTION[kind]} Headers"

    boundary = _boundary(queue_id_new, now, host, [text, status, content])
    eight_bit = not text.isascii() or not content.isascii()
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(now))
    qid = re.sub(r"[^A-Za-z0-9]", "", queue_id_new) or "0"
    to_text = _CONTROL.sub("", rcpt_to)[:_MAX_VALUE]
    head = [
        f"Date: {headers.format_date(now)}",
        f"From: Mail Delivery Subsystem <MAILER-DAEMON@{host}>",
        f"To: {to_text}",
        f"Subject: {POSTMASTER_SUBJECT if postmaster_copy else SUBJECTS[kind]}",
        f"Message-ID: <{stamp}.{qid}@{host}>",
        "Auto-Submitted: auto-replied",  # RFC 3834 §5
        "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=delivery-status;",
        f'\tboundary="{boundary}"',
    ]
    if eight_bit:
        head.append("Content-Transfer-Encoding: 8bit")  # RFC 2045 §6.4
    out = ["\r\n".join(head).encode("utf-8"), b"\r\n\r\nThis is a MIME-encapsulated message.\r\n"]
    delimiter = f"\r\n--{boundary}\r\n".encode("ascii")

    charset = "us-ascii" if text.isascii() else "utf-8"
    out += [delimiter, b"Content-Description: Notification\r\n"]
    out.append(f"Content-Type: text/plain; charset={charset}\r\n".encode("ascii"))
    if not text.isascii():
        out.append(b"Content-Transfer-Encoding: 8bit\r\n")
    out += [b"\r\n", text]

    out += [delimiter, b"Content-Description: Delivery report\r\n"]
    out += [b"Content-Type: message/delivery-status\r\n\r\n", status]

    if content:
        out += [delimiter, f"Content-Description: {description}\r\n".encode("ascii")]
        out.append(f"Content-Type: {returned_type}\r\n".encode("ascii"))
        if not content.isascii():
            out.append(b"Content-Transfer-Encoding: 8bit\r\n")  # RFC 2046 §5.2.1
        out += [b"\r\n", content]
    out.append(f"\r\n--{boundary}--\r\n".encode("ascii"))
    return b"".join(out)


# --- reading ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RecipientStatus:
    """One per-recipient group of a delivery-status part (RFC 3464 §2.3)."""

    final_recipient: str  # the address, decoded ("rfc822; a@b" -> "a@b")
    final_type: str  # "rfc822", "utf-8", ...
    action: str  # lower case: failed, delayed, delivered, relayed, expanded
    status: str  # "5.1.1"
    original_recipient: str | None = None  # the address, decoded
    remote_mta: str | None = None  # as written: "dns; mx.example"
    diagnostic_code: str | None = None  # as written: "smtp; 550 5.1.1 User unknown"
    last_attempt_date: str | None = None
    will_retry_until: str | None = None
    fields: tuple[tuple[str, str], ...] = ()  # every field: (name as written, unfolded value)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryReport:
    """What parse_dsn found."""

    reporting_mta: str | None  # as written: "dns; mail.example"
    original_envelope_id: str | None
    arrival_date: str | None
    message_fields: tuple[tuple[str, str], ...]
    recipients: tuple[RecipientStatus, ...]
    returned_type: str | None  # message/rfc822, text/rfc822-headers, ... (None: no such part)
    returned: bytes | None  # its content, transfer-decoded


_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PARAM = re.compile(rb";\s*(" + _TOKEN + rb')\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)')
_XCHAR = re.compile(r"\\x\{([0-9A-Fa-f]{1,6})\}")
_GROUP_SEP = re.compile(rb"\n(?:[ \t]*\r?\n)+")
_STATUS_TYPES = ("message/delivery-status", "message/global-delivery-status")
_RETURNED_TYPES = (
    "message/rfc822",
    "message/global",
    "text/rfc822-headers",
    "message/global-headers",
)


def _content_type(block: bytes) -> tuple[str, dict[str, str]]:
    raw = headers.get_first(block, "content-type")
    if raw is None:
        return "text/plain", {}
    value = headers.unfold(raw)
    main = value.split(b";", 1)[0].strip().decode("latin-1").lower()
    params: dict[str, str] = {}
    for m in _PARAM.finditer(value):
        v = m.group(2)
        if v.startswith(b'"'):
            v = re.sub(rb"\\(.)", rb"\1", v[1:-1])
        params.setdefault(m.group(1).decode("ascii").lower(), v.decode("latin-1"))
    return main, params


def _mime_parts(body: bytes, boundary: str) -> Iterator[bytes]:
    """The body parts of a multipart body (RFC 2046 §5.1.1); lenient about endings."""
    delimiter = b"--" + boundary.encode("latin-1")
    current: list[bytes] | None = None
    for line in body.splitlines(keepends=True):
        bare = line.rstrip(b"\r\n").rstrip(b" \t")
        if bare in (delimiter, delimiter + b"--"):
            if current is not None:
                part = b"".join(current)
                yield part[:-2] if part.endswith(b"\r\n") else part.removesuffix(b"\n")
            if bare.endswith(b"--") and bare != delimiter:
                return
            current = []
        elif current is not None:
            current.append(line)
    if current is not None:  # no closing delimiter: take what is there
        yield b"".join(current)


def _decoded(block: bytes, content: bytes) -> bytes:
    cte = headers.get_first(block, "content-transfer-encoding")
    encoding = headers.unfold(cte).strip().lower() if cte is not None else b""
    try:
        if encoding == b"base64":
            return base64.b64decode(content, validate=False)
        if encoding == b"quoted-printable":
            return quopri.decodestring(content)
    except (binascii.Error, ValueError):
        return content
    return content


def _find_report(data: bytes, depth: int = 0) -> list[tuple[str, bytes, bytes]] | None:
    """The parts (type, header block, content) of the first multipart/report found."""
    block, body = headers.split_message(data)
    ctype, params = _content_type(block)
    boundary = params.get("boundary")
    if not ctype.startswith("multipart/") or not boundary:
        return None
    parts = []
    for raw in _mime_parts(body, boundary):
        part_block, content = headers.split_message(raw)
        parts.append((_content_type(part_block)[0], part_block, content, raw))
    if ctype == "multipart/report":
        return [(t, b, c) for t, b, c, _ in parts]
    if depth < 3:
        for t, _b, _c, raw in parts:
            if t.startswith("multipart/"):
                found = _find_report(raw, depth + 1)
                if found is not None:
                    return found
    return None


def _decode_address(value: str) -> tuple[str, str]:
    """("rfc822", "a@b") from "rfc822; a@b"; utf-8 \\x{HEX} escapes undone (RFC 6533 §3)."""
    addr_type, semi, address = value.partition(";")
    if not semi:
        return "", value.strip()
    addr_type = addr_type.strip().lower()
    address = address.strip()
    if addr_type == "utf-8":

        def char(m: re.Match[str]) -> str:
            code = int(m.group(1), 16)
            return chr(code) if code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else "?"

        address = _XCHAR.sub(char, address)
    return addr_type, address


def _groups(content: bytes) -> list[list[tuple[str, str]]]:
    groups: list[list[tuple[str, str]]] = []
    for chunk in _GROUP_SEP.split(content.strip(b"\r\n")):
        fields = [
            (name, headers.unfold(value).decode("utf-8", "replace").strip())
            for name, value in headers.iter_fields(chunk.lstrip(b"\r\n"))
        ]
        if fields:
            groups.append(fields)
    return groups


def _recipient(fields: list[tuple[str, str]]) -> RecipientStatus | None:
    first: dict[str, str] = {}
    for name, value in fields:
        first.setdefault(name.lower(), value)
    final = first.get("final-recipient")
    if final is None:
        return None
    final_type, address = _decode_address(final)
    orig = first.get("original-recipient")
    return RecipientStatus(
        final_recipient=address,
        final_type=final_type,
        action=first.get("action", "").strip().lower(),
        status=first.get("status", "").split(" ", 1)[0].strip(),
        original_recipient=_decode_address(orig)[1] if orig is not None else None,
        remote_mta=first.get("remote-mta"),
        diagnostic_code=first.get("diagnostic-code"),
        last_attempt_date=first.get("last-attempt-date"),
        will_retry_until=first.get("will-retry-until"),
        fields=tuple(fields),
    )


def parse_dsn(data: bytes) -> DeliveryReport:
    """Read a delivery status notification (see the manual); DsnError when it is none."""
    parts = _find_report(data)
    if parts is None:
        raise DsnError("not a multipart/report message")
    index = next((i for i, (t, _b, _c) in enumerate(parts) if t in _STATUS_TYPES), None)
    if index is None:
        raise DsnError("no message/delivery-status part")
    _t, block, content = parts[index]
    groups = _groups(_decoded(block, content))
    message_fields: list[tuple[str, str]] = []
    if groups and not any(n.lower() == "final-recipient" for n, _ in groups[0]):
        message_fields = groups.pop(0)
    recipients = tuple(r for r in (_recipient(g) for g in groups) if r is not None)
    if not recipients:
        raise DsnError("no per-recipient fields")
    per_message = {n.lower(): v for n, v in reversed(message_fields)}
    returned_type: str | None = None
    returned: bytes | None = None
    for t, b, c in parts[index + 1 :]:
        if t in _RETURNED_TYPES:
            returned_type, returned = t, _decoded(b, c)
            break
    return DeliveryReport(
        reporting_mta=per_message.get("reporting-mta"),
        original_envelope_id=per_message.get("original-envelope-id"),
        arrival_date=per_message.get("arrival-date"),
        message_fields=tuple(message_fields),
        recipients=recipients,
        returned_type=returned_type,
        returned=returned,
    )
