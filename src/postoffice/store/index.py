"""store.index — a folder's UID list: UIDVALIDITY, UIDNEXT, uid → message, MODSEQ.

Description:
    One file per folder, `postoffice-uidlist` in the Maildir (or next to an
    mbox index), read by POP3 (UIDL) and IMAP (UID) alike:

        version: 1
        uidvalidity: 1763754000
        uidnext: 43
        highestmodseq: 120
        1 7 5222 1763754001 S 1763754001.M1P2Q3R0011223344556677.host,S=5120,W=5222
        2 9 734 1763754100 - 1763754100.M5P2Q4Rffeeddccbbaa9988.host,S=712,W=734

    Each message line is `uid modseq vsize internaldate info key`: the UID
    (RFC 9051 §2.3.1.1), its mod-sequence (RFC 7162 §3.1.1: bumped on every
    flag change), its size with CRLF line endings, its INTERNALDATE in whole
    seconds, the flags info as last seen (the letters after `:2,` in a
    Maildir name, or `-` for none: a change made by another program is
    noticed and given a new modseq), and the key (the Maildir file name
    without its `:2,` info; it never changes while the message lives).
    Lines are in ascending UID order. UIDs are never reused: UIDNEXT only
    grows, and a lost or unreadable list starts over with a new, larger
    UIDVALIDITY (RFC 9051 §2.3.1.1: clients then drop their caches).

    The list is a cache of what can be rebuilt from the folder, but UIDs
    that clients have seen must not be handed out again, so every write is
    durable: a temp file, fsync, rename over the list, fsync the directory.
    Writers hold an exclusive flock on `postoffice-uidlist.lock` around
    read-modify-write (`locked()`); readers need no lock (the rename is
    atomic).

States:
    A message is unknown (on disk, not yet listed: the next sync gives it
    UIDNEXT), listed, or stale (listed, file gone: dropped at the next
    write).

See also:
    RFC 9051 §2.3.1.1, RFC 7162 §3.1 (MODSEQ), store/folder.py (the
    Maildir Folder that keeps it), store/interfaces.py, Dovecot's
    dovecot-uidlist (the same idea; not the same format).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from postoffice.store.maildir import replace_file

INDEX_NAME = "postoffice-uidlist"
LOCK_NAME = "postoffice-uidlist.lock"
VERSION = "1"


@dataclass(slots=True)
class Entry:
    uid: int
    modseq: int
    vsize: int
    internaldate: int
    info: str  # Maildir flag letters after ":2," ("" for none)
    key: str


@dataclass(slots=True)
class UidList:
    """The parsed list; `entries` maps key → Entry."""

    uidvalidity: int
    uidnext: int = 1
    highestmodseq: int = 1
    entries: dict[str, Entry] = field(default_factory=dict)

    @classmethod
    def fresh(cls, *, previous: int = 0, now: float | None = None) -> UidList:
        """A new empty list whose UIDVALIDITY is the time, and above `previous`."""
        stamp = int(now if now is not None else time.time())
        return cls(uidvalidity=max(stamp, previous + 1) & 0xFFFFFFFF or 1)

    def add(self, key: str, *, vsize: int, internaldate: int, info: str) -> Entry:
        """List a new message under UIDNEXT."""
        self.highestmodseq += 1
        entry = Entry(self.uidnext, self.highestmodseq, vsize, internaldate, info, key)
        self.entries[key] = entry
        self.uidnext += 1
        return entry

    def bump(self, entry: Entry) -> int:
        """A change to `entry`: give it the next modseq."""
        self.highestmodseq += 1
        entry.modseq = self.highestmodseq
        return entry.modseq

    def render(self) -> bytes:
        head = (
            f"version: {VERSION}\nuidvalidity: {self.uidvalidity}\n"
            f"uidnext: {self.uidnext}\nhighestmodseq: {self.highestmodseq}\n"
        )
        body = "".join(
            f"{e.uid} {e.modseq} {e.vsize} {e.internaldate} {e.info or '-'} {e.key}\n"
            for e in sorted(self.entries.values(), key=lambda e: e.uid)
        )
        return (head + body).encode("utf-8", "surrogateescape")


class CorruptIndex(ValueError):
    """The list cannot be trusted; it is rebuilt with a new UIDVALIDITY."""


def parse(data: bytes) -> UidList:
    """Parse a uidlist file; CorruptIndex for anything unexpected."""
    lines = data.decode("utf-8", "surrogateescape").split("\n")
    try:
        head = dict(line.split(": ", 1) for line in lines[:4])
        if head.get("version") != VERSION:
            raise CorruptIndex(f"unknown version {head.get('version')!r}")
        result = UidList(
            uidvalidity=int(head["uidvalidity"]),
            uidnext=int(head["uidnext"]),
            highestmodseq=int(head["highestmodseq"]),
        )
        last = 0
        for line in lines[4:]:
            if not line:
                continue
            uid_s, modseq_s, vsize_s, date_s, info, key = line.split(" ", 5)
            uid = int(uid_s)
            if uid <= last or uid >= result.uidnext or not key:
                raise CorruptIndex(f"uid {uid} out of order")
            last = uid
            result.entries[key] = Entry(
                uid, int(modseq_s), int(vsize_s), int(date_s), "" if info == "-" else info, key
            )
    except (KeyError, ValueError) as e:
        if isinstance(e, CorruptIndex):
            raise
        raise CorruptIndex(str(e)) from e
    if result.uidvalidity <= 0 or result.uidnext <= 0:
        raise CorruptIndex("uidvalidity and uidnext must be positive")
    return result


@dataclass(slots=True)
class _Cached:
    signature: tuple[int, int, int]
    uidlist: UidList


class IndexFile:
    """The uidlist of one directory: load (cached by file identity), save durably, lock."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.path = os.path.join(directory, INDEX_NAME)
        self.lock_path = os.path.join(directory, LOCK_NAME)
        self._cached: _Cached | None = None
        self.rebuilt = 0  # times a missing or corrupt list was started over

    def signature(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def load(self) -> UidList | None:
        """The current list, None when there is none or it is corrupt.

        The object is shared with later calls: read it, do not change it
        (`load_for_update` gives a private copy)."""
        sig = self.signature()
        if sig is None:
            return None
        cached = self._cached
        if cached is None or cached.signature != sig:
            try:
                with open(self.path, "rb") as f:
                    data = f.read()
                uidlist = parse(data)
            except (OSError, CorruptIndex):
                return None
            cached = self._cached = _Cached(sig, uidlist)
        return cached.uidlist

    def load_for_update(self) -> UidList:
        """A private copy of the list to change and `save` (under `locked()`);
        a fresh list with a larger UIDVALIDITY when it is missing or corrupt."""
        current = self.load()
        if current is not None:
            return _copy(current)
        self.rebuilt += 1
        return UidList.fresh(previous=self._previous_validity())

    def _previous_validity(self) -> int:
        """The UIDVALIDITY of an unreadable list, so the new one is larger."""
        try:
            with open(self.path, "rb") as f:
                head = f.read(200).decode("ascii", "replace")
        except OSError:
            return 0
        for line in head.split("\n"):
            if line.startswith("uidvalidity: ") and line[13:].strip().isdigit():
                return int(line[13:].strip())
        return 0

    def save(self, uidlist: UidList) -> None:
        """Write durably: temp file, fsync, rename, fsync the directory (OSError propagates)."""
        replace_file(self.path, uidlist.render())
        sig = self.signature()
        if sig is not None:
            self._cached = _Cached(sig, _copy(uidlist))

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive flock for a read-modify-write of the list (blocks)."""
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing drops the flock


def _copy(uidlist: UidList) -> UidList:
    return UidList(
        uidvalidity=uidlist.uidvalidity,
        uidnext=uidlist.uidnext,
        highestmodseq=uidlist.highestmodseq,
        entries={
            k: Entry(e.uid, e.modseq, e.vsize, e.internaldate, e.info, e.key)
            for k, e in uidlist.entries.items()
        },
    )
