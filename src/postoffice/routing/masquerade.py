"""routing.masquerade — masquerading: this host's name in sender addresses becomes another domain.

Description:
    Outgoing mail should look as if it came from the organisation's
    domain (`alice@example.com`), not from the machine that sent it
    (`alice@mail3.example.com`). sendmail calls this masquerading
    (cf/README, "MASQUERADING AND RELAYING"; MASQUERADE_AS,
    MASQUERADE_DOMAIN, EXPOSED_USER, FEATURE(`masquerade_envelope'),
    FEATURE(`masquerade_entire_domain')). This module is sendmail's
    ruleset 93 (MasqHdr) and 94 (MasqEnv) of cf/m4/proto.m4 as a pure
    function over addresses and header blocks; routing/generics.py adds
    the genericstable in front of it (see "Order" there).

    `Masquerade(masquerade_as=, domains=, entire_domain=, exposed_users=,
    envelope=, hostname=, local_domains=, limited=True)` or
    `Masquerade.from_config(config)`:

    rewrite_address(addr) -> str
        One header sender address:
          * "" (the null sender) is left alone;
          * an unqualified address (`alice`, no "@") is qualified first:
            with masquerade_as when it is set and the user is not exposed,
            otherwise with hostname (proto.m4: `$* < @ *LOCAL* >` becomes
            `$j`, or `$M` when masquerading);
          * an address whose domain is hostname, or one of `domains`
            (class {M}), or, with `entire_domain`, a subdomain of one of
            `domains` (FEATURE(`masquerade_entire_domain'): "*foo.org"
            becomes masq.com; only {M} names, never hostname's
            subdomains), gets masquerade_as as its domain;
          * exposed users (class {E}, `exposed_users`, root by default;
            compared case-insensitively like a sendmail class) keep their
            domain (cf/README: 'their internal site name should be
            displayed instead of the masquerade name');
          * everything else is returned unchanged. The local part is never
            touched, quoting included; domains compare case-insensitively
            and without a trailing dot.

    rewrite_headers(header_block) -> bytes
        Applies rewrite_address to every address of the originator fields
        (`SENDER_FIELDS`): From, Sender, Reply-To (RFC 5322 §3.6.2),
        Resent-From, Resent-Sender (RFC 5322 §3.6.6), and the other fields
        sendmail marks H_FROM in its header table (sendmail/conf.c
        HdrInfo): Resent-Reply-To, Errors-To, Disposition-Notification-To.
        Recipient fields (To, Cc, Bcc, Resent-To ...) are NOT rewritten:
        sendmail only masquerades them with FEATURE(`allmasquerade'), which
        cf/README warns "can break local aliases"; postoffice has no such
        switch. Display names, comments, groups, folding and every octet
        outside the rewritten addr-specs are kept byte for byte.

    rewrite_envelope_sender(addr) -> str
        The envelope sender (MAIL FROM): masqueraded like a header address
        only when `envelope` is on (FEATURE(`masquerade_envelope'):
        "Normally only the header addresses are masqueraded"); otherwise
        only an unqualified address is qualified with hostname (ruleset 94
        without the feature).

    `limited` (default True): which of this host's names are masqueraded.
    sendmail masquerades every name of class {w} (all local domains)
    unless FEATURE(`limited_masquerade') is given. postoffice hosts
    virtual domains in local_domains, and masquerading alice@example.org
    to alice@example.com because both are local would be a surprise, so
    by default only hostname ($j) and masquerade_domains are masqueraded
    — sendmail's limited_masquerade with $j in {M}. Listing the local
    domains in `[routing] masquerade_domains` gives sendmail's default;
    `limited=False` adds all of `local_domains` (class {w}) as well.

    `rewrite_sender_fields(block, rewrite, fields=SENDER_FIELDS)` is the
    header walker the rewriters share: a small RFC 5322 §3.4 address-list
    scanner over bytes (quoted strings, comments, domain literals, angle
    addresses with an obsolete route, groups) that finds each addr-spec
    and replaces it with `rewrite(addr)` when that differs. An address
    with comments or folding inside it, a replacement that is not a plain
    addr-spec, a field that does not scan (unbalanced quotes, brackets or
    parentheses) and an address that is not valid UTF-8 are left alone:
    the walker never makes a header worse than it found it.
    `address_spans(value)` and `addresses_in(value)` expose what it finds
    (`sendmail -bt` /parse uses them).

Security:
    Pure; the header block is untrusted input and nothing here raises on
    arbitrary bytes. A replacement is written only if it scans as one
    addr-spec without CR, LF or other control characters, so no rewrite
    can add a header field or break the field's syntax.

Config:
    [routing] masquerade_as, masquerade_domains, masquerade_entire_domain,
    masquerade_envelope, exposed_users; hostname; local_domains.

See also:
    sendmail cf/README "MASQUERADING AND RELAYING" and FEATURE list
    (masquerade_entire_domain, masquerade_envelope, limited_masquerade,
    allmasquerade); cf/m4/proto.m4 rulesets 93/94; RFC 5322 §3.4 (address
    syntax), §3.6.2 (originator fields), §3.6.6 (resent fields);
    routing/generics.py (genericstable, and the order of the two).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from postoffice.config.schema import Config
from postoffice.message import headers
from postoffice.routing.targets import TraceStep

__all__ = [
    "SENDER_FIELDS",
    "Masquerade",
    "address_spans",
    "addresses_in",
    "rewrite_sender_fields",
]

# RFC 5322 §3.6.2 and §3.6.6 originator fields, plus the other H_FROM fields of
# sendmail's header table (sendmail/conf.c HdrInfo).
SENDER_FIELDS = frozenset(
    {
        "from",
        "sender",
        "reply-to",
        "resent-from",
        "resent-sender",
        "resent-reply-to",
        "errors-to",
        "disposition-notification-to",
    }
)


def _norm_domain(domain: str) -> str:
    return domain.strip().lower().rstrip(".")


class Masquerade:
    """sendmail's masquerading (see the module documentation)."""

    __slots__ = (
        "_domains",
        "_exposed",
        "_local",
        "entire_domain",
        "envelope",
        "hostname",
        "limited",
        "masquerade_as",
    )

    def __init__(
        self,
        *,
        masquerade_as: str = "",
        domains: Iterable[str] = (),
        entire_domain: bool = False,
        exposed_users: Iterable[str] = ("root",),
        envelope: bool = False,
        hostname: str = "",
        local_domains: Iterable[str] = (),
        limited: bool = True,
    ) -> None:
        self.masquerade_as = masquerade_as.strip().rstrip(".")
        self._domains = frozenset(_norm_domain(d) for d in domains if d.strip())
        self.entire_domain = entire_domain
        self._exposed = frozenset(u.strip().casefold() for u in exposed_users if u.strip())
        self.envelope = envelope
        self.hostname = _norm_domain(hostname)
        self._local = frozenset(_norm_domain(d) for d in local_domains if d.strip())
        self.limited = limited

    @classmethod
    def from_config(cls, config: Config) -> Masquerade:
        """From `[routing]` masquerade_* and exposed_users, hostname and local_domains."""
        r = config.routing
        return cls(
            masquerade_as=r.masquerade_as,
            domains=r.masquerade_domains,
            entire_domain=r.masquerade_entire_domain,
            exposed_users=r.exposed_users,
            envelope=r.masquerade_envelope,
            hostname=config.hostname,
            local_domains=config.local_domains,
        )

    @property
    def active(self) -> bool:
        """Whether masquerading is on at all (masquerade_as is set)."""
        return bool(self.masquerade_as)

    def is_exposed(self, local_part: str) -> bool:
        return local_part.casefold() in self._exposed

    def masquerades(self, domain: str) -> bool:
        """Whether addresses in `domain` are masqueraded (ignoring exposed users)."""
        d = _norm_domain(domain)
        if not d:
            return False
        if d == self.hostname or d in self._domains:
            return True
        if self.entire_domain and any(d.endswith("." + m) for m in self._domains):
            return True
        return not self.limited and d in self._local

    def rewrite_address(self, addr: str) -> str:
        """One header sender address, masqueraded (see the module documentation)."""
        return self.trace_address(addr)[0]

    def trace_address(self, addr: str) -> tuple[str, tuple[TraceStep, ...]]:
        """rewrite_address with the steps taken, for `postoffice explain`."""
        if not addr:
            return addr, ()
        at = addr.rfind("@")
        if at < 0:
            if self.masquerade_as and not self.is_exposed(addr):
                new = f"{addr}@{self.masquerade_as}"
                return new, (TraceStep(rule="masquerade", detail=f"{addr} -> {new}"),)
            if not self.hostname:
                return addr, ()
            new = f"{addr}@{self.hostname}"
            why = " (exposed user)" if self.masquerade_as else ""
            return new, (TraceStep(rule="qualify", detail=f"{addr} -> {new}{why}"),)
        local, domain = addr[:at], addr[at + 1 :]
        if not self.masquerade_as or not local or not self.masquerades(domain):
            return addr, ()
        if self.is_exposed(local):
            return addr, (TraceStep(rule="masquerade", detail=f"{addr}: exposed user, kept"),)
        new = f"{local}@{self.masquerade_as}"
        if new == addr:
            return addr, ()
        return new, (TraceStep(rule="masquerade", detail=f"{addr} -> {new}"),)

    def rewrite_headers(self, header_block: bytes) -> bytes:
        """The header block with its sender fields masqueraded."""
        return rewrite_sender_fields(header_block, self.rewrite_address)

    def rewrite_envelope_sender(self, addr: str) -> str:
        """The envelope sender: masqueraded only when `envelope` is on."""
        return self.trace_envelope_sender(addr)[0]

    def trace_envelope_sender(self, addr: str) -> tuple[str, tuple[TraceStep, ...]]:
        if self.envelope:
            return self.trace_address(addr)
        if addr and "@" not in addr and self.hostname:
            new = f"{addr}@{self.hostname}"
            return new, (TraceStep(rule="qualify", detail=f"{addr} -> {new}"),)
        return addr, ()


