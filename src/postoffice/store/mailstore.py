"""store.mailstore — a user's Maildir++ tree: INBOX and folders, subscriptions, special use.

Description:
    `MaildirStore(root)` implements store.interfaces.MailStore over a
    Maildir++ tree, Dovecot's and Courier's layout: the root Maildir is
    INBOX, and the folder "Archive.2026" is the Maildir `root/.Archive.2026`
    ("." is the hierarchy delimiter, as in Dovecot's default Maildir++
    layout), its name on disk in modified UTF-7 (RFC 3501 §5.1.3) so
    "Entwürfe" is `.Entw&APw-rfe` as Dovecot writes it. Each folder has a
    `maildirfolder` marker file (Courier, Dovecot). Parents need not exist
    as directories: "Archive" shows in LIST as \\NonExistent-free parent
    only if it exists itself (RFC 9051 §6.3.9 \\HasChildren is computed by
    the session).

    Names given to and returned by this class are Unicode; encoding for
    the wire (modified UTF-7 or UTF-8) is the session's business.

    Subscriptions live in `subscriptions` (one UTF-8 name per line),
    special-use attributes (RFC 6154) in `postoffice-special-use` (`name
    TAB \\Attr` lines). A new user's store gets Sent, Drafts, Trash, Junk
    and Archive with their attributes, subscribed, the first time it is
    opened (`ensure_defaults`).

    DELETE renames the folder's directory to a hidden name first and then
    removes it, so a crash never leaves half a folder visible. RENAME moves
    the folder and its children with one rename each; RENAME of INBOX
    moves INBOX's messages into the new folder and leaves INBOX empty
    (RFC 9051 §6.3.6).

Security:
    A name is refused (ValueError, the session answers NO) when it is
    empty, longer than 200 characters, contains "/", "\\", NUL or another
    control character, starts with "~" or ".", has an empty component
    ("a..b", a trailing "."), or has a component "." or "..": no name can
    reach outside `root`.

See also:
    RFC 9051 §5.1 (mailbox naming), §6.3 (CREATE, DELETE, RENAME,
    SUBSCRIBE, LIST), RFC 6154 (SPECIAL-USE), Dovecot "Maildir++" layout,
    store/folder.py, imap/mutf7.py.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Callable

from postoffice.imap.mutf7 import decode as mutf7_decode
from postoffice.imap.mutf7 import encode as mutf7_encode
from postoffice.store.folder import MaildirFolder, split_name
from postoffice.store.interfaces import Folder
from postoffice.store.maildir import fsync_dir, make_maildir, replace_file

DELIMITER = "."
SUBSCRIPTIONS = "subscriptions"
SPECIAL_USE = "postoffice-special-use"
DEFAULTS = (
    ("Drafts", "\\Drafts"),
    ("Sent", "\\Sent"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
)
_BAD = re.compile(r"[\x00-\x1f\x7f/\\]")
MAX_NAME = 200

FolderFactory = Callable[[str, str], Folder]  # (path, name) → Folder


def check_name(name: str) -> str:
    """`name` if it is a safe folder name (see Security), else ValueError."""
    if not name or len(name) > MAX_NAME or _BAD.search(name) or name[0] in "~.":
        raise ValueError(f"bad mailbox name {name!r}")
    if any(part in ("", ".", "..") for part in name.split(DELIMITER)):
        raise ValueError(f"bad mailbox name {name!r}")
    return name


def is_inbox(name: str) -> bool:
    return name.upper() == "INBOX"


class MaildirStore:
    """One user's Maildir++ tree (see the module manual)."""

    def __init__(
        self,
        root: str,
        *,
        folder_factory: FolderFactory | None = None,
        hostname: str | None = None,
    ) -> None:
        self.root = root
        self._factory = folder_factory or (
            lambda path, name: MaildirFolder(path, name=name, hostname=hostname)
        )
        self._mutex = threading.Lock()

    def _dir(self, name: str) -> str:
        if is_inbox(name):
            return self.root
        return os.path.join(self.root, "." + mutf7_encode(check_name(name)))

    def inbox(self) -> Folder:
        make_maildir(self.root)
        return self._factory(self.root, "INBOX")

    def folder(self, name: str) -> Folder:
        if is_inbox(name):
            return self.inbox()
        path = self._dir(name)
        if not os.path.isdir(os.path.join(path, "cur")):
            raise KeyError(name)
        return self._factory(path, name)

    def list_folders(self) -> list[str]:
        names: list[str] = []
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return ["INBOX"]
        for entry in entries:
            if not entry.name.startswith(".") or entry.name in (".", ".."):
                continue
            if entry.name.startswith(".."):
                continue  # a folder being deleted
            try:
                name = mutf7_decode(entry.name[1:])
                check_name(name)
            except ValueError:
                continue  # not a name we could have written: leave it alone
            if os.path.isdir(os.path.join(entry.path, "cur")):
                names.append(name)
        return ["INBOX", *sorted(names)]

    def create(self, name: str, special_use: str | None = None) -> None:
        if is_inbox(name):
            raise FileExistsError(name)
        path = self._dir(name)
        with self._mutex:
            if os.path.isdir(path):
                raise FileExistsError(name)
            make_maildir(self.root)
            make_maildir(path)
            marker = os.path.join(path, "maildirfolder")
            os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
            fsync_dir(self.root)
            if special_use:
                uses = self._special_uses()
                uses[name] = special_use
                self._write_special_uses(uses)

    def delete(self, name: str) -> None:
        if is_inbox(name):
            raise ValueError("INBOX cannot be deleted")
        path = self._dir(name)
        with self._mutex:
            if not os.path.isdir(path):
                raise KeyError(name)
            hidden = os.path.join(self.root, ".." + os.urandom(6).hex() + "-deleted")
            os.rename(path, hidden)
            fsync_dir(self.root)
            shutil.rmtree(hidden, ignore_errors=True)
            uses = self._special_uses()
            if uses.pop(name, None) is not None:
                self._write_special_uses(uses)

    def rename(self, old: str, new: str) -> None:
        check_name(new)
        if is_inbox(new):
            raise FileExistsError(new)
        if is_inbox(old):
            self._rename_inbox(new)
            return
        with self._mutex:
            source, target = self._dir(old), self._dir(new)
            if not os.path.isdir(source):
                raise KeyError(old)
            if os.path.exists(target):
                raise FileExistsError(new)
            prefix = "." + mutf7_encode(old) + DELIMITER
            children = [e for e in os.listdir(self.root) if e.startswith(prefix)]
            os.rename(source, target)
            for child in children:
                rest = child[len(prefix) :]
                os.rename(
                    os.path.join(self.root, child),
                    os.path.join(self.root, "." + mutf7_encode(new) + DELIMITER + rest),
                )
            fsync_dir(self.root)
            uses = self._special_uses()
            if old in uses:
                uses[new] = uses.pop(old)
                self._write_special_uses(uses)

    def _rename_inbox(self, new: str) -> None:
        self.create(new)
        target = self._dir(new)
        for sub in ("new", "cur"):
            for name in os.listdir(os.path.join(self.root, sub)):
                info = split_name(name)[1]
                os.rename(
                    os.path.join(self.root, sub, name),
                    os.path.join(target, "cur" if info else sub, name),
                )
        fsync_dir(os.path.join(target, "cur"))
        fsync_dir(os.path.join(target, "new"))

    # -- subscriptions and special use ----------------------------------

    def subscriptions(self) -> list[str]:
        try:
            with open(os.path.join(self.root, SUBSCRIPTIONS), encoding="utf-8") as f:
                return [line.rstrip("\n") for line in f if line.strip()]
        except (FileNotFoundError, UnicodeDecodeError):
            return []

    def set_subscribed(self, name: str, subscribed: bool) -> None:
        if not is_inbox(name):
            check_name(name)
        with self._mutex:
            current = self.subscriptions()
            names = [n for n in current if n != name]
            if subscribed:
                names.append(name)
            if names != current:
                _write_atomically(
                    os.path.join(self.root, SUBSCRIPTIONS), "".join(n + "\n" for n in names)
                )

    def special_uses(self) -> dict[str, str]:
        """Folder name → RFC 6154 attribute (\\Sent, \\Drafts, …)."""
        return self._special_uses()

    def _special_uses(self) -> dict[str, str]:
        try:
            with open(os.path.join(self.root, SPECIAL_USE), encoding="utf-8") as f:
                pairs = [line.rstrip("\n").split("\t", 1) for line in f]
        except (FileNotFoundError, UnicodeDecodeError):
            return {}
        return {p[0]: p[1] for p in pairs if len(p) == 2}

    def _write_special_uses(self, uses: dict[str, str]) -> None:
        text = "".join(f"{name}\t{use}\n" for name, use in sorted(uses.items()))
        _write_atomically(os.path.join(self.root, SPECIAL_USE), text)

    def ensure_defaults(self) -> None:
        """Create Drafts, Sent, Trash, Junk, Archive for a store that has no folders yet."""
        if self.list_folders() != ["INBOX"] or os.path.exists(os.path.join(self.root, SPECIAL_USE)):
            return
        for name, use in DEFAULTS:
            try:
                self.create(name, special_use=use)
            except FileExistsError:
                pass
            self.set_subscribed(name, True)


def _write_atomically(path: str, text: str) -> None:
    replace_file(path, text.encode("utf-8"))
