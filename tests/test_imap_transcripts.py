"""Every IMAP dialogue in tests/transcripts/imap/ runs against the engine and a live server.

A transcript's header comments shape its run:
    # seed: alice@example.test 3 [Folder]   canned messages (imap_support.MESSAGES)
    # users: a@example.test, b@example.test  the users file (default conftest's)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import DEFAULT_USERS, LiveServer, make_site
from imap_support import FAST_AUTH, headers, imap_address, imap_deps, seed
from postoffice.testing.imap_transcript import run_engine, run_socket
from postoffice.testing.transcript import parse

HERE = Path(__file__).parent / "transcripts" / "imap"
FILES = sorted(HERE.glob("*.txt"))


def _site(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    h = headers(text)
    users = [u.strip() for u in h.get("users", ",".join(DEFAULT_USERS)).split(",")]
    site = make_site(tmp_path / "site", users=users, extra_toml=FAST_AUTH)
    for spec in [line for line in text.splitlines() if line.startswith("# seed: ")]:
        address, count, *folder = spec.removeprefix("# seed: ").split()
        seed(site, address, int(count), folder=folder[0] if folder else "INBOX")
    return site


def test_there_are_transcripts() -> None:
    assert len(FILES) >= 10
    for f in FILES:
        assert parse(f.read_text()), f


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
async def test_imap_transcript_against_engine(path: Path, tmp_path: Path) -> None:
    text = path.read_text()
    site = _site(tmp_path, text)
    await run_engine(text, imap_deps(site))


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
async def test_imap_transcript_against_live_server(path: Path, tmp_path: Path) -> None:
    text = path.read_text()
    site = _site(tmp_path, text)
    server = LiveServer(site)
    try:
        host, port = imap_address(server)
        await run_socket(text, host, port)
    finally:
        server.stop()
