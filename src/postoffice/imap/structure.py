"""imap.structure — ENVELOPE, BODY, BODYSTRUCTURE and BODY[section] of a message.

Description:
    Everything here takes the message as the store returns it (bytes,
    CRLF line endings) and returns bytes ready for the wire.

    `envelope(data)` renders the ENVELOPE (RFC 3501 §7.4.2, RFC 9051
    §7.5.2): date, subject, from, sender, reply-to, to, cc, bcc,
    in-reply-to, message-id. Values are the raw header text, unfolded:
    RFC 2047 encoded words are kept as written (the client decodes them).
    Sender and Reply-To default to From when absent or empty. Address
    lists become `(name adl mailbox host)` lists; an RFC 5322 group is
    `(NIL NIL "name" NIL)` ... `(NIL NIL NIL NIL)`; a mailbox without a
    domain gets host "" (NIL is reserved for groups); a display name is
    unquoted, and a comment stands in for a missing display name
    (`joe@example.com (Joe)`); the local part is kept as written, quotes
    included, so `mailbox@host` is a usable address again.

    `body_structure(data, root, extensible)` renders BODYSTRUCTURE
    (extensible=True) or BODY (RFC 9051 §7.5.2 and the body grammar of
    §9): media type, parameters, Content-ID, Content-Description,
    Content-Transfer-Encoding, size in octets; lines for text/*; the
    envelope, structure and lines of a message/rfc822 part; extension
    data: Content-MD5, Content-Disposition, Content-Language,
    Content-Location (and the parameters of a multipart). Types, subtypes,
    parameter names and encodings go out in upper case as in the RFC's
    examples; values as written. message/global (RFC 6532) is shown as a
    basic part because IMAP4rev1 clients cannot parse it as a message;
    its parts can still be fetched by number.

    `find_part(root, path)` follows the part numbering of RFC 3501
    §6.4.5 / RFC 9051 §6.4.5: a multipart's parts are numbered from 1; a
    message that is not multipart has only part 1 (its body, whose MIME
    header is the message header); the parts of a message/rfc822 part are
    those of the encapsulated message. `section(data, root, spec)` (spec
    an imap.commands.Section) returns the octets of BODY[section]: with
    no text specifier the part's body (the whole message for an empty
    path); HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT and TEXT of the
    message or of a message/rfc822 part; MIME of a numbered part. Header
    subsets keep the empty line that ends the header when the message has
    one (RFC 3501 §6.4.5). A section that does not exist is None (the
    session sends NIL). `partial(octets, origin, length)` applies
    `<origin.length>`; an origin beyond the end gives an empty string
    (RFC 9051 §6.4.5).

    `binary(data, root, path)` is BINARY[section] (RFC 3516, RFC 9051
    §6.4.5): the part's body with its Content-Transfer-Encoding removed,
    None for a missing part, or UnknownCte when the encoding is not one
    RFC 2045 defines (the session answers NO [UNKNOWN-CTE]).

    `cached_summary(data)` computes ENVELOPE, BODY and BODYSTRUCTURE once
    and serialises them with the header/body offsets of the message, so
    the store can keep them per message; `from_summary(blob)` reads that
    back (ValueError for anything it did not write: the caller recomputes).
    The format is one ASCII line `IMAPSUM2 hend bstart n1 n2 n3 n4`
    followed by the three renderings of n1, n2, n3 octets and the n4 octets
    of `fields`: the header lines SEARCH reads most (SEARCH_FIELDS), so a
    header-only SEARCH needs no message file. (Version 1 summaries are
    refused, hence recomputed once.)

    Strings are rendered by imap.response.string: quoted when short, 7-bit
    and free of CR, LF, DQUOTE and backslash, else literals (8-bit header
    octets, RFC 9051 §4.3), so the cached renderings suit IMAP4rev1 and
    IMAP4rev2 sessions alike; NUL octets in header text are dropped (a
    literal may not carry them).

    Pure: stdlib and layer-0 imap modules (mime, commands, response), no I/O.

Security:
    Input is untrusted; nothing here raises on any input (hypothesis
    tests). Work is linear in the header and MIME structure sizes, which
    imap.mime bounds.

See also:
    RFC 3501 §6.4.5, §7.4.2; RFC 9051 §6.4.5, §7.5.2, §9; RFC 3516;
    RFC 5322 §3.4 (addresses), §4.4 (obsolete forms); RFC 2045, 2046,
    2183 (Content-Disposition), 3066 (Content-Language), 2557
    (Content-Location); imap/mime.py; imap/search.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from postoffice.imap import mime, response
from postoffice.imap.commands import Section, SectionText
from postoffice.imap.mime import Part

__all__ = [
    "Address",
    "Summary",
    "UnknownCte",
    "addresses",
    "binary",
    "body_structure",
    "cached_summary",
    "dump_summary",
    "envelope",
    "find_part",
    "from_summary",
    "partial",
    "section",
    "summarise",
]

# --- strings -----------------------------------------------------------------------


# imap.response's rule for a quoted string in ASCII mode, tested here first
# because ENVELOPE renders a dozen short strings per message.
_NOT_QUOTABLE = re.compile(rb'[\x00\r\n"\\\x80-\xff]').search


def _string(v: bytes) -> bytes:
    """An IMAP string (imap.response.string: quoted or a literal), NUL dropped."""
    if len(v) <= response.QUOTED_MAX and _NOT_QUOTABLE(v) is None:
        return b'"' + v + b'"'
    if b"\0" in v:
        v = v.replace(b"\0", b"")
    return response.string(v)


def _nstring(v: bytes | None) -> bytes:
    return b"NIL" if v is None else _string(v)


# --- addresses (RFC 5322 §3.4, obsolete forms of §4.4 tolerated) --------------------

Address = tuple[bytes | None, bytes | None, bytes | None, bytes | None]  # name adl mailbox host

_SPACE, _QUOTED, _LITERAL, _COMMENT, _SPECIAL, _ATOM = range(6)
_TOKEN = re.compile(
    rb"""([ \t\r\n]+)
    |("(?:[^"\\]|\\.)*(?:"|\\?\Z))
    |(\[(?:[^\[\]\\]|\\.)*(?:\]|\\?\Z))
    |(\()
    |([<>@,;:.])
    |([^ \t\r\n"\[\]()<>@,;:.\\]+|.)""",
    re.VERBOSE | re.DOTALL,
)
_QUOTED_PAIR = re.compile(rb"\\(.)", re.DOTALL)
_ATEXT = rb"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+"
_HOST = rb"[A-Za-z0-9.-]+"
# The common shapes, `a@b`, `Name <a@b>` and `"Name" <a@b>`, in a list
# without comments, groups or routes: parsed by one regular expression per
# address. Anything else goes to the tokenizer, which gives the same result.
_FAST_ITEM = re.compile(
    rb'[ \t]*(?:(?:"((?:[^"\\\r\n]|\\.)*)"|([A-Za-z0-9!#$%&\'*+/=?^_`{|}~ \t-]*?))[ \t]*<('
    + _ATEXT
    + rb")@("
    + _HOST
    + rb")>|("
    + _ATEXT
    + rb")@("
    + _HOST
    + rb"))[ \t]*(?:,[ \t]*|\Z)"
)

_Token = tuple[int, bytes, bool]  # kind, text, preceded by white space or a comment


def _unquote(text: bytes) -> bytes:
    text = text[1:-1] if len(text) > 1 and text.endswith(b'"') else text[1:]
    return _QUOTED_PAIR.sub(rb"\1", text) if b"\\" in text else text


def _tokens(value: bytes) -> list[_Token]:
    out: list[_Token] = []
    pos, n, space = 0, len(value), False
    while pos < n:
        m = _TOKEN.match(value, pos)
        if m is None:  # pragma: no cover - the last alternative matches any octet
            break
        kind = m.lastindex or 0
        kind -= 1
        if kind == _SPACE:
            space, pos = True, m.end()
            continue
        if kind == _COMMENT:
            end = _comment_end(value, pos)
            out.append(
                (_COMMENT, value[pos + 1 : end - 1 if value[end - 1 : end] == b")" else end], space)
            )
            space, pos = True, end
            continue
        out.append((kind, m.group(kind + 1), space))
        space, pos = False, m.end()
    return out


def _comment_end(value: bytes, pos: int) -> int:
    """The end of the (possibly nested) comment starting at value[pos] == "(" (RFC 5322 §3.2.2)."""
    depth, i, n = 0, pos, len(value)
    while i < n:
        c = value[i]
        if c == 0x5C:  # backslash: quoted-pair
            i += 2
            continue
        if c == 0x28:
            depth += 1
        elif c == 0x29:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return n


def _phrase(words: list[_Token]) -> bytes | None:
    """A display name: words joined by single spaces, quoted strings unquoted."""
    out: list[bytes] = []
    for kind, text, space in words:
        if kind == _SPECIAL and text != b".":
            continue
        if out and space:
            out.append(b" ")
        out.append(_unquote(text) if kind == _QUOTED else text)
    return b"".join(out) or None


def _joined(words: list[_Token]) -> bytes:
    """A local part or domain as written, without white space or comments."""
    return b"".join(t for k, t, _ in words if k != _COMMENT)


def addresses(value: bytes) -> list[Address]:
    """The address list of a header value (unfolded), groups included."""
    out: list[Address] = []
    pos, n = 0, len(value)
    while pos < n:
        m = _FAST_ITEM.match(value, pos)
        if m is None:
            return _parse_list(_tokens(value))
        quoted, plain, local, host, bare, bare_host = m.groups()
        if bare is not None:
            out.append((None, None, bare, bare_host))
        else:
            if quoted is not None:
                name = _QUOTED_PAIR.sub(rb"\1", quoted) if b"\\" in quoted else quoted
            else:
                name = b" ".join(plain.split())
            out.append((name or None, None, local, host))
        pos = m.end()
    return out


def _parse_list(toks: list[_Token]) -> list[Address]:
    out: list[Address] = []
    in_group = False
    i, n = 0, len(toks)
    while i < n:
        words: list[_Token] = []
        comment: bytes | None = None
        found: tuple[bytes | None, bytes, bytes] | None = None  # adl, mailbox, host
        close_group = False
        while i < n:
            kind, text, _space = toks[i]
            if kind == _COMMENT:
                if comment is None:
                    comment = text
                i += 1
                continue
            if kind == _SPECIAL and text in b",;" and len(text) == 1:
                i += 1
                close_group = text == b";" and in_group
                break
            if found is None:
                if kind == _SPECIAL and text == b":" and not in_group:
                    out.append((None, None, _phrase(words) or b"", None))
                    in_group, words, comment = True, [], None
                    i += 1
                    continue
                if kind == _SPECIAL and text == b"<":
                    i, found = _angle(toks, i + 1)
                    continue
                if kind == _SPECIAL and text == b"@":
                    i, host = _domain(toks, i + 1)
                    found = (None, _joined(words), host)
                    words = []
                    continue
                words.append(toks[i])
            i += 1
        if found is not None:
            name = _phrase(words)
            if name is None and comment is not None:
                name = _QUOTED_PAIR.sub(rb"\1", comment).strip() or None
            if found[1] or name is not None:
                out.append((name, found[0], found[1], found[2]))
        elif words:
            mailbox = _phrase(words)
            if mailbox is not None:
                out.append((None, None, mailbox, b""))
        if close_group:
            out.append((None, None, None, None))
            in_group = False
    if in_group:
        out.append((None, None, None, None))
    return out


def _domain(toks: list[_Token], i: int) -> tuple[int, bytes]:
    """A domain (atoms, dots, domain literals) from toks[i]; stops at a comment,
    at another special, and at a word after white space that no dot joins."""
    parts: list[bytes] = []
    n = len(toks)
    while i < n:
        kind, text, space = toks[i]
        if kind == _COMMENT or (kind == _SPECIAL and text != b"."):
            break
        if space and parts and parts[-1] != b"." and text != b".":
            break
        parts.append(text)
        i += 1
    return i, b"".join(parts)


def _angle(toks: list[_Token], i: int) -> tuple[int, tuple[bytes | None, bytes, bytes]]:
    """An angle address after "<": [route ":"] local-part "@" domain ">" (RFC 5322 §4.4)."""
    n = len(toks)
    adl: bytes | None = None
    if i < n and toks[i][1] == b"@" and toks[i][0] == _SPECIAL:
        route: list[bytes] = []
        while i < n and not (toks[i][0] == _SPECIAL and toks[i][1] in (b":", b">")):
            if toks[i][0] != _COMMENT:
                route.append(toks[i][1])
            i += 1
        if i < n and toks[i][1] == b":":
            adl = b"".join(route)
            i += 1
        else:  # "<@host>" with no colon: treat what we saw as the address
            return i + 1, (None, b"", b"".join(route).lstrip(b"@"))
    local: list[_Token] = []
    host = b""
    while i < n:
        kind, text, _ = toks[i]
        if kind == _SPECIAL and text == b">":
            i += 1
            break
        if kind == _SPECIAL and text == b"@":
            i, host = _domain(toks, i + 1)
            continue
        if not host:
            local.append(toks[i])
        i += 1
    return i, (adl, _joined(local), host)


def _address_list(value: bytes | None) -> bytes:
    if value is None:
        return b"NIL"
    found = addresses(value)
    if not found:
        return b"NIL"
    return b"(%s)" % b"".join(
        b"(%s %s %s %s)" % (_nstring(a), _nstring(b), _nstring(c), _nstring(d))
        for a, b, c, d in found
    )


# --- ENVELOPE ----------------------------------------------------------------------

_ENV_FIELD = re.compile(
    rb"\n(date|subject|from|sender|reply-to|to|cc|bcc|in-reply-to|message-id)"
    rb"[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)",
    re.IGNORECASE,
)


def _envelope_fields(data: bytes, start: int, end: int) -> dict[bytes, bytes]:
    found: dict[bytes, bytes] = {}
    # A leading LF lets the first field match like the others.
    for name, value in _ENV_FIELD.findall(b"\n" + data[start:end]):
        name = name.lower()
        if name not in found:
            found[name] = mime.unfold(value)
    return found


def envelope(data: bytes, start: int = 0, hend: int | None = None) -> bytes:
    """The ENVELOPE of the message whose header block is data[start:hend]
    (the whole message's header block by default)."""
    if hend is None:
        hend, _ = mime.header_block(data, start, len(data))
    f = _envelope_fields(data, start, hend)
    get = f.get
    from_ = _address_list(get(b"from"))
    sender = _address_list(get(b"sender"))
    reply_to = _address_list(get(b"reply-to"))
    # RFC 3501 §7.4.2: absent or empty Sender / Reply-To take From's value.
    if sender == b"NIL":
        sender = from_
    if reply_to == b"NIL":
        reply_to = from_
    return b"(%s %s %s %s %s %s %s %s %s %s)" % (
        _nstring(get(b"date")),
        _nstring(get(b"subject")),
        from_,
        sender,
        reply_to,
        _address_list(get(b"to")),
        _address_list(get(b"cc")),
        _address_list(get(b"bcc")),
        _nstring(get(b"in-reply-to")),
        _nstring(get(b"message-id")),
    )


# --- BODY / BODYSTRUCTURE ----------------------------------------------------------


def _lines(data: bytes, start: int, end: int) -> int:
    """Text lines of data[start:end]; a last line without a line ending counts."""
    n = data.count(b"\n", start, end)
    if end > start and data[end - 1] != 0x0A:
        n += 1
    return n


def _param_list(pairs: tuple[tuple[bytes, bytes], ...]) -> bytes:
    if not pairs:
        return b"NIL"
    return b"(%s)" % b" ".join(b"%s %s" % (_string(k.upper()), _string(v)) for k, v in pairs)


def _disposition(value: bytes | None) -> bytes:
    if value is None:
        return b"NIL"
    kind = value.split(b";", 1)[0].strip()
    if not kind:
        return b"NIL"
    return b"(%s %s)" % (_string(kind.upper()), _param_list(mime.params(value)))


def _language(value: bytes | None) -> bytes:
    if value is None:
        return b"NIL"
    tags = [t.strip() for t in re.sub(rb"\([^()]*\)", b"", value).split(b",")]
    tags = [t for t in tags if t]
    if not tags:
        return b"NIL"
    if len(tags) == 1:
        return _string(tags[0])
    return b"(%s)" % b" ".join(_string(t) for t in tags)


def _location(value: bytes | None) -> bytes:
    # RFC 2557 §4.4.2: white space in a folded Content-Location is not part of the URI.
    return b"NIL" if value is None else _string(b"".join(value.split()))


def body_structure(data: bytes, part: Part, extensible: bool) -> bytes:
    """BODYSTRUCTURE (extensible) or BODY of `part` (normally `mime.parse(data)`)."""
    out: list[bytes] = []
    _render(data, part, extensible, out)
    return b"".join(out)


def _render(data: bytes, part: Part, ext: bool, out: list[bytes]) -> None:
    f = part.fields
    if part.type == b"multipart":
        out.append(b"(")
        for child in part.children:
            _render(data, child, ext, out)
        out.append(b" " + _string(part.subtype.upper()))
        if ext:
            out.append(
                b" %s %s %s %s"
                % (
                    _param_list(part.params),
                    _disposition(f.disposition),
                    _language(f.language),
                    _location(f.location),
                )
            )
        out.append(b")")
        return
    encoding = f.encoding.upper() if f.encoding else b"7BIT"
    out.append(
        b"(%s %s %s %s %s %s %d"
        % (
            _string(part.type.upper()),
            _string(part.subtype.upper()),
            _param_list(part.params),
            _nstring(f.id),
            _nstring(f.description),
            _string(encoding),
            part.end - part.bstart,
        )
    )
    if part.type == b"message" and part.subtype == b"rfc822" and part.message is not None:
        inner = part.message
        out.append(b" " + envelope(data, inner.hstart, inner.hend) + b" ")
        _render(data, inner, ext, out)
        out.append(b" %d" % _lines(data, part.bstart, part.end))
    elif part.type == b"text":
        out.append(b" %d" % _lines(data, part.bstart, part.end))
    if ext:
        out.append(
            b" %s %s %s %s"
            % (
                _nstring(f.md5),
                _disposition(f.disposition),
                _language(f.language),
                _location(f.location),
            )
        )
    out.append(b")")


# --- sections ----------------------------------------------------------------------


def find_part(root: Part, path: Sequence[int]) -> Part | None:
    """The part a section's part numbers name (RFC 9051 §6.4.5), or None."""
    part, in_message = root, True
    for n in path:
        if not in_message and part.message is not None:
            part, in_message = part.message, True
        if part.type == b"multipart":
            if not 1 <= n <= len(part.children):
                return None
            part = part.children[n - 1]
        elif not (in_message and n == 1):
            return None
        in_message = False
    return part


_ANY_FIELD = re.compile(rb"^([!-9;-~]+)[ \t]*:[^\n]*(?:\n[ \t][^\n]*)*\n?", re.MULTILINE)


def _header_subset(data: bytes, msg: Part, names: Iterable[str], keep: bool) -> bytes:
    """The fields of msg's header whose name is (keep) or is not (not keep) in `names`."""
    wanted = {n.encode("utf-8", "replace").lower() for n in names}
    out: list[bytes] = []
    for m in _ANY_FIELD.finditer(data, msg.hstart, msg.hend):
        if (m.group(1).lower() in wanted) == keep:
            field = m.group(0)
            out.append(field if field.endswith(b"\n") else field + b"\r\n")
    out.append(data[msg.hend : msg.bstart])
    return b"".join(out)


def section(data: bytes, root: Part, spec: Section) -> bytes | None:
    """The octets of BODY[spec] (see the module manual), or None when the
    section does not exist. `root` is `mime.parse(data)`."""
    what = spec.text
    if not spec.part:
        if what is None:
            return data
        msg: Part | None = root
    else:
        part = find_part(root, spec.part)
        if part is None:
            return None
        if what is None:
            return data[part.bstart : part.end]
        if what is SectionText.MIME:
            return data[part.hstart : part.bstart]
        msg = part.message
    if msg is None:
        return None
    if what is SectionText.HEADER:
        return data[msg.hstart : msg.bstart]
    if what is SectionText.TEXT:
        return data[msg.bstart : msg.end]
    if what is SectionText.HEADER_FIELDS:
        return _header_subset(data, msg, spec.fields, True)
    if what is SectionText.HEADER_FIELDS_NOT:
        return _header_subset(data, msg, spec.fields, False)
    return None  # MIME of the whole message: the grammar has no such section


def partial(octets: bytes, origin: int, length: int) -> bytes:
    """`<origin.length>` of a section (RFC 9051 §6.4.5); empty past the end."""
    if origin >= len(octets):
        return b""
    return octets[origin : origin + length]


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownCte:
    """BINARY of a part whose Content-Transfer-Encoding is unknown (RFC 3516 §4.2)."""

    encoding: bytes


def binary(data: bytes, root: Part, path: Sequence[int]) -> bytes | UnknownCte | None:
    """BINARY[section]: the decoded body of a part (RFC 3516 §4.1), None
    when there is no such part. An empty path is the whole message as is."""
    if not path:
        return data
    part = find_part(root, path)
    if part is None:
        return None
    body = data[part.bstart : part.end]
    if part.type == b"multipart":
        return body
    decoded = mime.decode_transfer(body, part.encoding)
    if decoded is None:
        return UnknownCte(encoding=part.encoding)
    return decoded


# --- the cached summary ------------------------------------------------------------

_SUMMARY = re.compile(
    rb"IMAPSUM2 (\d{1,12}) (\d{1,12}) (\d{1,12}) (\d{1,12}) (\d{1,12}) (\d{1,12})\n"
)
# The header fields SEARCH reads most (RFC 9051 §6.4.4 FROM, TO, CC, BCC,
# SUBJECT; SENT* read Date): kept whole in the summary, so a header-only SEARCH
# over a cached folder opens no message file (Dovecot answers it from its cache).
SEARCH_FIELDS = frozenset(
    {b"subject", b"from", b"to", b"cc", b"bcc", b"date", b"sender", b"reply-to", b"message-id"}
)
_FIELD_START = re.compile(rb"(?m)^([!-9;-~]+)[ \t]*:")


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    """What a FETCH of ENVELOPE, BODY or BODYSTRUCTURE needs, computed once."""

    envelope: bytes
    body: bytes
    bodystructure: bytes
    header_end: int  # RFC822.HEADER is data[:body_start]; the header block data[:header_end]
    body_start: int
    fields: bytes = b""  # the SEARCH_FIELDS lines of the header, folded as written, + CRLF


def search_fields(data: bytes, header_end: int) -> bytes:
    """The lines of the SEARCH_FIELDS fields (with their continuation lines)
    from the header block, then an empty line: a header block of its own."""
    header = data[:header_end]
    starts = [(m.start(), m.group(1).lower()) for m in _FIELD_START.finditer(header)]
    out = []
    for i, (start, name) in enumerate(starts):
        if name in SEARCH_FIELDS:
            end = starts[i + 1][0] if i + 1 < len(starts) else len(header)
            line = header[start:end]
            out.append(line if line.endswith(b"\n") else line + b"\r\n")
    out.append(b"\r\n")
    return b"".join(out)


def summarise(data: bytes) -> Summary:
    """ENVELOPE, BODY and BODYSTRUCTURE of a message, computed now."""
    root = mime.parse(data)
    return Summary(
        envelope=envelope(data, 0, root.hend),
        body=body_structure(data, root, False),
        bodystructure=body_structure(data, root, True),
        header_end=root.hend,
        body_start=root.bstart,
        fields=search_fields(data, root.hend),
    )


def dump_summary(s: Summary) -> bytes:
    """The serialised form of a Summary (see the module manual)."""
    return (
        b"IMAPSUM2 %d %d %d %d %d %d\n"
        % (
            s.header_end,
            s.body_start,
            len(s.envelope),
            len(s.body),
            len(s.bodystructure),
            len(s.fields),
        )
        + s.envelope
        + s.body
        + s.bodystructure
        + s.fields
    )


def cached_summary(data: bytes) -> bytes:
    """The serialised Summary of a message (see the module manual)."""
    return dump_summary(summarise(data))


def from_summary(blob: bytes) -> Summary:
    """A Summary back from `cached_summary`'s bytes; ValueError if it is not one."""
    m = _SUMMARY.match(blob)
    if m is None:
        raise ValueError("not an IMAP summary of a known version")
    hend, bstart, n1, n2, n3, n4 = (int(g) for g in m.groups())
    pos = m.end()
    if len(blob) != pos + n1 + n2 + n3 + n4 or hend > bstart:
        raise ValueError("IMAP summary has the wrong length")
    at = pos + n1 + n2 + n3
    return Summary(
        envelope=blob[pos : pos + n1],
        body=blob[pos + n1 : pos + n1 + n2],
        bodystructure=blob[pos + n1 + n2 : at],
        header_end=hend,
        body_start=bstart,
        fields=blob[at:],
    )
