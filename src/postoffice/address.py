"""address — RFC 5321 envelope paths: parsing, validation and normalisation.

Description:
    `parse_path()` takes the text of a reverse-path or forward-path as it
    appears after `MAIL FROM:` / `RCPT TO:` and returns the normalised
    address: `local@domain`, "" for the null path `<>`, or "postmaster" for
    the bare `<Postmaster>` recipient. Syntax errors raise `AddressError` (a
    ValueError); non-ASCII text without SMTPUTF8 raises its subclass
    `Utf8RequiredError`, so the engine can answer 553 5.6.7 (RFC 6531 §3.5).

    Normalisation:
      * a source route `<@a,@b:user@domain>` is validated and dropped
        (RFC 5321 §3.6.1 and Appendix C: servers SHOULD strip it);
      * the domain is case-folded and one trailing dot is removed;
      * address literals are checked and written canonically:
        `[192.0.2.1]`, `[IPv6:2001:db8::1]`;
      * the local part is kept exactly as sent, quoted or not: local parts
        are case-sensitive (RFC 5321 §2.4) and quoting is meaningful;
      * `<Postmaster>` in any case becomes "postmaster" (RFC 5321 §4.1.1.3).

    Liberal where real MTAs are: the angle brackets may be missing
    (`MAIL FROM:a@b`, as Postfix accepts); the caller strips spaces after the
    colon. Strict where it matters: no control characters, no unbalanced
    quotes or brackets, no general address literals, no UTF-8 unless the
    transaction declared SMTPUTF8, DNS limits on domains (label ≤ 63,
    name ≤ 255 octets, RFC 1035 §2.3.4).

    Pure: stdlib only, no I/O (layer 0).

Security:
    Everything here is attacker-controlled input. Addresses that pass are
    free of CR, LF, NUL and other control characters, and of non-printable
    Unicode (separators, bidi/format controls, private-use, unassigned), so
    they are safe to write into envelope files and log lines.

See also:
    RFC 5321 §4.1.2 (path grammar), §4.1.3 (address literals), §4.5.3.1
    (size limits), RFC 6531 §3.3 (UTF-8 grammar extensions), RFC 5322 §3.2.3
    (atext), smtp/commands.py (uses this for MAIL and RCPT).
"""

from __future__ import annotations

import ipaddress
import re

__all__ = [
    "AddressError",
    "Utf8RequiredError",
    "format_path",
    "is_ascii_address",
    "parse_domain",
    "parse_forward_path",
    "parse_mailbox",
    "parse_path",
    "parse_reverse_path",
    "split_address",
    "take_path",
]


class AddressError(ValueError):
    """The text is not a valid RFC 5321 path, mailbox or domain."""


class Utf8RequiredError(AddressError):
    """The address has non-ASCII characters but SMTPUTF8 was not requested
    (RFC 6531 §3.5: reply 553 5.6.7)."""


# RFC 5322 §3.2.3 atext; RFC 6531 §3.3 adds UTF8-non-ascii (we exclude the
# C1 controls U+0080..U+009F and lone surrogates, which decoding with
# surrogateescape can produce from invalid UTF-8).
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-"
_UTF8 = "\u00a0-\ud7ff\ue000-\U0010ffff"
_DOT_ATOM_ASCII = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*\Z")
_DOT_ATOM_UTF8 = re.compile(rf"[{_ATEXT}{_UTF8}]+(?:\.[{_ATEXT}{_UTF8}]+)*\Z")
# RFC 5321 §4.1.2 Quoted-string: qtextSMTP = %d32-33 / %d35-91 / %d93-126,
# quoted-pairSMTP = "\" %d32-126.
_QUOTED_ASCII = re.compile(r'"(?:[ !#-\[\]-~]|\\[ -~])*"\Z')
_QUOTED_UTF8 = re.compile(rf'"(?:[ !#-\[\]-~{_UTF8}]|\\[ -~])*"\Z')
# RFC 5321 §4.1.2 sub-domain = Let-dig [Ldh-str]; RFC 6531 §3.3 adds U-labels.
_LABEL_ASCII = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\Z")
_LABEL_UTF8 = re.compile(rf"[A-Za-z0-9{_UTF8}](?:[A-Za-z0-9{_UTF8}-]*[A-Za-z0-9{_UTF8}])?\Z")

