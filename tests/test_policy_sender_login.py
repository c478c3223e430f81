"""[auth] sender_login_binding: own address, routing ownership, sender_login_map."""

from __future__ import annotations

import smtplib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import PASSWORD, LiveServer, make_site
from policy_support import make_engine
from postoffice.maps.interfaces import MemoryMap
from postoffice.policy.engine import Kind
from postoffice.policy.sender_login import SenderLogins, parse_logins
from test_routing_support import HOST, Accounts, config, make_router

VUSERS = (f"alice@{HOST}", f"bob@{HOST}", "carol@virtual.example")


def logins(entries: dict[str, str] | None = None) -> SenderLogins:
    accounts = Accounts()
    accounts.add("nobody", "/nonexistent", uid=65534)
    accounts.add("sysuser", "/nonexistent", uid=1001)
    cfg = config(local_domains=(HOST, "virtual.example", "catchall.example", "localhost"))
    router = make_router(
        aliases={
            "info": "alice",
            "team": "alice, bob",
            "pipe": '"|/bin/cat"',
            "far": "someone@remote.example",
            "sysalias": "sysuser",
        },
        virtusertable={
            "sales@virtual.example": f"alice@{HOST}",
            "@catchall.example": f"bob@{HOST}",
            "nobody-here@virtual.example": "error:5.1.1:550 No such user",
        },
        users=VUSERS,
        accounts=accounts,
        cfg=cfg,
    )
    return SenderLogins(
        login_map=MemoryMap("sender_login_map", {k.lower(): v for k, v in (entries or {}).items()}),
        resolve=router.resolve,
        local_domains=(HOST, "virtual.example", "catchall.example", "localhost"),
        recipient_delimiter="+",
    )


ALICE = f"alice@{HOST}"


@pytest.mark.parametrize(
    ("sender", "why"),
    [
        (ALICE, "the login's own address"),
        (f"Alice@{HOST.upper()}", "the login's own address"),
        (f"alice+lists@{HOST}", "the login's own address"),
        (f"info@{HOST}", "routes to the login's mailbox"),  # aliases: info: alice
        (f"info+x@{HOST}", "routes to the login's mailbox"),
        ("sales@virtual.example", "routes to the login's mailbox"),  # virtusertable
        ("", "null sender"),
    ],
)
def test_addresses_alice_owns(sender: str, why: str) -> None:
    assert logins().owner(ALICE, sender) == why


@pytest.mark.parametrize(
    "sender",
    [
        f"bob@{HOST}",  # another user
        f"team@{HOST}",  # a list reaching alice and bob belongs to nobody
        f"pipe@{HOST}",  # a program
        f"far@{HOST}",  # a remote address
        "anything@catchall.example",  # bob's catch-all
        "nobody-here@virtual.example",  # an error: entry
        f"nosuch@{HOST}",
        "alice@elsewhere.example",  # same local part, another domain
        f"alice@{HOST}.evil.example",
        "carol@virtual.example",
    ],
)
def test_addresses_alice_does_not_own(sender: str) -> None:
    assert logins().owner(ALICE, sender) == ""


def test_catch_all_and_system_accounts() -> None:
    sl = logins()
    assert sl.owner(f"bob@{HOST}", "anything@catchall.example") == "routes to the login's mailbox"
    # a system account login owns what routes to its system mailbox
    assert sl.owner("sysuser", f"sysalias@{HOST}") == "routes to the login's mailbox"
    assert sl.owner("sysuser", f"sysuser@{HOST}") == "routes to the login's mailbox"
    assert sl.owner("sysuser", f"info@{HOST}") == ""


