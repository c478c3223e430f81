"""imap.search — evaluate a SEARCH key tree against one message at a time.

Description:
    `Matcher(key, context)` compiles the key tree of a SEARCH command
    (imap.commands.SearchKey) once; `matcher.matches(info, seq, load)`
    answers for one message of the snapshot:

        info   the store's MessageInfo (uid, size, flags, internaldate)
        seq    its message sequence number
        load   a callable returning the message octets, called at most
               once, and only when a key needs the header or the body

    `SearchContext` carries what the keys need from the session: the
    largest sequence number and UID (`*` in sequence sets, RFC 9051 §9),
    the UIDs that are \\Recent (RECENT/OLD/NEW, IMAP4rev1), the UIDs of the
    saved result (`$`, RFC 5182), and the time zone in which internal dates
    are days (the one INTERNALDATE is shown in).

    Keys are ordered by cost inside AND and OR: flags, sizes, internal
    dates, sequence and UID sets are decided from MessageInfo alone (cost
    0), header keys next (1), BODY and TEXT last (2), so a message that a
    cheap key rules out is never read. `needs_message` is False when no key
    reads the message at all; `needs_body` is False when only header keys
    do: then `load` may return just the header block (any prefix of the
    message that holds the whole header), or only the fields named in
    `header_names` (imap.structure.Summary.fields caches the common ones).

    Matching (RFC 9051 §6.4.4):
      * strings are case-insensitive substrings (Unicode case folding);
      * header keys (FROM, TO, CC, BCC, SUBJECT, HEADER) look at every
        field of that name in the message's header, unfolded, RFC 2047
        encoded words decoded (charsets through Python's codecs), raw
        8-bit octets read as UTF-8; an empty string matches any message
        that has the field;
      * BODY looks at the text parts of the body (text/*, their
        Content-Transfer-Encoding and charset decoded) and at the headers
        of encapsulated messages; TEXT also at the message's own header;
        other parts (images, archives) are not searched;
      * BEFORE/ON/SINCE compare the day of the internal date in the
        context's time zone; SENTBEFORE/SENTON/SENTSINCE the day written in
        the Date: field, time and zone ignored; a message without a
        readable Date: field matches no SENT* key;
      * LARGER/SMALLER compare RFC822.SIZE (MessageInfo.size);
      * KEYWORD compares keywords case-insensitively, system flags as the
        store spells them.

    Per message the header is split into fields once and each field's
    decoded text is kept for the other keys of the same message.

    Pure: stdlib and layer-0 modules only, no I/O (`load` is the caller's).

Security:
    Message content is untrusted: decoding never raises (imap.mime); the
    work per message is linear in its size.

See also:
    RFC 9051 §6.4.4, RFC 3501 §6.4.4 (SEARCH), RFC 5182 (SEARCHRES),
    RFC 2047, RFC 5322 §3.3 (dates), §4.3 (obsolete years);
    imap/commands.py (the key tree), imap/mime.py.
"""

from __future__ import annotations

import bisect
import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass

from postoffice.imap import mime
from postoffice.imap.commands import (
    SearchAll,
    SearchAnd,
    SearchDate,
    SearchFlag,
    SearchHeader,
    SearchKey,
    SearchNot,
    SearchOr,
    SearchRecent,
    SearchSet,
    SearchSize,
    SearchText,
    SequenceSet,
)
from postoffice.store.interfaces import MessageInfo

__all__ = ["Matcher", "SearchContext", "sent_date"]

Loader = Callable[[], bytes]


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchContext:
    """What the keys need from the selected mailbox (see the module manual)."""

    max_seq: int
    max_uid: int
    recent: frozenset[int] = frozenset()  # UIDs with \Recent
    saved: frozenset[int] = frozenset()  # UIDs of the saved result "$"
    tz: dt.tzinfo = dt.UTC


# --- one message, read lazily ------------------------------------------------------

_FIELD = re.compile(rb"\n([!-9;-~]+)[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)")


