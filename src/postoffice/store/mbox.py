"""store.mbox — append one message to an mbox file, mboxrd-quoted, under a dot-lock and fcntl lock.

Description:
    `MboxWriter(path)` implements store.interfaces.MailboxWriter for the
    mbox file at `path`. `deliver()` appends

        From alice@example.org Sat Nov 21 17:27:16 2026
        <prefix and message, LF line endings, mboxrd-quoted>
        <an empty line>

    The "From " line carries the envelope sender (MAILER-DAEMON for the
    null sender; whitespace in an address becomes "_" so the line stays
    parseable) and the arrival time in asctime(3) form, local time, as
    Postfix local(8) writes it. mboxrd quoting: every line matching
    `^>*From ` gets one more ">" (so a reader that removes one ">" from
    each such line recovers the message exactly). CRLF becomes LF; a
    message that does not end in LF gets one; when the file does not end
    in an empty line (a foreign writer), one is added first so the new
    "From " line starts a message.

Locking:
    Two locks, taken in this order and released in reverse, the way Postfix
    local(8) (`mailbox_delivery_lock = fcntl, dotlock`) and Dovecot
    (`mbox_write_locks = dotlock fcntl`) lock, so that mutt, procmail and
    Dovecot see a consistent file:

    1. the dot-lock `path.lock`, created with O_CREAT|O_EXCL (it excludes
       other threads of this process too, which fcntl locks do not). A
       dot-lock older than `stale_after` seconds (default 300) is taken to
       be left by a crashed writer and removed;
    2. an exclusive fcntl record lock on the whole file, the POSIX lock
       Dovecot and Postfix take (fcntl F_SETLK); not flock(2), which is a
       separate lock on Linux. On Linux it is taken as an open-file-
       description lock (F_OFD_SETLK, `try_fcntl_lock`): other processes see
       the same lock, but it also excludes other descriptors of this process
       (a POP3 session's lock keeps this server's own deliveries out) and is
       not dropped when the process closes another descriptor of the file.

    Each lock is tried `attempts` times with `sleep(retry_delay)` between
    tries (`sleep` is injectable so tests never sleep); still busy → TempFail
    450 4.2.1 (MAILBOX_BUSY). The file is opened before the locks are taken;
    when, once locked, `path` no longer names it (a reader's expunge renamed
    a rewritten mbox over it meanwhile, store/mbox_folder.py), the new file is
    opened and locked instead. A dot-lock is removed on release only while it
    is still the one this writer created. `MboxLocks` and `append_message`
    are shared with store/mbox_folder.py, which locks and appends the same way.

Errors:
    The file's length is noted under the lock before writing; on any failure
    while writing or syncing, the file is truncated back to it and synced, so
    a reader never sees half a message, and TempFail is raised (452 4.3.1
    for ENOSPC/EDQUOT, 451 4.3.0 otherwise). `path` that is a directory or a
    symbolic link (opened with O_NOFOLLOW) → PermFail 550 5.2.0. The file is
    created with mode 0600 (and missing parent directories 0700).

Security:
    Trusts `path` (delivery/local.py refuses traversal). Refuses to follow a
    symbolic link at `path`. Runs with the server's privileges.

See also:
    mbox(5) (mboxrd), Postfix local(8) and mailbox_delivery_lock, Dovecot
    mbox locking, fcntl(2) (open file description locks); store/maildir.py,
    store/mbox_folder.py, store/interfaces.py.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import struct
import sys
import time
from collections.abc import Callable
from typing import BinaryIO

from postoffice.errors import PermFail, TempFail
from postoffice.smtp import replies
from postoffice.store.maildir import CHUNK, MAILBOX_UNAVAILABLE, storage_error

_QUOTE = re.compile(rb"^(>*From )", re.MULTILINE)
# A line start that may still become ">*From " once more bytes arrive.
_MAYBE_FROM = re.compile(rb">*(?:F(?:r(?:o(?:m)?)?)?)?")
_WS = re.compile(r"\s")
# Open-file-description locks (Linux 3.15+); the struct below is the 64-bit layout.
_OFD = (
    sys.platform.startswith("linux") and hasattr(fcntl, "F_OFD_SETLK") and struct.calcsize("P") == 8
)

log = logging.getLogger("postoffice.store")


def from_line(sender: str, arrival: float) -> bytes:
    """`From <sender or MAILER-DAEMON> <asctime>` + LF (local time, like Postfix)."""
    who = _WS.sub("_", sender) if sender else "MAILER-DAEMON"
    return f"From {who} {time.asctime(time.localtime(arrival))}\n".encode("utf-8", "replace")


class MboxQuoter:
    """Streaming CRLF → LF conversion and mboxrd quoting of a message.

    Feed chunks to `feed()` and call `finish()` once; each returns bytes
    ready to write. The whole output ends in LF (unless it is empty)."""

    def __init__(self) -> None:
        self._cr = b""  # a CR at the end of the last chunk: maybe half a CRLF
        self._pending = b""  # an undecided line start such as ">>Fro"
        self._at_line_start = True
        self._last = b"\n"  # the last byte returned so far

    def feed(self, data: bytes) -> bytes:
        data = self._cr + data
        self._cr = b""
        if data.endswith(b"\r"):
            self._cr = b"\r"
            data = data[:-1]
        return self._quote(data.replace(b"\r\n", b"\n"))

    def finish(self) -> bytes:
        # What is left cannot be a "From " line: it ended before the space.
        out = self._pending + self._cr
        self._pending = self._cr = b""
        last = out[-1:] if out else self._last
        return out if last == b"\n" else out + b"\n"

    def _quote(self, data: bytes) -> bytes:
        data = self._pending + data
        self._pending = b""
        if not data:
            return b""
        out: list[bytes] = []
        if not self._at_line_start:
            nl = data.find(b"\n")
            if nl < 0:
                self._last = data[-1:]
                return data
            out.append(data[: nl + 1])
            data = data[nl + 1 :]
            self._at_line_start = True
        # `data` starts at a line start: quote its complete lines now.
        nl = data.rfind(b"\n")
        head, tail = data[: nl + 1], data[nl + 1 :]
        if head:
            out.append(_QUOTE.sub(rb">\1", head))
        if tail:
            if _MAYBE_FROM.fullmatch(tail):
                self._pending = tail  # decided when more arrives
            else:
                out.append(_QUOTE.sub(rb">\1", tail))
                self._at_line_start = False
        result = b"".join(out)
        if result:
            self._last = result[-1:]
        return result


class DotLock:
    """A dot-lock this process created; released only while it is still ours."""

    def __init__(self, path: str, ident: tuple[int, int]) -> None:
        self.path = path
        self._ident: tuple[int, int] | None = ident

    def is_ours(self) -> bool:
        """True while `path` is still the file we created (not removed as stale)."""
        if self._ident is None:
            return False
        try:
            st = os.stat(self.path, follow_symlinks=False)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == self._ident

    def refresh(self) -> bool:
        """Touch the lock so others do not take it for stale; False if it is not ours."""
        if not self.is_ours():
            return False
        try:
            os.utime(self.path)
        except OSError:
            return False
        return True

    def release(self) -> None:
        """Remove the lock if it is still ours (idempotent)."""
        if self.is_ours():
            _unlink_quietly(self.path)
        self._ident = None


class MboxLocks:
    """The dot-lock and fcntl lock of one mbox file, each tried `attempts` times.

    Shared by MboxWriter and store/mbox_folder.py's MboxFolder so that both
    lock the same way (see the module manual)."""

    def __init__(
        self,
        path: str,
        *,
        attempts: int = 10,
        retry_delay: float = 1.0,
        stale_after: float = 300.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.lock_path = path + ".lock"
        self.attempts = max(1, attempts)
        self.retry_delay = retry_delay
        self.stale_after = stale_after
        self._sleep = sleep
        self._clock = clock

    def open(self, *, create: bool = True) -> int:
        """The mbox opened read-write (created 0600, parents 0700, when `create`).

        PermFail for a directory or a symbolic link; TempFail for other errors;
        FileNotFoundError when the file is missing and `create` is false."""
        flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW | (os.O_CREAT if create else 0)
        for _ in range(2):
            try:
                fd = os.open(self.path, flags, 0o600)
            except FileNotFoundError as e:  # the file or its parent directory is missing
                if not create:
                    raise
                try:
                    os.makedirs(os.path.dirname(self.path) or ".", mode=0o700, exist_ok=True)
                except OSError as e2:
                    raise storage_error(e2, f"mbox {self.path}: cannot create parent") from e
                continue
            except (IsADirectoryError, NotADirectoryError) as e:
                raise PermFail(MAILBOX_UNAVAILABLE, f"mbox {self.path}: not a file") from e
            except OSError as e:
                if e.errno == errno.ELOOP:
                    raise PermFail(MAILBOX_UNAVAILABLE, f"mbox {self.path}: symlink") from e
                raise storage_error(e, f"mbox {self.path}: open") from e
            return fd
        raise TempFail(replies.LOCAL_ERROR, f"mbox {self.path}: parent directory vanished")

    def dotlock(self) -> DotLock:
        """Create `path.lock` (O_EXCL); TempFail MAILBOX_BUSY when it stays taken."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
        for attempt in range(self.attempts):
            try:
                fd = os.open(self.lock_path, flags, 0o600)
            except FileExistsError:
                if self._remove_if_stale():
                    continue  # retry at once; does not count as a wait
                if attempt + 1 < self.attempts:
                    self._sleep(self.retry_delay)
                continue
            except OSError as e:
                raise storage_error(e, f"mbox {self.path}: dot-lock") from e
            try:
                st = os.fstat(fd)
            except OSError as e:
                os.close(fd)
                _unlink_quietly(self.lock_path)
                raise storage_error(e, f"mbox {self.path}: dot-lock") from e
            try:
                os.write(fd, f"{os.getpid()}\n".encode())
            except OSError:
                pass  # the pid is informative only
            finally:
                os.close(fd)
            return DotLock(self.lock_path, (st.st_dev, st.st_ino))
        raise TempFail(replies.MAILBOX_BUSY, f"mbox {self.path}: dot-lock busy")

    def _remove_if_stale(self) -> bool:
        try:
            st = os.stat(self.lock_path, follow_symlinks=False)
        except FileNotFoundError:
            return True  # released meanwhile
        except OSError:
            return False
        if self._clock() - st.st_mtime < self.stale_after:
            return False
        _unlink_quietly(self.lock_path)
        return True

    def fcntl_lock(self, fd: int, *, shared: bool = False) -> None:
        """The fcntl lock on `fd` (exclusive, or shared for readers); TempFail when busy."""
        for attempt in range(self.attempts):
            try:
                if try_fcntl_lock(fd, shared=shared):
                    return
            except OSError as e:
                raise storage_error(e, f"mbox {self.path}: fcntl lock") from e
            if attempt + 1 < self.attempts:
                self._sleep(self.retry_delay)
        raise TempFail(replies.MAILBOX_BUSY, f"mbox {self.path}: fcntl lock busy")