def test_the_map_in_postfix_lookup_order() -> None:
    sl = logins(
        {
            f"team@{HOST}": f"alice@{HOST}, bob@{HOST}",
            "shared@remote.example": f"Alice@{HOST.upper()}",  # logins compared without case
            "@partner.example": f"bob@{HOST} carol@virtual.example",
            "postmaster": "carol@virtual.example",  # bare user: local domains only
            f"boss+x@{HOST}": "carol@virtual.example",
        }
    )
    assert sl.owner(ALICE, f"team@{HOST}").startswith(f"sender_login_map team@{HOST} (")
    assert sl.owner(f"bob@{HOST}", f"TEAM@{HOST}") != ""
    assert sl.owner(ALICE, "shared@remote.example") != ""
    assert sl.owner("carol@virtual.example", "anyone@partner.example") != ""
    assert sl.owner(ALICE, "anyone@partner.example") == ""
    assert sl.owner("carol@virtual.example", f"postmaster@{HOST}") != ""
    assert sl.owner("carol@virtual.example", "postmaster@remote.example") == ""
    # user+detail@domain before user@domain
    assert sl.owner("carol@virtual.example", f"boss+x@{HOST}") != ""
    assert sl.owner("carol@virtual.example", f"boss+y@{HOST}") == ""
    # a map entry adds owners; the routing owner keeps the address too
    assert sl.owner(ALICE, f"info@{HOST}") == "routes to the login's mailbox"


def test_parse_logins() -> None:
    assert parse_logins(" a@x, b@y  c@z,,d ") == ("a@x", "b@y", "c@z", "d")
    assert parse_logins("") == ()


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60), st.text(max_size=60))
def test_owner_never_raises(login: str, sender: str) -> None:
    result = logins({"x@y": "z"}).owner(login, sender)
    assert isinstance(result, str)
    if sender and "@" not in login:
        # a login that is no address owns only what the map or a system mailbox gives it
        assert result in ("", "routes to the login's mailbox") or result.startswith(
            "sender_login_map"
        )


async def test_engine_refuses_at_mail_only_when_authenticated(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, accept_unresolvable_domains=True)
    engine.sender_logins = logins()
    state = await engine.new_client("127.0.0.9")
    await engine.on_connect(state)
    assert (await engine.on_mail(state, f"bob@{HOST}")).kind is Kind.ACCEPT  # not authenticated
    state.authenticated = ALICE
    verdict = await engine.on_mail(state, f"bob@{HOST}")
    assert verdict.kind is Kind.REJECT
    assert (verdict.reply.code, verdict.reply.enhanced) == (553, "5.7.1")
    assert verdict.reply.text == f"<bob@{HOST}>... Sender address not owned by user {ALICE}"
    assert (await engine.on_mail(state, f"info@{HOST}")).kind is Kind.ACCEPT
    assert (await engine.on_mail(state, "")).kind is Kind.ACCEPT


def test_over_smtp_with_aliases_virtusertable_and_the_map(tmp_path: Path) -> None:
    site = make_site(
        tmp_path / "site",
        extra_toml="[auth]\nsender_login_binding = true\nfailure_delay = 0.01\n"
        "[policy]\naccept_unresolvable_domains = true\n",
    )
    for name, text in (
        ("aliases", "info: alice\nteam: alice, bob\n"),
        ("virtusertable", "sales@example.test alice@example.test\n"),
        ("sender-login-map", "team@example.test alice@example.test,bob@example.test\n"),
    ):
        (site.root / name).write_text(text)
        (site.root / name).chmod(0o600)
    server = LiveServer(site)
    try:
        with smtplib.SMTP(server.host, server.port, timeout=10) as c:
            c.ehlo("client.example.org")
            c.login("alice@example.test", PASSWORD)
            for sender in ("alice@example.test", "info@example.test", "sales@example.test"):
                assert c.mail(sender)[0] == 250, sender
                c.rset()
            assert c.mail("team@example.test")[0] == 250  # from the map
            c.rset()
            code, msg = c.mail("bob@example.test")
            assert (code, msg) == (
                553,
                b"5.7.1 <bob@example.test>... Sender address not owned by user alice@example.test",
            )
        server.wait_for(r"reject: MAIL from .*not owned by alice@example.test")
    finally:
        server.stop()
