"""store.opener — from a logged-in user to their MailStore and INBOX Folder.

Description:
    `StoreOpener(locate, index_dir=…)` is what POP3 and IMAP sessions get:

        opener.inbox("alice@example.com")  → Folder  (POP3's maildrop)
        opener.store("alice@example.com")  → MailStore (IMAP)

    `locate(login)` returns the mailbox spec delivery uses for that user
    (`maildir:/srv/mail/example.com/alice`, `mbox:/var/spool/mail/alice`);
    app.py builds it from `[delivery] mailbox` and system accounts (routing/
    users.py), so readers find exactly what delivery writes. A Maildir spec
    gives a Maildir++ store (store/mailstore.py); an mbox spec gives a
    store whose only folder is the mbox as INBOX (store/mbox_folder.py),
    with its UID list under `index_dir` (mbox files often live in
    directories the server may not write to, such as /var/spool/mail).

    Folder objects are shared: every session of one process that opens the
    same mailbox gets the same object (weakly cached), so their scans and
    the cached snapshot are shared, and a Folder's own mutex orders their
    changes. Other processes coordinate through the UID list's lock. The
    last `keep` folders opened stay alive after their sessions end, so a
    client that logs in every few minutes finds its snapshot ready.

Security:
    `locate` refuses names that could escape the mail directory
    (routing.users.UnsafeName → LookupError here: the session answers as
    for a failed login, without details).

See also:
    store/interfaces.py, store/folder.py, store/mailstore.py,
    store/mbox_folder.py, routing/users.py, app.py.
"""

from __future__ import annotations

import collections
import hashlib
import os
import threading
import weakref
from collections.abc import Callable

from postoffice.store.folder import MaildirFolder
from postoffice.store.interfaces import Folder, MailStore
from postoffice.store.mailstore import MaildirStore
from postoffice.store.mbox_folder import MboxFolder

Locate = Callable[[str], str]  # login → "maildir:/path" or "mbox:/path"; LookupError if none


class StoreOpener:
    """Login → store (see the module manual)."""

    def __init__(
        self, locate: Locate, *, index_dir: str, hostname: str | None = None, keep: int = 64
    ) -> None:
        self._locate = locate
        self.index_dir = index_dir
        self.hostname = hostname
        self._folders: weakref.WeakValueDictionary[tuple[str, str], Folder] = (
            weakref.WeakValueDictionary()
        )
        self._mutex = threading.Lock()
        # The most recently opened folders stay alive between sessions, so the
        # next login's sync is a stat() of two directories, not a new listing
        # and a parse of the UID list (10,000 messages: ~50 ms).
        self._recent: collections.OrderedDict[tuple[str, str], Folder] = collections.OrderedDict()
        self.keep = keep

    def _remember(self, key: tuple[str, str], folder: Folder) -> None:
        self._recent[key] = folder
        self._recent.move_to_end(key)
        while len(self._recent) > self.keep:
            self._recent.popitem(last=False)

    def spec(self, login: str) -> tuple[str, str]:
        """(scheme, path) of the login's mailbox; LookupError when it has none."""
        scheme, sep, path = self._locate(login).partition(":")
        if not sep or not os.path.isabs(path) or scheme not in ("maildir", "mbox"):
            raise LookupError(f"no readable mailbox for {login!r}")
        return scheme, path

    def inbox(self, login: str) -> Folder:
        return self.store(login).inbox()

    def store(self, login: str) -> MailStore:
        scheme, path = self.spec(login)
        if scheme == "mbox":
            return _MboxStore(self._mbox_folder(path))
        return MaildirStore(path, folder_factory=self._maildir_folder, hostname=self.hostname)

    def _maildir_folder(self, path: str, name: str) -> Folder:
        with self._mutex:
            folder = self._folders.get(("maildir", path))
            if folder is None or folder.name != name:
                folder = MaildirFolder(path, name=name, hostname=self.hostname)
                self._folders[("maildir", path)] = folder
            self._remember(("maildir", path), folder)
            return folder

    def _mbox_folder(self, path: str) -> Folder:
        with self._mutex:
            folder = self._folders.get(("mbox", path))
            if folder is None:
                digest = hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()[:32]
                index = os.path.join(self.index_dir, "mbox", digest)
                folder = MboxFolder(path, index_path=index, name="INBOX")
                self._folders[("mbox", path)] = folder
            self._remember(("mbox", path), folder)
            return folder


class _MboxStore:
    """A store with one folder: an mbox INBOX (no folders can be created)."""

    def __init__(self, inbox: Folder) -> None:
        self._inbox = inbox

    def inbox(self) -> Folder:
        return self._inbox

    def folder(self, name: str) -> Folder:
        if name.upper() == "INBOX":
            return self._inbox
        raise KeyError(name)

    def list_folders(self) -> list[str]:
        return ["INBOX"]

    def create(self, name: str, special_use: str | None = None) -> None:
        raise ValueError("an mbox maildrop has no folders")

    def special_uses(self) -> dict[str, str]:
        return {}

    def delete(self, name: str) -> None:
        raise ValueError("an mbox maildrop has no folders")

    def rename(self, old: str, new: str) -> None:
        raise ValueError("an mbox maildrop has no folders")

    def subscriptions(self) -> list[str]:
        return ["INBOX"]

    def set_subscribed(self, name: str, subscribed: bool) -> None:
        if name.upper() != "INBOX":
            raise ValueError("an mbox maildrop has no folders")
