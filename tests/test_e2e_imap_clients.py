"""Real IMAP clients against a live `postoffice serve`: mbsync (isync), offlineimap, mutt.

mbsync and offlineimap synchronise a seeded mailbox down into a local
Maildir, change it there (a flag, a new message in Drafts, a deleted
message), synchronise back, and the server's side is checked with
imaplib. mutt runs headless in a tmux pane: it lists the mailbox (the
8-bit subject decoded), flags a message and writes it back. A client that
is not installed (`apt-get install isync offlineimap mutt tmux`) skips its
test and says so.
"""

from __future__ import annotations

import imaplib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import PASSWORD, LiveServer, make_site, need_programs, wait_until
from imap_support import FAST_AUTH, imap_address, seed

ALICE = "alice@example.test"
DRAFT = b"From: alice@example.test\r\nSubject: written offline\r\n\r\nA draft.\r\n"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    site = make_site(tmp_path / "site", extra_toml=FAST_AUTH)
    seed(site, ALICE, 3)
    server = LiveServer(site)
    try:
        yield server
    finally:
        server.stop()


def _server_view(server: LiveServer) -> dict[str, object]:
    host, port = imap_address(server)
    c = imaplib.IMAP4(host, port, timeout=10)
    try:
        c.login(ALICE, PASSWORD)
        c.select("INBOX", readonly=True)
        _, data = c.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        inbox = [(d[0], d[1]) for d in data if isinstance(d, tuple)]
        _, drafts = c.status("Drafts", "(MESSAGES)")
        return {"inbox": inbox, "drafts": drafts[0]}
    finally:
        c.logout()


def _files(path: Path) -> list[Path]:
    return sorted(p for sub in ("cur", "new") for p in (path / sub).iterdir())


def _change_locally(inbox: Path, drafts: Path, *, flag_sep: str = ":2,") -> None:
    """Message 2 read (S), message 3 deleted, a new draft."""
    files = _files(inbox)
    assert len(files) == 3
    second, third = files[1], files[2]
    base, _, info = second.name.partition(flag_sep)
    second.rename(inbox / "cur" / f"{base}{flag_sep}{''.join(sorted(info + 'S'))}")
    third.unlink()
    (drafts / "cur").mkdir(parents=True, exist_ok=True)
    (drafts / "cur" / f"1700000000.draft.host{flag_sep}D").write_bytes(
        DRAFT.replace(b"\r\n", b"\n")
    )


def _check_server(server: LiveServer) -> None:
    view = _server_view(server)
    inbox = view["inbox"]
    assert isinstance(inbox, list) and len(inbox) == 2  # the deleted one is expunged
    assert b"\\Seen" in inbox[0][0] and b"\\Seen" in inbox[1][0]
    assert view["drafts"] == b"Drafts (MESSAGES 1)"


def test_mbsync_down_and_back(live: LiveServer, tmp_path: Path) -> None:
    need_programs("mbsync", package="isync")
    host, port = imap_address(live)
    local = tmp_path / "local"
    local.mkdir()
    rc = tmp_path / "mbsyncrc"
    rc.write_text(
        f"IMAPAccount po\nHost {host}\nPort {port}\nUser {ALICE}\nPass {PASSWORD}\n"
        "SSLType None\nAuthMechs LOGIN\n\n"
        "IMAPStore po-remote\nAccount po\n\n"
        f"MaildirStore po-local\nPath {local}/\nInbox {local}/INBOX\nSubFolders Verbatim\n\n"
        "Channel po\nFar :po-remote:\nNear :po-local:\nPatterns *\nCreate Both\n"
        "Expunge Both\nSyncState *\n"
    )

    def sync() -> None:
        done = subprocess.run(
            ["mbsync", "-c", str(rc), "po"], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stdout + done.stderr

    sync()
    assert len(_files(local / "INBOX")) == 3
    assert (local / "Sent").is_dir() and (local / "Trash").is_dir()
    _change_locally(local / "INBOX", local / "Drafts")
    sync()
    _check_server(live)


def test_offlineimap_down_and_back(live: LiveServer, tmp_path: Path) -> None:
    need_programs("offlineimap", package="offlineimap")
    host, port = imap_address(live)
    local = tmp_path / "local"
    rc = tmp_path / "offlineimaprc"
    rc.write_text(
        "[general]\naccounts = po\nmetadata = " + str(tmp_path / "meta") + "\nui = quiet\n\n"
        "[Account po]\nlocalrepository = local\nremoterepository = remote\n\n"
        f"[Repository local]\ntype = Maildir\nlocalfolders = {local}\nsep = .\n\n"
        f"[Repository remote]\ntype = IMAP\nremotehost = {host}\nremoteport = {port}\n"
        f"remoteuser = {ALICE}\nremotepass = {PASSWORD}\nssl = no\nstarttls = no\n"
        "sslcacertfile = OS-DEFAULT\n"
    )

    def sync() -> None:
        done = subprocess.run(
            ["offlineimap", "-c", str(rc), "-o", "-u", "quiet"],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "HOME": str(tmp_path)},
        )
        assert done.returncode == 0, done.stdout + done.stderr

    sync()
    assert len(_files(local / "INBOX")) == 3
    assert (local / "Sent").is_dir()
    _change_locally(local / "INBOX", local / "Drafts", flag_sep=":2,")
    sync()
    _check_server(live)


def _screen(session: str) -> str:
    done = subprocess.run(
        ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True, check=False
    )
    return done.stdout


def test_mutt_reads_and_flags(live: LiveServer, tmp_path: Path) -> None:
    need_programs("mutt", package="mutt")
    need_programs("tmux", package="tmux")
    host, port = imap_address(live)
    rc = tmp_path / "muttrc"
    rc.write_text(
        f'set imap_user = "{ALICE}"\nset imap_pass = "{PASSWORD}"\n'
        f'set folder = "imap://{host}:{port}/"\nset spoolfile = "+INBOX"\n'
        "set ssl_starttls = no\nset ssl_force_tls = no\n"
        'set header_cache = ""\nset message_cachedir = ""\nset sort = date\n'
        "set move = no\nset quit = yes\n"
    )
    session = f"po-mutt-{os.getpid()}"
    env = {**os.environ, "TERM": "xterm", "HOME": str(tmp_path)}
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "30",
         f"mutt -n -F {rc}"],
        env=env, check=True,
    )  # fmt: skip
    try:
        assert wait_until(lambda: "Grüße aus Berlin" in _screen(session), timeout=20)
        screen = _screen(session)
        assert "Hello Bob" in screen and "Report with attachment" in screen
        assert "Msgs:3 New:2" in screen
        # mutt's cursor is on the first new message (2): flag it, write the change back.
        subprocess.run(["tmux", "send-keys", "-t", session, "F", "$"], check=True)

        def flagged() -> bool:
            inbox = _server_view(live)["inbox"]
            assert isinstance(inbox, list)
            return [b"\\Flagged" in flags for flags, _ in inbox] == [False, True, False]

        assert wait_until(flagged, timeout=20)
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True, check=False)
    live.wait_for(r"imap-login: Login: user=<alice@example\.test>, method=\S+")
