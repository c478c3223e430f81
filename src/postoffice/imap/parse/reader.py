"""imap.parse.reader — the lexical layer of the IMAP client grammar (RFC 9051 §9, pure).

Description:
    `Reader` walks one complete command held as bytes, literals inline
    (`{n}` CRLF and the n octets, as imap/protocol.py assembles them), and
    reads the grammar's tokens: atom, astring, quoted, literal (`{n}`,
    `{n+}`, and `~{n}` literal8 where allowed), string, nstring, number,
    number64, list-mailbox, SP, and parenthesis nesting with a depth
    limit. A violation raises `Bad`, which imap/parse/ turns into a
    `ParseError` value before it reaches any caller.

    Character classes (RFC 9051 §9): ATOM-CHAR is any CHAR (7-bit, not
    NUL) except atom-specials: "(" ")" "{" SP CTL "%" "*" DQUOTE "\\" "]".
    ASTRING-CHAR adds "]"; list-char adds "%" "*" "]"; a tag is ASTRING-CHAR
    but "+". Scanning uses compiled regular expressions, never a Python
    loop per octet.

    Quoted strings: TEXT-CHAR except DQUOTE and "\\", or "\\" DQUOTE / "\\\\".
    8-bit octets are accepted inside quotes as RFC 9051 (UTF8-2/3/4) does,
    whatever the mode: decoding and validation is the caller's (mailbox
    names in IMAP4rev1 must be modified UTF-7, so they fail there). NUL,
    CR and LF never pass, nor any other backslash escape.

    Literals (RFC 9051 §4.3): CHAR8 is %x01-ff, so a NUL inside a literal
    is refused; literal8 (RFC 3516 §4.4) may hold any octet and is only
    read where the caller allows it.

See also:
    RFC 9051 §4 (data formats), §9 (formal syntax), RFC 3501 §9,
    RFC 7888 (non-synchronizing literals), RFC 3516 (literal8).
"""

from __future__ import annotations

import re

__all__ = ["Bad", "Reader"]

_TAG = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\+]+')
_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\\]]+')
_ASTRING_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\]+')
_LIST_CHARS = re.compile(rb'[^\x00-\x20\x7f-\xff(){"\\]+')
_QUOTED = re.compile(rb'"((?:[^"\\\r\n\x00]|\\["\\])*)"')
_UNESCAPE = re.compile(rb"\\([\"\\])")
_LITERAL = re.compile(rb"(~?)\{([0-9]{1,20})(\+?)\}\r\n")
_NUMBER = re.compile(rb"[0-9]+")

NUMBER_MAX = 0xFFFFFFFF  # RFC 9051 §9 number: unsigned 32-bit
NUMBER64_MAX = 0x7FFFFFFFFFFFFFFF  # RFC 9051 §9 number64: signed 63-bit