class _Message:
    """One message under evaluation: loads and parses only what a key asks for."""

    __slots__ = ("_body", "_data", "_decoded", "_fields", "_load", "_sent", "info", "seq")

    def __init__(
        self, info: MessageInfo, seq: int, load: Loader, decoded: dict[bytes, list[str]] | None
    ) -> None:
        self.info = info
        self.seq = seq
        self._load = load
        self._data: bytes | None = None
        self._fields: list[tuple[bytes, bytes]] | None = None
        self._decoded: dict[bytes, list[str]] = {} if decoded is None else decoded
        self._body: list[str] | None = None
        self._sent: dt.date | bool | None = False  # False: not looked at yet

    def data(self) -> bytes:
        if self._data is None:
            self._data = self._load()
        return self._data

    def fields(self) -> list[tuple[bytes, bytes]]:
        """(lower-case name, raw value) of every header field, in order."""
        if self._fields is None:
            data = self.data()
            hend, _ = mime.header_block(data, 0, len(data))
            self._fields = [(n.lower(), v) for n, v in _FIELD.findall(b"\n" + data[:hend])]
        return self._fields

    def field_texts(self, name: bytes) -> list[str]:
        """The decoded, case-folded values of every field called `name`."""
        got = self._decoded.get(name)
        if got is None:
            got = [_fold_value(v) for n, v in self.fields() if n == name]
            self._decoded[name] = got
        return got

    def header_text(self) -> str:
        """The whole header block, unfolded and decoded, one field per line."""
        data = self.data()
        hend, _ = mime.header_block(data, 0, len(data))
        block = data[:hend]
        for fold, space in ((b"\r\n ", b" "), (b"\r\n\t", b"\t"), (b"\n ", b" "), (b"\n\t", b"\t")):
            block = block.replace(fold, space)
        return mime.decode_words(block).casefold()

    def body_texts(self) -> list[str]:
        if self._body is None:
            data = self.data()
            out: list[str] = []
            _collect_text(data, mime.parse(data), out)
            self._body = out
        return self._body

    def sent(self) -> dt.date | None:
        if self._sent is False:
            values = [v for n, v in self.fields() if n == b"date"]
            self._sent = sent_date(values[0]) if values else None
        return self._sent if isinstance(self._sent, dt.date) else None


def _fold_value(raw: bytes) -> str:
    return mime.decode_words(mime.unfold(raw)).casefold()


def _collect_text(data: bytes, part: mime.Part, out: list[str]) -> None:
    """The searchable text of a body: text parts decoded, and the headers of
    encapsulated messages."""
    if part.type == b"multipart":
        for child in part.children:
            _collect_text(data, child, out)
        return
    inner = part.message
    if inner is not None:
        out.append(_fold_value(data[inner.hstart : inner.hend]))
        _collect_text(data, inner, out)
        return
    if part.type != b"text":
        return
    raw = data[part.bstart : part.end]
    decoded = mime.decode_transfer(raw, part.encoding)
    out.append(mime.decode_charset(raw if decoded is None else decoded, part.charset()).casefold())


# --- the Date: field (RFC 5322 §3.3, §4.3) -----------------------------------------

_DATE = re.compile(rb"(\d{1,2})[ \t\r\n]+([A-Za-z]{3})[A-Za-z]*\.?[ \t\r\n]+(\d{2,4})\b")
_MONTHS = {
    m: i
    for i, m in enumerate(
        (
            b"jan",
            b"feb",
            b"mar",
            b"apr",
            b"may",
            b"jun",
            b"jul",
            b"aug",
            b"sep",
            b"oct",
            b"nov",
            b"dec",
        ),
        1,
    )
}


def sent_date(value: bytes) -> dt.date | None:
    """The day of a Date: field value as written (time and zone ignored), or None."""
    m = _DATE.search(value)
    if m is None:
        return None
    month = _MONTHS.get(m.group(2).lower())
    if month is None:
        return None
    year = int(m.group(3))
    if len(m.group(3)) == 2:  # RFC 5322 §4.3: 00-49 are 2000-2049, 50-99 1950-1999
        year += 2000 if year < 50 else 1900
    elif len(m.group(3)) == 3:
        year += 1900
    try:
        return dt.date(year, month, int(m.group(1)))
    except ValueError:
        return None


# --- compiling the key tree --------------------------------------------------------

Test = Callable[[_Message], bool]
_CHEAP, _HEADER, _BODY = 0, 1, 2


def _true(_: _Message) -> bool:
    return True


def _flag(key: SearchFlag) -> Test:
    flag, present = key.flag, key.present
    if flag.startswith("\\"):
        return lambda m: (flag in m.info.flags) is present
    low = flag.lower()

    def keyword(m: _Message) -> bool:
        flags = m.info.flags
        found = flag in flags or any(f.lower() == low for f in flags)
        return found is present

    return keyword


def _day_start(day: dt.date, tz: dt.tzinfo) -> float:
    try:
        return dt.datetime.combine(day, dt.time(), tzinfo=tz).timestamp()
    except (OverflowError, ValueError):
        return float("-inf") if day.year < 1000 else float("inf")


def _next_day(day: dt.date) -> dt.date | None:
    return None if day == dt.date.max else day + dt.timedelta(days=1)


def _internal_date(key: SearchDate, tz: dt.tzinfo) -> Test:
    start = _day_start(key.date, tz)
    after = _next_day(key.date)
    end = float("inf") if after is None else _day_start(after, tz)
    if key.op == "before":
        return lambda m: m.info.internaldate < start
    if key.op == "on":
        return lambda m: start <= m.info.internaldate < end
    return lambda m: m.info.internaldate >= start


