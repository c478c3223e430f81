"""MemoryFolder and MemoryStore (testing/memory_store.py): the store interfaces in memory.

POP3 tests run on them and IMAP tests will: they must keep the real store's
rules (UIDs ascend and are never reused, mod-sequences grow with every
change, expunged messages are gone, one lock holder at a time).
"""

from __future__ import annotations

import io

import pytest

from postoffice.store.interfaces import (
    DELETED,
    SEEN,
    Folder,
    MailStore,
    MessageGone,
    pop3_uidl,
)
from postoffice.testing.memory_store import MemoryFolder, MemoryStore


def test_it_is_a_folder_and_a_store() -> None:
    folder: Folder = MemoryFolder()
    store: MailStore = MemoryStore()
    assert folder.name == "INBOX" and store.inbox().name == "INBOX"


def test_uids_ascend_and_are_never_reused() -> None:
    f = MemoryFolder(uidvalidity=7)
    a, b = f.deliver(b"a\r\n"), f.deliver(b"bb\r\n")
    assert (a, b) == (1, 2)
    assert f.expunge([b, 99]) == [b]
    c = f.append(io.BytesIO(b"c\r\n"), flags=frozenset({SEEN}), internaldate=1000.0)
    assert c == 3
    state = f.sync()
    assert state.uidvalidity == 7 and state.uidnext == 4
    assert [(m.uid, m.size, m.flags) for m in state.messages] == [
        (1, 3, frozenset()),
        (3, 3, frozenset({SEEN})),
    ]
    assert state.messages[1].internaldate == 1000.0
    assert pop3_uidl(state.uidvalidity, 3) == "0000000300000007"


def test_open_message_and_gone() -> None:
    f = MemoryFolder()
    uid = f.deliver(b"hello\r\n")
    with f.open_message(uid) as m:
        assert m.read() == b"hello\r\n"
    f.expunge([uid])
    with pytest.raises(MessageGone):
        f.open_message(uid)


def test_store_flags_and_modseq() -> None:
    f = MemoryFolder()
    u1, u2 = f.deliver(b"1\r\n"), f.deliver(b"2\r\n")
    start = f.sync().highestmodseq
    changed = f.store_flags([u1, u2, 42], frozenset({SEEN}), "add")
    assert [m.uid for m in changed] == [u1, u2]
    assert changed[0].modseq < changed[1].modseq == f.sync().highestmodseq
    assert f.store_flags([u1], frozenset({SEEN}), "add") == []  # no change, no modseq
    assert f.sync().highestmodseq == start + 2
    f.store_flags([u1], frozenset({DELETED, "$Junk"}), "replace")
    f.store_flags([u2], frozenset({SEEN}), "remove")
    flags = {m.uid: m.flags for m in f.sync().messages}
    assert flags == {u1: frozenset({DELETED, "$Junk"}), u2: frozenset()}
    before = f.sync().highestmodseq
    f.expunge([u1])
    assert f.sync().highestmodseq > before  # RFC 7162: expunge raises HIGHESTMODSEQ


def test_one_lock_holder() -> None:
    f = MemoryFolder()
    lock = f.try_lock("pop3")
    assert lock is not None and f.try_lock("pop3") is None
    lock.release()
    lock.release()  # idempotent
    again = f.try_lock("pop3")
    assert again is not None
    lock.release()  # an old lock does not free the new holder
    assert f.try_lock("pop3") is None


def test_injected_failures() -> None:
    f = MemoryFolder()
    f.fail_next("sync", OSError(5, "EIO"))
    with pytest.raises(OSError):
        f.sync()
    assert f.sync().messages == ()
    assert f.calls["sync"] == 2


def test_folders() -> None:
    s = MemoryStore()
    s.create("Sent", special_use="\\Sent")
    s.create("Archive")
    s.create("Archive.2026")
    with pytest.raises(FileExistsError):
        s.create("Sent")
    for bad in ("", ".x", "x.", "a..b", "a/b", "tab\t"):
        with pytest.raises(ValueError):
            s.create(bad)
    assert s.list_folders() == ["INBOX", "Archive", "Archive.2026", "Sent"]
    assert s.folder("inbox") is s.inbox()
    assert s.special_uses() == {"Sent": "\\Sent"}
    with pytest.raises(KeyError):
        s.folder("Nope")
    assert s.inbox().uidvalidity != s.folder("Sent").uidvalidity
    s.folder("Archive.2026").deliver(b"old\r\n")
    s.set_subscribed("Archive.2026", True)
    s.rename("Archive", "Old")
    assert s.list_folders() == ["INBOX", "Old", "Old.2026", "Sent"]
    assert s.subscriptions() == ["Old.2026"]
    assert len(s.folder("Old.2026").sync().messages) == 1
    with pytest.raises(FileExistsError):
        s.rename("Old", "Sent")
    with pytest.raises(KeyError):
        s.rename("Gone", "Other")
    s.delete("Sent")
    assert s.special_uses() == {}
    with pytest.raises(ValueError):
        s.delete("INBOX")  # RFC 9051 §6.3.5


def test_renaming_inbox_moves_its_messages() -> None:
    s = MemoryStore()
    s.inbox().deliver(b"1\r\n")
    s.inbox().deliver(b"2\r\n")
    s.rename("INBOX", "Saved")  # RFC 9051 §6.3.6
    assert len(s.inbox().sync().messages) == 0
    assert [m.size for m in s.folder("Saved").sync().messages] == [3, 3]
    assert s.inbox().deliver(b"3\r\n") == 3  # INBOX's UIDs go on ascending
