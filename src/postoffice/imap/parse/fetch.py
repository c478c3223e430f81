"""imap.parse.fetch — FETCH items, body sections and partials (RFC 9051 §6.4.5, §9; pure).

Description:
    fetch_items(r) reads

        ("ALL" / "FULL" / "FAST" / fetch-att / "(" fetch-att *(SP fetch-att) ")")

    and returns a tuple of imap.commands FetchItem values in the client's
    order, duplicates dropped. The macros (RFC 9051 §6.4.5) expand to
      ALL   FLAGS INTERNALDATE RFC822.SIZE ENVELOPE
      FAST  FLAGS INTERNALDATE RFC822.SIZE
      FULL  FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODY
    and may only stand alone.

    fetch-att: ENVELOPE, FLAGS, INTERNALDATE, RFC822, RFC822.HEADER,
    RFC822.SIZE, RFC822.TEXT, BODY, BODYSTRUCTURE, UID,
    BODY[section]<partial>, BODY.PEEK[section]<partial>,
    BINARY[part]<partial>, BINARY.PEEK[part]<partial>, BINARY.SIZE[part]
    (RFC 3516 §4.2). Sections (RFC 9051 §9 section-spec): "" (the whole
    message), part numbers `1.2.3`, HEADER, HEADER.FIELDS (names),
    HEADER.FIELDS.NOT (names), TEXT, and after a part also MIME. A partial
    is `<offset.length>` with length > 0 (number64 each).

See also:
    RFC 9051 §6.4.5, RFC 3501 §6.4.5, RFC 3516 §4.2; imap/commands.py;
    imap/structure.py (what sections mean).
"""

from __future__ import annotations

import re

from postoffice.imap import commands as c
from postoffice.imap.parse.reader import NUMBER64_MAX, Bad, Reader

__all__ = ["fetch_items", "section"]

_NAME = re.compile(rb"[A-Za-z0-9.]+")
_SECTION_WORD = re.compile(rb"[A-Za-z.]+")
_FTEXT = re.compile(rb"[\x21-\x39\x3b-\x7e]+")  # RFC 5322 §3.6.8: printable ASCII but ":"

_SIMPLE = {a.value: a for a in c.FetchAttr}
_FAST = (c.FetchAttr.FLAGS, c.FetchAttr.INTERNALDATE, c.FetchAttr.RFC822_SIZE)
_MACROS = {
    "FAST": _FAST,
    "ALL": (*_FAST, c.FetchAttr.ENVELOPE),
    "FULL": (*_FAST, c.FetchAttr.ENVELOPE, c.FetchAttr.BODY),
}
_TEXTS = {t.value: t for t in c.SectionText}
_MAX_PART = 0xFFFFFFFF
_MAX_FIELDS = 1000  # header field names in one HEADER.FIELDS list


def _part(r: Reader) -> tuple[int, ...]:
    """section-part = nz-number *("." nz-number); stops before ".TEXT" etc."""
    parts = [r.number(nonzero=True, limit=_MAX_PART)]
    data = r.data
    while r.peek() == 0x2E and r.pos + 1 < len(data) and 0x30 <= data[r.pos + 1] <= 0x39:
        r.pos += 1
        parts.append(r.number(nonzero=True, limit=_MAX_PART))
        if len(parts) > r.max_depth:  # a part number is MIME nesting
            raise Bad("section part nested too deeply")
    return tuple(parts)


def _header_list(r: Reader) -> tuple[str, ...]:
    """header-list = "(" header-fld-name *(SP header-fld-name) ")"."""
    r.sp()
    r.open()
    names: list[str] = []
    while True:
        raw = r.astring()
        if _FTEXT.fullmatch(raw) is None:
            raise Bad("invalid header field name")
        names.append(raw.decode("ascii"))
        if len(names) > _MAX_FIELDS:
            raise Bad("too many header field names")
        if not r.try_sp():
            break
    r.close()
    return tuple(names)


def section(r: Reader, *, binary: bool = False) -> c.Section:
    """section = "[" [section-spec] "]" (or section-binary when binary)."""
    r.char(0x5B, '"["')
    part: tuple[int, ...] = ()
    text: c.SectionText | None = None
    fields: tuple[str, ...] = ()
    first = r.peek()
    if 0x30 <= first <= 0x39:
        part = _part(r)
        if not binary and r.try_char(0x2E):
            text = _text(r, after_part=True)
    elif first != 0x5D and not binary:
        text = _text(r, after_part=False)
    if text is c.SectionText.HEADER_FIELDS or text is c.SectionText.HEADER_FIELDS_NOT:
        fields = _header_list(r)
    r.char(0x5D, '"]"')
    return c.Section(part=part, text=text, fields=fields)


def _text(r: Reader, *, after_part: bool) -> c.SectionText:
    m = _SECTION_WORD.match(r.data, r.pos)
    word = m.group().decode("ascii").upper() if m is not None else ""
    text = _TEXTS.get(word)
    if m is None or text is None or (text is c.SectionText.MIME and not after_part):
        raise Bad("invalid section specifier")
    r.pos = m.end()
    return text


def _partial(r: Reader) -> c.Partial | None:
    """partial = "<" number64 "." nz-number64 ">"."""
    if not r.try_char(0x3C):
        return None
    offset = r.number(limit=NUMBER64_MAX)
    r.char(0x2E, '"."')
    length = r.number(nonzero=True, limit=NUMBER64_MAX)
    r.char(0x3E, '">"')
    return c.Partial(offset=offset, length=length)


def _fetch_att(r: Reader) -> c.FetchItem:
    m = _NAME.match(r.data, r.pos)
    if m is None:
        raise Bad("expected a FETCH attribute")
    name = m.group().decode("ascii").upper()
    r.pos = m.end()
    if r.peek() != 0x5B:
        simple = _SIMPLE.get(name)
        if simple is None:
            raise Bad(f"unknown FETCH attribute {name[:32]}")
        return simple
    if name in ("BODY", "BODY.PEEK"):
        sec = section(r)
        return c.FetchBody(section=sec, partial=_partial(r), peek=name == "BODY.PEEK")
    if name in ("BINARY", "BINARY.PEEK"):
        part = section(r, binary=True).part
        return c.FetchBinary(part=part, partial=_partial(r), peek=name == "BINARY.PEEK")
    if name == "BINARY.SIZE":
        return c.FetchBinarySize(part=section(r, binary=True).part)
    raise Bad(f"unknown FETCH attribute {name[:32]}")


def fetch_items(r: Reader) -> tuple[c.FetchItem, ...]:
    """The FETCH attribute list (see the module manual)."""
    if r.peek() != 0x28:
        macro = _MACROS.get(r.peek_keyword())
        if macro is not None:
            r.atom()
            return macro
        return (_fetch_att(r),)
    r.open()
    items: dict[c.FetchItem, None] = {_fetch_att(r): None}  # ordered, no duplicates
    while r.try_sp():
        items[_fetch_att(r)] = None
    r.close()
    return tuple(items)
