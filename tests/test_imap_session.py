"""imap.session and imap.server in-process: TLS rules for login, limits, timeouts, shutdown.

The adapter, engine and session run over an in-memory transport (no
sockets); clients are given addresses off loopback where that matters.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import make_site
from imap_support import FAST_AUTH, imap_deps, seed
from postoffice.config.load import parse_config
from postoffice.errors import ConfigError
from postoffice.imap.cache import CACHE_NAME, SummaryCache
from postoffice.imap.server import ImapConnection, ImapServer
from postoffice.imap.session import ImapDeps
from postoffice.imap.structure import summarise
from postoffice.testing.imap_transcript import _Transport, run_engine, settle

LOGIN = "a1 LOGIN alice@example.test secret-pw"


def deps_for(tmp_path: Path, extra: str = "", **imap: object) -> ImapDeps:
    site = make_site(tmp_path / "site", extra_toml=FAST_AUTH + extra)
    seed(site, "alice@example.test", 2)
    deps = imap_deps(site)
    if imap:
        config = deps.config
        config = dataclasses.replace(config, imap=dataclasses.replace(config.imap, **imap))
        deps = dataclasses.replace(deps, config=config)
    return deps


async def test_no_plaintext_login_off_loopback(tmp_path: Path) -> None:
    deps = deps_for(tmp_path)
    text = (
        "S: * OK [CAPABILITY IMAP4rev1 IMAP4rev2 LOGINDISABLED SASL-IR ID ENABLE IDLE LITERAL+]"
        " postoffice IMAP ready\n"
        f"C: {LOGIN}\n"
        "S: a1 NO [PRIVACYREQUIRED] Use STARTTLS first: no plaintext authentication\n"
        "C: a2 AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQtcHc=\n"
        "S: a2 NO [PRIVACYREQUIRED] Use STARTTLS first: no plaintext authentication\n"
        "C: a3 STARTTLS\n"
        "S: a3 NO [UNAVAILABLE] TLS is not available\n"
    )
    await run_engine(text, deps, ip="192.0.2.7")


async def test_plaintext_login_allowed_when_configured(tmp_path: Path) -> None:
    deps = deps_for(tmp_path, require_tls=False)
    text = f"S: * OK [CAPABILITY * AUTH=PLAIN *] postoffice IMAP ready\nC: {LOGIN}\nS: a1 OK *\n"
    await run_engine(text, deps, ip="192.0.2.7")


async def test_per_user_connection_limit(tmp_path: Path) -> None:
    deps = deps_for(tmp_path, max_connections_per_user=1)
    server = ImapServer(deps)
    first, second = ImapConnection(server), ImapConnection(server)
    t1, t2 = _Transport("127.0.0.1"), _Transport("127.0.0.1")
    first.connection_made(t1)
    second.connection_made(t2)
    first.data_received(f"{LOGIN}\r\n".encode())
    await settle(first)
    second.data_received(f"{LOGIN}\r\n".encode())
    await settle(second)
    assert b"a1 OK" in t1.out
    assert b"a1 NO [LIMIT]" in t2.out
    first.connection_lost(None)  # the count goes down when a session ends
    t2.out.clear()
    second.data_received(f"{LOGIN}\r\n".encode())
    await settle(second)
    assert b"a1 OK" in t2.out
    second.connection_lost(None)
    assert deps.users.count("alice@example.test", "127.0.0.1") == 0


async def test_too_many_connections_get_bye(tmp_path: Path) -> None:
    deps = deps_for(tmp_path, max_connections_per_ip=1)
    server = ImapServer(deps)
    conns = [ImapConnection(server) for _ in range(3)]
    transports = [_Transport("192.0.2.9") for _ in conns]
    for conn, transport in zip(conns, transports, strict=True):
        conn.connection_made(transport)
    assert transports[0].out.startswith(b"* OK")
    assert transports[2].out.startswith(b"* BYE [UNAVAILABLE] Too many connections from your")
    assert transports[2].closed
    for conn in conns:
        conn.connection_lost(None)
    assert server.per_ip == {} and not server.connections


async def test_login_timeout_says_bye(tmp_path: Path) -> None:
    deps = deps_for(tmp_path, login_timeout=0.05)
    server = ImapServer(deps)
    conn, transport = ImapConnection(server), _Transport("127.0.0.1")
    conn.connection_made(transport)
    for _ in range(200):
        if transport.closed:
            break
        await asyncio.sleep(0.01)
    assert transport.closed
    assert transport.out.endswith(b"* BYE Autologout; idle for too long\r\n")
    conn.connection_lost(None)


async def test_shutdown_says_bye_to_idle_clients(tmp_path: Path) -> None:
    deps = deps_for(tmp_path)
    server = ImapServer(deps)
    conn, transport = ImapConnection(server), _Transport("127.0.0.1")
    conn.connection_made(transport)
    conn.data_received(f"{LOGIN}\r\na2 SELECT INBOX\r\na3 IDLE\r\n".encode())
    await settle(conn)
    assert transport.out.endswith(b"+ idling\r\n")

    async def closed_soon() -> None:
        await asyncio.sleep(0)
        conn.connection_lost(None)

    closer = asyncio.ensure_future(closed_soon())
    await server.stop(grace=1.0)
    await closer
    assert b"* BYE [UNAVAILABLE] Server shutting down\r\n" in transport.out
    assert transport.closed


async def test_idle_reports_new_mail(tmp_path: Path) -> None:
    """New mail during IDLE is an EXISTS at once (the folder poller, not a command)."""
    site = make_site(tmp_path / "site", extra_toml=FAST_AUTH)
    seed(site, "alice@example.test", 1)
    deps = imap_deps(site)
    deps = dataclasses.replace(deps, watch=type(deps.watch)(interval=0.01))
    server = ImapServer(deps)
    conn, transport = ImapConnection(server), _Transport("127.0.0.1")
    conn.connection_made(transport)
    conn.data_received(f"{LOGIN}\r\na2 SELECT INBOX\r\na3 IDLE\r\n".encode())
    await settle(conn)
    transport.out.clear()
    seed(site, "alice@example.test", 1)  # a delivery by someone else
    for _ in range(500):
        if b"* 2 EXISTS" in transport.out:
            break
        await asyncio.sleep(0.01)
    assert transport.out.startswith(b"* 2 EXISTS\r\n")
    conn.data_received(b"DONE\r\n")
    await settle(conn)
    assert transport.out.endswith(b"a3 OK IDLE terminated\r\n")
    assert server.statistics()["watched_folders"] == 0
    conn.connection_lost(None)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_cache_file_reader_never_raises(
    tmp_path_factory: pytest.TempPathFactory, blob: bytes
) -> None:
    path = tmp_path_factory.mktemp("cache") / CACHE_NAME
    path.write_bytes(b"postoffice-cache version: 1\n" + blob)
    cache = SummaryCache(str(path))
    cache.get("anything")
    summary = summarise(b"Subject: s\r\n\r\nbody\r\n")
    cache.put([("k1", summary)])
    assert SummaryCache(str(path)).get("k1") == summary


def test_config_refuses_a_short_idle_timeout() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config("[imap]\nidle_timeout = 600\n", file="po.toml")
    assert err.value.key == "imap.idle_timeout" and err.value.line == 2
    with pytest.raises(ConfigError) as err:
        parse_config('[imaps]\nlisten = ["nowhere"]\n', file="po.toml")
    assert err.value.key == "imaps.listen"
    config = parse_config("")
    assert config.imap.listen == ("127.0.0.1:2143",) and config.imaps.listen == ()
    assert config.imap.idle_timeout == 1800.0


async def test_login_name_case_and_selected_mailbox_in_use(tmp_path: Path) -> None:
    deps = deps_for(tmp_path)
    text = (
        "S: * OK *\n"
        "C: a1 LOGIN Alice@EXAMPLE.test secret-pw\n"  # the users file's key, not the spelling
        "S: a1 OK *\n"
        "C: a2 SELECT Trash\n"
        "S: * 0 EXISTS\n" + "S: *\n" * 5 + "S: a2 OK [READ-WRITE] SELECT completed\n"
        "C: a3 DELETE Trash\n"
        "S: a3 NO [INUSE] The mailbox is selected; close it first\n"
        "C: a4 RENAME Trash Bin\n"
        "S: a4 NO [INUSE] The mailbox is selected; close it first\n"
        "C: a5 SELECT INBOX\n"
        "S: * OK [CLOSED] Previous mailbox closed\n"
        "S: * 2 EXISTS\n" + "S: *\n" * 6 + "S: a5 OK [READ-WRITE] SELECT completed\n"
        "C: a6 RENAME Trash Bin\n"
        "S: a6 OK RENAME completed\n"
    )
    await run_engine(text, deps)
