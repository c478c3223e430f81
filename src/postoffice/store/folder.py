"""store.folder — a Maildir (or Maildir++ folder) as POP3 and IMAP read it: UIDs, flags, expunge.

Description:
    `MaildirFolder(path, name="INBOX")` implements store.interfaces.Folder.
    The messages are the files in `new/` and `cur/` (maildir(5)); the
    folder's UID list (store/index.py) gives each a UID the first time any
    reader syncs after it arrived, in arrival order. Delivery never takes
    a lock and never touches the list.

    Flags live in the file name, as every Maildir reader expects:
    `cur/<key>:2,<info>` where info holds, in ASCII order, D (\\Draft),
    F (\\Flagged), P ($Forwarded, RFC 5788), R (\\Answered), S (\\Seen),
    T (\\Deleted), then lower-case letters for keywords, each letter the
    keyword's number in `dovecot-keywords` ("0 Junk" → a), Dovecot's file,
    so a Maildir moves between Dovecot and postoffice with its flags
    (maildir(5) "info", Dovecot "Maildir mailbox format"). A flag change is
    one rename (new/ → cur/ on the first change); the list records the
    info last seen so a change made by another program (mutt renaming a
    file) gets a new MODSEQ at the next sync.

    `sync()` lists new/ and cur/, gives unknown keys UIDs under the
    list's lock and writes it durably (fsync), and returns a FolderState.
    When neither directory nor the list changed since the last scan (and
    the last change is over two seconds old, so a change within the same
    clock tick is not missed), the previous snapshot is returned without
    listing the directories.

    `open_message(uid)` reads the file and returns it with CRLF line
    endings (the store keeps LF, delivery's convention), `size` octets.
    A file renamed meanwhile by another session is found by listing
    again; one expunged raises MessageGone.

States:
    See store/index.py for a message's states in the list.

Errors:
    OSError from the file system becomes TempFail (451 4.3.0, or 452 4.3.1
    for a full disk) with the path only in the reason for the log.

Security:
    Trusts `path` (store/opener.py builds it from the login and refuses
    traversal). Files and the list are created 0600 with the server's uid.

See also:
    maildir(5), Dovecot's Maildir format documentation, RFC 9051 §2.3.2
    (flags), RFC 5788 ($Forwarded), store/index.py, store/interfaces.py,
    store/maildir.py (delivery's writer, used by APPEND too).
"""

from __future__ import annotations

import fcntl
import io
import os
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

from postoffice.store.index import Entry, IndexFile, UidList
from postoffice.store.interfaces import (
    ANSWERED,
    DELETED,
    DRAFT,
    FLAGGED,
    SEEN,
    FlagMode,
    FolderGone,
    FolderState,
    MessageGone,
    MessageInfo,
)
from postoffice.store.maildir import (
    MaildirWriter,
    fsync_dir,
    make_maildir,
    replace_file,
    storage_error,
)

KEYWORDS_NAME = "dovecot-keywords"
FORWARDED = "$Forwarded"
_LETTER_FLAG = {"D": DRAFT, "F": FLAGGED, "P": FORWARDED, "R": ANSWERED, "S": SEEN, "T": DELETED}
_FLAG_LETTER = {flag.lower(): letter for letter, flag in _LETTER_FLAG.items()}
_MAX_KEYWORDS = 26  # a-z
_QUIET_NS = 2_000_000_000  # a directory changed this recently is listed again
_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
CHUNK = 256 * 1024
# preadv2(RWF_NOWAIT): read only what the page cache holds (Linux 4.14+).
_NOWAIT = hasattr(os, "preadv") and hasattr(os, "RWF_NOWAIT")
_INLINE_MAX = 1024 * 1024  # read_cached never takes more than this on the loop


def split_name(name: str) -> tuple[str, str]:
    """`key:2,info` → (key, info); a name without info → (name, "")."""
    key, sep, info = name.partition(":2,")
    return (key, info) if sep else (name, "")


def _stored_size(name: str) -> int | None:
    """The `,S=<n>` size (octets on disk) in a Maildir name, if there."""
    at = name.find(",S=")
    if at < 0:
        return None
    digits = name[at + 3 :].split(",", 1)[0].split(":", 1)[0]
    return int(digits) if digits.isdigit() else None


