"""store.mbox_folder — an mbox file (/var/spool/mail/USER) as a POP3 maildrop and IMAP INBOX.

Description:
    `MboxFolder(path, index_path=…, name="INBOX")` implements
    store.interfaces.Folder for one mbox file, the format store/mbox.py
    writes: messages each starting with a `From sender asctime` line, LF
    line endings, mboxrd quoting (`>From `, `>>From `, …), an empty line
    after each message. Files written by other MDAs (mboxo, a missing empty
    line, CRLF line endings) are read too.

    Reading: the whole file is read under a shared fcntl lock with large
    reads (no mmap: a file truncated under a mapping would kill the server
    with SIGBUS) and split by store/mbox_parse.py: messages start at "From "
    lines with a date; content is served unquoted (mboxrd), without the
    metadata headers other readers keep in the file (Status, X-Status, …),
    with CRLF line endings, `size` octets. A scan is reused while the
    file's identity, size and times stay the same (and its last change is
    over two seconds old, so a rewrite within one clock tick is not missed).

    UIDs: the index file at `index_path` (store/mbox_parse.py's MboxIndex:
    `uid modseq key flags…` lines under a version line, UIDVALIDITY, UIDNEXT
    and HIGHESTMODSEQ; created 0600, its directories 0700; the opener keeps
    it under state_dir because /var/spool/mail is often not writable by the
    server). The key is a digest of the From line and content, so UIDs
    survive other programs appending to or rewriting the file; messages
    with equal keys are matched in order. A key no longer in the file is
    dropped; a message not in the index gets UIDNEXT (RFC 9051 §2.3.1.1).
    The index is written durably (temp file, fsync, rename, fsync the
    directory) under an flock of `index_path.lock` whenever UIDs are given
    or flags change. A missing or corrupt index is rebuilt with a new
    UIDVALIDITY: the time, and above the old one when that is known (still
    readable in the file, or last seen by this object).

    Flags live in the index; a message seen for the first time takes them
    from its Status / X-Status headers (as mutt, pine and Dovecot write
    them), so a rebuilt index falls back to the headers. `append` writes
    Status / X-Status for its flags. Each flag change and each new message
    gets the next MODSEQ (RFC 7162 §3.1), an expunge bumps HIGHESTMODSEQ.

Locking:
    The dot-lock and fcntl lock of store/mbox.py (`MboxLocks`, shared with
    MboxWriter). `sync` and `open_message` read under a shared fcntl lock
    (a delivery holds the exclusive one while it writes, so no half
    message is ever read). `try_lock("pop3")` (RFC 1939 §8's maildrop
    lock) takes the dot-lock and the exclusive fcntl lock and keeps them
    until released: deliveries wait and then defer (TempFail 450 4.2.1)
    and every read and change of the folder goes through the locked
    descriptor. The dot-lock is touched (at most once a minute) when the
    session reads, so writers do not take it for stale, and taken again
    before a change if a writer removed it as stale anyway. `expunge` and
    `append` without a session lock take both locks for their duration.

    Lock order: mbox locks, then the index flock, then nothing; holders of
    the index flock never wait for an mbox lock, so there is no deadlock.
    One MboxFolder object is shared by the sessions of a process (store/
    opener.py); its mutex orders their calls.

Expunge:
    Under both locks the file is read again, matched with the index, and
    written without the expunged messages to a temp file in the same
    directory (mode and owner kept), fsynced, locked, then — after checking
    that the locked mbox still has the size just read, so that nothing a
    delivery appended can be lost — renamed over the mbox; the directory is
    fsynced, then the index updated. A session's lock moves to the new
    file. MboxWriter, once locked, checks that its descriptor still names
    the mbox and reopens it otherwise. When the owner cannot be kept (the
    server is not root and the file belongs to the user), the file is
    rewritten in place instead, as mutt does: a crash during that rewrite
    can damage the mbox.

Errors:
    OSError → TempFail (451 4.3.0; 452 4.3.1 for a full disk), a lock still
    busy after the retries → TempFail 450 4.2.1; the path only in the
    reason. A message gone since the snapshot → MessageGone.

Security:
    Trusts `path` (store/opener.py builds it). Never follows a symbolic link
    at `path` and reads only a regular file. Runs with the server's
    privileges.

See also:
    mbox(5), RFC 4155 (application/mbox), RFC 1939 §8, RFC 9051 §2.3.1.1,
    §2.3.2, RFC 7162 §3.1 (MODSEQ), Dovecot "mbox mailbox format",
    store/mbox.py, store/mbox_parse.py, store/interfaces.py, store/opener.py,
    store/folder.py.
"""

