"""imap.mime — a message as a MIME tree of byte offsets, and the decoders IMAP needs.

Description:
    `parse(data)` reads a message (bytes, CRLF line endings as the store
    returns them; bare LF is accepted too) into a tree of `Part` values
    that hold only offsets into `data`, never a copy of it:

        hstart <= hend <= bstart <= end

    data[hstart:hend] is the part's header block (its last line keeps its
    line ending), data[hend:bstart] the empty separator line (CRLF, LF or
    nothing), data[bstart:end] the body. The root part is the message
    itself (hstart 0, end len(data)); the children of a multipart part are
    the body parts between its boundary delimiters (RFC 2046 §5.1.1: the
    line ending before a delimiter belongs to the delimiter, preamble and
    epilogue belong to no part); a message/rfc822 or message/global part
    (RFC 2046 §5.2.1, RFC 6532 §3.5) carries the encapsulated message as
    `message`, a root part of its own over the part's body.

    The header block ends at the first empty line or at the first line
    that is neither a header field nor a continuation line (RFC 5322 §2.2,
    as message/headers.py and Postfix's cleanup(8) do), so a message with
    no empty line between header and body still has a body.

    Robustness rules (nothing here raises on any input):
      * a Content-Type without "/" is text/plain; charset=us-ascii
        (RFC 2045 §5.2); a missing one is text/plain, or message/rfc822
        inside multipart/digest (RFC 2046 §5.1.5);
      * a multipart without a boundary parameter, or whose boundary never
        occurs, has one child with an empty header spanning its whole
        body, so every octet stays reachable by a part number;
      * a missing close delimiter ends the last part at the end of the
        enclosing body;
      * a message/rfc822 part whose Content-Transfer-Encoding is not
        7bit, 8bit or binary is not parsed as a message (it cannot be
        read without decoding) and stays a leaf;
      * nesting deeper than MAX_DEPTH turns the part into an
        application/octet-stream leaf, and after MAX_PARTS parts no more
        delimiters are looked for: the rest of the body stays in the last
        part (Dovecot applies similar limits).

    Also here, shared by imap.structure and imap.search:
      * `content_fields(data, start, end)`: the Content-* fields of one
        header block, unfolded;
      * `params(value)`: the parameters of a Content-Type or
        Content-Disposition value (RFC 2045 §5.1), quoted strings
        unquoted, attribute names as written;
      * `decode_transfer(body, encoding)`: base64 and quoted-printable
        (RFC 2045 §6.7, §6.8) and the identity encodings; None for an
        encoding it does not know (RFC 3516 UNKNOWN-CTE);
      * `decode_words(value)`: RFC 2047 encoded words to text, charsets
        through Python's codecs, undecodable words kept as written.

    Pure: stdlib only, no I/O.

Security:
    Input is untrusted. Depth and part count are bounded (MAX_DEPTH,
    MAX_PARTS); the work is linear in the size of the message apart from
    one boundary search per nesting level; offsets always stay within
    `data` (a hypothesis test checks it).

See also:
    RFC 2045 (MIME header fields, encodings), RFC 2046 §5 (multipart,
    message), RFC 2047 (encoded words), RFC 2231 (parameter values),
    RFC 5322 §2.2 (header fields), RFC 3516 (BINARY); imap/structure.py;
    imap/search.py; message/headers.py.
"""

from __future__ import annotations

import binascii
import codecs
import functools
import re
from dataclasses import dataclass

__all__ = [
    "MAX_DEPTH",
    "MAX_PARTS",
    "ContentFields",
    "Part",
    "content_fields",
    "decode_charset",
    "decode_transfer",
    "decode_words",
    "header_block",
    "params",
    "parse",
    "unfold",
]

MAX_DEPTH = 100  # nested multipart/message levels
MAX_PARTS = 10_000  # body parts in one message

