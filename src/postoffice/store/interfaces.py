"""Store interfaces: what delivery writes into and what POP3 and IMAP read.

Description:
    A MailboxWriter appends one message to one mailbox. It is blocking
    (file I/O and fsync) and is called from a worker thread. It either
    stores the whole message durably (fsync before returning) or stores
    nothing and raises `errors.TempFail` (disk full, I/O error, lock busy)
    or `errors.PermFail` (the mailbox cannot exist: a path that is a file,
    a quota later). Never a half-written message.

    A Folder is one mailbox as readers see it (a Maildir or Maildir++
    folder, or an mbox file): `sync()` scans it, gives every new message
    the next UID from the folder's index and returns a FolderState, a
    snapshot in UID order. POP3 and IMAP read the same index, so a POP3
    UIDL (`pop3_uidl`) and an IMAP UID name the same message for as long
    as the UIDVALIDITY stays (RFC 9051 §2.3.1.1, RFC 1939 §7).

    Every Folder method blocks (file I/O); sessions call them in a worker
    thread. Expected failures raise TempFail (I/O error, disk full, lock
    busy) with a Reply whose text is safe to show; messages that vanished
    under a concurrent expunge are simply missing from the next snapshot,
    and `open_message` of such a UID raises MessageGone.

    MailStore is a user's tree of folders (IMAP's namespace); a POP3
    session only needs `inbox()`.

See also:
    store/maildir.py, store/mbox.py (writers); store/index.py (the UID
    index); store/folder.py (Maildir Folder); store/mbox_folder.py;
    delivery/local.py; RFC 9051 §2.3.1.1 (UIDs), §2.3.2 (flags).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO, Literal, Protocol

from postoffice.errors import TempFail
from postoffice.smtp.replies import Reply

# RFC 9051 §2.3.2: the system flags a store keeps. \Recent is not stored
# (IMAP4rev2 dropped it; rev1 sessions compute it), \Deleted is.
SEEN = "\\Seen"
ANSWERED = "\\Answered"
FLAGGED = "\\Flagged"
DELETED = "\\Deleted"
DRAFT = "\\Draft"
SYSTEM_FLAGS = frozenset({SEEN, ANSWERED, FLAGGED, DELETED, DRAFT})

FlagMode = Literal["add", "remove", "replace"]


class MessageGone(Exception):
    """The message with this UID was expunged by another session."""


class FolderGone(TempFail):
    """The folder was deleted or renamed by another session (or program).

    A TempFail, so every caller that handles storage trouble handles it;
    only INBOX is created again when missing (delivery does that too)."""

    def __init__(self, name: str) -> None:
        super().__init__(
            Reply.of(450, "4.2.0", "Mailbox no longer exists"), f"folder {name} is gone"
        )


class MailboxWriter(Protocol):
    def deliver(self, source: BinaryIO, *, prefix: bytes, sender: str, arrival: float) -> str:
        """Store `prefix` (header lines ending in CRLF, e.g. Return-Path and
        Delivered-To) followed by the content of `source` (read to EOF; CRLF
        line endings as received). `sender` and `arrival` are the envelope
        sender and time, for mbox's `From ` line. Returns where the message
        went (a file name), for the log."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageInfo:
    """One message of a snapshot."""

    uid: int  # RFC 9051 §2.3.1.1: strictly ascending, never reused within a UIDVALIDITY
    key: str  # stable name inside the folder (Maildir base name, mbox digest)
    size: int  # RFC 5322 size: octets with CRLF line endings (POP3 LIST, RFC822.SIZE)
    flags: frozenset[str]  # system flags (SYSTEM_FLAGS) and keywords, as IMAP spells them
    internaldate: float  # arrival time, seconds since the epoch (IMAP INTERNALDATE)
    modseq: int  # RFC 7162 mod-sequence of the last change to this message


@dataclass(frozen=True, slots=True, kw_only=True)
class FolderState:
    """A snapshot of one folder after `sync()`."""

    uidvalidity: int
    uidnext: int
    highestmodseq: int
    messages: tuple[MessageInfo, ...]  # ascending UID


def pop3_uidl(uidvalidity: int, uid: int) -> str:
    """The POP3 unique-id of a message (RFC 1939 §7: 1-70 chars in 0x21-0x7E).

    Dovecot's default `pop3_uidl_format = %08Xu%08Xv`, so a maildrop moved
    from Dovecot keeps its UIDLs when its uidlist is converted."""
    return f"{uid:08X}{uidvalidity:08X}"


class Folder(Protocol):
    """One mailbox as POP3 and IMAP see it (see the module manual)."""

    @property
    def name(self) -> str:
        """The folder's name ("INBOX", "Sent", "Archive.2026": "." is the
        hierarchy delimiter, Unicode; the session encodes it for the wire)."""

    def sync(self) -> FolderState:
        """Scan the folder, give new messages UIDs (durably), return a snapshot."""

    def open_message(self, uid: int) -> BinaryIO:
        """The message as sent on the wire: CRLF line endings, exactly
        `size` octets. MessageGone when it was expunged meanwhile."""

    def read_cached(self, uid: int) -> bytes | None:
        """The message as `open_message` gives it, but only when that costs no
        wait for the disk (the file is in the page cache: Linux preadv2
        RWF_NOWAIT); None otherwise, or when in doubt (gone, renamed, a size
        that does not match). The one Folder method that may run on the
        event loop: a session answers cached reads at once and sends the
        rest to a worker thread."""

    def store_flags(
        self, uids: Iterable[int], flags: frozenset[str], mode: FlagMode
    ) -> list[MessageInfo]:
        """Change flags (RFC 9051 §6.4.6); returns the changed messages with
        their new flags and modseq. UIDs that no longer exist are skipped."""

    def expunge(self, uids: Iterable[int]) -> list[int]:
        """Remove these messages for good; returns the UIDs actually removed."""

    def append(self, source: BinaryIO, *, flags: frozenset[str], internaldate: float | None) -> int:
        """Store a message (CRLF line endings) durably and return its UID
        (RFC 4315 APPENDUID)."""

    def try_lock(self, holder: str) -> FolderLock | None:
        """An exclusive advisory lock for `holder` ("pop3": RFC 1939 §8's
        maildrop lock), or None when another session holds it. An mbox
        folder also keeps deliveries out while it is held (they defer)."""


class FolderLock(Protocol):
    def release(self) -> None:
        """Give the lock back (idempotent)."""


class MailStore(Protocol):
    """One user's folders (IMAP's personal namespace)."""

    def inbox(self) -> Folder: ...

    def folder(self, name: str) -> Folder:
        """An existing folder by IMAP name (INBOX case-insensitive);
        KeyError when there is none."""

    def list_folders(self) -> list[str]:
        """Every folder's IMAP name, INBOX first."""

    def create(self, name: str, special_use: str | None = None) -> None:
        """A new folder; FileExistsError if it exists; ValueError for a bad name.
        `special_use` is an RFC 6154 attribute such as "\\Sent"."""

    def special_uses(self) -> dict[str, str]:
        """Folder name → RFC 6154 attribute."""

    def delete(self, name: str) -> None:
        """KeyError when missing, ValueError for INBOX or a bad name."""

    def rename(self, old: str, new: str) -> None:
        """KeyError when `old` is missing, FileExistsError when `new` exists."""

    def subscriptions(self) -> list[str]: ...

    def set_subscribed(self, name: str, subscribed: bool) -> None: ...
