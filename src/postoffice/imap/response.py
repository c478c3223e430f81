"""imap.response — IMAP server responses as bytes: status lines, codes, strings, dates (pure).

Description:
    Everything a session sends is built here, as bytes ready for the wire
    (CRLF included where a whole line is made):

      Result(status, text, code)       a status response (RFC 9051 §7.1):
                                       OK, NO, BAD, BYE, PREAUTH
      Code(name, data)                 a response code, `[UIDNEXT 4392]`;
                                       named constructors for the common ones
      tagged(tag, result)              `a1 OK [READ-WRITE] SELECT completed`
      untagged(result)                 `* OK [UIDVALIDITY 3857529045] UIDs valid`
      untagged_data(data)              `* <data>`
      continuation(text) / continuation_data(octets)   `+ ...` (base64 for SASL)

      quoted, literal, literal8, string, astring, nstring, mailbox
      flag_list, paren_list, sequence_set, date_time, section_spec
      fetch(seq, items), fetch_item_name(item)
      exists, expunge, recent, flags, capability, enabled, search, esearch,
      list_item, status                untagged data lines

    String choice (RFC 9051 §4.3, §4.3.1): a string is sent quoted when it
    is short (at most QUOTED_MAX octets) and holds no CR, LF, NUL, DQUOTE
    or backslash and no 8-bit octet — 8-bit only when `utf8` is true
    (IMAP4rev2 or UTF8=ACCEPT) and the octets are valid UTF-8. Otherwise
    it becomes a literal `{n}` CRLF octets. An astring that is a plain atom
    (and not NIL) goes bare.

    Status text never carries CR or LF (they would end the line early);
    they are replaced by spaces, NUL is dropped.

    Performance: decisions use compiled regular expressions and
    bytes.isascii(); output is built with bytes joins, never per-character
    Python loops, so thousands of FETCH responses render quickly.

See also:
    RFC 9051 §7 (responses), §9 (formal syntax), RFC 3501 §7, RFC 4315
    (APPENDUID, COPYUID), RFC 4731 (ESEARCH), RFC 5258 (LIST), RFC 5161
    (ENABLED), RFC 2971 (ID), RFC 3516 (literal8); imap/mutf7.py;
    imap/commands.py.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from postoffice.imap import commands as c
from postoffice.imap import mutf7

__all__ = [
    "QUOTED_MAX",
    "Code",
    "Result",
    "astring",
    "capability",
    "continuation",
    "continuation_data",
    "date_time",
    "enabled",
    "esearch",
    "exists",
    "expunge",
    "fetch",
    "fetch_item_name",
    "flag_list",
    "flags",
    "list_item",
    "literal",
    "literal8",
    "mailbox",
    "nstring",
    "paren_list",
    "quoted",
    "recent",
    "search",
    "section_spec",
    "sequence_set",
    "status",
    "string",
    "tagged",
    "untagged",
    "untagged_data",
]

QUOTED_MAX = 1024  # longer strings go as literals

StatusWord = Literal["OK", "NO", "BAD", "BYE", "PREAUTH"]

_NOT_QUOTABLE = re.compile(rb'[\x00\r\n"\\\x80-\xff]')
_NOT_QUOTABLE_UTF8 = re.compile(rb'[\x00\r\n"\\]')
_ASTRING_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\]+')
_TEXT_FIX = str.maketrans({"\r": " ", "\n": " ", "\x00": None})
_MONTHS = b"Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


# -- status responses -------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Code:
    """A response code (RFC 9051 §7.1): `[name]` or `[name data]`."""

    name: str
    data: bytes = b""

    def render(self) -> bytes:
        head = self.name.encode("ascii")
        return b"[" + head + b" " + self.data + b"]" if self.data else b"[" + head + b"]"

    @classmethod
    def number(cls, name: str, value: int) -> Code:
        """UIDNEXT, UIDVALIDITY, UNSEEN, HIGHESTMODSEQ, APPENDLIMIT ..."""
        return cls(name=name, data=b"%d" % value)

    @classmethod
    def atoms(cls, name: str, words: Iterable[str]) -> Code:
        """CAPABILITY IMAP4rev1 ... (space separated atoms)."""
        return cls(name=name, data=" ".join(words).encode("ascii"))

    @classmethod
    def listed(cls, name: str, words: Iterable[str]) -> Code:
        """BADCHARSET (UTF-8 US-ASCII), PERMANENTFLAGS (\\Seen \\*) ..."""
        return cls(name=name, data=b"(" + " ".join(words).encode("utf-8") + b")")

    @classmethod
    def appenduid(cls, uidvalidity: int, uids: Iterable[int]) -> Code:
        """RFC 4315 §3: APPENDUID uidvalidity uid-set."""
        return cls(name="APPENDUID", data=b"%d " % uidvalidity + sequence_set(uids))

    @classmethod
    def copyuid(cls, uidvalidity: int, source: Sequence[int], dest: Sequence[int]) -> Code:
        """RFC 4315 §3: COPYUID uidvalidity source-set dest-set, in pairs
        (the sets are given in the same order, not compressed out of order)."""
        return cls(
            name="COPYUID",
            data=b"%d " % uidvalidity + _ordered_set(source) + b" " + _ordered_set(dest),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """A status response: `status [code] text`."""

    status: StatusWord
    text: str
    code: Code | None = None

    def render(self) -> bytes:
        text = self.text.translate(_TEXT_FIX).encode("utf-8")
        if self.code is None:
            return self.status.encode("ascii") + b" " + text
        return self.status.encode("ascii") + b" " + self.code.render() + b" " + text


def tagged(tag: str, result: Result) -> bytes:
    return tag.encode("ascii") + b" " + result.render() + b"\r\n"


def untagged(result: Result) -> bytes:
    return b"* " + result.render() + b"\r\n"


def untagged_data(data: bytes) -> bytes:
    return b"* " + data + b"\r\n"


def continuation(text: str = "") -> bytes:
    """`+ text` (RFC 9051 §7.5); an empty text still sends "+ "."""
    return b"+ " + text.translate(_TEXT_FIX).encode("utf-8") + b"\r\n"


def continuation_data(data: bytes) -> bytes:
    """`+ base64` for an AUTHENTICATE challenge (RFC 9051 §6.2.2)."""
    return b"+ " + base64.b64encode(data) + b"\r\n"


# -- strings ----------------------------------------------------------------


def quoted(s: bytes) -> bytes:
    """DQUOTE s DQUOTE; the caller knows s is quotable (see string())."""
    return b'"' + s + b'"'


def literal(s: bytes) -> bytes:
    return b"{%d}\r\n" % len(s) + s


def literal8(s: bytes) -> bytes:
    """RFC 3516 §4.3: `~{n}` for BINARY data that may hold NUL."""
    return b"~{%d}\r\n" % len(s) + s


def _quotable(s: bytes, utf8: bool) -> bool:
    if len(s) > QUOTED_MAX:
        return False
    if s.isascii() or not utf8:
        return _NOT_QUOTABLE.search(s) is None
    if _NOT_QUOTABLE_UTF8.search(s) is not None:
        return False
    try:
        s.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def string(s: bytes, *, utf8: bool = False) -> bytes:
    """quoted when safe (see the module manual), else a literal."""
    return b'"' + s + b'"' if _quotable(s, utf8) else b"{%d}\r\n" % len(s) + s


def astring(s: bytes, *, utf8: bool = False) -> bytes:
    """A bare atom when s is one (and not NIL), else string()."""
    if _ASTRING_ATOM.fullmatch(s) is not None and s.upper() != b"NIL":
        return s
    return string(s, utf8=utf8)


def nstring(s: bytes | None, *, utf8: bool = False) -> bytes:
    return b"NIL" if s is None else string(s, utf8=utf8)


def mailbox(name: str, *, utf8: bool = False) -> bytes:
    """A mailbox name on the wire: modified UTF-7 unless utf8 (RFC 9051 §5.1)."""
    if utf8:
        return astring(name.encode("utf-8"), utf8=True)
    return astring(mutf7.encode(name).encode("ascii"))


# -- lists, flags, numbers, dates -------------------------------------------


def paren_list(items: Iterable[bytes]) -> bytes:
    return b"(" + b" ".join(items) + b")"


def flag_list(flag_names: Iterable[str]) -> bytes:
    """`(\\Seen $Forwarded)`, system flags first, each group sorted (stable
    output whatever the set's order)."""
    names = sorted(flag_names, key=lambda f: (not f.startswith("\\"), f))
    return b"(" + " ".join(names).encode("utf-8") + b")"


def sequence_set(numbers: Iterable[int]) -> bytes:
    """Compressed sorted set: 1 2 3 4 5 7 → `1:5,7` (RFC 9051 §9)."""
    ordered = sorted(set(numbers))
    if not ordered:
        return b""
    out: list[bytes] = []
    start = prev = ordered[0]
    for n in ordered[1:]:
        if n == prev + 1:
            prev = n
            continue
        out.append(b"%d" % start if start == prev else b"%d:%d" % (start, prev))
        start = prev = n
    out.append(b"%d" % start if start == prev else b"%d:%d" % (start, prev))
    return b",".join(out)


def _ordered_set(numbers: Sequence[int]) -> bytes:
    """Runs in the given order (COPYUID pairs source and destination by position)."""
    if not numbers:
        return b""
    out: list[bytes] = []
    start = prev = numbers[0]
    for n in numbers[1:]:
        if n == prev + 1:
            prev = n
            continue
        out.append(b"%d" % start if start == prev else b"%d:%d" % (start, prev))
        start = prev = n
    out.append(b"%d" % start if start == prev else b"%d:%d" % (start, prev))
    return b",".join(out)


def date_time(when: float | dt.datetime, tz: dt.tzinfo = dt.UTC) -> bytes:
    """`"17-Jul-1996 02:44:25 -0700"` (RFC 9051 §9 date-time; the day is
    two characters, a leading space for days below 10). A float is seconds
    since the epoch, shown in `tz`; an aware datetime keeps its own zone."""
    moment = dt.datetime.fromtimestamp(when, tz) if isinstance(when, float | int) else when
    offset = moment.utcoffset() or dt.timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = b"-" if minutes < 0 else b"+"
    minutes = abs(minutes)
    return b'"%2d-%s-%04d %02d:%02d:%02d %s%02d%02d"' % (
        moment.day,
        _MONTHS[moment.month - 1],
        moment.year,
        moment.hour,
        moment.minute,
        moment.second,
        sign,
        minutes // 60,
        minutes % 60,
    )


# -- FETCH --------------------------------------------------------------------


def section_spec(section: c.Section) -> bytes:
    """The text between the brackets of BODY[...] (RFC 9051 §9 section-spec)."""
    part = b".".join(b"%d" % n for n in section.part)
    if section.text is None:
        return part
    text = section.text.value.encode("ascii")
    if section.fields:
        names = b" ".join(astring(f.encode("ascii")) for f in section.fields)
        text += b" (" + names + b")"
    return part + b"." + text if part else text


def fetch_item_name(item: c.FetchItem) -> bytes:
    """The name a FETCH response gives `item` (RFC 9051 §7.5.2): BODY.PEEK
    answers as BODY, a partial shows only its origin (`BODY[]<0>`)."""
    if isinstance(item, c.FetchAttr):
        return item.value.encode("ascii")
    if isinstance(item, c.FetchBody):
        name = b"BODY[" + section_spec(item.section) + b"]"
        return name if item.partial is None else name + b"<%d>" % item.partial.offset
    part = b".".join(b"%d" % n for n in item.part)
    if isinstance(item, c.FetchBinarySize):
        return b"BINARY.SIZE[" + part + b"]"
    name = b"BINARY[" + part + b"]"
    return name if item.partial is None else name + b"<%d>" % item.partial.offset


def fetch(seq: int, items: Iterable[bytes]) -> bytes:
    """`* seq FETCH (item value ...)`; items are rendered `NAME value` pairs."""
    return b"* %d FETCH (" % seq + b" ".join(items) + b")\r\n"


# -- untagged data ------------------------------------------------------------


def exists(n: int) -> bytes:
    return b"* %d EXISTS\r\n" % n


def recent(n: int) -> bytes:
    return b"* %d RECENT\r\n" % n


def expunge(seq: int) -> bytes:
    return b"* %d EXPUNGE\r\n" % seq


def flags(flag_names: Iterable[str]) -> bytes:
    return b"* FLAGS " + flag_list(flag_names) + b"\r\n"


def capability(caps: Iterable[str]) -> bytes:
    return b"* CAPABILITY " + " ".join(caps).encode("ascii") + b"\r\n"


def enabled(caps: Iterable[str]) -> bytes:
    """RFC 5161 §3.2: `* ENABLED` with the capabilities now enabled."""
    words = " ".join(caps).encode("ascii")
    return b"* ENABLED " + words + b"\r\n" if words else b"* ENABLED\r\n"


def search(numbers: Iterable[int]) -> bytes:
    """The classic `* SEARCH 2 3 5` (RFC 3501 §7.2.5)."""
    words = b" ".join(b"%d" % n for n in numbers)
    return b"* SEARCH " + words + b"\r\n" if words else b"* SEARCH\r\n"


def esearch(
    tag: str,
    *,
    uid: bool,
    minimum: int | None = None,
    maximum: int | None = None,
    count: int | None = None,
    all_numbers: Iterable[int] | None = None,
) -> bytes:
    """`* ESEARCH (TAG "a") UID MIN 2 MAX 9 COUNT 3 ALL 2,5:9` (RFC 4731 §3.1);
    a part is left out when None, and ALL when the set is empty."""
    out = [b'* ESEARCH (TAG "' + tag.encode("ascii") + b'")']
    if uid:
        out.append(b"UID")
    if minimum is not None:
        out.append(b"MIN %d" % minimum)
    if maximum is not None:
        out.append(b"MAX %d" % maximum)
    if count is not None:
        out.append(b"COUNT %d" % count)
    if all_numbers is not None:
        numbers = sequence_set(all_numbers)
        if numbers:
            out.append(b"ALL " + numbers)
    return b" ".join(out) + b"\r\n"


def list_item(
    attributes: Iterable[str],
    delimiter: str | None,
    name: str,
    *,
    utf8: bool = False,
    verb: str = "LIST",
    extended: bytes = b"",
) -> bytes:
    """`* LIST (\\HasNoChildren) "/" INBOX` (RFC 9051 §7.3.1; LSUB with
    verb="LSUB"); `extended` is RFC 5258 mbox-list-extended data, rendered
    by the caller, e.g. `("CHILDINFO" ("SUBSCRIBED"))`."""
    delim = (
        b"NIL" if delimiter is None else quoted(delimiter.encode("ascii").replace(b"\\", b"\\\\"))
    )
    line = (
        b"* "
        + verb.encode("ascii")
        + b" ("
        + " ".join(attributes).encode("ascii")
        + b") "
        + delim
        + b" "
        + mailbox(name, utf8=utf8)
    )
    return line + b" " + extended + b"\r\n" if extended else line + b"\r\n"


def status(name: str, items: Iterable[tuple[c.StatusItem, int]], *, utf8: bool = False) -> bytes:
    """`* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292)` (RFC 9051 §7.3.4)."""
    pairs = b" ".join(item.value.encode("ascii") + b" %d" % value for item, value in items)
    return b"* STATUS " + mailbox(name, utf8=utf8) + b" (" + pairs + b")\r\n"
