"""users — who a local name is: a virtual user, a system account, or nobody; and their mailbox.

Description:
    The last step of local resolution (routing/resolve.py step 5). A
    local name that no alias claimed is looked up

    1. as a virtual user: `user_exists("local@domain")` (the users file,
       auth/passwd_file.py), then the bare `local` (passwd-files may hold
       domain-less names). The mailbox is `[delivery] mailbox` filled the
       way delivery/local.py's `mailbox_for` fills it: `{user}` is the local
       part unquoted and lower-cased, `{domain}` the domain, `{address}`
       both (Postfix local(8) folds the local part; RFC 5321 §2.4 makes
       domains case-insensitive);
    2. as a system account, when `[delivery] system_users` is on, through
       an injected `getpwnam` (default `pwd.getpwnam`) with the local part
       lower-cased, as sendmail's finduser does. Its mailbox is
       `~/Maildir/` when that directory exists (qmail's convention), else
       `[delivery] system_mailbox` with `{user}` filled — `/var/spool/mail/USER`
       by default (sendmail's local mailer, seed 002).

    `user+detail` and qmail's `user-ext`: `splits()` lists the ways a local
    part divides into user and detail at the recipient delimiter, the
    longest user first, as qmail-getpw(8) searches for the longest prefix
    that is an account ("mary-jane-news" finds the account "mary-jane" with
    extension "news"). The whole local part is always tried before any
    split.

Security:
    The values put into a mailbox path come from the envelope: a name that
    is empty, contains "/", "\\", NUL or another control character, "..",
    or starts with "." is refused (`UnsafeName`; routing answers
    553 5.1.3) before any path exists — the same rules as
    delivery/local.py, repeated here because routing sits below delivery in
    the layers (DESIGN.md) and may not import it. A name that is root
    (uid 0) never runs programs or writes files (`is_root`): pipe and file
    targets belong to an unprivileged user.

Config:
    [delivery] mailbox, system_users, system_mailbox; [routing]
    recipient_delimiter.

See also:
    delivery/local.py (mailbox_for), auth/passwd_file.py, qmail-getpw(8),
    qmail-users(5), sendmail recipient.c (finduser), RFC 5321 §2.4.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Protocol

_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f/\\]")
MAX_SPLITS = 4  # at most this many user/detail divisions are tried per local part


class PasswdEntry(Protocol):
    """What routing needs of a `pwd.struct_passwd` (tests pass their own)."""

    @property
    def pw_name(self) -> str: ...
    @property
    def pw_uid(self) -> int: ...
    @property
    def pw_dir(self) -> str: ...


GetPwNam = Callable[[str], PasswdEntry]


class UnsafeName(ValueError):
    """A name that must not become part of a mailbox path."""


def unquote(local: str) -> str:
    """`"john doe"` → `john doe` (RFC 5321 §4.1.2 Quoted-string); others unchanged."""
    if len(local) >= 2 and local[0] == '"' and local[-1] == '"':
        return re.sub(r"\\(.)", r"\1", local[1:-1])
    return local


def is_quoted(local: str) -> bool:
    return local.startswith('"')


def _check(value: str, what: str) -> str:
    if not value or value.startswith(".") or ".." in value or _BAD_CHARS.search(value):
        raise UnsafeName(f"unsafe {what} {value!r} for a mailbox path")
    return value


def fill_mailbox(template: str, local: str, domain: str) -> str:
    """The mailbox spec for a virtual user (`maildir:/srv/mail/example.com/alice`).

    Raises UnsafeName for a local part or domain that must not name a path.
    """
    scheme, _, path = template.partition(":")
    user = _check(unquote(local).lower(), "local part")
    if "{domain}" in path or "{address}" in path:
        domain = _check(domain.lower(), "domain")
    address = f"{user}@{domain}" if domain else user
    path = path.replace("{user}", user).replace("{domain}", domain).replace("{address}", address)
    return f"{scheme}:{path}"


def system_mailbox(pw: PasswdEntry, template: str) -> str:
    """`maildir:~/Maildir` when that directory exists, else `template` for the account."""
    home = pw.pw_dir
    if home and os.path.isabs(home) and home != "/":
        maildir = os.path.join(home, "Maildir")
        if os.path.isdir(maildir):
            return f"maildir:{maildir}"
    scheme, _, path = template.partition(":")
    user = _check(pw.pw_name, "user name")
    return f"{scheme}:{path.replace('{user}', user)}"


def splits(local: str, delimiter: str) -> list[tuple[str, str]]:
    """(user, detail) divisions of `local` at `delimiter`, the longest user first.

    "a+b+c" with "+" → [("a+b", "c"), ("a", "b+c")]. Empty when there is no
    delimiter, the delimiter is empty or the local part is quoted. A user
    part is never empty.
    """
    if not delimiter or delimiter not in local or is_quoted(local):
        return []
    out: list[tuple[str, str]] = []
    end = len(local)
    while len(out) < MAX_SPLITS:
        i = local.rfind(delimiter, 0, end)
        if i <= 0:
            break
        out.append((local[:i], local[i + len(delimiter) :]))
        end = i
    return out


def lookup_system(getpwnam: GetPwNam, name: str) -> PasswdEntry | None:
    """The account `name` (lower-cased) or None; never raises for odd names."""
    name = unquote(name).lower()
    if not name or _BAD_CHARS.search(name) or "\x00" in name or name.startswith("."):
        return None
    try:
        return getpwnam(name)
    except (KeyError, ValueError, OSError):
        return None


def is_root(getpwnam: GetPwNam, user: str) -> bool:
    """True when `user` is root or any account with uid 0."""
    if user == "root" or user == "0":
        return True
    pw = lookup_system(getpwnam, user)
    return pw is not None and pw.pw_uid == 0


def locate_mailbox(
    login: str,
    *,
    mailbox_template: str,
    user_exists: Callable[[str], bool],
    system_users: bool,
    system_template: str,
    getpwnam: GetPwNam,
) -> str:
    """The mailbox spec a reader (POP3, IMAP) opens for `login`: the one
    delivery writes to. A virtual user (`alice@example.com` in the users
    file) gets `mailbox_template` filled; a system account (when
    `system_users`) its ~/Maildir or `system_template`. LookupError when
    `login` has no mailbox or names an unsafe path."""
    try:
        if user_exists(login):
            local, _, domain = login.rpartition("@") if "@" in login else (login, "", "")
            return fill_mailbox(mailbox_template, local, domain)
        if system_users and "@" not in login:
            pw = lookup_system(getpwnam, login)
            if pw is not None:
                return system_mailbox(pw, system_template)
    except UnsafeName as e:
        raise LookupError(str(e)) from e
    raise LookupError(f"no mailbox for {login!r}")
