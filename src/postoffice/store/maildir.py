"""store.maildir — deliver one message into a Maildir: tmp/, fsync, rename into new/, fsync new/.

Description:
    `MaildirWriter(path)` implements store.interfaces.MailboxWriter for the
    Maildir at `path`. `deliver()` stores the prefix and the message and
    returns the path of the new file in `new/`. It takes no lock: the
    Maildir protocol needs none (maildir(5)).

    Steps (maildir(5) by D. J. Bernstein, Courier's maildir(5), Dovecot):

    1. create `tmp/NAME` with O_CREAT|O_EXCL, mode 0600; when `tmp/` is
       missing, make the Maildir first (`make_maildir`: `cur/ new/ tmp/`,
       0700, parents included);
    2. write the prefix and the message, CRLF turned into LF (the Unix
       convention of Postfix local(8) and Dovecot), reading `source` in
       64 KiB chunks so a 35 MiB message never sits in memory whole;
    3. fsync the file; close it;
    4. rename it to `new/NAME,S=<size>,W=<vsize>`;
    5. fsync `new/` — only now is the message durable and is the name
       returned.

    NAME is `<sec>.M<usec>P<pid>Q<n>R<random>.<host>`: seconds and
    microseconds of the delivery, process id, a per-process delivery
    counter, 64 random bits (unique even when pids repeat across
    containers or hosts share a name) and the host name with "/" as
    "\\057", ":" as "\\072" and "," as "\\054" (Courier's escapes). `,S=` is
    the stored size in octets and `,W=` the size with CRLF line endings
    (RFC 5322 size, what POP3 LIST and IMAP RFC822.SIZE report), both as
    Dovecot writes them so readers need not stat or read the file.

    Where the kernel offers it (Linux O_TMPFILE, with /proc mounted), steps
    1-4 use an unnamed file instead: `open(new/, O_TMPFILE)`, write, fsync,
    then `linkat` it into `new/` under its final name. The message is still
    invisible until complete and durable before `new/` is fsynced, but the
    Maildir directories change once instead of twice (a create in tmp/ and
    a rename across directories, each taking the directory locks that 20
    concurrent deliveries to one mailbox fight over), and a crash leaves
    no debris in tmp/: the kernel frees an unlinked inode. Any other
    kernel, or an error that says O_TMPFILE is unsupported, falls back to
    tmp/ and rename for the rest of the process.

States:
    A message is in exactly one of: nowhere, tmp/ (being written; removed
    on any failure), new/ (complete and fsynced). A crash can leave a file
    in tmp/; maildir(5) readers delete tmp/ files older than 36 hours.

Errors:
    Any OSError while writing, syncing or renaming removes the tmp file
    (and, when the final directory fsync fails, the new/ file: its
    durability is unknown and the queue will retry) and raises TempFail:
    452 4.3.1 for ENOSPC/EDQUOT, 451 4.3.0 otherwise. A `path` (or
    `path/tmp`) that exists and is not a directory raises PermFail with
    MAILBOX_UNAVAILABLE, 550 5.2.0 (RFC 3463 §3.3, X.2.0: "Other or
    undefined mailbox status" — the mailbox exists but cannot be used).
    The reply text never contains the path; the reason (for the log) does.

Security:
    Trusts `path`: delivery/local.py builds it and refuses traversal.
    Creates files 0600 and directories 0700 whatever the umask allows less.
    Runs with the server's privileges.

See also:
    maildir(5) (cr.yp.to/proto/maildir.html), Courier maildir(5), Dovecot
    "Maildir" documentation; store/interfaces.py, store/mbox.py,
    delivery/local.py.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import threading
import time
from typing import BinaryIO

from postoffice.errors import PermFail, TempFail
from postoffice.smtp import replies
from postoffice.smtp.replies import Reply

# RFC 3463 §3.3: X.2.0 "Other or undefined mailbox status".
MAILBOX_UNAVAILABLE = Reply.of(550, "5.2.0", "Mailbox unavailable")

CHUNK = 64 * 1024
_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_counter = itertools.count(1)  # next() is atomic under the GIL: one sequence per process
_MAX_NAME_TRIES = 5
# Linux O_TMPFILE + linkat via /proc (see the manual); cleared at the first sign
# that this system cannot, so later deliveries go straight to tmp/ and rename.
_tmpfile_ok = hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd")


class _NoProc(Exception):
    """linkat through /proc/self/fd failed: fall back to tmp/ and rename."""


def storage_error(exc: OSError, what: str) -> TempFail:
    """The TempFail for an OSError: 452 4.3.1 when out of space or quota, else 451 4.3.0."""
    reply = replies.INSUFFICIENT_STORAGE if exc.errno in _SPACE_ERRNOS else replies.LOCAL_ERROR
    return TempFail(reply, f"{what}: {exc.strerror or exc}")


def escape_host(host: str) -> str:
    """The host part of a Maildir name: "/" → \\057, ":" → \\072, "," → \\054."""
    return host.replace("/", "\\057").replace(":", "\\072").replace(",", "\\054")


def unique_name(*, now_ns: int, pid: int, seq: int, host: str, rand: str) -> str:
    """`<sec>.M<usec>P<pid>Q<seq>R<rand>.<host>` (maildir(5), Courier's form plus R).

    `now_ns` is the time in nanoseconds (time.time_ns())."""
    sec, usec = divmod(now_ns // 1000, 1_000_000)
    return f"{sec}.M{usec}P{pid}Q{seq}R{rand}.{escape_host(host)}"


def make_maildir(path: str) -> None:
    """Create the Maildir `path` (cur/, new/, tmp/, mode 0700) and its parents; what exists stays.

    Raises PermFail when `path` or one of its subdirectories exists and is
    not a directory, TempFail on any other OSError."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        for sub in ("cur", "new", "tmp"):
            try:
                os.mkdir(os.path.join(path, sub), 0o700)
            except FileExistsError:
                if not os.path.isdir(os.path.join(path, sub)):
                    raise NotADirectoryError(errno.ENOTDIR, "not a directory") from None
    except (FileExistsError, NotADirectoryError) as e:
        raise PermFail(MAILBOX_UNAVAILABLE, f"maildir {path}: not a directory") from e
    except OSError as e:
        raise storage_error(e, f"maildir {path}: cannot create") from e


def fsync_dir(path: str) -> None:
    """fsync a directory, making the renames into it durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(path: str, data: bytes) -> None:
    """Put `data` at `path` durably, all or nothing (CONVENTIONS.md §9): a
    temp file next to it (0600), fsync, rename over `path`, fsync the
    directory. OSError propagates; the temp file is gone either way. Thread
    safe: the temp name carries the process and thread."""
    tmp = f"{path}.tmp.{os.getpid()}.{threading.get_ident()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    fsync_dir(os.path.dirname(path) or ".")


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class MaildirWriter:
    """Deliver into one Maildir (see the module manual)."""

    def __init__(self, path: str, *, hostname: str | None = None) -> None:
        self.path = path
        self.hostname = hostname or socket.gethostname()

    def deliver(self, source: BinaryIO, *, prefix: bytes, sender: str, arrival: float) -> str:
        """Store prefix + source; return the new file's path. See the module manual."""
        del sender, arrival  # Maildir keeps no envelope line
        global _tmpfile_ok
        if _tmpfile_ok:
            fd = self._open_unnamed()
            if fd is not None:
                return self._deliver_unnamed(fd, source, prefix)
        tmp_path, fd = self._create_tmp()
        try:
            try:
                size, lines = self._write(fd, source, prefix)
                os.fsync(fd)
            finally:
                os.close(fd)
            final = os.path.join(
                self.path, "new", f"{os.path.basename(tmp_path)},S={size},W={size + lines}"
            )
            os.rename(tmp_path, final)
        except OSError as e:
            _unlink_quietly(tmp_path)
            raise storage_error(e, f"maildir {self.path}: write") from e
        except BaseException:
            _unlink_quietly(tmp_path)
            raise
        try:
            fsync_dir(os.path.join(self.path, "new"))
        except OSError as e:
            _unlink_quietly(final)
            raise storage_error(e, f"maildir {self.path}: fsync new/") from e
        return final

    def _open_unnamed(self) -> int | None:
        """An O_TMPFILE descriptor in new/, or None when the kernel cannot (fallback)."""
        global _tmpfile_ok
        new = os.path.join(self.path, "new")
        flags = os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC
        for attempt in (1, 2):
            try:
                return os.open(new, flags, 0o600)
            except FileNotFoundError as e:
                if attempt == 2:
                    raise storage_error(e, f"maildir {self.path}: new/ vanished") from e
                make_maildir(self.path)
            except NotADirectoryError as e:
                raise PermFail(MAILBOX_UNAVAILABLE, f"maildir {self.path}: not a directory") from e
            except OSError as e:
                if e.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                    _tmpfile_ok = False  # this kernel or filesystem has no O_TMPFILE
                    return None
                raise storage_error(e, f"maildir {self.path}: create in new/") from e
        return None

    def _deliver_unnamed(self, fd: int, source: BinaryIO, prefix: bytes) -> str:
        global _tmpfile_ok
        new = os.path.join(self.path, "new")
        dir_fd = -1
        try:
            size, lines = self._write(fd, source, prefix)
            os.fsync(fd)
            dir_fd = os.open(new, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            for _ in range(_MAX_NAME_TRIES):
                name = f"{self._new_name()},S={size},W={size + lines}"
                try:
                    # linkat(AT_FDCWD, "/proc/self/fd/N", new/, name, AT_SYMLINK_FOLLOW)
                    # gives the unnamed inode its name (a dst_dir_fd makes it linkat).
                    os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=dir_fd)
                    break
                except FileExistsError:
                    continue
                except OSError as e:
                    if e.errno not in (errno.ENOENT, errno.EXDEV, errno.EPERM):
                        raise
                    _tmpfile_ok = False  # no usable /proc: tmp/ and rename from now on
                    raise _NoProc from e
            else:
                raise FileExistsError(errno.EEXIST, "no unique name in new/")
            final = os.path.join(new, name)
            try:
                os.fsync(dir_fd)  # only now is the message durable
            except OSError:
                _unlink_quietly(final)
                raise
        except _NoProc:
            source.seek(0)
            return self.deliver(source, prefix=prefix, sender="", arrival=0.0)
        except OSError as e:
            raise storage_error(e, f"maildir {self.path}: write") from e
        finally:
            os.close(fd)
            if dir_fd >= 0:
                os.close(dir_fd)
        return final

    def _new_name(self) -> str:
        return unique_name(
            now_ns=time.time_ns(),
            pid=os.getpid(),
            seq=next(_counter),
            host=self.hostname,
            rand=os.urandom(8).hex(),
        )

    def _create_tmp(self) -> tuple[str, int]:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
        made = False
        tries = 0
        while True:
            name = self._new_name()
            tmp_path = os.path.join(self.path, "tmp", name)
            try:
                return tmp_path, os.open(tmp_path, flags, 0o600)
            except FileNotFoundError as e:
                if made:
                    raise storage_error(e, f"maildir {self.path}: tmp/ vanished") from e
                make_maildir(self.path)
                made = True
            except NotADirectoryError as e:
                raise PermFail(MAILBOX_UNAVAILABLE, f"maildir {self.path}: not a directory") from e
            except FileExistsError as e:
                tries += 1
                if tries >= _MAX_NAME_TRIES:
                    raise storage_error(e, f"maildir {self.path}: no unique name") from e
            except OSError as e:
                raise storage_error(e, f"maildir {self.path}: create in tmp/") from e

    @staticmethod
    def _write(fd: int, source: BinaryIO, prefix: bytes) -> tuple[int, int]:
        """Write prefix + source with CRLF → LF; return (octets written, LF count)."""
        size = 0
        lines = 0
        pending = prefix + source.read(CHUNK)
        while pending:
            following = source.read(CHUNK)
            if following and pending.endswith(b"\r"):
                # A CRLF may straddle two reads: move the CR to the next round.
                pending = pending[:-1]
                following = b"\r" + following
            out = pending.replace(b"\r\n", b"\n")
            _write_all(fd, out)
            size += len(out)
            lines += out.count(b"\n")
            pending = following
        return size, lines


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
