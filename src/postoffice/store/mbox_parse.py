"""store.mbox_parse — an mbox file split into messages; the mbox reader's UID index format.

Description:
    `parse_mbox(data)` splits the octets of an mbox file into
    MboxMessage records (offsets, key, size, header flags, date);
    `render(region, msg)` gives one message as POP3 and IMAP send it. No
    I/O: store/mbox_folder.py reads the file under its locks and calls
    these.

    A message starts at a "From " line that carries an asctime(3) date
    (weekday, month, day, time, optional zone words, year: what mutt and
    Dovecot accept; the first line of the file is always one), so an
    unquoted "From " in a body of an mboxo file written by another MDA
    does not split a message. Its content runs to the next such line,
    less the empty separating line (LF, or CRLF from a foreign writer).

    Served form: one ">" taken off every `>+From ` line (mboxrd, the
    quoting store/mbox.py writes), the metadata headers other mbox readers
    keep in the file removed (Status, X-Status, X-Keywords, X-UID, X-IMAP,
    X-IMAPbase, with continuation lines: the ones Dovecot hides, so the
    octets of a message do not change when mutt rewrites its Status), CRLF
    line endings. `size` is the length of exactly that, computed without
    building it. A first message with an X-IMAP header is UW-IMAP's
    folder-data pseudo-message (`pseudo`).

    The key is SHA-256 (first 120 bits, base64url) of the From line and
    the content without the metadata headers and without trailing line
    ends (a writer that later adds a missing empty line does not change
    it). Flags from the headers as mutt, pine and Dovecot write them:
    `Status:` R → \\Seen (O, "old", is not kept), `X-Status:` A →
    \\Answered, F → \\Flagged, T → \\Draft, D → \\Deleted.

    `MboxIndex` is the UID index text (store/mbox_folder.py keeps it):

        version: 1
        uidvalidity: 1795281136
        uidnext: 4
        highestmodseq: 9
        1 5 q2mV0Ow7cm1o0IRbJ3zU \\Answered \\Seen
        3 9 d1H8x_3R3yLZr3yzG5fD

    one line per message, `uid modseq key flags…`, ascending UID. Keys may
    repeat (the same message delivered twice in one second): `match`
    pairs the i-th message with a key, in file order, with the i-th line
    with that key, in UID order.

See also:
    mbox(5), RFC 4155, RFC 9051 §2.3.1.1 and §2.3.2, Dovecot "mbox
    mailbox format", store/mbox.py (the writer), store/mbox_folder.py.
"""

from __future__ import annotations

import base64
import bisect
import dataclasses
import hashlib
import re
import time
from dataclasses import dataclass

from postoffice.store.interfaces import ANSWERED, DELETED, DRAFT, FLAGGED, SEEN

