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
    2. `fcntl.lockf(fd, LOCK_EX | LOCK_NB)` on the whole file: a POSIX
       record lock (fcntl F_SETLK), the kind Dovecot and Postfix use; not
       flock(2), which is a separate lock on Linux.

    Each lock is tried `attempts` times with `sleep(retry_delay)` between
    tries (`sleep` is injectable so tests never sleep); still busy → TempFail
    450 4.2.1 (MAILBOX_BUSY).

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
    mbox locking; store/maildir.py, store/interfaces.py.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
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
        self.attempts = max(1, attempts)
        self.retry_delay = retry_delay
        self.stale_after = stale_after
        self._sleep = sleep
        self._clock = clock

    def deliver(self, source: BinaryIO, *, prefix: bytes, sender: str, arrival: float) -> str:
        """Append prefix + source as one message; return the mbox path."""
        fd = self._open()
        try:
            self._dotlock()
            try:
                self._lockf(fd)
                self._append(fd, source, prefix, from_line(sender, arrival))
            finally:
                _unlink_quietly(self.lock_path)
        finally:
            os.close(fd)  # closing releases the fcntl lock
        return self.path

    # --- opening and locking ----------------------------------------------------

    def _open(self) -> int:
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        for _ in range(2):
            try:
                fd = os.open(self.path, flags, 0o600)
            except FileNotFoundError as e:  # the parent directory is missing
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

    def _dotlock(self) -> None:
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
                os.write(fd, f"{os.getpid()}\n".encode())
            except OSError:
                pass  # the pid is informative only
            finally:
                os.close(fd)
            return
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

    def _lockf(self, fd: int) -> None:
        for attempt in range(self.attempts):
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError as e:
                if e.errno not in (errno.EACCES, errno.EAGAIN):
                    raise storage_error(e, f"mbox {self.path}: fcntl lock") from e
            if attempt + 1 < self.attempts:
                self._sleep(self.retry_delay)
        raise TempFail(replies.MAILBOX_BUSY, f"mbox {self.path}: fcntl lock busy")

    # --- writing ---------------------------------------------------------------

    def _append(self, fd: int, source: BinaryIO, prefix: bytes, first: bytes) -> None:
        try:
            start = os.fstat(fd).st_size
        except OSError as e:
            raise storage_error(e, f"mbox {self.path}: fstat") from e
        try:
            lead = self._separator(fd, start)
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
            self._truncate(fd, start)
            raise storage_error(e, f"mbox {self.path}: write") from e
        except BaseException:
            self._truncate(fd, start)
            raise

    @staticmethod
    def _separator(fd: int, size: int) -> bytes:
        """What to write first so the new From line follows an empty line."""
        if size == 0:
            return b""
        end = os.pread(fd, 2, max(0, size - 2))
        if end.endswith(b"\n\n") or end == b"\n":
            return b""
        return b"\n" if end.endswith(b"\n") else b"\n\n"

    def _truncate(self, fd: int, size: int) -> None:
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        except OSError as e:
            # The write failed and so did undoing it: the end of the mbox may hold
            # part of a message. Say so loudly; the queue retries the delivery.
            log.error(
                "mbox %s: cannot truncate back to %d octets after a failed write: %s",
                self.path, size, e.strerror or e,
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