# --- the header walker --------------------------------------------------------------

# Token kinds of RFC 5322 §3.2 lexical syntax, enough to find addr-specs.
_WS, _COMMENT, _QUOTED, _LITERAL, _SPECIAL, _ATOM = range(6)
_SPECIAL_BYTES = frozenset(b"<>@,;:.")
_WS_BYTES = frozenset(b" \t\r\n")
_STOP = frozenset(b'<>@,;:.()[]" \t\r\n')


@dataclass(frozen=True, slots=True)
class _Token:
    kind: int
    start: int
    end: int
    char: int = 0  # the byte of a _SPECIAL token


class _Unscannable(Exception):
    pass


def _tokens(value: bytes) -> list[_Token]:
    """The tokens of a field value; _Unscannable for unbalanced quotes/brackets/comments."""
    out: list[_Token] = []
    i, n = 0, len(value)
    while i < n:
        c = value[i]
        if c in _WS_BYTES:
            j = i + 1
            while j < n and value[j] in _WS_BYTES:
                j += 1
            out.append(_Token(_WS, i, j))
        elif c == 0x28:  # "(" comment, nested, with quoted-pairs (RFC 5322 §3.2.2)
            depth, j = 1, i + 1
            while depth:
                if j >= n:
                    raise _Unscannable
                d = value[j]
                if d == 0x5C:
                    j += 1
                elif d == 0x28:
                    depth += 1
                elif d == 0x29:
                    depth -= 1
                j += 1
            if j > n:
                raise _Unscannable
            out.append(_Token(_COMMENT, i, j))
        elif c == 0x22:  # quoted-string (RFC 5322 §3.2.4)
            j = i + 1
            while True:
                if j >= n:
                    raise _Unscannable
                d = value[j]
                if d == 0x5C:
                    j += 2
                    continue
                j += 1
                if d == 0x22:
                    break
            if j > n:
                raise _Unscannable
            out.append(_Token(_QUOTED, i, j))
        elif c == 0x5B:  # domain-literal (RFC 5322 §3.4.1)
            j = value.find(b"]", i + 1)
            if j < 0 or value.find(b"[", i + 1, j) >= 0:
                raise _Unscannable
            out.append(_Token(_LITERAL, i, j + 1))
            j += 1
        elif c in _SPECIAL_BYTES:
            out.append(_Token(_SPECIAL, i, i + 1, c))
            j = i + 1
        elif c in (0x29, 0x5D):  # stray ")" or "]"
            raise _Unscannable
        else:
            j = i + 1
            while j < n and value[j] not in _STOP:
                j += 1
            out.append(_Token(_ATOM, i, j))
        i = j
    return out