VERSION = "1"
# A "From " line with an asctime(3) date: weekday, month, day, time, optional
# zone words, year (what mutt's and Dovecot's parsers accept).
_FROM = re.compile(
    rb"From [^\n]*?(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun),? +"
    rb"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +(\d{1,2}) +"
    rb"(\d{1,2}):(\d\d)(?::(\d\d))?(?: +[A-Za-z]{1,5}| +[-+]\d{4})* +(\d{4})"
)
_MONTHS = {
    m: i for i, m in enumerate(b"Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)
}
# Metadata headers mbox readers keep in the file (with continuation lines).
_META = re.compile(
    rb"^(status|x-status|x-keywords|x-uid|x-imapbase|x-imap)[ \t]*:([^\n]*)(?:\n|\Z)"
    rb"(?:[ \t][^\n]*(?:\n|\Z))*",
    re.IGNORECASE | re.MULTILINE,
)
_UNQUOTE = re.compile(rb"^>(>*From )", re.MULTILINE)  # mboxrd: one ">" less
X_STATUS = {"A": ANSWERED, "F": FLAGGED, "T": DRAFT, "D": DELETED}
_X_STATUS_BYTES = {c.encode(): f for c, f in X_STATUS.items()}


# --- parsing ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MboxMessage:
    """One message of an mbox file; offsets after `start` are relative to it."""

    start: int  # offset of the From line in the file
    body: int  # content start
    end: int  # content end (the separating empty line excluded)
    stop: int  # the next From line, or the end of the file
    hidden: tuple[tuple[int, int], ...]  # metadata header lines
    key: str
    size: int  # octets as served: CRLF, unquoted, metadata headers removed
    flags: frozenset[str]  # from Status / X-Status
    date: float | None  # the From line's date
    pseudo: bool  # UW-IMAP's folder-data message


Buffer = bytes | bytearray


def parse_mbox(data: Buffer) -> list[MboxMessage]:
    """Split an mbox file into messages (see the module manual)."""
    starts, dates = _from_lines(data)
    quoted = _quoted_lines(data)
    has_cr = b"\r" in data
    view = memoryview(data)
    out = []
    for i, start in enumerate(starts):
        stop = starts[i + 1] if i + 1 < len(starts) else len(data)
        out.append(_message(data, view, start, stop, dates[i], quoted, i == 0, has_cr))
    return out


def render(region: Buffer, msg: MboxMessage) -> bytes:
    """The message as served, from `region` = the file's octets at
    [msg.start, msg.start + msg.stop)."""
    if msg.hidden:
        content = b"".join(region[a:b] for a, b in _visible(msg.body, msg.end, msg.hidden))
    else:
        content = bytes(region[msg.body : msg.end])
    if b">From " in content:
        content = _UNQUOTE.sub(rb"\1", content)
    if b"\r" in content:
        content = content.replace(b"\r\n", b"\n")
    return content.replace(b"\n", b"\r\n")


def _from_lines(data: Buffer) -> tuple[list[int], list[float | None]]:
    """Offsets of the From lines that start messages, and their dates."""
    starts: list[int] = []
    dates: list[float | None] = []
    if data.startswith(b"From "):
        eol = data.find(b"\n")
        starts.append(0)
        dates.append(_date(_FROM.match(data, 0, len(data) if eol < 0 else eol)))
    pos = 0
    while (nl := data.find(b"\nFrom ", pos)) >= 0:
        start = nl + 1
        eol = data.find(b"\n", start)
        if eol < 0:
            eol = len(data)
        m = _FROM.match(data, start, eol)
        if m is not None:
            starts.append(start)
            dates.append(_date(m))
        pos = eol
    return starts, dates


def _quoted_lines(data: Buffer) -> list[int]:
    """Offsets of the lines matching `>+From ` (rare: found with find, not a regex)."""
    out = []
    pos = 0
    while (at := data.find(b">From ", pos)) >= 0:
        line = at
        while line > 0 and data[line - 1] == 0x3E:  # ">"
            line -= 1
        if line == 0 or data[line - 1] == 0x0A:
            out.append(line)
        pos = at + 1
    return out


def _visible(body: int, end: int, hidden: tuple[tuple[int, int], ...]) -> list[tuple[int, int]]:
    pieces = []
    at = body
    for a, b in hidden:
        pieces.append((at, a))
        at = b
    pieces.append((at, end))
    return pieces


def _message(
    data: Buffer,
    view: memoryview,
    s: int,
    stop: int,
    date: float | None,
    quoted: list[int],
    first: bool,
    has_cr: bool,
) -> MboxMessage:
    eol = data.find(b"\n", s, stop)
    body = stop if eol < 0 else eol + 1
    end = stop
    if end - 2 >= body - 1 and data[end - 2 : end] == b"\n\n":
        end -= 1  # the empty line before the next From line
    elif has_cr and end - 4 >= body - 2 and data[end - 4 : end] == b"\r\n\r\n":
        end -= 2
    end = max(end, body)
    # The header block ends after the line before the first empty line.
    blank = data.find(b"\n\n", body - 1, end)
    if has_cr:
        crlf_blank = data.find(b"\n\r\n", body - 1, end if blank < 0 else blank)
        if crlf_blank >= 0:
            blank = crlf_blank
    hend = end if blank < 0 else max(body, blank + 1)
    hidden: list[tuple[int, int]] = []
    flags: set[str] = set()
    pseudo = False
    for m in _META.finditer(data, body, hend):
        hidden.append((m.start(), m.end()))
        name = m.group(1).lower()
        if name == b"status" and b"R" in m.group(2):
            flags.add(SEEN)
        elif name == b"x-status":
            flags.update(f for c, f in _X_STATUS_BYTES.items() if c in m.group(2))
        elif name == b"x-imap":
            pseudo = first
    pieces = _visible(body, end, tuple(hidden)) if hidden else [(body, end)]
    length = lf = crlf = 0
    for a, b in pieces:
        length += b - a
        lf += data.count(b"\n", a, b)
        if has_cr:
            crlf += data.count(b"\r\n", a, b)
    n_quoted = bisect.bisect_left(quoted, end) - bisect.bisect_left(quoted, body) if quoted else 0
    # The key: From line + visible content without trailing line ends (a
    # writer that later adds the missing empty line does not change it).
    tail = end
    while tail > body and data[tail - 1] in (0x0A, 0x0D):
        tail -= 1
    digest = hashlib.sha256(view[s:body])
    for a, b in pieces:
        if min(b, tail) > a:
            digest.update(view[a : min(b, tail)])
    return MboxMessage(
        start=s,
        body=body - s,
        end=end - s,
        stop=stop - s,
        hidden=tuple((a - s, b - s) for a, b in hidden),
        key=base64.urlsafe_b64encode(digest.digest()[:15]).decode("ascii"),
        size=length - n_quoted + lf - crlf,
        flags=frozenset(flags),
        date=date,
        pseudo=pseudo,
    )


_HOURS: dict[tuple[int, int, int, int], float] = {}  # local hour → its epoch time


def _date(m: re.Match[bytes] | None) -> float | None:
    """The From line's asctime, local time (as Postfix and store/mbox.py write it)."""
    if m is None:
        return None
    mon, day, hour, minute, sec, year = m.groups()
    key = (int(year), _MONTHS[mon], int(day), int(hour))
    base = _HOURS.get(key)
    if base is None:
        try:
            base = time.mktime((*key, 0, 0, 0, 0, -1))
        except (OverflowError, ValueError):
            return None
        if len(_HOURS) > 10_000:
            _HOURS.clear()
        _HOURS[key] = base
    return base + int(minute) * 60 + int(sec or 0)


# --- the index ----------------------------------------------------------------


@dataclass(slots=True)
class IndexEntry:
    uid: int
    modseq: int
    key: str
    flags: frozenset[str]


@dataclass(slots=True)
class MboxIndex:
    """The parsed index; `entries` in ascending UID order."""

    uidvalidity: int
    uidnext: int = 1
    highestmodseq: int = 1
    entries: list[IndexEntry] = dataclasses.field(default_factory=list)

    def render(self) -> bytes:
        lines = [
            f"version: {VERSION}\nuidvalidity: {self.uidvalidity}\n"
            f"uidnext: {self.uidnext}\nhighestmodseq: {self.highestmodseq}\n"
        ]
        for e in self.entries:
            lines.append(" ".join([str(e.uid), str(e.modseq), e.key, *sorted(e.flags)]) + "\n")
        return "".join(lines).encode("utf-8", "surrogateescape")

    def copy(self) -> MboxIndex:
        entries = [IndexEntry(e.uid, e.modseq, e.key, e.flags) for e in self.entries]
        return MboxIndex(self.uidvalidity, self.uidnext, self.highestmodseq, entries)


def parse_index(data: bytes) -> MboxIndex:
    """Parse an index file; ValueError for anything unexpected."""
    lines = data.decode("utf-8", "surrogateescape").split("\n")
    if len(lines) < 5 or lines[-1] != "":
        raise ValueError("truncated index")
    head = dict(line.split(": ", 1) for line in lines[:4])
    if head.get("version") != VERSION:
        raise ValueError(f"unknown version {head.get('version')!r}")
    index = MboxIndex(
        uidvalidity=int(head["uidvalidity"]),
        uidnext=int(head["uidnext"]),
        highestmodseq=int(head["highestmodseq"]),
    )
    if index.uidvalidity <= 0 or index.uidnext <= 0 or index.highestmodseq < 0:
        raise ValueError("uidvalidity, uidnext and highestmodseq must be positive")
    last = 0
    for line in lines[4:-1]:
        uid_s, modseq_s, key, *flags = line.split(" ")
        uid, modseq = int(uid_s), int(modseq_s)
        if not last < uid < index.uidnext or not 0 < modseq <= index.highestmodseq or not key:
            raise ValueError(f"bad index line {line!r}")
        if "" in flags:
            raise ValueError(f"bad flags in {line!r}")
        last = uid
        index.entries.append(IndexEntry(uid, modseq, key, frozenset(flags)))
    return index


def match(
    index: MboxIndex, messages: list[MboxMessage]
) -> tuple[dict[int, MboxMessage], list[MboxMessage], list[IndexEntry]]:
    """(uid → message, messages without a UID, entries whose message is gone).

    The i-th message (in file order) with a key gets the i-th entry (in UID
    order) with that key."""
    by_key: dict[str, list[IndexEntry]] = {}
    for e in index.entries:
        by_key.setdefault(e.key, []).append(e)
    taken: dict[str, int] = {}
    where: dict[int, MboxMessage] = {}
    fresh = []
    for m in messages:
        same = by_key.get(m.key)
        n = taken.get(m.key, 0)
        if same is not None and n < len(same):
            where[same[n].uid] = m
            taken[m.key] = n + 1
        else:
            fresh.append(m)
    gone = [e for e in index.entries if e.uid not in where]
    return where, fresh, gone