def vsize_from_key(key: str) -> int | None:
    """The `,W=<n>` size Dovecot and store/maildir.py put in names, if there."""
    at = key.find(",W=")
    if at < 0:
        return None
    digits = key[at + 3 :].split(",", 1)[0]
    return int(digits) if digits.isdigit() else None


def to_crlf(data: bytes) -> bytes:
    """LF line endings → CRLF, leaving existing CRLF alone."""
    if b"\r" in data:  # the store writes LF only; files from other programs may not
        data = data.replace(b"\r\n", b"\n")
    return data.replace(b"\n", b"\r\n")


def crlf_size(data: bytes) -> int:
    return len(data) + data.count(b"\n") - data.count(b"\r\n")


@dataclass(slots=True)
class _Scan:
    """Where each key is now: key → (subdir, file name)."""

    where: dict[str, tuple[str, str]]
    signature: tuple[int, int, tuple[int, int, int] | None]
    taken_ns: int


class _Lock:
    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class MaildirFolder:
    """One Maildir folder (see the module manual)."""

    def __init__(self, path: str, *, name: str = "INBOX", hostname: str | None = None) -> None:
        self.path = path
        self._name = name
        # Only INBOX is made when missing (delivery makes it too); another folder
        # that vanished was deleted or renamed and must not come back empty.
        self._create = name == "INBOX"
        self._index = IndexFile(path)
        self._writer = MaildirWriter(path, hostname=hostname)
        self._mutex = threading.Lock()  # one Folder object is shared by sessions' threads
        self._scan: _Scan | None = None
        self._state: FolderState | None = None
        self._keywords: list[str] | None = None
        self._keywords_sig: tuple[int, int] | None = None

    @property
    def name(self) -> str:
        return self._name

    # -- reading -------------------------------------------------------

    def sync(self) -> FolderState:
        with self._mutex:
            try:
                return self._sync()
            except OSError as e:
                raise storage_error(e, f"maildir {self.path}: sync") from e

    def _sync(self) -> FolderState:
        sig = self._signature()
        scan = self._scan
        if (
            scan is not None
            and self._state is not None
            and scan.signature == sig
            and time.time_ns() - _newest(sig) > _QUIET_NS
        ):
            return self._state
        scan = self._list(sig)
        uidlist = self._index.load()
        if uidlist is None or self._needs_update(uidlist, scan):
            with self._index.locked():
                uidlist = self._index.load_for_update()
                # A new (or rebuilt) list is saved even when the folder is empty:
                # its UIDVALIDITY must not change at the next sync (RFC 9051 §2.3.1.1).
                if self._update(uidlist, scan) or self._index.load() is None:
                    self._index.save(uidlist)
        return self._snapshot(uidlist, scan)

    def _signature(self) -> tuple[int, int, tuple[int, int, int] | None]:
        try:
            new = os.stat(os.path.join(self.path, "new")).st_mtime_ns
            cur = os.stat(os.path.join(self.path, "cur")).st_mtime_ns
        except FileNotFoundError:
            if not self._create:
                raise FolderGone(self._name) from None
            make_maildir(self.path)
            return self._signature()
        return (new, cur, self._index.signature())

    def _list(self, sig: tuple[int, int, tuple[int, int, int] | None]) -> _Scan:
        taken = time.time_ns()
        where: dict[str, tuple[str, str]] = {}
        for sub in ("new", "cur"):
            for entry in os.scandir(os.path.join(self.path, sub)):
                if entry.name[0] != ".":
                    where[split_name(entry.name)[0]] = (sub, entry.name)
        self._scan = _Scan(where, sig, taken)
        return self._scan

    @staticmethod
    def _needs_update(uidlist: UidList, scan: _Scan) -> bool:
        entries = uidlist.entries
        for key, (_sub, name) in scan.where.items():
            entry = entries.get(key)
            if entry is None or entry.info != split_name(name)[1]:
                return True
        return False

    def _update(self, uidlist: UidList, scan: _Scan) -> bool:
        """Bring the list up to date with the scan (under the lock); True if it changed."""
        changed = False
        entries = uidlist.entries
        for key in [k for k in entries if k not in scan.where]:
            del entries[key]
            changed = True
        fresh: list[tuple[int, str, int, str]] = []
        for key, (sub, name) in scan.where.items():
            info = split_name(name)[1]
            entry = entries.get(key)
            if entry is None:
                vsize, mtime = self._measure(key, sub, name)
                if vsize is not None:
                    fresh.append((mtime, key, vsize, info))
            elif entry.info != info:
                entry.info = info
                uidlist.bump(entry)
                changed = True
        for mtime, key, vsize, info in sorted(fresh, key=_arrival):
            uidlist.add(key, vsize=vsize, internaldate=mtime, info=info)
            changed = True
        return changed

    def _measure(self, key: str, sub: str, name: str) -> tuple[int | None, int]:
        path = os.path.join(self.path, sub, name)
        try:
            mtime = int(os.stat(path).st_mtime)
            vsize = vsize_from_key(key)
            if vsize is None:
                with open(path, "rb") as f:
                    vsize = crlf_size(f.read())
        except FileNotFoundError:
            return None, 0  # renamed or expunged since the scan: the next sync sees it
        return vsize, mtime

    def _snapshot(self, uidlist: UidList, scan: _Scan) -> FolderState:
        keywords = self._load_keywords()
        messages = [
            MessageInfo(
                uid=e.uid,
                key=e.key,
                size=e.vsize,
                flags=_flags(e.info, keywords),
                internaldate=float(e.internaldate),
                modseq=e.modseq,
            )
            for e in uidlist.entries.values()
            if e.key in scan.where
        ]
        messages.sort(key=lambda m: m.uid)
        self._state = FolderState(
            uidvalidity=uidlist.uidvalidity,
            uidnext=uidlist.uidnext,
            highestmodseq=uidlist.highestmodseq,
            messages=tuple(messages),
        )
        # The list may have been rewritten by this very sync: remember its new
        # identity, but keep the directories' times from before the listing, so
        # a delivery during it makes the next sync list again.
        self._scan = _Scan(
            scan.where,
            (scan.signature[0], scan.signature[1], self._index.signature()),
            scan.taken_ns,
        )
        return self._state

    def open_message(self, uid: int) -> BinaryIO:
        with self._mutex:
            if self._state is None:
                try:
                    self._sync()
                except OSError as e:
                    raise storage_error(e, f"maildir {self.path}: sync") from e
            key = self._key_of(uid)
            located = self._scan.where.get(key) if self._scan is not None and key else None
        if key is None or located is None:
            raise MessageGone(uid)
        try:
            data = self._read(located)
        except FileNotFoundError:
            with self._mutex:
                scan = self._list(self._signature())
                located = scan.where.get(key)
            if located is None:
                raise MessageGone(uid) from None
            try:
                data = self._read(located)
            except FileNotFoundError:
                raise MessageGone(uid) from None
        except OSError as e:
            raise storage_error(e, f"maildir {self.path}: read uid {uid}") from e
        return io.BytesIO(to_crlf(data))

    def read_cached(self, uid: int) -> bytes | None:
        # No mutex: it only reads references the syncing thread replaces whole.
        scan = self._scan
        key = self._key_of(uid)
        located = scan.where.get(key) if scan is not None and key is not None else None
        if located is None or not _NOWAIT:
            return None
        try:
            fd = os.open(os.path.join(self.path, located[0], located[1]), _READ_FLAGS)
        except OSError:
            return None
        try:
            # The file's own size, not the name's ,S=: other programs write
            # names whose S= is the CRLF size.
            size = os.fstat(fd).st_size
            if size > _INLINE_MAX:
                return None
            buf = bytearray(size + 1)  # one more: a file that grew meanwhile is not used
            n = os.preadv(fd, [buf], 0, os.RWF_NOWAIT)
        except OSError:  # EAGAIN: not in the page cache; EOPNOTSUPP: not here
            return None
        finally:
            os.close(fd)
        if n != size:
            return None
        del buf[size:]
        return to_crlf(bytes(buf))

    def _read(self, located: tuple[str, str]) -> bytes:
        # os.open/os.read with the size from the name: half the cost of open().read()
        # for the small files POP3 and IMAP read thousands of in a row.
        fd = os.open(os.path.join(self.path, located[0], located[1]), _READ_FLAGS)
        try:
            chunks = []
            want = (_stored_size(located[1]) or CHUNK) + 1
            while True:
                chunk = os.read(fd, want)
                if not chunk:
                    break
                chunks.append(chunk)
                want = CHUNK
        finally:
            os.close(fd)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _key_of(self, uid: int) -> str | None:
        state = self._state
        if state is None:
            return None
        messages = state.messages
        lo, hi = 0, len(messages)
        while lo < hi:
            mid = (lo + hi) // 2
            if messages[mid].uid < uid:
                lo = mid + 1
            else:
                hi = mid
        if lo < len(messages) and messages[lo].uid == uid:
            return messages[lo].key
        return None

    # -- changing ------------------------------------------------------

    def store_flags(
        self, uids: Iterable[int], flags: frozenset[str], mode: FlagMode
    ) -> list[MessageInfo]:
        with self._mutex:
            try:
                return self._store_flags(list(uids), flags, mode)
            except OSError as e:
                raise storage_error(e, f"maildir {self.path}: store flags") from e

    def _store_flags(
        self, uids: list[int], flags: frozenset[str], mode: FlagMode
    ) -> list[MessageInfo]:
        changed: list[MessageInfo] = []
        with self._index.locked():
            scan = self._list(self._signature())
            uidlist = self._index.load_for_update()
            self._update(uidlist, scan)
            by_uid = {e.uid: e for e in uidlist.entries.values()}
            keywords = self._load_keywords()
            for uid in uids:
                entry = by_uid.get(uid)
                if entry is None or entry.key not in scan.where:
                    continue
                old = _flags(entry.info, keywords)
                if mode == "add":
                    new = old | flags
                elif mode == "remove":
                    new = old - flags
                else:
                    new = flags
                if new == old and scan.where[entry.key][0] == "cur":
                    continue
                info = self._info_for(new, keywords)
                keywords = self._load_keywords()  # _info_for may have added some
                if not self._rename(scan, entry, info):
                    continue
                uidlist.bump(entry)
                changed.append(_info(entry, _flags(info, keywords)))
            self._index.save(uidlist)
            self._snapshot(uidlist, scan)
        return changed

    def _rename(self, scan: _Scan, entry: Entry, info: str) -> bool:
        sub, name = scan.where[entry.key]
        target = f"{entry.key}:2,{info}"
        if sub == "cur" and name == target:
            entry.info = info
            return True
        try:
            os.rename(os.path.join(self.path, sub, name), os.path.join(self.path, "cur", target))
        except FileNotFoundError:
            return False  # expunged or renamed by someone else meanwhile
        scan.where[entry.key] = ("cur", target)
        entry.info = info
        return True

    def expunge(self, uids: Iterable[int]) -> list[int]:
        with self._mutex:
            try:
                return self._expunge(set(uids))
            except OSError as e:
                raise storage_error(e, f"maildir {self.path}: expunge") from e

    def _expunge(self, uids: set[int]) -> list[int]:
        removed: list[int] = []
        with self._index.locked():
            scan = self._list(self._signature())
            uidlist = self._index.load_for_update()
            self._update(uidlist, scan)
            for entry in list(uidlist.entries.values()):
                if entry.uid not in uids:
                    continue
                located = scan.where.pop(entry.key, None)
                if located is not None:
                    try:
                        os.unlink(os.path.join(self.path, *located))
                        removed.append(entry.uid)
                    except FileNotFoundError:
                        pass
                del uidlist.entries[entry.key]
            if removed:
                fsync_dir(os.path.join(self.path, "cur"))
                fsync_dir(os.path.join(self.path, "new"))
                uidlist.highestmodseq += 1  # RFC 7162 §3.2.10: an expunge is a change
            self._index.save(uidlist)
            self._snapshot(uidlist, scan)
        return sorted(removed)

    def append(self, source: BinaryIO, *, flags: frozenset[str], internaldate: float | None) -> int:
        # The writer fsyncs the file and new/ (TempFail on a full disk); then the
        # flags go into the name, the date into mtime, and the message gets its UID.
        if not self._create and not os.path.isdir(os.path.join(self.path, "cur")):
            raise FolderGone(self._name)
        path = self._writer.deliver(source, prefix=b"", sender="", arrival=time.time())
        with self._mutex:
            try:
                return self._adopt(path, flags, internaldate)
            except OSError as e:
                raise storage_error(e, f"maildir {self.path}: append") from e

    def _adopt(self, path: str, flags: frozenset[str], internaldate: float | None) -> int:
        key = os.path.basename(path)
        if internaldate is not None:
            os.utime(path, (internaldate, internaldate))
        with self._index.locked():
            keywords = self._load_keywords()
            info = self._info_for(flags, keywords)
            os.rename(path, os.path.join(self.path, "cur", f"{key}:2,{info}"))
            fsync_dir(os.path.join(self.path, "cur"))
            scan = self._list(self._signature())
            uidlist = self._index.load_for_update()
            self._update(uidlist, scan)
            self._index.save(uidlist)
            self._snapshot(uidlist, scan)
            return uidlist.entries[key].uid

    def try_lock(self, holder: str) -> _Lock | None:
        path = os.path.join(self.path, f"postoffice-{holder}.lock")
        try:
            if self._create:
                make_maildir(self.path)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise storage_error(e, f"maildir {self.path}: lock") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return _Lock(fd)

    # -- keywords ------------------------------------------------------

    def _load_keywords(self) -> list[str]:
        path = os.path.join(self.path, KEYWORDS_NAME)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            self._keywords, self._keywords_sig = [], None
            return []
        sig = (st.st_ino, st.st_mtime_ns)
        if self._keywords is not None and sig == self._keywords_sig:
            return self._keywords
        names: list[str] = [""] * _MAX_KEYWORDS
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                number, _, word = line.rstrip("\n").partition(" ")
                if number.isdigit() and int(number) < _MAX_KEYWORDS and word:
                    names[int(number)] = word
        while names and not names[-1]:
            names.pop()
        self._keywords, self._keywords_sig = names, sig
        return names

    def _info_for(self, flags: frozenset[str], keywords: list[str]) -> str:
        """The info letters for `flags`, adding new keywords to dovecot-keywords."""
        letters = []
        extra: list[str] = []
        for flag in flags:
            letter = _FLAG_LETTER.get(flag.lower())
            if letter is not None:
                letters.append(letter)
                continue
            known = [i for i, k in enumerate(keywords) if k.lower() == flag.lower()]
            if known:
                letters.append(chr(ord("a") + known[0]))
            elif len(keywords) + len(extra) < _MAX_KEYWORDS:
                extra.append(flag)
                letters.append(chr(ord("a") + len(keywords) + len(extra) - 1))
            # a 27th keyword has no letter left: dropped, as Dovecot does with Maildir
        if extra:
            self._save_keywords([*keywords, *extra])
        return "".join(sorted(set(letters)))

    def _save_keywords(self, names: list[str]) -> None:
        text = "".join(f"{i} {n}\n" for i, n in enumerate(names) if n)
        replace_file(os.path.join(self.path, KEYWORDS_NAME), text.encode("utf-8"))
        self._keywords, self._keywords_sig = None, None