def _is(tok: _Token, char: str) -> bool:
    return tok.kind == _SPECIAL and tok.char == ord(char)


def _word(tok: _Token) -> bool:
    return tok.kind in (_ATOM, _QUOTED)


def _addr_spec_shape(toks: list[_Token]) -> bool:
    """local-part ["@" domain]: word *("." word) ["@" (atom *("." atom) / literal)]."""
    if not toks:
        return False
    at = [k for k, t in enumerate(toks) if _is(t, "@")]
    if len(at) > 1:
        return False
    local = toks[: at[0]] if at else toks
    if not _dotted(local, _word):
        return False
    if not at:
        return True
    domain = toks[at[0] + 1 :]
    if len(domain) == 1 and domain[0].kind == _LITERAL:
        return True
    return _dotted(domain, lambda t: t.kind == _ATOM)


def _dotted(toks: list[_Token], ok: Callable[[_Token], bool]) -> bool:
    if len(toks) % 2 == 0:
        return False
    for k, t in enumerate(toks):
        if k % 2 == 0 and not ok(t):
            return False
        if k % 2 == 1 and not _is(t, "."):
            return False
    return True


def _segments(toks: list[_Token]) -> list[list[_Token]]:
    """The mailboxes of an address-list, each as its tokens (group names dropped)."""
    segments: list[list[_Token]] = []
    cur: list[_Token] = []
    in_angle = False
    for t in toks:
        if t.kind == _SPECIAL and not in_angle:
            if _is(t, "<"):
                in_angle = True
            elif _is(t, ",") or _is(t, ";"):
                segments.append(cur)
                cur = []
                continue
            elif _is(t, ":"):  # RFC 5322 §3.4 group: display-name ":" [group-list] ";"
                cur = []
                continue
            elif _is(t, ">"):
                raise _Unscannable
        elif in_angle and _is(t, ">"):
            in_angle = False
        elif in_angle and _is(t, "<"):
            raise _Unscannable
        cur.append(t)
    if in_angle:
        raise _Unscannable
    segments.append(cur)
    return segments


