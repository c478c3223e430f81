"""Shared pieces of the POP3 tests: maildrop fixtures, deps over MemoryStore, live server ports.

Maildrops are named sets of messages with exact sizes (CRLF line endings as
POP3 counts them), so that a transcript can show RFC 1939's numbers:
"seed" holds two messages of 120 and 200 octets (`+OK 2 320`), "rfc" one
of 369 octets (RFC 1939 §7's APOP example), "dots" one whose lines start
with periods, "empty" none.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from conftest import HOSTNAME, LiveServer, Site
from postoffice.auth.backend import AuthBackend
from postoffice.auth.passwd_file import UserDB
from postoffice.auth.throttle import FailureThrottle
from postoffice.config.schema import Config
from postoffice.pop3.session import Pop3Deps
from postoffice.testing.memory_store import MemoryFolder, MemoryStore

RFC_STAMP = "<1896.697170952@dbc.mtview.ca.us>"  # RFC 1939 §7
RFC_SECRET = "tanstaaf"
RFC_DIGEST = "c4c9334bac560ecc979e58001b3e22fb"


def sized_message(n: int, size: int, *, to: str = "alice@example.test") -> bytes:
    """Message n of exactly `size` octets: three header fields, a blank line, then
    body lines of x's (two lines when there is room, so TOP can cut between them)."""
    head = f"From: sender@example.org\r\nTo: {to}\r\nSubject: message {n}\r\n\r\n".encode()
    room = size - len(head)
    if room >= 8:
        first = room // 2
        return head + b"x" * (first - 2) + b"\r\n" + b"y" * (room - first - 2) + b"\r\n"
    assert room >= 2
    return head + b"x" * (room - 2) + b"\r\n"


DOTS = (
    b"From: sender@example.org\r\nSubject: dots\r\n\r\n"
    b".\r\n..\r\n.leading dot\r\n. a dot and a space\r\nQUIT\r\nend.\r\n.\r\n"
)

MAILDROPS: dict[str, list[bytes]] = {
    "empty": [],
    "seed": [sized_message(1, 120), sized_message(2, 200)],
    "rfc": [sized_message(1, 369)],
    "dots": [DOTS],
}


def headers(text: str) -> dict[str, str]:
    """The `# key: value` lines at the head of a transcript."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# ") and ":" in line:
            key, _, value = line[2:].partition(":")
            key = key.strip()
            if key.isidentifier():
                out.setdefault(key, value.strip())
    return out


class MemoryDrops:
    """One MemoryStore per login; `open_inbox` for Pop3Deps."""

    def __init__(self) -> None:
        self.stores: dict[str, MemoryStore] = {}

    def inbox(self, login: str) -> MemoryFolder:
        store = self.stores.get(login)
        if store is None:
            store = self.stores[login] = MemoryStore()
        return store.inbox()

    def fill(self, login: str, maildrop: str) -> MemoryFolder:
        folder = self.inbox(login)
        for data in MAILDROPS[maildrop]:
            folder.deliver(data)
        return folder


def memory_deps(
    config: Config,
    drops: MemoryDrops,
    *,
    stamp: str | None = None,
    throttle: FailureThrottle | None = None,
    open_inbox: Callable[[str], MemoryFolder] | None = None,
) -> Pop3Deps:
    users = UserDB.load(config.users_file)
    return Pop3Deps(
        config=config,
        auth=AuthBackend(
            users=lambda: users,
            throttle=throttle or FailureThrottle(base=0.0, cap=0.0),
            hostname=config.hostname,
        ),
        open_inbox=open_inbox or drops.inbox,
        timestamp=(lambda host: stamp) if stamp else (lambda host: f"<1.2@{host}>"),
    )


def add_user(site: Site, name: str, secret: str) -> None:
    users = site.root / "users"
    users.write_text(users.read_text() + f"{name}:{{PLAIN}}{secret}::::::\n")


def write_maildir(site: Site, address: str, messages: list[bytes]) -> Path:
    """Put messages into the address's Maildir new/ as another MDA would
    (LF line endings, names in delivery order)."""
    maildir = site.maildir(address)
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    base = int(time.time()) - 1000
    for i, data in enumerate(messages):
        name = f"{base + i}.M{i}P{os.getpid()}Q{i}.{HOSTNAME}"
        (maildir / "new" / name).write_bytes(data.replace(b"\r\n", b"\n"))
    return maildir


def maildir_count(site: Site, address: str) -> int:
    maildir = site.maildir(address)
    return sum(
        1 for sub in ("cur", "new") if (maildir / sub).is_dir() for _ in (maildir / sub).iterdir()
    )


def pop3_port(server: LiveServer) -> tuple[str, int]:
    m = server.wait_for(r"listening for POP3 on (\S+):(\d+)", timeout=30)
    return m.group(1), int(m.group(2))


def pop3s_port(server: LiveServer) -> tuple[str, int]:
    m = server.wait_for(r"listening for POP3S on (\S+):(\d+)", timeout=30)
    return m.group(1), int(m.group(2))
