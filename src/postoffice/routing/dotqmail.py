"""dotqmail — qmail's ~/.qmail files: a system user's delivery instructions, per extension.

Description:
    qmail gives each user the address `user` and every `user-ext`
    (dot-qmail(5), "EXTENSION ADDRESSES"); postoffice divides at the
    configured recipient delimiter (qmail's "-", sendmail's "+"). For
    `user` the file is `~/.qmail`; for `user-ext` the first that exists
    of

        ~/.qmail-ext   ~/.qmail-PREFIX-default ...   ~/.qmail-default

    ("foo-bar" tries .qmail-foo-bar, .qmail-foo-default, .qmail-default),
    the extension lower-cased and its dots made colons, as qmail-local
    does "for security". Where qmail bounces an extension that no file
    matches, postoffice falls back to `~/.qmail` and then to the user's
    ordinary delivery (.forward, mailbox), so that `user+detail` works for
    users who never wrote a .qmail file.

    Each line is one instruction (dot-qmail(5), "THE QMAIL FILE"):

        # comment              ignored
        |command               run the command (as the user)
        &address               forward; also a line starting with a letter or digit
        /path/file  ./Mailbox  mbox: append to the file (begins with / or ., no final /)
        /path/dir/  ./Maildir/ maildir delivery (begins with / or ., ends with /)

    Trailing spaces and tabs are ignored, blank lines too; any other line
    is reported as a problem and skipped. A file of 0 bytes means the
    default delivery; a file holding only comments delivers nowhere (the
    mail is discarded, which qmail users rely on). A file with an execute
    bit may only forward, and one that is unsafe (writable by others)
    stops delivery with a temporary failure — both as qmail-local does.

    qmail's list owners: when the file forwards and `FILE-owner` exists
    (`.qmail-ext-owner`), `local-owner@domain` becomes the envelope sender.

Security:
    The user owns these files: programs and files run as the user;
    maildir lines outside the user's home are refused by routing/resolve.py.
    The extension comes from the client and only ever selects a file
    name inside the home directory (no "/", no NUL, dots made colons).

Config:
    [routing] dotqmail, recipient_delimiter; [maps] safe_files.

See also:
    dot-qmail(5), qmail-local(8), qmail-command(8), routing/forward.py
    (read_home_file), seed 004.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from postoffice.routing.forward import read_home_file, safe_component

MAX_DEFAULTS = 8  # at most this many .qmail-PREFIX-default names per extension


@dataclass(frozen=True, slots=True, kw_only=True)
class Instruction:
    kind: Literal["program", "forward", "mbox", "maildir"]
    value: str
    line: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DotQmail:
    """The .qmail file that governs one address, read and parsed."""

    path: str
    status: Literal["ok", "empty", "unsafe"]  # empty: 0 bytes, the default delivery
    instructions: tuple[Instruction, ...] = ()
    problems: tuple[str, ...] = field(default_factory=tuple)
    owner: bool = False  # PATH-owner exists


def parse_dotqmail(text: str) -> tuple[list[Instruction], list[str]]:
    """(instructions, problems as "line N: ...") of a .qmail text."""
    out: list[Instruction] = []
    problems: list[str] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip(" \t\r")
        if not line or line[0] == "#":
            continue
        first = line[0]
        if first == "|":
            command = line[1:].strip()
            if command:
                out.append(Instruction(kind="program", value=command, line=number))
            else:
                problems.append(f"line {number}: empty program")
        elif first in "/.":
            kind: Literal["mbox", "maildir"] = "maildir" if line.endswith("/") else "mbox"
            out.append(Instruction(kind=kind, value=line, line=number))
        elif first == "&" or (first.isascii() and first.isalnum()):
            address = line[1:] if first == "&" else line
            if not address or any(c.isspace() or c in "<>()," for c in address):
                problems.append(f"line {number}: not a forwarding address: {line[:80]!r}")
            else:
                out.append(Instruction(kind="forward", value=address, line=number))
        else:
            problems.append(f"line {number}: not a delivery instruction: {line[:80]!r}")
    return out, problems


def qmail_names(ext: str) -> list[str]:
    """The file names governing `ext` (see the manual); [".qmail"] without one."""
    if not ext:
        return [".qmail"]
    ext = ext.lower().replace(".", ":")
    if not safe_component(ext):
        return []
    names = [f".qmail-{ext}"]
    end = len(ext)
    while len(names) <= MAX_DEFAULTS:
        i = ext.rfind("-", 0, end)
        if i <= 0:
            break
        names.append(f".qmail-{ext[:i]}-default")
        end = i
    names.append(".qmail-default")
    return names


def read_dotqmail(
    home: str,
    ext: str,
    *,
    uid: int,
    check_file: Callable[..., str | None] | None,
) -> DotQmail | None:
    """The governing .qmail for `ext` under `home`, or None when there is none."""
    names = qmail_names(ext)
    if ext:
        names.append(".qmail")  # postoffice: fall back to the user's own file
    for name in names:
        path = os.path.join(home, name)
        hf = read_home_file(path, uid=uid, check_file=check_file)
        if hf.status == "missing":
            continue
        if hf.status != "ok":
            return DotQmail(path=path, status="unsafe", problems=(hf.problem,))
        if not hf.text:
            return DotQmail(path=path, status="empty")
        instructions, problems = parse_dotqmail(hf.text)
        if hf.problem:
            problems.insert(0, hf.problem)
        if hf.executable and any(i.kind != "forward" for i in instructions):
            return DotQmail(
                path=path,
                status="unsafe",
                problems=("executable .qmail may only forward (dot-qmail(5))",),
            )
        owner = any(i.kind == "forward" for i in instructions) and os.path.isfile(f"{path}-owner")
        return DotQmail(
            path=path,
            status="ok",
            instructions=tuple(instructions),
            problems=tuple(problems),
            owner=owner,
        )
    return None
