"""imap.fetch — FETCH responses from MessageInfo, the cached summary and the message octets.

Description:
    `FetchRenderer(folder, cache, items, ...)` answers one FETCH (or UID
    FETCH) command. It is made on the event loop and then used from a
    worker thread: `render(batch)` takes (seq, MessageInfo) pairs and
    returns one buffer with their `* n FETCH (...)` responses, so a FETCH
    of many messages is written as a few large buffers (the session asks
    for batches of about a megabyte of output).

    What each item needs (RFC 9051 §6.4.5, §7.5.2):
      FLAGS, UID, INTERNALDATE, RFC822.SIZE      MessageInfo only
      ENVELOPE, BODY, BODYSTRUCTURE              the summary (imap/cache.py),
                                                 computed from the message
                                                 the first time
      BODY[...], BODY.PEEK[...], RFC822,
      RFC822.HEADER, RFC822.TEXT, BINARY[...],
      BINARY.PEEK[...], BINARY.SIZE[...]         the message octets
                                                 (Folder.open_message)

    BODY[...] without .PEEK, RFC822, RFC822.TEXT and BINARY[...] set \\Seen
    (unless the mailbox is read-only); the new flags are stored before the
    responses are rendered, so their FETCH carries the new FLAGS even when
    FLAGS was not asked for (RFC 9051 §6.4.5). A UID FETCH always returns
    UID (RFC 9051 §6.4.9). IMAP4rev1 sessions see \\Recent in FLAGS for the
    messages recent to them.

    Sections are named in the response as asked, `BODY[1.HEADER.FIELDS
    (From To)]`, with `<origin>` for a partial fetch; BODY.PEEK becomes
    BODY and BINARY.PEEK BINARY. A section that does not exist is NIL (an
    empty string for BINARY's nonexistent parts); a part whose transfer
    encoding is unknown makes the command fail with NO [UNKNOWN-CTE]
    (RFC 3516 §4.2). BINARY data containing NUL goes out as a literal8
    (`~{n}`, RFC 3516 §4.3).

    A message expunged by another session meanwhile is left out; the
    command then ends NO [EXPUNGEISSUED] (RFC 5530, RFC 2180 §4.1.2).

See also:
    RFC 9051 §6.4.5 (FETCH), §7.5.2 (FETCH response), RFC 3501 §6.4.5,
    RFC 3516 (BINARY), RFC 4315; imap/structure.py, imap/cache.py,
    imap/session.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from postoffice.imap import response, structure
from postoffice.imap.cache import SummaryCache
from postoffice.imap.commands import (
    FetchAttr,
    FetchBinary,
    FetchBinarySize,
    FetchBody,
    FetchItem,
    Partial,
    Section,
)
from postoffice.imap.mime import parse as parse_mime
from postoffice.store.interfaces import (
    ANSWERED,
    DELETED,
    DRAFT,
    FLAGGED,
    SEEN,
    Folder,
    MessageGone,
    MessageInfo,
)

__all__ = ["FetchRenderer", "Rendered", "flag_list", "internal_date"]

_SYSTEM_ORDER = (SEEN, ANSWERED, FLAGGED, DELETED, DRAFT)

_DATA_ATTRS = frozenset({FetchAttr.RFC822, FetchAttr.RFC822_HEADER, FetchAttr.RFC822_TEXT})
_SUMMARY_ATTRS = frozenset({FetchAttr.ENVELOPE, FetchAttr.BODY, FetchAttr.BODYSTRUCTURE})


def flag_list(flags: Iterable[str], recent: bool = False) -> bytes:
    """`(\\Seen $Forwarded)`: system flags first in a fixed order, then keywords."""
    flags = frozenset(flags)
    names = [f for f in _SYSTEM_ORDER if f in flags]
    names += sorted(f for f in flags if f not in _SYSTEM_ORDER)
    if recent:
        names.append("\\Recent")
    return b"(" + " ".join(names).encode("utf-8", "replace") + b")"


_WHOLE = Section()  # BODY[]: the message as it is, no MIME parsing needed
_DATES: dict[int, bytes] = {}


def internal_date(when: float) -> bytes:
    """`"17-Jul-1996 02:44:25 +0000"` (RFC 9051 §9 date-time), in UTC (the
    zone imap/search.py takes dates in); memoised, as many messages share
    a second when mail arrives in bursts."""
    key = int(when)
    cached = _DATES.get(key)
    if cached is None:
        if len(_DATES) > 100_000:
            _DATES.clear()
        cached = _DATES[key] = response.date_time(float(key))
    return cached


def _cut(octets: bytes, partial: Partial | None) -> bytes:
    if partial is None:
        return octets
    return structure.partial(octets, partial.offset, partial.length)


@dataclass(slots=True)
class Rendered:
    """What render() made of one batch."""

    data: bytes
    changed: list[MessageInfo] = field(default_factory=list)  # \\Seen set by this FETCH
    changed_uids: set[int] = field(default_factory=set)
    missing: int = 0  # messages expunged meanwhile, left out
    unknown_cte: bool = False


class FetchRenderer:
    """One FETCH command's responses (see the module manual)."""

    def __init__(
        self,
        folder: Folder,
        cache: SummaryCache,
        items: Sequence[FetchItem],
        *,
        uid: bool,
        read_only: bool,
        recent: frozenset[int] | set[int] | None = None,
    ) -> None:
        self.folder = folder
        self.cache = cache
        items = list(items)
        if uid and FetchAttr.UID not in items:
            items.insert(0, FetchAttr.UID)  # RFC 9051 §6.4.9
        self.items = tuple(items)
        self.recent = recent or frozenset()
        self.needs_data = any(
            isinstance(i, FetchBody | FetchBinary | FetchBinarySize) or i in _DATA_ATTRS
            for i in items
        )
        self.needs_summary = any(i in _SUMMARY_ATTRS for i in items)
        self.sets_seen = not read_only and any(
            (isinstance(i, FetchBody | FetchBinary) and not i.peek)
            or i in (FetchAttr.RFC822, FetchAttr.RFC822_TEXT)
            for i in items
        )
        self.wants_flags = FetchAttr.FLAGS in items
        # Response names, made once: BODY.PEEK[1]<0.9> answers as BODY[1]<0>.
        self._names = {i: response.fetch_item_name(i) for i in items}

    # -- in a worker thread ------------------------------------------------------

    def render(self, batch: Sequence[tuple[int, MessageInfo]]) -> Rendered:
        out = Rendered(data=b"")
        if self.sets_seen:
            batch = self._mark_seen(batch, out)
        parts: list[bytes] = []
        new_summaries: list[tuple[str, structure.Summary]] = []
        for seq, info in batch:
            data: bytes | None = None
            if self.needs_data:
                data = self._read(info)
                if data is None:
                    out.missing += 1
                    continue
            summary = None
            if self.needs_summary:
                summary = self._summary(info, data, new_summaries)
                if summary is None:
                    out.missing += 1
                    continue
            self._message(seq, info, data, summary, out, parts)
        if new_summaries:
            self.cache.put(new_summaries)
        out.data = b"".join(parts)
        return out

    def _mark_seen(
        self, batch: Sequence[tuple[int, MessageInfo]], out: Rendered
    ) -> Sequence[tuple[int, MessageInfo]]:
        unseen = [info.uid for _, info in batch if SEEN not in info.flags]
        if not unseen:
            return batch
        changed = self.folder.store_flags(unseen, frozenset({SEEN}), "add")
        out.changed = changed
        out.changed_uids = {c.uid for c in changed}
        by_uid = {c.uid: c for c in changed}
        return [(seq, by_uid.get(info.uid, info)) for seq, info in batch]

    def _read(self, info: MessageInfo) -> bytes | None:
        cached = self.folder.read_cached(info.uid)  # the cheap path when in the page cache
        if cached is not None:
            return cached
        try:
            with self.folder.open_message(info.uid) as f:
                return f.read()
        except MessageGone:
            return None

    def _summary(
        self, info: MessageInfo, data: bytes | None, new: list[tuple[str, structure.Summary]]
    ) -> structure.Summary | None:
        summary = self.cache.get(info.key)
        if summary is not None:
            return summary
        if data is None:
            data = self._read(info)
            if data is None:
                return None
        summary = structure.summarise(data)
        new.append((info.key, summary))
        return summary

    def _message(
        self,
        seq: int,
        info: MessageInfo,
        data: bytes | None,
        summary: structure.Summary | None,
        out: Rendered,
        pieces: list[bytes],
    ) -> None:
        """Append `* seq FETCH (...)` to `pieces`; message octets are appended
        as they are, never copied into a larger bytes here (one join per batch)."""
        pieces.append(b"* %d FETCH (" % seq)
        first = len(pieces)
        root = None
        flags_sent = False
        for item in self.items:
            if len(pieces) > first:
                pieces.append(b" ")
            if isinstance(item, FetchAttr):
                if item is FetchAttr.FLAGS:
                    pieces.append(b"FLAGS " + flag_list(info.flags, info.uid in self.recent))
                    flags_sent = True
                elif item is FetchAttr.UID:
                    pieces.append(b"UID %d" % info.uid)
                elif item is FetchAttr.INTERNALDATE:
                    pieces.append(b"INTERNALDATE " + internal_date(info.internaldate))
                elif item is FetchAttr.RFC822_SIZE:
                    pieces.append(b"RFC822.SIZE %d" % info.size)
                elif item is FetchAttr.ENVELOPE:
                    assert summary is not None
                    pieces += (b"ENVELOPE ", summary.envelope)
                elif item is FetchAttr.BODY:
                    assert summary is not None
                    pieces += (b"BODY ", summary.body)
                elif item is FetchAttr.BODYSTRUCTURE:
                    assert summary is not None
                    pieces += (b"BODYSTRUCTURE ", summary.bodystructure)
                else:
                    assert data is not None
                    self._rfc822(item, data, pieces)
                continue
            assert data is not None
            name = self._names[item]
            if isinstance(item, FetchBody) and item.section == _WHOLE:
                _literal(pieces, name, _cut(data, item.partial))
                continue
            if root is None:
                root = parse_mime(data)
            if isinstance(item, FetchBody):
                octets = structure.section(data, root, item.section)
                if octets is None:
                    pieces.append(name + b" NIL")
                else:
                    _literal(pieces, name, _cut(octets, item.partial))
            elif isinstance(item, FetchBinary):
                decoded = structure.binary(data, root, item.part)
                if isinstance(decoded, structure.UnknownCte):
                    out.unknown_cte = True
                    decoded = b""
                if decoded is None:
                    pieces.append(name + b" NIL")
                else:
                    _literal(pieces, name, _cut(decoded, item.partial), binary=True)
            else:  # FetchBinarySize
                decoded = structure.binary(data, root, item.part)
                if isinstance(decoded, structure.UnknownCte):
                    out.unknown_cte = True
                    decoded = b""
                pieces.append(name + (b" NIL" if decoded is None else b" %d" % len(decoded)))
        if not flags_sent and info.uid in out.changed_uids:
            pieces.append(b" FLAGS " + flag_list(info.flags, info.uid in self.recent))
        pieces.append(b")\r\n")

    @staticmethod
    def _rfc822(item: FetchAttr, data: bytes, pieces: list[bytes]) -> None:
        if item is FetchAttr.RFC822:
            _literal(pieces, b"RFC822", data)
            return
        root = parse_mime(data)
        if item is FetchAttr.RFC822_HEADER:
            _literal(pieces, b"RFC822.HEADER", data[: root.bstart])
        else:
            _literal(pieces, b"RFC822.TEXT", data[root.bstart :])


def _literal(pieces: list[bytes], name: bytes, value: bytes, *, binary: bool = False) -> None:
    """`name {n}CRLF value` (literal8 `~{n}` for binary data with NUL, RFC 3516 §4.3)."""
    tilde = b"~" if binary and b"\x00" in value else b""
    pieces += (name, b" %s{%d}\r\n" % (tilde, len(value)), value)
