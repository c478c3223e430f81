"""maps/safefile — sendmail's safe-file checks, and reading a map file under them.

Description:
    A map decides where mail goes, so a map anyone else can change is a
    way into every mailbox and, through `|program` aliases, into a shell.
    sendmail therefore refuses map, aliases, `:include:` and `.forward`
    files that are not safe (its "SafeFileEnvironment" checks), and so does
    postoffice when `[maps] safe_files` is on (the default):

        check_file(path, *, allowed_uids=()) -> str | None
            None when `path` is safe, else the reason, e.g.
            "writable by group (mode 0664)". Safe means: a regular file
            (symbolic links are followed), not writable by group or others,
            owned by root, by the server's own uid or by one of
            `allowed_uids` (the user whose ~/.forward or :include: file it
            is), and its directory passes check_dir().

        check_dir(path, *, allowed_uids=()) -> str | None
            The same for a directory: owned by root, the server or one of
            `allowed_uids`, and not writable by group or others unless the
            sticky bit is set (/tmp: others may add files but not replace
            this one).

        read_file(path, *, safe_files, allowed_uids=(), what="map", log=True)
                -> FileContents
            Opens `path`, checks what was opened (fstat on the descriptor,
            so a rename between check and read cannot swap the file) and
            reads it. A missing file is `missing=True` (an empty map, not a
            problem); a refusal is `refused="reason"` and logs a warning
            naming the file and the reason on the "postoffice.maps" logger.

        file_signature(path) -> Signature | None
            (device, inode, size, mtime_ns, ctime_ns) — one stat; maps
            compare signatures to notice a changed file (ctime also moves
            on chmod/chown, so fixing a refused file's mode is noticed).

    Only the file and its parent directory are examined, not every
    directory up to /, which is the part of sendmail's checks that matters
    for files in /etc and in home directories.

Security:
    Trusts root and the server's own uid; `allowed_uids` widens that for a
    user's own files. It never changes a file's mode or owner.

Config:
    [maps] safe_files.

See also:
    sendmail's SafeFileEnvironment / DontBlameSendmail (op.me §"Security");
    maps/registry.py, maps/aliases.py (read_include).
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Collection
from dataclasses import dataclass

log = logging.getLogger("postoffice.maps")

Signature = tuple[int, int, int, int, int]
"""(st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns) of a file."""


def _trusted(uid: int, allowed_uids: Collection[int]) -> bool:
    return uid == 0 or uid == os.geteuid() or uid in allowed_uids


def _owner_reason(what: str, st: os.stat_result) -> str:
    return f"{what} owned by uid {st.st_uid}, not root or the server's user"


def check_stat(st: os.stat_result, *, allowed_uids: Collection[int] = ()) -> str | None:
    """The safe-file verdict for the file whose stat (or fstat) is `st`."""
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    mode = stat.S_IMODE(st.st_mode)
    if mode & stat.S_IWOTH:
        return f"writable by others (mode {mode:04o})"
    if mode & stat.S_IWGRP:
        return f"writable by group (mode {mode:04o})"
    if not _trusted(st.st_uid, allowed_uids):
        return _owner_reason("file", st)
    return None


def check_dir(path: str, *, allowed_uids: Collection[int] = ()) -> str | None:
    """None when the directory `path` is safe to hold a map, else the reason."""
    try:
        st = os.stat(path)
    except OSError as e:
        return f"directory {path}: cannot stat: {e.strerror or e}"
    if not stat.S_ISDIR(st.st_mode):
        return f"{path}: not a directory"
    mode = stat.S_IMODE(st.st_mode)
    sticky = bool(mode & stat.S_ISVTX)
    if mode & stat.S_IWOTH and not sticky:
        return f"directory {path} writable by others (mode {mode:04o})"
    if mode & stat.S_IWGRP and not sticky:
        return f"directory {path} writable by group (mode {mode:04o})"
    if not _trusted(st.st_uid, allowed_uids):
        return _owner_reason(f"directory {path}", st)
    return None


def _parent(path: str) -> str:
    return os.path.dirname(os.path.realpath(path)) or "."


def check_file(path: str, *, allowed_uids: Collection[int] = ()) -> str | None:
    """None when `path` is a safe map file (see the module docstring), else the reason."""
    try:
        st = os.stat(path)
    except OSError as e:
        return f"cannot stat: {e.strerror or e}"
    reason = check_stat(st, allowed_uids=allowed_uids)
    if reason is None:
        reason = check_dir(_parent(path), allowed_uids=allowed_uids)
    return reason


def file_signature(path: str) -> Signature | None:
    """What identifies the file's current content cheaply; None when it does not exist."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def signature_of(st: os.stat_result) -> Signature:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass(frozen=True, slots=True, kw_only=True)
class FileContents:
    """What read_file() found: the bytes, or why there are none."""

    path: str
    data: bytes = b""
    missing: bool = False  # no such file: an empty map, not a problem
    refused: str = ""  # the safe-file reason the file was refused for
    error: str = ""  # could not be read (permission denied, a directory ...)
    signature: Signature | None = None

    @property
    def problem(self) -> str:
        """The one problem line for a file that could not be used ("" when fine)."""
        if self.refused:
            return f"{self.path}: unsafe file refused: {self.refused}"
        if self.error:
            return f"{self.path}: cannot read: {self.error}"
        return ""


def refuse(path: str, reason: str, what: str = "map") -> None:
    """Log the refusal of an unsafe file (one warning line naming file and reason)."""
    log.warning("%s: refusing unsafe %s file: %s ([maps] safe_files)", path, what, reason)


def read_file(
    path: str,
    *,
    safe_files: bool,
    allowed_uids: Collection[int] = (),
    what: str = "map",
    log: bool = True,
) -> FileContents:
    """Read `path` whole, after the safe-file checks when `safe_files` is on.

    A refusal is logged (see refuse()) unless `log` is off (`config check`
    prints the problem itself).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return FileContents(path=path, missing=True)
    except OSError as e:
        if e.errno == errno.ENOTDIR:
            return FileContents(path=path, missing=True)
        return FileContents(path=path, error=e.strerror or str(e))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return FileContents(path=path, error="not a regular file", signature=signature_of(st))
        if safe_files:
            reason = check_stat(st, allowed_uids=allowed_uids) or check_dir(
                _parent(path), allowed_uids=allowed_uids
            )
            if reason:
                if log:
                    refuse(path, reason, what)
                return FileContents(path=path, refused=reason, signature=signature_of(st))
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return FileContents(path=path, data=b"".join(chunks), signature=signature_of(st))
    except OSError as e:
        return FileContents(path=path, error=e.strerror or str(e))
    finally:
        os.close(fd)


__all__ = [
    "FileContents",
    "Signature",
    "check_dir",
    "check_file",
    "check_stat",
    "file_signature",
    "read_file",
    "refuse",
    "signature_of",
]