from __future__ import annotations

import bisect
import dataclasses
import errno
import fcntl
import io
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

from postoffice.errors import PermFail, TempFail
from postoffice.smtp import replies
from postoffice.store.interfaces import (
    SEEN,
    SYSTEM_FLAGS,
    FlagMode,
    FolderState,
    MessageGone,
    MessageInfo,
)
from postoffice.store.maildir import fsync_dir, replace_file, storage_error
from postoffice.store.mbox import (
    DotLock,
    MboxLocks,
    append_message,
    from_line,
    same_file,
    try_fcntl_lock,
)
from postoffice.store.mbox_parse import (
    X_STATUS,
    Buffer,
    IndexEntry,
    MboxIndex,
    MboxMessage,
    match,
    parse_index,
    parse_mbox,
    render,
)

_CANONICAL = {f.lower(): f for f in SYSTEM_FLAGS}
_QUIET_NS = 2_000_000_000  # a file changed this recently is read again
_REFRESH = 60.0  # seconds between touches of a session's dot-lock


# --- the folder ---------------------------------------------------------------


@dataclass(slots=True)
class _Scan:
    ident: tuple[int, int, int, int, int]  # dev, ino, size, mtime_ns, ctime_ns (0s: no file)
    taken_ns: int
    messages: list[MboxMessage]  # file order, without a pseudo-message
    mtime: float


@dataclass(slots=True)
class _Handle:
    fd: int


class _SessionLock(_Handle):
    """What try_lock returns: the mbox locked until release()."""

    def __init__(self, folder: MboxFolder, fd: int, dot: DotLock, holder: str) -> None:
        super().__init__(fd)
        self.dot = dot
        self.holder = holder
        self.refreshed = folder._clock()
        self._folder: MboxFolder | None = folder

    def release(self) -> None:
        folder, self._folder = self._folder, None
        if folder is not None:
            folder._release(self)


