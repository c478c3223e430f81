"""Every POP3 dialogue in tests/transcripts/pop3/ runs against the engine and a live server.

A transcript's header comments shape its run:
    # maildrop: seed          the messages in the login's INBOX (pop3_support.MAILDROPS)
    # login: alice@example.test   whose INBOX that is (default alice@example.test)
    # apop: NAME SECRET       a user whose stored password is {PLAIN}SECRET
    # stamp: <...>            a fixed APOP banner timestamp: engine only
    # remaining: N            messages left in the INBOX after the dialogue
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import LiveServer, make_site
from pop3_support import (
    MAILDROPS,
    MemoryDrops,
    add_user,
    headers,
    maildir_count,
    memory_deps,
    pop3_port,
    write_maildir,
)
from postoffice.config.load import load_config
from postoffice.testing.pop3_transcript import run_engine, run_socket
from postoffice.testing.transcript import parse

HERE = Path(__file__).parent / "transcripts" / "pop3"
FILES = sorted(HERE.glob("*.txt"))
LIVE = [f for f in FILES if "stamp" not in headers(f.read_text())]


def _site(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    h = headers(text)
    site = make_site(tmp_path / "site")
    if "apop" in h:
        name, secret = h["apop"].split()
        add_user(site, name, secret)
    return site, h


def test_there_are_transcripts() -> None:
    assert len(FILES) >= 8
    for f in FILES:
        h = headers(f.read_text())
        assert parse(f.read_text()), f
        assert h.get("maildrop") in MAILDROPS, f
        assert "remaining" in h, f


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
async def test_pop3_transcript_against_engine(path: Path, tmp_path: Path) -> None:
    text = path.read_text()
    site, h = _site(tmp_path, text)
    config = load_config(str(site.config))
    drops = MemoryDrops()
    login = h.get("login", "alice@example.test")
    folder = drops.fill(login, h["maildrop"])
    await run_engine(text, memory_deps(config, drops, stamp=h.get("stamp")))
    assert len(folder.sync().messages) == int(h["remaining"])
    assert not folder.locked  # the maildrop lock is always given back


@pytest.mark.parametrize("path", LIVE, ids=[f.stem for f in LIVE])
async def test_pop3_transcript_against_live_server(path: Path, tmp_path: Path) -> None:
    text = path.read_text()
    site, h = _site(tmp_path, text)
    login = h.get("login", "alice@example.test")
    write_maildir(site, login, MAILDROPS[h["maildrop"]])
    server = LiveServer(site)
    try:
        host, port = pop3_port(server)
        await run_socket(text, host, port)
        if "'s maildrop has" in text:  # logged in: the logout line follows the update
            server.wait_for(rf"pop3\({login}\): Disconnected: Logged out")
    finally:
        server.stop()
    assert maildir_count(site, login) == int(h["remaining"])