# A header block: fields (name, optional WSP, colon, RFC 5322 §2.2, §4.5)
# each followed by continuation lines (starting with WSP, §2.2.3). The same
# definition as message/headers.py, usable on a slice of a larger buffer.
_HEADER_BLOCK = re.compile(
    rb"(?:[!-9;-~]+[ \t]*:[^\n]*(?:\n|\Z)(?:[ \t][^\n]*(?:\n|\Z))*)*",
)
_CONTENT_FIELD = re.compile(
    rb"\n(content-(?:type|transfer-encoding|id|description|md5|disposition|language|location))"
    rb"[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)",
    re.IGNORECASE,
)
_LINE_BREAK = re.compile(rb"\r?\n")
_PARAM = re.compile(
    rb';[ \t]*([^\s=;"]+)[ \t]*=[ \t]*("(?:[^"\\]|\\.)*"?|[^;\s]*)',
    re.DOTALL,
)
_QUOTED_PAIR = re.compile(rb"\\(.)", re.DOTALL)
_TYPE = re.compile(rb"[ \t]*([!#-'*+\-.0-9A-Z^-~]+)[ \t]*/[ \t]*([!#-'*+\-.0-9A-Z^-~]+)")
_COMMENT = re.compile(rb"\((?:[^()\\]|\\.)*\)", re.DOTALL)

_IDENTITY = frozenset({b"", b"7bit", b"8bit", b"binary"})
_MESSAGE_SUBTYPES = frozenset({b"rfc822", b"global"})


def unfold(value: bytes) -> bytes:
    """A field value without its line breaks and outer whitespace (RFC 5322 §2.2.3)."""
    if b"\n" in value:
        value = _LINE_BREAK.sub(b"", value)
    return value.strip(b" \t\r")


def header_block(data: bytes, start: int, end: int) -> tuple[int, int]:
    """(end of the header block, start of the body) of data[start:end]."""
    m = _HEADER_BLOCK.match(data, start, end)
    hend = m.end() if m else start
    if data.startswith(b"\r\n", hend, end):
        return hend, hend + 2
    if data.startswith(b"\n", hend, end):
        return hend, hend + 1
    return hend, hend


@dataclass(frozen=True, slots=True, kw_only=True)
class ContentFields:
    """The MIME fields of one header block, each unfolded, or None when absent."""

    type: bytes | None = None
    encoding: bytes | None = None
    id: bytes | None = None
    description: bytes | None = None
    md5: bytes | None = None
    disposition: bytes | None = None
    language: bytes | None = None
    location: bytes | None = None


_NO_FIELDS = ContentFields()


def content_fields(data: bytes, start: int, end: int) -> ContentFields:
    """The first Content-* field of each kind in the header block data[start:end]."""
    found: dict[bytes, bytes] = {}
    if start == end:
        return _NO_FIELDS
    # A leading LF lets the first field match like the others; a literal
    # first character keeps the regular expression's scan fast.
    for name, value in _CONTENT_FIELD.findall(b"\n" + data[start:end]):
        name = name.lower()[8:]  # after "content-"
        if name not in found:
            found[name] = unfold(value)
    if not found:
        return _NO_FIELDS
    return ContentFields(
        type=found.get(b"type"),
        encoding=found.get(b"transfer-encoding"),
        id=found.get(b"id"),
        description=found.get(b"description"),
        md5=found.get(b"md5"),
        disposition=found.get(b"disposition"),
        language=found.get(b"language"),
        location=found.get(b"location"),
    )


def params(value: bytes) -> tuple[tuple[bytes, bytes], ...]:
    """The `; attribute=value` parameters after a media type or disposition
    (RFC 2045 §5.1); quoted values unquoted, RFC 2231 names kept as written."""
    if b";" not in value:
        return ()
    if b"(" in value:
        value = _COMMENT.sub(b"", value)
    out: list[tuple[bytes, bytes]] = []
    for m in _PARAM.finditer(value):
        v = m.group(2)
        if v.startswith(b'"'):
            v = v[1:-1] if len(v) > 1 and v.endswith(b'"') else v[1:]
            if b"\\" in v:
                v = _QUOTED_PAIR.sub(rb"\1", v)
        out.append((m.group(1), v))
    return tuple(out)


def param(pairs: tuple[tuple[bytes, bytes], ...], name: bytes) -> bytes | None:
    """The first parameter called `name` (lower case), or None."""
    for k, v in pairs:
        if k.lower() == name:
            return v
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Part:
    """One body part (or the whole message) as offsets into the message."""

    hstart: int
    hend: int
    bstart: int
    end: int
    type: bytes  # lower case: b"text", b"multipart", b"message", ...
    subtype: bytes  # lower case
    params: tuple[tuple[bytes, bytes], ...]  # Content-Type parameters, as written
    fields: ContentFields
    children: tuple[Part, ...] = ()  # multipart only
    message: Part | None = None  # message/rfc822 and message/global only

    @property
    def encoding(self) -> bytes:
        """The Content-Transfer-Encoding in lower case (b"" when absent)."""
        enc = self.fields.encoding
        return enc.lower() if enc else b""

    def charset(self) -> bytes | None:
        return param(self.params, b"charset")