def try_fcntl_lock(fd: int, *, shared: bool = False) -> bool:
    """One non-blocking try at a whole-file fcntl record lock; False when busy.

    Linux: an open-file-description lock (F_OFD_SETLK). Other processes
    see it as the same POSIX lock that lockf(3) and Postfix, Dovecot and
    procmail take; unlike a classic lockf lock it conflicts with locks
    taken through other descriptors of this very process (a delivery
    thread and a POP3 session of one server exclude each other), and it
    is not dropped when the process closes some other descriptor of the
    file. Elsewhere: lockf(3)."""
    if _OFD:
        kind = fcntl.F_RDLCK if shared else fcntl.F_WRLCK
        # struct flock: l_type, l_whence, l_start, l_len (0: to the end, and
        # beyond), l_pid (must be 0 for OFD locks). fcntl(2).
        arg = struct.pack("hhqqi4x", kind, os.SEEK_SET, 0, 0, 0)
        try:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, arg)
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EAGAIN):
                return False
            raise
        return True
    try:
        fcntl.lockf(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EAGAIN):
            return False
        raise
    return True


def same_file(fd: int, path: str) -> bool:
    """True when `path` still names the file open on `fd` (not renamed over)."""
    try:
        a = os.fstat(fd)
        b = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


class MboxWriter:
    """Append to one mbox file (see the module manual)."""

    def __init__(
        self,
        path: str,
        *,
        attempts: int = 10,
        retry_delay: float = 1.0,
        stale_after: float = 300.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.lock_path = path + ".lock"
        self._locks = MboxLocks(
            path,
            attempts=attempts,
            retry_delay=retry_delay,
            stale_after=stale_after,
            sleep=sleep,
            clock=clock,
        )

    def deliver(self, source: BinaryIO, *, prefix: bytes, sender: str, arrival: float) -> str:
        """Append prefix + source as one message; return the mbox path."""
        locks = self._locks
        fd = locks.open()
        try:
            dot = locks.dotlock()
            try:
                locks.fcntl_lock(fd)
                if not same_file(fd, self.path):
                    # A reader's expunge renamed a new mbox over the one we opened
                    # while we waited: append to the new one, never to the old.
                    os.close(fd)
                    fd = -1
                    fd = locks.open()
                    locks.fcntl_lock(fd)
                append_message(fd, self.path, source, prefix, from_line(sender, arrival))
            finally:
                dot.release()
        finally:
            if fd >= 0:
                os.close(fd)  # closing releases the fcntl lock
        return self.path


def append_message(fd: int, path: str, source: BinaryIO, prefix: bytes, first: bytes) -> int:
    """Append `first` (a From line) and the quoted message at the end of the
    locked mbox open on `fd`, fsync; returns the offset of the From line.

    On failure the file is truncated back and TempFail raised (module manual)."""
    try:
        start = os.fstat(fd).st_size
    except OSError as e:
        raise storage_error(e, f"mbox {path}: fstat") from e
    try:
        lead = _separator(fd, start)
        os.lseek(fd, start, os.SEEK_SET)
        quoter = MboxQuoter()
        pending = lead + first + quoter.feed(prefix + source.read(CHUNK))
        while True:
            data = source.read(CHUNK)
            if not data:
                break
            _write_all(fd, pending)
            pending = quoter.feed(data)
        _write_all(fd, pending + quoter.finish() + b"\n")
        os.fsync(fd)
    except OSError as e:
        _truncate(fd, path, start)
        raise storage_error(e, f"mbox {path}: write") from e
    except BaseException:
        _truncate(fd, path, start)
        raise
    return start + len(lead)


def _separator(fd: int, size: int) -> bytes:
    """What to write first so the new From line follows an empty line."""
    if size == 0:
        return b""
    end = os.pread(fd, 2, max(0, size - 2))
    if end.endswith(b"\n\n") or end == b"\n":
        return b""
    return b"\n" if end.endswith(b"\n") else b"\n\n"


def _truncate(fd: int, path: str, size: int) -> None:
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    except OSError as e:
        # The write failed and so did undoing it: the end of the mbox may hold
        # part of a message. Say so loudly; the queue retries the delivery.
        log.error(
            "mbox %s: cannot truncate back to %d octets after a failed write: %s",
            path, size, e.strerror or e,
        )  # fmt: skip


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