def _addr_tokens(segment: list[_Token]) -> list[_Token] | None:
    """The tokens of the addr-spec of one mailbox, or None when there is none to rewrite."""
    sig = [t for t in segment if t.kind not in (_WS, _COMMENT)]
    if not sig:
        return None
    opens = [k for k, t in enumerate(sig) if _is(t, "<")]
    if opens:
        if len(opens) != 1:
            return None
        o = opens[0]
        closes = [k for k, t in enumerate(sig) if _is(t, ">")]
        if len(closes) != 1 or closes[0] != len(sig) - 1:
            return None
        inner = sig[o + 1 : closes[0]]
        colons = [k for k, t in enumerate(inner) if _is(t, ":")]
        if colons:  # obs-route "@a,@b:" (RFC 5322 §4.4)
            inner = inner[colons[-1] + 1 :]
        if any(t.kind == _SPECIAL and t.char in b",;:<>" for t in inner):
            return None
        addr = inner
    else:
        addr = sig
    if not addr or not _addr_spec_shape(addr):
        return None
    # Only rewrite an addr-spec written in one piece: no comments or folding inside.
    first, last = segment.index(addr[0]), segment.index(addr[-1])
    if any(t.kind in (_WS, _COMMENT) for t in segment[first : last + 1]):
        return None
    return addr


def address_spans(value: bytes) -> list[tuple[int, int]]:
    """(start, end) of every rewritable addr-spec in a field value (see the module doc)."""
    try:
        toks = _tokens(value)
        segments = _segments(toks)
    except _Unscannable:
        return []
    spans = []
    for seg in segments:
        addr = _addr_tokens(seg)
        if addr is not None:
            spans.append((addr[0].start, addr[-1].end))
    return spans


_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")


def _acceptable(new: str) -> bytes | None:
    """`new` as bytes when it is one addr-spec that is safe in a header, else None."""
    raw = new.encode("utf-8", "surrogateescape")
    if not raw or _CONTROL.search(raw):
        return None
    try:
        toks = _tokens(raw)
    except _Unscannable:
        return None
    if not _addr_spec_shape(toks):
        return None
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return raw


def _rewrite_value(value: bytes, rewrite: Callable[[str], str]) -> bytes:
    spans = address_spans(value)
    if not spans:
        return value
    out: list[bytes] = []
    pos = 0
    for start, end in spans:
        try:
            old = value[start:end].decode("utf-8")
        except UnicodeDecodeError:
            continue
        new = rewrite(old)
        if new == old:
            continue
        raw = _acceptable(new)
        if raw is None:
            continue
        out.append(value[pos:start])
        out.append(raw)
        pos = end
    if pos == 0:
        return value
    out.append(value[pos:])
    return b"".join(out)


def rewrite_sender_fields(
    block: bytes,
    rewrite: Callable[[str], str],
    fields: frozenset[str] = SENDER_FIELDS,
) -> bytes:
    """`block` with every addr-spec of the named fields replaced by `rewrite(addr)`.

    `fields` are lower-case field names. Everything that is not a rewritten
    addr-spec is kept byte for byte, including anything after the header
    block (see the module documentation)."""
    out: list[bytes] = []
    pos = 0
    for name, _start, vstart, stop in headers.iter_spans(block):
        if name.lower() not in fields:
            continue
        value = block[vstart:stop]
        new = _rewrite_value(value, rewrite)
        if new is value or new == value:
            continue
        out.append(block[pos:vstart])
        out.append(new)
        pos = stop
    if not out:
        return block
    out.append(block[pos:])
    return b"".join(out)


def addresses_in(value: bytes) -> list[str]:
    """The addr-specs rewrite_sender_fields would offer for rewriting in one field value."""
    found = []
    for start, end in address_spans(value):
        try:
            found.append(value[start:end].decode("utf-8"))
        except UnicodeDecodeError:
            continue
    return found
