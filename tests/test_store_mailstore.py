"""store/mailstore.py, store/opener.py: Maildir++ folders, names, subscriptions, login → store."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from postoffice.routing.users import locate_mailbox
from postoffice.store.interfaces import FolderGone
from postoffice.store.mailstore import MaildirStore, check_name
from postoffice.store.opener import StoreOpener


def test_folders_are_maildirplusplus_dirs_with_mutf7_names(tmp_path: Path) -> None:
    store = MaildirStore(str(tmp_path / "alice"))
    store.create("Entwürfe")
    store.create("Archive.2026")
    assert (tmp_path / "alice" / ".Entw&APw-rfe" / "cur").is_dir()
    assert (tmp_path / "alice" / ".Archive.2026" / "maildirfolder").is_file()
    assert store.list_folders() == ["INBOX", "Archive.2026", "Entwürfe"]
    with pytest.raises(FileExistsError):
        store.create("Archive.2026")
    with pytest.raises(KeyError):
        store.folder("Nope")
    assert store.folder("inbox").name == "INBOX"


@pytest.mark.parametrize(
    "name",
    ["", "../x", "a/b", "~root", ".hidden", "a..b", "a.", "a\x00b", "a\\b", "x" * 201, "a.../b"],
)
def test_hostile_names_are_refused(tmp_path: Path, name: str) -> None:
    store = MaildirStore(str(tmp_path / "alice"))
    with pytest.raises(ValueError):
        store.create(name)
    with pytest.raises(ValueError):
        check_name(name)
    assert not any(p.name not in ("alice",) for p in tmp_path.iterdir())


def test_rename_moves_children_and_delete_removes_only_the_folder(tmp_path: Path) -> None:
    store = MaildirStore(str(tmp_path / "u"))
    store.create("A")
    store.create("A.B")
    store.create("Keep", special_use="\\Archive")
    folder = store.folder("A.B")
    folder.append(io.BytesIO(b"S: 1\r\n\r\nx\r\n"), flags=frozenset(), internaldate=None)
    store.rename("A", "Z")
    assert store.list_folders() == ["INBOX", "Keep", "Z", "Z.B"]
    assert len(store.folder("Z.B").sync().messages) == 1
    store.rename("Keep", "Kept")
    assert store.special_uses() == {"Kept": "\\Archive"}
    store.delete("Z")
    assert store.list_folders() == ["INBOX", "Kept", "Z.B"]
    with pytest.raises(ValueError):
        store.delete("INBOX")


def test_rename_inbox_moves_its_messages_and_leaves_it_empty(tmp_path: Path) -> None:
    store = MaildirStore(str(tmp_path / "u"))
    store.inbox().append(io.BytesIO(b"S: 1\r\n\r\nx\r\n"), flags=frozenset(), internaldate=None)
    store.rename("INBOX", "Old")
    assert store.inbox().sync().messages == ()
    assert len(store.folder("Old").sync().messages) == 1


def test_subscriptions_and_defaults_for_a_new_user(tmp_path: Path) -> None:
    store = MaildirStore(str(tmp_path / "u"))
    store.ensure_defaults()
    assert store.list_folders() == ["INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"]
    assert store.special_uses()["Sent"] == "\\Sent"
    assert sorted(store.subscriptions()) == ["Archive", "Drafts", "Junk", "Sent", "Trash"]
    store.set_subscribed("Junk", False)
    store.delete("Trash")
    store.ensure_defaults()  # not a new user any more: nothing comes back
    assert "Trash" not in store.list_folders()
    assert "Junk" not in store.subscriptions()


def _locate(root: Path, users: set[str]):  # type: ignore[no-untyped-def]
    def locate(login: str) -> str:
        return locate_mailbox(
            login,
            mailbox_template=f"maildir:{root}/{{domain}}/{{user}}",
            user_exists=lambda a: a in users,
            system_users=False,
            system_template="mbox:/var/spool/mail/{user}",
            getpwnam=lambda n: (_ for _ in ()).throw(KeyError(n)),
        )

    return locate


def test_opener_finds_the_mailbox_delivery_writes_and_shares_folders(tmp_path: Path) -> None:
    opener = StoreOpener(_locate(tmp_path, {"alice@example.test"}), index_dir=str(tmp_path / "ix"))
    one = opener.inbox("alice@example.test")
    two = opener.inbox("alice@example.test")
    assert one is two
    assert os.path.isdir(tmp_path / "example.test" / "alice" / "cur")
    with pytest.raises(LookupError):
        opener.inbox("mallory@example.test")


def test_locate_refuses_unsafe_names(tmp_path: Path) -> None:
    locate = _locate(tmp_path, {"../x@example.test", "a@../etc"})
    with pytest.raises(LookupError):
        locate("../x@example.test")
    with pytest.raises(LookupError):
        locate("a@../etc")


def test_a_deleted_folder_is_not_brought_back_by_a_session_that_holds_it(tmp_path: Path) -> None:
    store = MaildirStore(str(tmp_path / "u"))
    store.create("Old")
    held = store.folder("Old")
    held.sync()
    store.delete("Old")
    with pytest.raises(FolderGone):
        held.sync()
    with pytest.raises(FolderGone):
        held.append(io.BytesIO(b"S: 1\r\n\r\nx\r\n"), flags=frozenset(), internaldate=None)
    assert store.list_folders() == ["INBOX"]
    assert not (tmp_path / "u" / ".Old").exists()
    # INBOX, which delivery makes too, is made again when missing.
    inbox = store.inbox()
    os.rename(tmp_path / "u", tmp_path / "moved")
    assert inbox.sync().messages == ()
    assert (tmp_path / "u" / "cur").is_dir()