def _sent_date(key: SearchDate) -> Test:
    day, op = key.date, key.op

    def test(m: _Message) -> bool:
        sent = m.sent()
        if sent is None:
            return False
        if op == "before":
            return sent < day
        if op == "on":
            return sent == day
        return sent >= day

    return test


def _membership(seqset: SequenceSet, largest: int) -> Callable[[int], bool]:
    spans = seqset.intervals(largest)
    lows = [low for low, _ in spans]

    def contains(n: int) -> bool:
        i = bisect.bisect_right(lows, n) - 1
        return i >= 0 and n <= spans[i][1]

    return contains


def _set(key: SearchSet, ctx: SearchContext) -> Test:
    if key.set.saved:
        saved = ctx.saved
        return lambda m: m.info.uid in saved
    if key.uid:
        in_uids = _membership(key.set, ctx.max_uid)
        return lambda m: in_uids(m.info.uid)
    in_seqs = _membership(key.set, ctx.max_seq)
    return lambda m: in_seqs(m.seq)


def _header(key: SearchHeader) -> Test:
    name = key.field.lower().encode("utf-8", "replace")
    needle = key.value.casefold()
    return lambda m: any(needle in text for text in m.field_texts(name))


def _text(key: SearchText) -> Test:
    needle = key.value.casefold()
    if key.body_only:
        return lambda m: any(needle in text for text in m.body_texts())
    return lambda m: needle in m.header_text() or any(needle in t for t in m.body_texts())


def header_names(key: SearchKey) -> frozenset[bytes]:
    """The header fields (lower case) the keys of `key` read; SENT* read Date."""
    if isinstance(key, SearchHeader):
        return frozenset({key.field.lower().encode("utf-8", "replace")})
    if isinstance(key, SearchDate):
        return frozenset({b"date"}) if key.sent else frozenset()
    if isinstance(key, SearchNot):
        return header_names(key.key)
    if isinstance(key, SearchOr):
        return header_names(key.left) | header_names(key.right)
    if isinstance(key, SearchAnd):
        return frozenset().union(*(header_names(k) for k in key.keys))
    return frozenset()


def _compile(key: SearchKey, ctx: SearchContext) -> tuple[Test, int]:
    """(test, cost) for a key; see the module manual for the costs."""
    if isinstance(key, SearchAll):
        return _true, _CHEAP
    if isinstance(key, SearchFlag):
        return _flag(key), _CHEAP
    if isinstance(key, SearchRecent):
        recent, present = ctx.recent, key.present
        return (lambda m: (m.info.uid in recent) is present), _CHEAP
    if isinstance(key, SearchSize):
        size = key.size
        if key.larger:
            return (lambda m: m.info.size > size), _CHEAP
        return (lambda m: m.info.size < size), _CHEAP
    if isinstance(key, SearchSet):
        return _set(key, ctx), _CHEAP
    if isinstance(key, SearchDate):
        if key.sent:
            return _sent_date(key), _HEADER
        return _internal_date(key, ctx.tz), _CHEAP
    if isinstance(key, SearchHeader):
        return _header(key), _HEADER
    if isinstance(key, SearchText):
        return _text(key), _BODY
    if isinstance(key, SearchNot):
        inner, cost = _compile(key.key, ctx)
        return (lambda m: not inner(m)), cost
    if isinstance(key, SearchOr):
        (a, ca), (b, cb) = sorted(
            (_compile(key.left, ctx), _compile(key.right, ctx)), key=lambda tc: tc[1]
        )
        return (lambda m: a(m) or b(m)), max(ca, cb)
    if isinstance(key, SearchAnd):
        parts = sorted((_compile(k, ctx) for k in key.keys), key=lambda tc: tc[1])
        tests = tuple(t for t, _ in parts)
        cost = max((c for _, c in parts), default=_CHEAP)
        if len(tests) == 1:
            return tests[0], cost
        return (lambda m: all(t(m) for t in tests)), cost
    raise TypeError(f"not a search key: {key!r}")  # the parser builds no other shape


class Matcher:
    """A compiled SEARCH program (see the module manual)."""

    __slots__ = ("_test", "header_names", "needs_body", "needs_message")

    def __init__(self, key: SearchKey, context: SearchContext) -> None:
        self._test, cost = _compile(key, context)
        self.needs_message = cost > _CHEAP
        self.needs_body = cost >= _BODY
        # When not needs_body: the only fields the header keys read, so `load`
        # may return a header block with just these (a cache of them).
        self.header_names = header_names(key)

    def matches(
        self,
        info: MessageInfo,
        seq: int,
        load: Loader,
        decoded: dict[bytes, list[str]] | None = None,
    ) -> bool:
        """Whether message `seq` (described by `info`) satisfies the program.

        `decoded`, when given, is this message's memo of decoded field texts
        (name → values) kept by the caller across searches: read, and filled
        with the fields this search decodes."""
        return self._test(_Message(info, seq, load, decoded))