_DEFAULT_PARAMS = ((b"charset", b"US-ASCII"),)  # as RFC 3501 §7.4.2 shows it


class _Budget:
    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts = 0


def parse(data: bytes) -> Part:
    """The MIME tree of a whole message (see the module manual)."""
    return _part(data, 0, len(data), False, 0, _Budget())


def _part(data: bytes, start: int, end: int, digest: bool, depth: int, budget: _Budget) -> Part:
    budget.parts += 1
    hend, bstart = header_block(data, start, end)
    fields = content_fields(data, start, hend)
    mtype, subtype, pairs = _media_type(fields.type, digest)
    if (mtype == b"multipart" or mtype == b"message") and depth >= MAX_DEPTH:
        mtype, subtype, pairs = b"application", b"octet-stream", ()
    if mtype == b"multipart":
        children = _children(data, bstart, end, pairs, subtype == b"digest", depth, budget)
        return Part(
            hstart=start, hend=hend, bstart=bstart, end=end, type=mtype,
            subtype=subtype, params=pairs, fields=fields, children=children,
        )  # fmt: skip
    message = None
    if mtype == b"message" and subtype in _MESSAGE_SUBTYPES:
        enc = fields.encoding
        if enc is None or enc.lower() in _IDENTITY:
            message = _part(data, bstart, end, False, depth + 1, budget)
    return Part(
        hstart=start, hend=hend, bstart=bstart, end=end, type=mtype,
        subtype=subtype, params=pairs, fields=fields, message=message,
    )  # fmt: skip


def _media_type(
    value: bytes | None, digest: bool
) -> tuple[bytes, bytes, tuple[tuple[bytes, bytes], ...]]:
    """(type, subtype, parameters) with the RFC 2045 §5.2 / RFC 2046 §5.1.5 defaults."""
    if value is None:
        if digest:
            return b"message", b"rfc822", ()
        return b"text", b"plain", _DEFAULT_PARAMS
    m = _TYPE.match(value)
    if m is None:
        return b"text", b"plain", _DEFAULT_PARAMS
    return m.group(1).lower(), m.group(2).lower(), params(value[m.end() :])


def _children(
    data: bytes,
    start: int,
    end: int,
    pairs: tuple[tuple[bytes, bytes], ...],
    digest: bool,
    depth: int,
    budget: _Budget,
) -> tuple[Part, ...]:
    """The body parts of a multipart body data[start:end] (RFC 2046 §5.1.1)."""
    boundary = param(pairs, b"boundary")
    spans: list[tuple[int, int]] = []
    if boundary:
        delimiter = b"--" + boundary
        part_start = -1  # no delimiter seen yet: we are in the preamble
        pos = start
        while True:
            found = _next_delimiter(data, delimiter, pos, start, end)
            if found is None:
                if part_start >= 0:
                    spans.append((part_start, end))
                break
            at, after, close = found
            if part_start >= 0:
                spans.append((part_start, _before_line_end(data, at, part_start)))
            if close:
                break
            part_start = pos = after
            if budget.parts + len(spans) + 1 >= MAX_PARTS:
                spans.append((part_start, end))
                break
    if not spans:
        # RFC 2046 gives no meaning to a multipart without delimiters; keep
        # its whole body as one part with an empty header.
        budget.parts += 1
        return (
            Part(
                hstart=start, hend=start, bstart=start, end=end, type=b"text",
                subtype=b"plain", params=_DEFAULT_PARAMS, fields=_NO_FIELDS,
            ),
        )  # fmt: skip
    return tuple(_part(data, s, e, digest, depth + 1, budget) for s, e in spans)


def _before_line_end(data: bytes, at: int, floor: int) -> int:
    """Where a part ends: before the line ending that precedes its delimiter."""
    if at > floor and data[at - 1] == 0x0A:
        at -= 1
        if at > floor and data[at - 1] == 0x0D:
            at -= 1
    return at


