"""Every dialogue in tests/transcripts/ runs against the engine and against a live server.

A transcript may start with header comments that shape the site it runs on:
    # users: alice@example.test, kathy@example.test
    # domains: example.test, localhost
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import DEFAULT_USERS, DOMAIN, HOSTNAME, LiveServer, make_site
from postoffice.auth.backend import AuthBackend
from postoffice.auth.passwd_file import UserDB
from postoffice.auth.throttle import FailureThrottle
from postoffice.config.load import load_config
from postoffice.policy.relay import RecipientPolicy
from postoffice.queue.envelope import Envelope
from postoffice.queue.spool import FileSpool
from postoffice.routing.local import LocalRouter
from postoffice.smtp.session import SessionDeps
from postoffice.testing.transcript import parse, run_engine, run_socket

HERE = Path(__file__).parent / "transcripts"
FILES = sorted(HERE.glob("*.txt"))


def _headers(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("# ") and ":" in line:
            key, _, value = line[2:].partition(":")
            if key.strip() in ("users", "domains"):
                out[key.strip()] = [v.strip() for v in value.split(",") if v.strip()]
    return out


def _site(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    h = _headers(text)
    return make_site(
        tmp_path / "site",
        users=tuple(h.get("users", DEFAULT_USERS)),
        domains=tuple(h.get("domains", ("localhost", DOMAIN, HOSTNAME))),
    )


def test_there_are_transcripts() -> None:
    assert len(FILES) >= 5
    for f in FILES:
        assert parse(f.read_text()), f


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
async def test_transcript_against_engine(path: Path, tmp_path: Path) -> None:
    text = path.read_text()
    site = _site(tmp_path, text)
    config = load_config(str(site.config))
    users = UserDB.load(config.users_file)
    router = LocalRouter(local_domains=config.local_domains, hostname=config.hostname)
    spool = FileSpool(config.state_dir)
    submitted: list[Envelope] = []
    deps = SessionDeps(
        config=config,
        policy=RecipientPolicy(
            local_domains=config.local_domains,
            user_exists=users.exists,
            trusted_networks=config.relay.trusted_networks,
        ),
        spool=spool,
        submit=submitted.append,
        qualify=router.qualify,
        auth=AuthBackend(
            users=lambda: users,
            throttle=FailureThrottle(base=0.0, cap=0.0),
            hostname=config.hostname,
        ),
    )
    try:
        await run_engine(text, deps)
    finally:
        spool.close()
    # Every 250 "queued as" in the dialogue is a committed message.
    assert len(submitted) == text.count("queued as")
    for env in submitted:
        with spool.open_body(env.queue_id) as body:
            assert body.read().startswith(b"Received: from ")


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
async def test_transcript_against_live_server(path: Path, tmp_path: Path) -> None:
    text = path.read_text()
    site = _site(tmp_path, text)
    server = LiveServer(site)
    try:
        await run_socket(text, server.host, server.port)
    finally:
        server.stop()
