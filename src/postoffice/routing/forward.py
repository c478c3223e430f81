"""forward — a system user's ~/.forward: where the user sends their own mail.

Description:
    For a system account (`[delivery] system_users`) that no alias claimed,
    sendmail reads the first of these that exists (its default ForwardPath,
    `$z/.forward.$w+$h:$z/.forward+$h:$z/.forward.$w:$z/.forward`; $z the
    home directory, $w this host's short name, $h the +detail):

        ~/.forward.HOST+DETAIL   ~/.forward+DETAIL   ~/.forward.HOST   ~/.forward

    (the +DETAIL names only for a recipient user+detail). Its lines hold
    targets in the aliases grammar (maps.aliases.parse_targets; one or
    more per line, separated by commas); lines starting with "#" and
    blank lines are skipped. The kinds are those of routing/aliases.py:
    addresses, "|command", /file, :include:file and `\\user`, which
    delivers to the user's own mailbox without reading .forward again
    (sendmail: a quoted name is neither aliased nor forwarded).

    A .forward with no targets at all is as if there were none: sendmail
    marks the user expanded only when the file added recipients
    (recipient.c include(): `nincludes > 0`), so the mail is delivered to
    the mailbox. A file listing its own user delivers there too (the loop
    rule in routing/resolve.py).

    `read_home_file` reads one file of a home directory for this module
    and routing/dotqmail.py: missing files are "missing"; a file that
    fails maps.safefile.check_file (writable by group or others, owned by
    someone other than root, the server or the user) is "unsafe" and
    skipped with a log line, as sendmail skips an unsafe .forward and
    tries the next name; any other error is "unreadable" and also skipped.

Security:
    A .forward is the user's: its programs and files run as that user
    (routing/resolve.py puts the user into the Program and File targets),
    never as root. Files are read up to MAX_FILE bytes.

Config:
    [routing] forward_files, [maps] safe_files, hostname.

See also:
    sendmail recipient.c (forward, include), op.me (ForwardPath),
    aliases(5), routing/aliases.py, routing/dotqmail.py.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

MAX_FILE = 256 * 1024  # bytes read from one .forward or .qmail file


@dataclass(frozen=True, slots=True, kw_only=True)
class HomeFile:
    """One file read from a home directory."""

    path: str
    status: Literal["ok", "missing", "unsafe", "unreadable"]
    text: str = ""
    problem: str = ""
    executable: bool = False  # any x bit (dot-qmail(5) restricts such files)


def safe_component(name: str) -> bool:
    """True when `name` may be part of a file name in a home directory."""
    return bool(name) and "/" not in name and "\x00" not in name and name not in (".", "..")


def read_home_file(
    path: str,
    *,
    uid: int,
    check_file: Callable[..., str | None] | None,
) -> HomeFile:
    """Read `path` (see the manual); `check_file` None skips the safe-file check."""
    try:
        st = os.stat(path)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return HomeFile(path=path, status="missing")
        return HomeFile(path=path, status="unreadable", problem=e.strerror or str(e))
    if not stat.S_ISREG(st.st_mode):
        return HomeFile(path=path, status="unreadable", problem="not a regular file")
    if check_file is not None:
        problem = check_file(path, allowed_uids=frozenset({uid}))
        if problem:
            return HomeFile(path=path, status="unsafe", problem=problem)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE + 1)
    except OSError as e:
        return HomeFile(path=path, status="unreadable", problem=e.strerror or str(e))
    problem = ""
    if len(data) > MAX_FILE:
        data, problem = data[:MAX_FILE], f"longer than {MAX_FILE} bytes: the rest is ignored"
    return HomeFile(
        path=path,
        status="ok",
        text=data.decode("utf-8", errors="replace"),
        problem=problem,
        executable=bool(st.st_mode & 0o111),
    )


def forward_paths(home: str, *, detail: str, hostname: str) -> list[str]:
    """The .forward names to try, in sendmail's ForwardPath order."""
    host = hostname.split(".", 1)[0].lower() if hostname else ""
    names: list[str] = []
    if safe_component(detail):
        if safe_component(host):
            names.append(f".forward.{host}+{detail}")
        names.append(f".forward+{detail}")
    if safe_component(host):
        names.append(f".forward.{host}")
    names.append(".forward")
    return [os.path.join(home, n) for n in names]


def parse_forward(text: str, parse_targets: Callable[[str], list[str]]) -> list[tuple[str, int]]:
    """(target, line number) for each target of a .forward text."""
    out: list[tuple[str, int]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        for target in parse_targets(line):
            target = target.strip()
            if target:
                out.append((target, number))
    return out
