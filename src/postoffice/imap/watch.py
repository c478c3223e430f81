"""imap.watch — one poll per watched folder for all its IDLE sessions; per-user connection counts.

Description:
    IDLE (RFC 2177, RFC 9051 §6.3.13) must tell a client about new mail at
    once. Delivery writes into the Maildir without telling anyone, so a
    folder is watched by polling `Folder.sync()`, which costs two stat()
    calls when nothing changed (store/folder.py). `FolderWatch` keeps one
    poller per watched Folder object (store/opener.py shares them between
    sessions), however many sessions idle on it:

        async with watch.watching(folder) as watcher:
            state = await watcher.changed(previous_state)   # waits

    The poller runs `sync()` in a worker thread every `interval` seconds
    (1 s by default) while at least one session watches, and wakes every
    waiter whose snapshot differs from the new one; it stops when the last
    one leaves. So a thousand sessions idling on one INBOX cost one
    stat() pair a second, and one thread hop.

    `UserConnections` counts the logged-in sessions per (user, client
    address), for `[imap] max_connections_per_user` (Dovecot's
    mail_max_userip_connections).

    (Folders stay alive between connections in store/opener.py, which
    keeps the last 64 opened for POP3 and IMAP alike: a client that
    connects, SELECTs and leaves costs a stat(), not a directory listing.)

See also:
    RFC 2177 (IDLE), RFC 9051 §6.3.13, imap/session.py, store/folder.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from postoffice.errors import TempFail
from postoffice.store.interfaces import Folder, FolderState

log = logging.getLogger("postoffice.imap")

__all__ = ["FolderWatch", "UserConnections", "Watcher"]

Runner = Callable[..., Any]  # run a blocking call off the loop: (fn, *args) -> awaitable


class Watcher:
    """The shared poller of one folder."""

    def __init__(self, folder: Folder, interval: float, run: Runner) -> None:
        self.folder = folder
        self.interval = interval
        self._run = run
        self.state: FolderState | None = None
        self.users = 0
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll(), name="imap-watch")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def changed(self, seen: FolderState | None) -> FolderState:
        """Wait until the folder's snapshot is not `seen`; return the new one."""
        while self.state is None or self.state is seen:
            await self._changed.wait()  # a fresh Event per change (see _poll)
        return self.state

    async def _poll(self) -> None:
        while True:
            try:
                state = await self._run(self.folder.sync)
            except TempFail as e:
                log.warning("watching folder %s: %s", self.folder.name, e.reason)
                state = None
            if state is not None and state is not self.state:
                self.state = state
                changed, self._changed = self._changed, asyncio.Event()
                changed.set()
            await asyncio.sleep(self.interval)


class FolderWatch:
    """Pollers by Folder object (see the module manual)."""

    def __init__(self, *, interval: float = 1.0, run: Runner | None = None) -> None:
        self.interval = interval
        self._run: Runner = run or asyncio.to_thread
        self._watchers: dict[int, Watcher] = {}

    @contextlib.asynccontextmanager
    async def watching(self, folder: Folder) -> AsyncIterator[Watcher]:
        key = id(folder)
        watcher = self._watchers.get(key)
        if watcher is None or watcher.folder is not folder:
            watcher = self._watchers[key] = Watcher(folder, self.interval, self._run)
        watcher.users += 1
        watcher.start()
        try:
            yield watcher
        finally:
            watcher.users -= 1
            if watcher.users <= 0:
                watcher.stop()
                if self._watchers.get(key) is watcher:
                    del self._watchers[key]

    def statistics(self) -> dict[str, int]:
        return {
            "watched_folders": len(self._watchers),
            "watchers": sum(w.users for w in self._watchers.values()),
        }


class UserConnections:
    """Logged-in sessions per (user, client address)."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], int] = {}

    def count(self, user: str, ip: str) -> int:
        return self._counts.get((user.lower(), ip), 0)

    def add(self, user: str, ip: str) -> None:
        key = (user.lower(), ip)
        self._counts[key] = self._counts.get(key, 0) + 1

    def remove(self, user: str, ip: str) -> None:
        key = (user.lower(), ip)
        left = self._counts.get(key, 0) - 1
        if left > 0:
            self._counts[key] = left
        else:
            self._counts.pop(key, None)