def _next_delimiter(
    data: bytes, delimiter: bytes, pos: int, start: int, end: int
) -> tuple[int, int, bool] | None:
    """The next delimiter line at or after `pos`: (its start, the start of the
    next line, whether it is the close delimiter), or None."""
    size = len(delimiter)
    while True:
        at = data.find(delimiter, pos, end)
        if at < 0:
            return None
        if at == start or data[at - 1] == 0x0A:
            k = at + size
            close = data.startswith(b"--", k, end)
            if close:
                k += 2
            while k < end and data[k] in (0x20, 0x09):  # transport padding
                k += 1
            if k >= end:
                return at, end, close
            if data[k] == 0x0A:
                return at, k + 1, close
            if data[k] == 0x0D and (k + 1 >= end or data[k + 1] == 0x0A):
                return at, min(k + 2, end), close
        pos = at + 1


# --- decoding --------------------------------------------------------------------

_B64_JUNK = bytes(
    c for c in range(256) if not (chr(c).isascii() and (chr(c).isalnum() or chr(c) in "+/"))
)


def decode_transfer(body: bytes, encoding: bytes) -> bytes | None:
    """`body` with its Content-Transfer-Encoding removed (RFC 2045 §6);
    None when the encoding is not one RFC 2045 defines (RFC 3516 §4.2
    UNKNOWN-CTE). Damaged base64 and quoted-printable are decoded as far as
    they go, never rejected."""
    enc = encoding.strip().lower()
    if enc in _IDENTITY:
        return body
    if enc == b"base64":  # RFC 2045 §6.8: characters outside the alphabet are ignored
        clean = body.translate(None, _B64_JUNK)
        extra = len(clean) % 4
        if extra == 1:
            clean = clean[:-1]
        elif extra:
            clean += b"=" * (4 - extra)
        return binascii.a2b_base64(clean)
    if enc == b"quoted-printable":  # RFC 2045 §6.7
        return binascii.a2b_qp(body)
    return None


_ENCODED_WORD = re.compile(
    rb"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([QqBb])\?([^?\s]*)\?=",
)
_Q_HEX = re.compile(rb"=([0-9A-Fa-f]{2})")


def _q_decode(text: bytes) -> bytes:
    # RFC 2047 §4.2: "_" is a space, "=XX" an octet.
    text = text.replace(b"_", b" ")
    return _Q_HEX.sub(lambda m: bytes((int(m.group(1), 16),)), text)


@functools.lru_cache(maxsize=128)
def _codec(charset: bytes) -> str | None:
    try:
        return codecs.lookup(charset.decode("ascii").strip()).name
    except (LookupError, UnicodeDecodeError):
        return None


def decode_charset(raw: bytes, charset: bytes | None) -> str:
    """`raw` as text in `charset` (a MIME charset name; UTF-8 when None or
    unknown), undecodable octets replaced. Never raises: the few Python
    codecs that refuse the "replace" handler (idna, punycode) fall back to
    UTF-8, and non-text codecs (base64_codec, zlib_codec) are refused by
    bytes.decode itself."""
    codec = _codec(charset) if charset else None
    if codec is not None:
        try:
            return raw.decode(codec, "replace")
        except (LookupError, ValueError):
            pass
    return raw.decode("utf-8", "replace")


def _word(m: re.Match[bytes]) -> str:
    charset, kind, text = m.group(1), m.group(2), m.group(3)
    if _codec(charset) is None:
        return m.group(0).decode("latin-1")
    raw = _q_decode(text) if kind in b"Qq" else (decode_transfer(text, b"base64") or b"")
    return decode_charset(raw, charset)


def decode_words(value: bytes) -> str:
    """A header value as text: RFC 2047 encoded words decoded (§6.2: white
    space between adjacent encoded words dropped), other octets read as
    UTF-8 (RFC 6532) with undecodable octets replaced."""
    if b"=?" not in value:
        return value.decode("utf-8", "replace")
    out: list[str] = []
    pos = 0
    for m in _ENCODED_WORD.finditer(value):
        between = value[pos : m.start()]
        if not (pos and not between.strip(b" \t\r\n")):
            out.append(between.decode("utf-8", "replace"))
        out.append(_word(m))
        pos = m.end()
    out.append(value[pos:].decode("utf-8", "replace"))
    return "".join(out)