_MAX_DOMAIN = 255  # RFC 5321 §4.5.3.1.2, RFC 1035 §2.3.4
_MAX_LABEL = 63  # RFC 1035 §2.3.4
_MAX_PATH = 4096  # far above RFC 5321 §4.5.3.1.3's 256: a sanity bound only


def take_path(text: str) -> tuple[str, str]:
    """Split `text` into (path, rest) where path is `<...>` or a bare token.

    The closing bracket is found outside quoted strings, so
    `<"a>b"@example.org> SIZE=10` splits correctly. Raises AddressError on
    an unterminated path or quoted string.
    """
    if not text.startswith("<"):
        sp = text.find(" ")
        return (text, "") if sp < 0 else (text[:sp], text[sp:])
    close = text.find(">")
    if close < 0:
        raise AddressError("unterminated path: missing '>'")
    if '"' not in text[:close]:
        return text[: close + 1], text[close + 1 :]
    # Slow path: a quoted local part may contain '>' (RFC 5321 §4.1.2).
    i, n, quoted = 1, len(text), False
    while i < n:
        c = text[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == ">":
            return text[: i + 1], text[i + 1 :]
        i += 1
    raise AddressError("unterminated path")


def parse_path(
    text: str,
    *,
    smtputf8: bool,
    allow_null: bool = True,
    allow_postmaster: bool = False,
) -> str:
    """Parse a path (`<local@domain>`, `<@route:local@domain>`, `<>`, or a
    bare `local@domain`) and return the normalised address.

    `allow_null` accepts `<>` (returns ""); `allow_postmaster` accepts the
    domainless `<Postmaster>` (returns "postmaster").
    """
    if len(text) > _MAX_PATH:
        raise AddressError("path too long")
    if not smtputf8 and not text.isascii():
        raise Utf8RequiredError("non-ASCII address without SMTPUTF8")
    if text.startswith("<"):
        if not text.endswith(">") or len(text) < 2:
            raise AddressError("unterminated path")
        inner = text[1:-1]
        if not inner:
            if allow_null:
                return ""
            raise AddressError("null path not allowed here")
        if inner[0] == "@":
            # RFC 5321 §4.1.2 A-d-l = At-domain *( "," At-domain ) ":"
            colon = inner.find(":")
            if colon < 0:
                raise AddressError("source route without ':'")
            for hop in inner[:colon].split(","):
                if not hop.startswith("@"):
                    raise AddressError("bad source route")
                parse_domain(hop[1:], smtputf8=smtputf8, allow_literal=False)
            inner = inner[colon + 1 :]
    else:
        inner = text
    if not inner:
        raise AddressError("empty path")
    if allow_postmaster and inner.lower() == "postmaster":
        return "postmaster"  # RFC 5321 §4.1.1.3
    return parse_mailbox(inner, smtputf8=smtputf8)


def parse_reverse_path(text: str, *, smtputf8: bool) -> str:
    """MAIL FROM path (RFC 5321 §4.1.2 Reverse-path): null path allowed."""
    return parse_path(text, smtputf8=smtputf8, allow_null=True)


def parse_forward_path(text: str, *, smtputf8: bool) -> str:
    """RCPT TO path (RFC 5321 §4.1.2 Forward-path): `<Postmaster>` allowed."""
    return parse_path(text, smtputf8=smtputf8, allow_null=False, allow_postmaster=True)


def parse_mailbox(text: str, *, smtputf8: bool) -> str:
    """Parse `Local-part "@" ( Domain / address-literal )` (RFC 5321 §4.1.2)."""
    _check_utf8(text, smtputf8)
    at = text.rfind("@")
    if at <= 0:
        raise AddressError("mailbox needs local@domain")
    local, domain = text[:at], text[at + 1 :]
    if local.startswith('"'):
        pattern = _QUOTED_UTF8 if smtputf8 else _QUOTED_ASCII
    else:
        pattern = _DOT_ATOM_UTF8 if smtputf8 else _DOT_ATOM_ASCII
    if pattern.match(local) is None:
        raise AddressError("bad local part")
    return f"{local}@{parse_domain(domain, smtputf8=smtputf8)}"


def parse_domain(text: str, *, smtputf8: bool, allow_literal: bool = True) -> str:
    """Validate and normalise a domain or address literal.

    Case-folds, removes one trailing dot, and writes literals canonically.
    """
    if text.startswith("["):
        if not allow_literal:
            raise AddressError("address literal not allowed here")
        return _parse_literal(text)
    if text.endswith("."):
        text = text[:-1]
    if not text:
        raise AddressError("empty domain")
    _check_utf8(text, smtputf8)
    if len(text.encode("utf-8", "surrogatepass")) > _MAX_DOMAIN:
        raise AddressError("domain too long")
    pattern = _LABEL_UTF8 if smtputf8 else _LABEL_ASCII
    for label in text.split("."):
        if len(label) > _MAX_LABEL or pattern.match(label) is None:
            raise AddressError("bad domain label")
    return text.lower()


def _check_utf8(text: str, smtputf8: bool) -> None:
    """Non-ASCII only with SMTPUTF8 (RFC 6531 §3.5), and then only printable
    code points: no line or paragraph separators, bidi or other format
    controls, private-use or unassigned characters (log injection,
    spoofing)."""
    if text.isascii():
        return
    if not smtputf8:
        raise Utf8RequiredError("non-ASCII address without SMTPUTF8")
    if not text.isprintable():
        raise AddressError("non-printable character")


def _parse_literal(text: str) -> str:
    """RFC 5321 §4.1.3 address-literal: IPv4 or `IPv6:`; general literals
    (Standardized-tag ":" dcontent) are refused: no tag is registered."""
    if not text.endswith("]") or len(text) < 3:
        raise AddressError("unterminated address literal")
    body = text[1:-1]
    if body[:5].lower() == "ipv6:":
        addr = body[5:]
        if not addr or "%" in addr or not addr.isascii():
            raise AddressError("bad IPv6 literal")
        try:
            ip6 = ipaddress.IPv6Address(addr)
        except ValueError as exc:
            raise AddressError("bad IPv6 literal") from exc
        return f"[IPv6:{ip6.compressed}]"
    # RFC 5321 §4.1.3 Snum = 1*3DIGIT, value 0-255 (leading zeros allowed).
    parts = body.split(".")
    if len(parts) != 4:
        raise AddressError("bad IPv4 literal")
    octets = []
    for part in parts:
        if not (1 <= len(part) <= 3 and part.isascii() and part.isdigit()):
            raise AddressError("bad IPv4 literal")
        value = int(part)
        if value > 255:
            raise AddressError("bad IPv4 literal")
        octets.append(str(value))
    return "[" + ".".join(octets) + "]"


def split_address(addr: str) -> tuple[str, str]:
    """Split a normalised address into (local part, domain).

    The domain is "" for "postmaster" and for the null address "". The
    split is at the last "@", which is right even for quoted local parts
    such as `"a@b"@example.org`.
    """
    at = addr.rfind("@")
    if at < 0:
        return addr, ""
    return addr[:at], addr[at + 1 :]


def is_ascii_address(addr: str) -> bool:
    """True when the address needs no SMTPUTF8 to be relayed (RFC 6531 §3.2)."""
    return addr.isascii()


def format_path(addr: str) -> str:
    """The address as an SMTP path: `<local@domain>`, `<>` for ""."""
    return f"<{addr}>"