def _flags(info: str, keywords: list[str]) -> frozenset[str]:
    if not info:
        return frozenset()
    out = []
    for ch in info:
        flag = _LETTER_FLAG.get(ch)
        if flag is not None:
            out.append(flag)
        elif "a" <= ch <= "z":
            n = ord(ch) - ord("a")
            if n < len(keywords) and keywords[n]:
                out.append(keywords[n])
    return frozenset(out)


def _info(entry: Entry, flags: frozenset[str]) -> MessageInfo:
    return MessageInfo(
        uid=entry.uid,
        key=entry.key,
        size=entry.vsize,
        flags=flags,
        internaldate=float(entry.internaldate),
        modseq=entry.modseq,
    )


_UNIQUE = re.compile(r"(\d+)\.M(\d+)P(\d+)(?:Q(\d+))?")


def _arrival(fresh: tuple[int, str, int, str]) -> tuple[int, int, int, int, str]:
    """Order of new messages for their UIDs: arrival time, then the name's
    `<sec>.M<usec>P<pid>Q<n>` parts as numbers (as strings "M99999" would sort
    after "M100000"), then the name."""
    mtime, key = fresh[0], fresh[1]
    m = _UNIQUE.match(key)
    if m is None:
        return (mtime, 0, 0, 0, key)
    sec, usec, _pid, seq = m.groups()
    return (mtime, int(sec) * 1_000_000 + int(usec), int(seq or 0), 0, key)


def _newest(sig: tuple[int, int, tuple[int, int, int] | None]) -> int:
    index = sig[2][1] if sig[2] is not None else 0
    return max(sig[0], sig[1], index)
