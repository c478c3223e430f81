"""MemoryFolder and MemoryStore: the store interfaces in memory, for tests of POP3 and IMAP.

Description:
    MemoryFolder(name="INBOX", uidvalidity=1) implements
    store.interfaces.Folder with the same rules as the Maildir folder:

        sync()          a FolderState snapshot, messages in ascending UID
        append(...)     stores a message (CRLF line endings), returns its UID;
                        UIDs ascend and are never reused (RFC 9051 §2.3.1.1)
        open_message()  the message bytes; MessageGone once expunged
        store_flags()   add/remove/replace flags (RFC 9051 §6.4.6); every
                        message whose flags change gets a new mod-sequence
                        (RFC 7162 §3.1.1); returns the changed messages
        expunge()       removes messages, raises HIGHESTMODSEQ (RFC 7162 §3.1.4),
                        returns the UIDs removed
        try_lock(h)     one holder at a time; FolderLock.release() frees it

    Extra for tests: `deliver(data)` appends like a delivery would (no
    flags, now as the internal date); `fail_next(method, exc)` makes the
    next call of a method raise (TempFail, OSError) to test error paths;
    `calls` counts calls per method.

    MemoryStore() implements store.interfaces.MailStore: an INBOX that
    always exists (named without regard to case), other folders by exact
    name with "." as the hierarchy delimiter (as Maildir++), RFC 6154
    special-use attributes given at create(), subscriptions. Renaming
    INBOX moves its messages into the new folder and leaves INBOX empty
    (RFC 9051 §6.3.6); deleting INBOX is refused (§6.3.5).

    Everything is guarded by one lock per folder: sessions call Folder
    methods from worker threads, as with the real store.

See also:
    store/interfaces.py, store/folder.py (the Maildir implementation),
    pop3/session.py, RFC 9051 §2.3, RFC 7162.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

from postoffice.store.interfaces import (
    FlagMode,
    FolderState,
    MessageGone,
    MessageInfo,
)

__all__ = ["MemoryFolder", "MemoryLock", "MemoryStore"]


@dataclass(slots=True)
class _Message:
    data: bytes
    flags: frozenset[str]
    internaldate: float
    modseq: int
    key: str

    def info(self, uid: int) -> MessageInfo:
        return MessageInfo(
            uid=uid,
            key=self.key,
            size=len(self.data),
            flags=self.flags,
            internaldate=self.internaldate,
            modseq=self.modseq,
        )


class MemoryLock:
    """The folder lock of one holder (store.interfaces.FolderLock)."""

    def __init__(self, folder: MemoryFolder, holder: str) -> None:
        self._folder = folder
        self.holder = holder
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._folder._unlock(self)


class MemoryFolder:
    """A store.interfaces.Folder in memory (see the module docstring)."""

    def __init__(self, name: str = "INBOX", *, uidvalidity: int = 1) -> None:
        self._name = name
        self.uidvalidity = uidvalidity
        self._uidnext = 1
        self._modseq = 1
        self._messages: dict[int, _Message] = {}
        self._lock = threading.Lock()
        self._holder: MemoryLock | None = None
        self._failures: dict[str, BaseException] = {}
        self.calls: dict[str, int] = {}
        self.cached = True  # read_cached answers (False: every read goes to open_message)

    @property
    def name(self) -> str:
        return self._name

    # -- test helpers ---------------------------------------------------------

    def deliver(self, data: bytes, *, flags: frozenset[str] = frozenset()) -> int:
        """Add a message as a delivery would; its UID."""
        return self.append(io.BytesIO(data), flags=flags, internaldate=None)

    def fail_next(self, method: str, exc: BaseException) -> None:
        """Make the next call of `method` raise `exc`."""
        self._failures[method] = exc

    @property
    def locked(self) -> bool:
        return self._holder is not None

    def message_bytes(self, uid: int) -> bytes:
        with self._lock:
            return self._messages[uid].data

    def _enter(self, method: str) -> None:
        self.calls[method] = self.calls.get(method, 0) + 1
        exc = self._failures.pop(method, None)
        if exc is not None:
            raise exc

    # -- store.interfaces.Folder ----------------------------------------------

    def sync(self) -> FolderState:
        with self._lock:
            self._enter("sync")
            return FolderState(
                uidvalidity=self.uidvalidity,
                uidnext=self._uidnext,
                highestmodseq=self._modseq,
                messages=tuple(m.info(uid) for uid, m in sorted(self._messages.items())),
            )

    def read_cached(self, uid: int) -> bytes | None:
        with self._lock:
            self.calls["read_cached"] = self.calls.get("read_cached", 0) + 1
            if "open_message" in self._failures or not self.cached:
                return None  # an injected read failure happens in open_message
            message = self._messages.get(uid)
            return None if message is None else message.data

    def open_message(self, uid: int) -> BinaryIO:
        with self._lock:
            self._enter("open_message")
            message = self._messages.get(uid)
            if message is None:
                raise MessageGone(uid)
            return io.BytesIO(message.data)

    def store_flags(
        self, uids: Iterable[int], flags: frozenset[str], mode: FlagMode
    ) -> list[MessageInfo]:
        changed: list[MessageInfo] = []
        with self._lock:
            self._enter("store_flags")
            for uid in sorted(set(uids)):
                message = self._messages.get(uid)
                if message is None:
                    continue
                if mode == "add":
                    new = message.flags | flags
                elif mode == "remove":
                    new = message.flags - flags
                else:
                    new = frozenset(flags)
                if new == message.flags:
                    continue
                self._modseq += 1  # RFC 7162 §3.1.1: a new mod-sequence per change
                message.flags = new
                message.modseq = self._modseq
                changed.append(message.info(uid))
        return changed

    def expunge(self, uids: Iterable[int]) -> list[int]:
        removed: list[int] = []
        with self._lock:
            self._enter("expunge")
            for uid in sorted(set(uids)):
                if self._messages.pop(uid, None) is not None:
                    removed.append(uid)
            if removed:
                self._modseq += 1  # RFC 7162 §3.1.4: expunges raise HIGHESTMODSEQ
        return removed

    def append(self, source: BinaryIO, *, flags: frozenset[str], internaldate: float | None) -> int:
        data = source.read()
        with self._lock:
            self._enter("append")
            uid = self._uidnext
            self._uidnext += 1
            self._modseq += 1
            self._messages[uid] = _Message(
                data=bytes(data),
                flags=frozenset(flags),
                internaldate=time.time() if internaldate is None else internaldate,
                modseq=self._modseq,
                key=f"mem-{self.uidvalidity}-{uid}",
            )
            return uid

    def try_lock(self, holder: str) -> MemoryLock | None:
        with self._lock:
            self._enter("try_lock")
            if self._holder is not None:
                return None
            self._holder = MemoryLock(self, holder)
            return self._holder

    def _unlock(self, lock: MemoryLock) -> None:
        with self._lock:
            if self._holder is lock:
                self._holder = None

    # -- moving messages between folders (MemoryStore.rename of INBOX) --------

    def _take_all(self) -> list[_Message]:
        with self._lock:
            taken = [m for _, m in sorted(self._messages.items())]
            if taken:
                self._messages.clear()
                self._modseq += 1
            return taken

    def _put_all(self, messages: list[_Message]) -> None:
        with self._lock:
            for m in messages:
                uid = self._uidnext
                self._uidnext += 1
                self._modseq += 1
                m.modseq = self._modseq
                self._messages[uid] = m


class MemoryStore:
    """A store.interfaces.MailStore in memory (see the module docstring)."""

    def __init__(self) -> None:
        self._next_uidvalidity = 1
        self._folders: dict[str, MemoryFolder] = {}
        self._subscribed: set[str] = set()
        self._special: dict[str, str] = {}
        self._lock = threading.Lock()
        self._folders["INBOX"] = self._new("INBOX")

    def _new(self, name: str) -> MemoryFolder:
        folder = MemoryFolder(name, uidvalidity=self._next_uidvalidity)
        self._next_uidvalidity += 1  # RFC 9051 §2.3.1.1: a new name, a new UIDVALIDITY
        return folder

    @staticmethod
    def _key(name: str) -> str:
        return "INBOX" if name.upper() == "INBOX" else name

    @staticmethod
    def _check_name(name: str) -> None:
        if (
            not name
            or name.startswith(".")
            or name.endswith(".")
            or ".." in name
            or "/" in name
            or any(ord(c) < 32 or ord(c) == 127 for c in name)
        ):
            raise ValueError(f"bad folder name {name!r}")

    def inbox(self) -> MemoryFolder:
        return self._folders["INBOX"]

    def folder(self, name: str) -> MemoryFolder:
        with self._lock:
            return self._folders[self._key(name)]

    def list_folders(self) -> list[str]:
        with self._lock:
            return ["INBOX", *sorted(n for n in self._folders if n != "INBOX")]

    def create(self, name: str, special_use: str | None = None) -> None:
        key = self._key(name)
        self._check_name(key)
        with self._lock:
            if key in self._folders:
                raise FileExistsError(name)
            self._folders[key] = self._new(key)
            if special_use:
                self._special[key] = special_use

    def special_uses(self) -> dict[str, str]:
        with self._lock:
            return dict(self._special)

    def delete(self, name: str) -> None:
        key = self._key(name)
        if key == "INBOX":
            raise ValueError("INBOX cannot be deleted")  # RFC 9051 §6.3.5
        self._check_name(key)
        with self._lock:
            del self._folders[key]
            self._subscribed.discard(key)
            self._special.pop(key, None)

    def rename(self, old: str, new: str) -> None:
        src, dst = self._key(old), self._key(new)
        self._check_name(dst)
        if dst == "INBOX":
            raise ValueError("cannot rename to INBOX")
        with self._lock:
            if src not in self._folders:
                raise KeyError(old)
            if dst in self._folders:
                raise FileExistsError(new)
            if src == "INBOX":  # RFC 9051 §6.3.6: INBOX's messages move, INBOX stays
                target = self._new(dst)
                target._put_all(self._folders["INBOX"]._take_all())
                self._folders[dst] = target
                return
            # The folder and its children move with their UIDs and UIDVALIDITY.
            for name in sorted(self._folders):
                if name == src or name.startswith(src + "."):
                    moved = dst + name[len(src) :]
                    folder = self._folders.pop(name)
                    folder._name = moved
                    self._folders[moved] = folder
                    if name in self._special:
                        self._special[moved] = self._special.pop(name)
                    if name in self._subscribed:
                        self._subscribed.discard(name)
                        self._subscribed.add(moved)

    def subscriptions(self) -> list[str]:
        with self._lock:
            return sorted(self._subscribed)

    def set_subscribed(self, name: str, subscribed: bool) -> None:
        key = self._key(name)
        with self._lock:
            if subscribed:
                self._subscribed.add(key)
            else:
                self._subscribed.discard(key)