class MboxFolder:
    """One mbox file as a Folder (see the module manual)."""

    def __init__(
        self,
        path: str,
        *,
        index_path: str,
        name: str = "INBOX",
        attempts: int = 10,
        retry_delay: float = 0.5,
        stale_after: float = 300.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.index_path = index_path
        self._name = name
        self._clock = clock
        self._locks = MboxLocks(
            path,
            attempts=attempts,
            retry_delay=retry_delay,
            stale_after=stale_after,
            sleep=sleep,
            clock=clock,
        )
        self._mutex = threading.RLock()  # one object is shared by sessions' threads
        self._held: _SessionLock | None = None
        self._scan: _Scan | None = None
        self._index: MboxIndex | None = None
        self._index_sig: tuple[int, int, int] | None = None
        self._state: FolderState | None = None
        self._state_sig: tuple[object, ...] | None = None
        self._where: dict[int, MboxMessage] = {}
        self.rebuilt = 0  # times a missing or corrupt index was started over

    @property
    def name(self) -> str:
        return self._name

    # -- reading -------------------------------------------------------

    def sync(self) -> FolderState:
        with self._mutex, self._errors("sync"), self._reading() as fd:
            return self._settle(self._scan_fd(fd))

    def read_cached(self, uid: int) -> bytes | None:
        return None  # reading an mbox takes its locks: always in a worker thread

    def open_message(self, uid: int) -> io.BytesIO:
        with self._mutex, self._errors(f"read uid {uid}"):
            if self._state is None:
                self.sync()
            with self._reading() as fd:
                for attempt in (1, 2):
                    msg = self._where.get(uid)
                    if msg is None or fd is None:
                        break
                    region = _pread(fd, msg.stop, msg.start)
                    scan = self._scan
                    if scan is not None and scan.ident == _ident(os.fstat(fd)):
                        return io.BytesIO(render(region, msg))  # the file is as scanned
                    again = parse_mbox(region)  # it changed: is the message still there?
                    if len(again) == 1 and again[0].key == msg.key:
                        return io.BytesIO(render(region, again[0]))
                    if attempt == 1:  # rewritten by another program: find it again
                        self._settle(self._scan_fd(fd))
        raise MessageGone(uid)

    @contextmanager
    def _reading(self) -> Iterator[int | None]:
        """A descriptor of the mbox under a shared fcntl lock (the session's
        when a session holds the lock), or None when there is no mbox."""
        held = self._held
        if held is not None:
            now = self._clock()
            if now - held.refreshed > _REFRESH:
                held.dot.refresh()  # so that writers do not take it for stale
                held.refreshed = now
            yield held.fd
            return
        flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            fd = os.open(self.path, flags)
        except FileNotFoundError:
            yield None
            return
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.EISDIR, errno.ENOTDIR):
                raise TempFail(replies.LOCAL_ERROR, f"mbox {self.path}: not a file") from e
            raise
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise TempFail(replies.LOCAL_ERROR, f"mbox {self.path}: not a regular file")
            self._locks.fcntl_lock(fd, shared=True)
            yield fd
        finally:
            os.close(fd)

    def _scan_fd(self, fd: int | None, *, data: Buffer | None = None) -> _Scan:
        """The messages of the locked mbox on `fd` (the last scan when unchanged)."""
        if fd is None:
            return _Scan((0, 0, 0, 0, 0), time.time_ns(), [], 0.0)
        st = os.fstat(fd)
        ident = _ident(st)
        scan = self._scan
        now = time.time_ns()
        if (
            data is None
            and scan is not None
            and scan.ident == ident
            and scan.taken_ns - max(st.st_mtime_ns, st.st_ctime_ns) > _QUIET_NS
        ):
            return scan
        if data is None:
            data = _read_all(fd, st.st_size)
        messages = [m for m in parse_mbox(data) if not m.pseudo]
        self._scan = _Scan(ident, now, messages, st.st_mtime)
        return self._scan

    def _settle(
        self, scan: _Scan, *, appended: tuple[int, frozenset[str]] | None = None
    ) -> FolderState:
        """Give the scan's new messages UIDs (durably) and make the snapshot."""
        index = self._load_index()
        if index is not None and self._state is not None and self._state_sig == self._sig(scan):
            return self._state
        where = None
        if index is not None and appended is None:
            where, fresh, gone = match(index, scan.messages)
            if fresh or gone:
                where = None
        if where is None:
            with self._index_locked():
                index, created = self._load_for_update()
                if self._update(index, scan, appended) or created:
                    self._save_index(index)
        assert index is not None
        return self._snapshot(index, scan, where)

    def _sig(self, scan: _Scan) -> tuple[object, ...]:
        return (scan.ident, scan.taken_ns, self._index_sig)

    @staticmethod
    def _update(index: MboxIndex, scan: _Scan, appended: tuple[int, frozenset[str]] | None) -> bool:
        _where, fresh, gone = match(index, scan.messages)
        if gone:
            dead = {e.uid for e in gone}
            index.entries = [e for e in index.entries if e.uid not in dead]
        for m in fresh:
            flags = appended[1] if appended is not None and m.start == appended[0] else m.flags
            index.highestmodseq += 1
            index.entries.append(IndexEntry(index.uidnext, index.highestmodseq, m.key, flags))
            index.uidnext += 1
        return bool(gone or fresh)

    def _snapshot(
        self, index: MboxIndex, scan: _Scan, where: dict[int, MboxMessage] | None = None
    ) -> FolderState:
        if where is None:
            where = match(index, scan.messages)[0]
        self._where = where
        messages = tuple(
            MessageInfo(
                uid=e.uid,
                key=e.key,
                size=where[e.uid].size,
                flags=e.flags,
                internaldate=_date_of(where[e.uid], scan),
                modseq=e.modseq,
            )
            for e in index.entries
            if e.uid in where
        )
        self._state = FolderState(
            uidvalidity=index.uidvalidity,
            uidnext=index.uidnext,
            highestmodseq=index.highestmodseq,
            messages=messages,
        )
        self._state_sig = self._sig(scan)
        return self._state

    # -- changing ------------------------------------------------------

    def store_flags(
        self, uids: Iterable[int], flags: frozenset[str], mode: FlagMode
    ) -> list[MessageInfo]:
        flags = canonical_flags(flags)
        with self._mutex, self._errors("store flags"):
            if self._state is None:
                self.sync()
            scan = self._scan
            assert scan is not None
            changed: list[MessageInfo] = []
            with self._index_locked():
                index, fresh = self._load_for_update()
                if fresh:
                    return []  # the index was lost: these UIDs mean nothing any more
                by_uid = {e.uid: e for e in index.entries}
                for uid in dict.fromkeys(uids):
                    entry = by_uid.get(uid)
                    msg = self._where.get(uid)
                    if entry is None or msg is None or entry.key != msg.key:
                        continue
                    if mode == "add":
                        new = entry.flags | flags
                    elif mode == "remove":
                        new = entry.flags - flags
                    else:
                        new = flags
                    if new == entry.flags:
                        continue
                    index.highestmodseq += 1
                    entry.flags, entry.modseq = new, index.highestmodseq
                    changed.append(
                        MessageInfo(
                            uid=uid,
                            key=entry.key,
                            size=msg.size,
                            flags=new,
                            internaldate=_date_of(msg, scan),
                            modseq=entry.modseq,
                        )
                    )
                if changed:
                    self._save_index(index)
            self._snapshot(index, scan)
            return changed

    def expunge(self, uids: Iterable[int]) -> list[int]:
        want = set(uids)
        with self._mutex, self._errors("expunge"):
            with self._exclusive(create=False) as handle:
                if handle is None:
                    return []
                for _attempt in range(3):
                    removed = self._expunge(handle, want)
                    if removed is not None:
                        return removed
            raise TempFail(replies.MAILBOX_BUSY, f"mbox {self.path}: keeps changing")

    def _expunge(self, handle: _Handle, want: set[int]) -> list[int] | None:
        """One try under both locks; None when the file changed under us."""
        st = os.fstat(handle.fd)
        data = _read_all(handle.fd, st.st_size)
        scan = self._scan_fd(handle.fd, data=data)
        with self._index_locked():
            index, fresh = self._load_for_update()
            changed = self._update(index, scan, None) or fresh
            where = match(index, scan.messages)[0]
            gone = sorted(uid for uid in where if uid in want)
            drop = sorted((where[uid] for uid in gone), key=lambda m: m.start)
            if drop:
                if not self._rewrite(handle, data, st, drop):
                    return None
                dead = set(gone)
                index.entries = [e for e in index.entries if e.uid not in dead]
                index.highestmodseq += 1  # RFC 7162 §3.2.10: an expunge is a change
                scan = self._shifted(handle.fd, scan, drop)
            if drop or changed:
                self._save_index(index)
        self._snapshot(index, scan)
        return gone

    def _rewrite(
        self, handle: _Handle, data: Buffer, st: os.stat_result, drop: list[MboxMessage]
    ) -> bool:
        keep = []
        at = 0
        for m in drop:
            keep.append((at, m.start))
            at = m.start + m.stop
        keep.append((at, len(data)))
        view = memoryview(data)
        tmp = os.path.join(
            os.path.dirname(self.path) or ".",
            f".{os.path.basename(self.path)}.expunge.{os.getpid()}",
        )
        fd = self._create_like(tmp, st)
        if fd is None:  # the owner cannot be kept: rewrite in place
            if os.fstat(handle.fd).st_size != len(data) or not same_file(handle.fd, self.path):
                return False
            out = 0
            for a, b in keep:
                _pwrite_all(handle.fd, view[a:b], out)
                out += b - a
            os.ftruncate(handle.fd, out)
            os.fsync(handle.fd)
            return True
        try:
            out = 0
            for a, b in keep:
                _pwrite_all(fd, view[a:b], out)
                out += b - a
            os.fsync(fd)
            if not try_fcntl_lock(fd):
                raise OSError(errno.EAGAIN, "cannot lock the new mbox")
            # The size check under the lock: a delivery that got in anyway
            # (a writer that ignores our locks) must not be lost.
            if os.fstat(handle.fd).st_size != len(data) or not same_file(handle.fd, self.path):
                os.close(fd)
                _unlink_quietly(tmp)
                return False
            os.rename(tmp, self.path)
        except BaseException:
            os.close(fd)
            _unlink_quietly(tmp)
            raise
        old, handle.fd = handle.fd, fd
        os.close(old)
        fsync_dir(os.path.dirname(self.path) or ".")
        return True

    @staticmethod
    def _create_like(tmp: str, st: os.stat_result) -> int | None:
        """A new file with the mode and owner of `st`; None when the owner cannot be set."""
        _unlink_quietly(tmp)  # debris of a crash
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
        fd = os.open(tmp, flags, 0o600)
        try:
            mine = os.fstat(fd)
            if (mine.st_uid, mine.st_gid) != (st.st_uid, st.st_gid):
                os.fchown(fd, st.st_uid, st.st_gid)
            os.fchmod(fd, stat.S_IMODE(st.st_mode))
        except PermissionError:
            os.close(fd)
            _unlink_quietly(tmp)
            return None
        except BaseException:
            os.close(fd)
            _unlink_quietly(tmp)
            raise
        return fd

    def _shifted(self, fd: int, scan: _Scan, drop: list[MboxMessage]) -> _Scan:
        """The scan of the rewritten file, without reading it again."""
        starts = [m.start for m in drop]
        lengths = [0]
        for m in drop:
            lengths.append(lengths[-1] + m.stop)
        dropped = {id(m) for m in drop}
        messages = [
            dataclasses.replace(m, start=m.start - lengths[bisect.bisect_left(starts, m.start)])
            for m in scan.messages
            if id(m) not in dropped
        ]
        st = os.fstat(fd)
        self._scan = _Scan(_ident(st), time.time_ns(), messages, st.st_mtime)
        return self._scan

    def append(self, source: BinaryIO, *, flags: frozenset[str], internaldate: float | None) -> int:
        flags = canonical_flags(flags)
        arrival = internaldate if internaldate is not None else self._clock()
        with self._mutex, self._errors("append"), self._exclusive(create=True) as handle:
            assert handle is not None
            first = from_line("", arrival)  # From MAILER-DAEMON <date>, as Dovecot
            at = append_message(handle.fd, self.path, source, _status_headers(flags), first)
            scan = self._scan_fd(handle.fd)
            self._settle(scan, appended=(at, flags))
            for uid, m in self._where.items():
                if m.start == at:
                    return uid
        raise TempFail(replies.LOCAL_ERROR, f"mbox {self.path}: appended message not found")

    # -- locking -------------------------------------------------------

    def try_lock(self, holder: str) -> _SessionLock | None:
        with self._mutex, self._errors("lock"):
            if self._held is not None:
                return None
            try:
                handle = self._acquire(create=True)
            except TempFail as e:
                if e.reply == replies.MAILBOX_BUSY:
                    return None
                raise
            assert handle is not None
            fd, dot = handle
            self._held = _SessionLock(self, fd, dot, holder)
            return self._held

    def _release(self, lock: _SessionLock) -> None:
        with self._mutex:
            if self._held is lock:
                self._held = None
            os.close(lock.fd)
            lock.dot.release()

    def _acquire(self, *, create: bool) -> tuple[int, DotLock] | None:
        """Open the mbox and take the dot-lock and the exclusive fcntl lock."""
        try:
            fd = self._locks.open(create=create)
        except FileNotFoundError:
            return None
        except PermFail as e:
            raise TempFail(replies.LOCAL_ERROR, e.reason) from e
        try:
            dot = self._locks.dotlock()
        except BaseException:
            os.close(fd)
            raise
        try:
            self._locks.fcntl_lock(fd)
            if not same_file(fd, self.path):  # replaced while we waited for the locks
                os.close(fd)
                fd = -1
                fd = self._locks.open(create=create)
                self._locks.fcntl_lock(fd)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            dot.release()
            raise
        return fd, dot

    @contextmanager
    def _exclusive(self, *, create: bool) -> Iterator[_Handle | None]:
        """Both locks: the session's (dot-lock renewed) or taken for this call."""
        held = self._held
        if held is not None:
            if not held.dot.refresh():  # removed as stale by a writer: take it again
                held.dot = self._locks.dotlock()
            yield held
            return
        acquired = self._acquire(create=create)
        if acquired is None:
            yield None
            return
        handle = _Handle(acquired[0])
        try:
            yield handle
        finally:
            os.close(handle.fd)
            acquired[1].release()

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except OSError as e:
            raise storage_error(e, f"mbox {self.path}: {what}") from e

    # -- the index file ------------------------------------------------------

    def _index_signature(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.index_path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _load_index(self) -> MboxIndex | None:
        """The current index (cached by file identity); None if missing or corrupt."""
        sig = self._index_signature()
        if sig is None:
            return None
        if self._index is None or sig != self._index_sig:
            try:
                with open(self.index_path, "rb") as f:
                    index = parse_index(f.read())
            except (ValueError, KeyError, FileNotFoundError):
                return None
            self._index, self._index_sig = index, sig
        return self._index

    def _load_for_update(self) -> tuple[MboxIndex, bool]:
        """A private copy to change, or (True) a fresh one with a larger UIDVALIDITY."""
        current = self._load_index()
        if current is not None:
            return current.copy(), False
        self.rebuilt += 1
        previous = max(self._previous_validity(), self._index.uidvalidity if self._index else 0)
        stamp = max(int(self._clock()), previous + 1)
        return MboxIndex(uidvalidity=stamp & 0xFFFFFFFF or 1), True

    def _previous_validity(self) -> int:
        try:
            with open(self.index_path, "rb") as f:
                head = f.read(200).decode("ascii", "replace")
        except OSError:
            return 0
        for line in head.split("\n"):
            if line.startswith("uidvalidity: ") and line[13:].strip().isdigit():
                return int(line[13:].strip())
        return 0

    def _save_index(self, index: MboxIndex) -> None:
        replace_file(self.index_path, index.render())
        self._index, self._index_sig = index.copy(), self._index_signature()

    @contextmanager
    def _index_locked(self) -> Iterator[None]:
        """Exclusive flock of `index_path.lock` (blocks; held briefly, and its
        holders never wait for an mbox lock)."""
        os.makedirs(os.path.dirname(self.index_path) or ".", mode=0o700, exist_ok=True)
        fd = os.open(self.index_path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def canonical_flags(flags: Iterable[str]) -> frozenset[str]:
    """System flags in their RFC 9051 spelling, \\Recent dropped (not stored);
    ValueError for a flag the index cannot hold (empty, spaces, controls)."""
    out = set()
    for flag in flags:
        if not flag or any(c.isspace() or ord(c) < 0x21 or ord(c) == 0x7F for c in flag):
            raise ValueError(f"bad flag {flag!r}")
        if flag.lower() == "\\recent":
            continue
        out.add(_CANONICAL.get(flag.lower(), flag))
    return frozenset(out)


def _status_headers(flags: frozenset[str]) -> bytes:
    """Status / X-Status lines for `flags`, for other mbox readers and rebuilds."""
    head = b"Status: RO\r\n" if SEEN in flags else b"Status: O\r\n"
    letters = "".join(c for c, f in X_STATUS.items() if f in flags)
    return head + (f"X-Status: {letters}\r\n".encode() if letters else b"")


def _date_of(msg: MboxMessage, scan: _Scan) -> float:
    return msg.date if msg.date is not None else scan.mtime


def _ident(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _read_all(fd: int, size: int) -> bytearray:
    """The first `size` octets of the file (fewer if it is shorter), in large reads."""
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = os.preadv(fd, [view[got:]], got)
        if n == 0:
            del view
            del buf[got:]
            break
        got += n
    return buf


def _pread(fd: int, size: int, offset: int) -> bytes:
    chunks = []
    while size > 0:
        chunk = os.pread(fd, size, offset)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
        offset += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
