"""delivery.runas — the helper that becomes a mail user, then runs a program or appends to a file.

Synopsis:
    python -I -m postoffice.delivery.runas program|file STATUS_FD
    (the request, JSON, in the environment variable POSTOFFICE_RUNAS)

Description:
    Pipe and file targets (`|command`, `/path/file` in aliases, .forward
    and .qmail files) are delivered with the privileges of the user the
    target belongs to (issue 3; sendmail and Postfix local(8) do the same).
    A thread cannot change its uid, and changing the uid between fork and
    exec in a process with threads (the server) is not safe in Python, so
    delivery/pipe.py and delivery/file.py start this small helper instead.
    It starts with the server's privileges (root), takes its request from
    the environment, and:

    1. becomes the user: setgroups(supplementary groups), setresgid(gid),
       setresuid(uid), in that order, then checks that all three uids and
       gids changed and that setuid(0) now fails; umask 077;
    2. changes to the user's home directory (to / when that fails);
    3. `program`: resets the signal dispositions Python changed (SIGPIPE,
       SIGXFSZ) and the signal mask, then execve(2)s the program with the
       argument vector and the environment of the request — no shell. The
       program inherits stdin (the message), stdout and stderr (captured by
       the server); the process id, and so the process group the server
       kills on timeout, stays the same;
       `file`: appends stdin (the queued message) to the file with
       store/mbox.py's MboxWriter (From line, mboxrd quoting, dot-lock and
       fcntl lock, truncation back on failure), under an interval timer of
       the request's time limit.

    Its verdict is one JSON line written to STATUS_FD (`Result`); the
    descriptor is close-on-exec, so after a successful execve it is closed
    unwritten and the program's exit status speaks. Exit status: 0
    delivered, 75 (EX_TEMPFAIL) deferred, 77 (EX_NOPERM) or 73
    (EX_CANTCREAT) refused; the server reads the JSON line first.

Security:
    The helper is not set-uid: it has whatever the server that starts it
    has, and trusts the server's request (numeric uid, gid and groups, the
    program's path — already checked against program_dir —, the file
    path). It never runs anything as uid 0 or gid 0: such a request is
    refused before any other step, and the switch is verified (a failed or partial
    setuid aborts; setuid(0) must fail afterwards). Unprivileged servers
    cannot switch users: the request must then name the server's own uid
    and gid, else the helper defers. Everything it needs is imported
    before it drops privileges. `-I` (isolated mode) keeps PYTHON*
    variables and the user's site directory out of it.

    File targets: the path must be absolute and free of ".." components;
    a symbolic link (checked with lstat and again with O_NOFOLLOW by
    MboxWriter), anything but a regular file, and a file with any execute,
    set-uid or set-gid bit are refused (sendmail refuses executable and
    set-id files as alias file targets); a missing file is created mode
    0600 in an existing directory, owned by the user (the directory must
    be writable by the user for the dot-lock). The file's directory must
    exist (no directories are made).

See also:
    delivery/pipe.py, delivery/file.py, store/mbox.py; setresuid(2),
    execve(2); sendmail smrsh(8), Postfix local(8) "EXTERNAL FILE DELIVERY",
    qmail-local(8).
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import stat
import sys
from dataclasses import dataclass, field
from typing import Any, Literal

ENV_VAR = "POSTOFFICE_RUNAS"
EX_OK = 0
EX_CANTCREAT = 73  # sysexits.h
EX_TEMPFAIL = 75
EX_NOPERM = 77

Mode = Literal["program", "file"]
Status = Literal["delivered", "deferred", "bounced"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    """A system user as delivery needs it: ids, groups, home and name."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str

    @classmethod
    def lookup(cls, name: str) -> Account | None:
        """The account from the passwd and group databases; None when unknown (blocking: NSS)."""
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            return None
        try:
            groups = tuple(sorted(set(os.getgrouplist(pw.pw_name, pw.pw_gid))))
        except OSError:
            groups = (pw.pw_gid,)
        return cls(name=pw.pw_name, uid=pw.pw_uid, gid=pw.pw_gid, groups=groups, home=pw.pw_dir)


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """What the helper is to do, as whom (JSON in the environment)."""

    mode: Mode
    uid: int
    gid: int
    groups: tuple[int, ...] = ()
    cwd: str = "/"
    # mode "program"
    program: str = ""  # absolute path of the file to execute
    argv: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    # mode "file"
    path: str = ""
    prefix: str = ""  # Return-Path/Delivered-To lines, CRLF
    sender: str = ""
    arrival: float = 0.0
    timeout: float = 0.0  # seconds; 0 = none

    def to_json(self) -> str:
        return json.dumps(
            {
                "mode": self.mode,
                "uid": self.uid,
                "gid": self.gid,
                "groups": list(self.groups),
                "cwd": self.cwd,
                "program": self.program,
                "argv": list(self.argv),
                "env": self.env,
                "path": self.path,
                "prefix": self.prefix,
                "sender": self.sender,
                "arrival": self.arrival,
                "timeout": self.timeout,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Request:
        """ValueError for anything that is not a request."""
        d: Any = json.loads(text)
        if not isinstance(d, dict) or d.get("mode") not in ("program", "file"):
            raise ValueError("not a runas request")
        env = d.get("env", {})
        if not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env.items()
        ):
            raise ValueError("bad env in runas request")
        return cls(
            mode=d["mode"],
            uid=int(d["uid"]),
            gid=int(d["gid"]),
            groups=tuple(int(g) for g in d.get("groups", ())),
            cwd=str(d.get("cwd", "/")),
            program=str(d.get("program", "")),
            argv=tuple(str(a) for a in d.get("argv", ())),
            env=dict(env),
            path=str(d.get("path", "")),
            prefix=str(d.get("prefix", "")),
            sender=str(d.get("sender", "")),
            arrival=float(d.get("arrival", 0.0)),
            timeout=float(d.get("timeout", 0.0)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """The helper's verdict: a Reply's parts plus a reason for the log."""

    status: Status
    code: int
    enhanced: str
    text: str
    reason: str = ""

    def to_json(self) -> str:
        return json.dumps(
            {
                "status": self.status,
                "code": self.code,
                "enhanced": self.enhanced,
                "text": self.text,
                "reason": self.reason,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Result | None:
        """The result a status line carries; None for anything else."""
        try:
            d = json.loads(text)
            status = d["status"]
            if status not in ("delivered", "deferred", "bounced"):
                return None
            return cls(
                status=status,
                code=int(d["code"]),
                enhanced=str(d["enhanced"]),
                text=str(d["text"]),
                reason=str(d.get("reason", "")),
            )
        except (ValueError, TypeError, KeyError):
            return None

    @property
    def exit_status(self) -> int:
        if self.status == "delivered":
            return EX_OK
        return EX_TEMPFAIL if self.status == "deferred" else EX_NOPERM


class Refused(Exception):
    """The helper will not do what it was asked; carries the Result to report."""

    def __init__(self, result: Result) -> None:
        super().__init__(result.reason)
        self.result = result


def _deferred(enhanced: str, text: str, reason: str) -> Refused:
    return Refused(Result(status="deferred", code=451, enhanced=enhanced, text=text, reason=reason))


def _bounced(code: int, enhanced: str, text: str, reason: str) -> Refused:
    return Refused(Result(status="bounced", code=code, enhanced=enhanced, text=text, reason=reason))


ROOT_REFUSED = "delivery as root refused"


def become(uid: int, gid: int, groups: tuple[int, ...]) -> None:
    """Drop to uid/gid/groups for good; Refused when that cannot be done exactly."""
    if uid == 0 or gid == 0:
        raise _bounced(550, "5.7.1", ROOT_REFUSED, f"request for uid {uid} gid {gid}")
    if os.geteuid() == 0:
        try:
            os.setgroups(list(groups) or [gid])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
        except OSError as e:
            raise _deferred(
                "4.3.0", "cannot change to the recipient's user", f"setuid {uid}: {e.strerror}"
            ) from e
    elif os.geteuid() != uid or os.getegid() != gid:
        raise _deferred(
            "4.3.5",
            "cannot change to the recipient's user",
            f"server not running as root cannot become uid {uid}",
        )
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
        raise _deferred("4.3.0", "cannot change to the recipient's user", "partial setuid")
    try:
        os.setuid(0)
    except OSError:
        return
    raise _deferred("4.3.0", "cannot change to the recipient's user", "setuid(0) succeeded")


def _enter(cwd: str) -> None:
    os.umask(0o077)
    try:
        os.chdir(cwd or "/")
    except OSError:
        os.chdir("/")


def run_program(req: Request, status_fd: int) -> Refused:
    """execve the program; returns only on failure (with what to report)."""
    if not req.program.startswith("/") or not req.argv:
        return _bounced(554, "5.3.5", "program delivery misconfigured", "bad program request")
    os.set_inheritable(status_fd, False)
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores them; exec keeps that
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    try:
        os.execve(req.program, list(req.argv), req.env)
    except OSError as e:
        return _deferred("4.3.0", "cannot execute the program", f"execve: {e.strerror}")


class _TimeLimit(BaseException):
    """Raised by SIGALRM inside MboxWriter; BaseException so it truncates and leaves."""


def check_file_path(path: str) -> None:
    """Refused for a path a File target may not name (before and after the switch)."""
    if not path.startswith("/") or "\0" in path or ".." in path.split("/"):
        raise _bounced(550, "5.7.1", "file delivery refused", f"unsafe file path {path!r}")


def append_file(req: Request) -> Result:
    """Append stdin to req.path as an mbox message (the caller already became the user)."""
    from postoffice.errors import PermFail, TempFail  # imported before the switch by main()
    from postoffice.store.mbox import MboxWriter

    path = req.path
    check_file_path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if not os.path.isdir(os.path.dirname(path) or "/"):
            raise _bounced(
                550, "5.2.0", "cannot create the file", f"{path}: no such directory"
            ) from None
    except OSError as e:
        raise _deferred("4.2.0", "cannot access the file", f"{path}: {e.strerror}") from e
    else:
        if stat.S_ISLNK(st.st_mode):
            raise _bounced(550, "5.2.0", "file delivery refused", f"{path}: symbolic link")
        if not stat.S_ISREG(st.st_mode):
            raise _bounced(550, "5.2.0", "file delivery refused", f"{path}: not a regular file")
        if st.st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH | stat.S_ISUID | stat.S_ISGID):
            raise _bounced(
                550, "5.7.1", "file delivery refused", f"{path}: executable or set-id file"
            )

    def alarm(_sig: int, _frame: object) -> None:
        raise _TimeLimit

    signal.signal(signal.SIGALRM, alarm)
    signal.signal(signal.SIGTERM, alarm)  # the server's graceful kill: undo, then leave
    if req.timeout > 0:
        signal.setitimer(signal.ITIMER_REAL, req.timeout)
    try:
        MboxWriter(path).deliver(
            sys.stdin.buffer,
            prefix=req.prefix.encode("utf-8", "replace"),
            sender=req.sender,
            arrival=req.arrival,
        )
    except TempFail as e:
        r = e.reply
        return Result(
            status="deferred", code=r.code, enhanced=r.enhanced, text=r.text, reason=e.reason
        )
    except PermFail as e:
        r = e.reply
        return Result(
            status="bounced", code=r.code, enhanced=r.enhanced, text=r.text, reason=e.reason
        )
    except _TimeLimit:
        return Result(
            status="deferred",
            code=451,
            enhanced="4.3.0",
            text="file delivery time limit exceeded",
            reason=f"{path}: time limit exceeded",
        )
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return Result(status="delivered", code=250, enhanced="2.0.0", text="delivered to file")


def _report(status_fd: int, result: Result) -> int:
    data = (result.to_json() + "\n").encode("utf-8", "replace")
    try:
        os.write(status_fd, data)
    except OSError:
        pass  # the exit status still tells
    if result.status == "bounced" and result.enhanced == "5.2.0":
        return EX_CANTCREAT
    return result.exit_status


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in ("program", "file") or not args[1].isdigit():
        print("usage: python -m postoffice.delivery.runas program|file STATUS_FD", file=sys.stderr)
        return EX_TEMPFAIL
    status_fd = int(args[1])
    try:
        req = Request.from_json(os.environ.pop(ENV_VAR, ""))
        if req.mode != args[0]:
            raise ValueError("mode mismatch")
    except (ValueError, TypeError, KeyError) as e:
        return _report(
            status_fd,
            Result(
                status="deferred",
                code=451,
                enhanced="4.3.0",
                text="local error in delivery",
                reason=f"runas: bad request: {e}",
            ),
        )
    if req.mode == "file":
        # Import now: after the switch the user may not be able to read the modules.
        import postoffice.errors
        import postoffice.store.mbox  # noqa: F401
    try:
        become(req.uid, req.gid, req.groups)
        _enter(req.cwd)
        if req.mode == "program":
            raise run_program(req, status_fd)
        result = append_file(req)
    except Refused as e:
        result = e.result
    return _report(status_fd, result)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except OSError as exc:  # e.g. the status descriptor is not open
        print(f"runas: {exc}", file=sys.stderr)
        sys.exit(EX_TEMPFAIL)