class Bad(Exception):
    """Internal: the command breaks the grammar. Never escapes imap.parse."""

    def __init__(self, reason: str, *, status: str = "BAD", code: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.code = code


class Reader:
    """A cursor over one command (see the module manual)."""

    __slots__ = ("data", "depth", "max_depth", "pos", "utf8")

    def __init__(self, data: bytes, *, utf8: bool = False, max_depth: int = 32) -> None:
        self.data = data
        self.pos = 0
        self.utf8 = utf8
        self.depth = 0
        self.max_depth = max_depth

    # -- position ----------------------------------------------------------

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def peek(self) -> int:
        """The next octet, or -1 at the end."""
        pos = self.pos
        return self.data[pos] if pos < len(self.data) else -1

    def end(self) -> None:
        """Nothing may follow."""
        if self.pos < len(self.data):
            raise Bad("unexpected characters after the command")

    def sp(self) -> None:
        if self.peek() != 0x20:
            raise Bad("expected a space" if not self.at_end() else "missing arguments")
        self.pos += 1

    def try_sp(self) -> bool:
        if self.peek() == 0x20:
            self.pos += 1
            return True
        return False

    def char(self, c: int, what: str) -> None:
        if self.peek() != c:
            raise Bad(f"expected {what}")
        self.pos += 1

    def try_char(self, c: int) -> bool:
        if self.peek() == c:
            self.pos += 1
            return True
        return False

    def open(self) -> None:
        """An opening parenthesis, counted against the nesting limit."""
        self.char(0x28, '"("')
        self.enter()

    def close(self) -> None:
        self.char(0x29, '")"')
        self.depth -= 1

    def enter(self) -> None:
        self.depth += 1
        if self.depth > self.max_depth:
            raise Bad("too deeply nested")

    def leave(self) -> None:
        self.depth -= 1

    # -- tokens ------------------------------------------------------------

    def tag(self) -> str:
        m = _TAG.match(self.data, self.pos)
        end = m.end() if m is not None else 0
        if m is None or (end < len(self.data) and self.data[end] != 0x20):
            raise Bad("missing or invalid tag")
        self.pos = end
        return m.group().decode("ascii")

    def atom(self) -> bytes:
        m = _ATOM.match(self.data, self.pos)
        if m is None:
            raise Bad("expected an atom")
        self.pos = m.end()
        return m.group()

    def keyword(self) -> str:
        """An atom, upper case (command names, search keys, options)."""
        return self.atom().decode("ascii").upper()

    def peek_keyword(self) -> str:
        """The atom at the cursor, upper case, without consuming it ("" if none)."""
        m = _ATOM.match(self.data, self.pos)
        return m.group().decode("ascii").upper() if m is not None else ""

    def quoted(self) -> bytes:
        m = _QUOTED.match(self.data, self.pos)
        if m is None:
            raise Bad("invalid quoted string")
        self.pos = m.end()
        body = m.group(1)
        return _UNESCAPE.sub(rb"\1", body) if b"\\" in body else body

    def literal(self, *, allow8: bool = False) -> bytes:
        """{n} / {n+} CRLF n octets; ~{n} only when allow8 (RFC 3516 §4.4)."""
        data = self.data
        m = _LITERAL.match(data, self.pos)
        if m is None:
            raise Bad("invalid literal")
        binary = bool(m.group(1))
        if binary and not allow8:
            raise Bad("literal8 is only allowed in APPEND")
        size = int(m.group(2))
        start = m.end()
        if size > NUMBER64_MAX or start + size > len(data):
            raise Bad("literal shorter than announced")
        value = data[start : start + size]
        if not binary and b"\x00" in value:
            raise Bad("NUL octet in a literal")  # RFC 9051 §4.3 CHAR8
        self.pos = start + size
        return value

    def string(self) -> bytes:
        c = self.peek()
        if c == 0x22:
            return self.quoted()
        if c == 0x7B:
            return self.literal()
        raise Bad("expected a string")

    def astring(self) -> bytes:
        c = self.peek()
        if c == 0x22 or c == 0x7B:
            return self.string()
        m = _ASTRING_ATOM.match(self.data, self.pos)
        if m is None:
            raise Bad("expected a string" if not self.at_end() else "missing arguments")
        self.pos = m.end()
        return m.group()

    def nstring(self) -> bytes | None:
        if self.peek_keyword() == "NIL":
            self.pos += 3
            return None
        return self.string()

    def list_mailbox(self) -> bytes:
        """list-mailbox: 1*list-char / string (RFC 9051 §9)."""
        c = self.peek()
        if c == 0x22 or c == 0x7B:
            return self.string()
        m = _LIST_CHARS.match(self.data, self.pos)
        if m is None:
            raise Bad("expected a mailbox pattern")
        self.pos = m.end()
        return m.group()

    def number(self, *, nonzero: bool = False, limit: int = NUMBER_MAX) -> int:
        m = _NUMBER.match(self.data, self.pos)
        if m is None:
            raise Bad("expected a number")
        text = m.group()
        if len(text) > 20 or int(text) > limit:
            raise Bad("number out of range")
        value = int(text)
        if nonzero and value == 0:
            raise Bad("zero is not allowed here")
        self.pos = m.end()
        return value

    def utf8_text(self, raw: bytes, what: str) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Bad(f"{what} is not valid UTF-8") from exc
